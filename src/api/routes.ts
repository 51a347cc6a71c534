// The REST API (README "API") as Hono routes over a Coordinator.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { fromHex, toBase64 } from "../encoding.js";
import { CoordinatorError, errorBody } from "../errors.js";
import { keyDigest } from "../manifest/manifest.js";
import { decodeBase64Field } from "../coordinator/coordinator.js";
import type { Coordinator, RecoverInput } from "../coordinator/coordinator.js";
import { openSealedShare } from "../coordinator/sealed-share.js";
import type { SelfAttestation } from "../coordinator/self-attestation.js";
import { admission } from "./admission.js";
import type { Metrics } from "./metrics.js";
import { readBody } from "./respond.js";
import { meshCertificateRequest, recoverRequest, resetRecoveryRequest, setManifestRequest } from "./schemas.js";

/** The WWW-Authenticate scheme of the attestation challenge. */
export const attestationScheme = "contrast-attestation-v1";

/** Body limits, in bytes. */
export const limits = { manifest: 32 * 1024 * 1024, small: 64 * 1024 } as const;

function limit(maxSize: number) {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new CoordinatorError("PAYLOAD_TOO_LARGE", `the request body is larger than ${maxSize} bytes`);
    },
  });
}

/** Log lines the API emits for state changes. */
export type Log = (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;

/** The /v1 routes. */
export function v1Routes(coordinator: Coordinator, metrics: Metrics, log: Log, selfAttestation?: SelfAttestation): Hono {
  const api = new Hono();

  api.get("/status", (c) => c.json(coordinator.status()));

  // The Coordinator's own evidence for a client's nonce, in every state (README "The Coordinator's evidence").
  api.get("/attestation", async function attestation(c) {
    if (selfAttestation === undefined) {
      throw new CoordinatorError("EVIDENCE_UNAVAILABLE", "this Coordinator serves no evidence of its own (started with --evidence none)");
    }
    try {
      return c.json(await selfAttestation.answer(coordinator, c.req.query("nonce")));
    } catch (err) {
      if (err instanceof CoordinatorError && err.code === "BUSY") c.header("Retry-After", "2");
      throw err;
    }
  });

  api.post("/manifest", admission({ smallBytes: limits.small }), limit(limits.manifest), async function setManifest(c) {
    const body = await readBody(c, setManifestRequest);
    const result = await coordinator.setManifest({
      manifest: decodeBase64Field(body.manifest, "manifest"),
      policies: () => body.policies.map((p, i) => decodeBase64Field(p, `policies.${i}`)),
      previousTransition: body.previousTransition,
      signature:
        body.signature === undefined
          ? undefined
          : {
              publicKey: decodeBase64Field(body.signature.publicKey, "signature.publicKey"),
              value: decodeBase64Field(body.signature.value, "signature.value"),
            },
      approvals: body.approvals?.map((a, i) => ({
        ownerPublicKey: a.ownerPublicKey,
        signature: decodeBase64Field(a.signature, `approvals.${i}.signature`),
      })),
    });
    if (result.unchanged === true) {
      log("info", "manifest unchanged", { generation: result.generation, transition: result.transition });
    } else {
      metrics.inc("coordinator_manifest_sets_total", "Manifests set or updated.");
      log("info", "manifest set", { generation: result.generation, transition: result.transition });
    }
    return c.json(result);
  });

  api.get("/manifests", async function getHistory(c) {
    const view = await coordinator.history();
    return c.json({
      name: view.name,
      generation: view.generation,
      latestTransition: view.latestTransition,
      transitions: view.transitions,
      manifests: view.manifests.map(toBase64),
      policies: Object.fromEntries([...view.policies].map(([hash, bytes]) => [hash, toBase64(bytes)])),
      rootCA: view.rootCA,
      meshCA: view.meshCA,
      intermediateCA: view.intermediateCA,
      transactionSigner: view.transactionSigner,
      head: toBase64(view.head),
    });
  });

  api.get("/seedshares", async function getSeedShares(c) {
    return c.json(await coordinator.seedShares());
  });

  api.post("/recover", limit(limits.small), async function recover(c) {
    const body = await readBody(c, recoverRequest);
    try {
      const salt = fromHex(body.salt);
      let input: RecoverInput;
      if (body.sealedShare !== undefined) {
        const sealed = body.sealedShare;
        // Opened by the Coordinator once the attempt matched, under its lock; no key: it cannot open.
        const open = async () => {
          if (selfAttestation === undefined) {
            throw new CoordinatorError("SEALED_SHARE_INVALID", "this Coordinator has no HPKE key (no evidence source), so no sealed share opens here: send the share in clear");
          }
          return openSealedShare(selfAttestation.hpke, sealed, { name: coordinator.name, salt });
        };
        input = { sealed: { attempt: sealed.attempt, open }, salt };
      } else {
        if (selfAttestation !== undefined && selfAttestation.source !== null) {
          throw new CoordinatorError(
            "SHARE_NOT_SEALED",
            "this Coordinator serves evidence of its own, so it takes seed shares only sealed to its attested HPKE key (sealedShare): verify GET /v1/attestation and seal the share",
          );
        }
        const share = decodeBase64Field(body.share ?? "", "share");
        if (share.length < 32) throw new CoordinatorError("INVALID_REQUEST", `share: ${share.length} bytes, at least 32 expected`);
        input = { share, salt };
      }
      const result = await coordinator.recover(input);
      const done = result.state === "ready";
      metrics.inc("coordinator_recoveries_total", "Recover requests by outcome.", { outcome: done ? "ok" : "share-accepted" });
      log("info", done ? "recovered" : "seed share accepted", { ...result.recovery, sealed: body.sealedShare !== undefined, generation: coordinator.status().generation });
      return c.json(result);
    } catch (err) {
      const code = err instanceof CoordinatorError ? err.code : "INTERNAL";
      metrics.inc("coordinator_recoveries_total", "Recover requests by outcome.", { outcome: code });
      log("warn", "recovery refused", { code, message: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  });

  api.delete("/recover", limit(limits.small), async function resetRecovery(c) {
    const body = await readBody(c, resetRecoveryRequest);
    const recovery = await coordinator.resetRecovery({
      ownerPublicKey: body.ownerPublicKey,
      signature: decodeBase64Field(body.signature, "signature"),
    });
    log("info", "recovery attempt reset", { owner: await keyDigest(fromHex(body.ownerPublicKey)) });
    return c.json({ state: coordinator.currentState, recovery });
  });

  api.post("/mesh/certificate", limit(limits.small), async function meshCertificate(c) {
    const body = await readBody(c, meshCertificateRequest);
    if (body.evidence === undefined) {
      // The challenge: evidence must bind this nonce (and the key) in its report data.
      const nonce = await coordinator.attestationNonce();
      const err = new CoordinatorError("ATTESTATION_REQUIRED", "send evidence whose report data is SHA-512(publicKey ‖ nonce)");
      c.header("WWW-Authenticate", `${attestationScheme} nonce="${nonce}"`);
      return c.json({ ...errorBody(err), nonce }, 401);
    }
    const result = await coordinator.issueMeshCertificate({
      publicKey: decodeBase64Field(body.publicKey, "publicKey"),
      evidence: body.evidence,
    });
    metrics.inc("coordinator_mesh_certificates_total", "Mesh certificates issued.");
    return c.json(result);
  });

  return api;
}
