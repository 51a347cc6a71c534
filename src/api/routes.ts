// The REST API (README "API") as Hono routes over a Coordinator.
import { Hono } from "hono";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { fromHex, toBase64 } from "../encoding.js";
import { CoordinatorError, errorBody } from "../errors.js";
import { keyDigest } from "../manifest/manifest.js";
import { decodeBase64Field } from "../coordinator/coordinator.js";
import type { Coordinator, RecoverInput } from "../coordinator/coordinator.js";
import type { ReadyPeer } from "../coordinator/peer-recovery.js";
import type { PeerSeedServer } from "../coordinator/peer-seed.js";
import { openSealedShare } from "../coordinator/sealed-share.js";
import type { SelfAttestation } from "../coordinator/self-attestation.js";
import { admission } from "./admission.js";
import type { Metrics } from "./metrics.js";
import { readBody } from "./respond.js";
import { meshCertificateRequest, peerSeedRequest, recoverRequest, resetRecoveryRequest, setManifestRequest } from "./schemas.js";

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

/**
 * `limit`, deciding a body of declared content-length (and no transfer-encoding) by the header
 * alone, as bodyLimit does, but without reading the request's `body` (on Node that makes the full
 * web Request, a cost on every mesh certificate); any other body is counted by bodyLimit.
 */
function limitByLength(maxSize: number): MiddlewareHandler {
  const counted = limit(maxSize);
  return async function limitByLength(c, next) {
    const length = c.req.header("content-length");
    if (length === undefined || c.req.header("transfer-encoding") !== undefined) return counted(c, next);
    if (Number.parseInt(length, 10) > maxSize) throw new CoordinatorError("PAYLOAD_TOO_LARGE", `the request body is larger than ${maxSize} bytes`);
    await next();
  };
}

/** Log lines the API emits for state changes. */
export type Log = (level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>) => void;

/** Peer replicas: serving the root seed to attested peers, and the ready peer a recovering replica last saw. */
export interface PeerRoutes {
  /** Serves POST /v1/peers/seed; absent: 404 NOT_FOUND. */
  server?: PeerSeedServer;
  /** The ready peer seen within the last 10 s while recovery is required: owners' recover is PEERS_READY unless forced. */
  readyPeer?: () => ReadyPeer | null;
}

/** The /v1 routes. */
export function v1Routes(coordinator: Coordinator, metrics: Metrics, log: Log, selfAttestation?: SelfAttestation, peers: PeerRoutes = {}): Hono {
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
      const peer = coordinator.currentState === "recovery-required" ? (peers.readyPeer?.() ?? null) : null;
      if (peer !== null && body.force !== true) {
        throw new CoordinatorError(
          "PEERS_READY",
          `a ready peer replica (${peer.peer}) was attested ${Math.max(0, Math.round((Date.now() - peer.at) / 1000))} s ago: this replica recovers from it by itself; ` +
            "send force: true (contrast recover --force) to recover with the owners' shares anyway, which can split the replicas into two histories",
        );
      }
      if (peer !== null) log("warn", "owners force a recovery although a ready peer replica exists: the replicas may split", { peer: peer.peer });
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

  // A peer replica asks for the root seed (README "Recovery from peers"): a nonce first, then its evidence.
  api.post("/peers/seed", limit(limits.small), async function peerSeed(c) {
    const server = peers.server;
    if (server === undefined) throw new CoordinatorError("NOT_FOUND", "this Coordinator serves no seed to peers");
    const body = await readBody(c, peerSeedRequest);
    if (body.nonce === undefined || body.hpkePublicKey === undefined || body.evidence === undefined) {
      const nonce = await server.challenge();
      const err = new CoordinatorError("ATTESTATION_REQUIRED", "send your evidence whose report data binds this nonce, your HPKE key, this Coordinator's name and no held state");
      c.header("WWW-Authenticate", `${attestationScheme} nonce="${nonce}"`);
      return c.json({ ...errorBody(err), nonce }, 401);
    }
    try {
      const served = await server.serve({ nonce: body.nonce, hpkePublicKey: body.hpkePublicKey, evidence: body.evidence });
      metrics.inc("coordinator_peer_seed_requests_total", "Root seed requests of peer replicas, by outcome.", { outcome: "served" });
      log("info", "served the root seed to an attested peer replica", {
        platform: served.requester.platform,
        policyHash: served.requester.policyHash,
        generation: served.answer.generation,
      });
      return c.json(served.answer);
    } catch (err) {
      const mapped = err instanceof CoordinatorError ? err : null;
      metrics.inc("coordinator_peer_seed_requests_total", "Root seed requests of peer replicas, by outcome.", { outcome: mapped?.code ?? "INTERNAL" });
      log("warn", "peer seed request refused", { code: mapped?.code ?? "INTERNAL", reason: mapped?.reason, message: err instanceof Error ? err.message : String(err) });
      if (mapped?.code === "BUSY") c.header("Retry-After", "2");
      throw err;
    }
  });

  api.post("/mesh/certificate", limitByLength(limits.small), async function meshCertificate(c) {
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
