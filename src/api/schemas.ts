// The zod schemas of every request and response body; the OpenAPI document is generated from these.
import { z } from "zod";
import { seedShareDocumentSchema } from "../crypto/seedshares.js";
import { sha256Hex } from "../manifest/manifest.js";

/** Canonical standard base64 with padding. */
export const base64 = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, "standard base64");

const pem = () => z.string().describe("PEM");

/** A seed-share owner's public key as the manifest lists it: hex DER. */
const hexKey = () => z.string().max(8192).regex(/^([0-9a-f]{2})+$/, "hex");

/** The largest manifest, in base64 characters. */
export const maxManifestChars = 4 * 1024 * 1024;
/** The largest policy, in base64 characters. */
export const maxPolicyChars = 4 * 1024 * 1024;

/** POST /v1/manifest */
export const setManifestRequest = z.lazy(() =>
  z
    .object({
      manifest: base64(maxManifestChars).describe("the manifest JSON, exact bytes, base64"),
      policies: z.array(base64(maxPolicyChars)).max(1024).describe("every policy the manifest references, base64"),
      previousTransition: sha256Hex.optional().describe("the transition an update builds on; absent for the first set"),
      signature: z
        .object({
          publicKey: base64(1024).describe("workload-owner public key, DER SPKI (ECDSA P-384)"),
          value: base64(256).describe("ECDSA P-384/SHA-384 signature (IEEE P1363, r‖s) over the update message"),
        })
        .strict()
        .optional(),
      approvals: z
        .array(
          z
            .object({
              ownerPublicKey: hexKey().describe("a current seed-share owner, exactly as the current manifest lists it"),
              signature: base64(2048).describe("RSA-PSS (SHA-256, salt 32) over the rekey approval statement"),
            })
            .strict(),
        )
        .max(32)
        .optional()
        .describe("an update that changes the seed-share owners or the threshold: approvals by t current seed-share owners"),
    })
    .strict(),
);

/** Answer of POST /v1/manifest */
export const setManifestResponse = z.lazy(() =>
  z.object({
    transition: sha256Hex,
    generation: z.number().int(),
    rootCA: pem(),
    meshCA: pem(),
    unchanged: z.literal(true).optional().describe("the manifest was already the current one (same bytes and policies): nothing changed"),
    seedShares: seedShareDocumentSchema.optional().describe("on the first set, and on an update that changes the seed-share owners or the threshold: the encrypted seed shares and the salt"),
  }),
);

/** POST /v1/recover: the salt and exactly one of `share` (in clear; refused while an evidence source is on) and `sealedShare`. */
export const recoverRequest = z.lazy(() =>
  z
    .object({
      salt: sha256Hex.describe("the salt from the seed-share document, hex"),
      share: base64(1024)
        .optional()
        .describe("one decrypted seed share (with threshold 1: the recovery seed itself), base64; refused (SHARE_NOT_SEALED) by a Coordinator with an evidence source; exactly one of share and sealedShare"),
      sealedShare: z
        .object({
          attempt: z.string().regex(/^[0-9a-f]{32}$/, "16 bytes, lower-case hex").describe("the recovery attempt's nonce (status.recovery.nonce) the share is sealed for"),
          enc: base64(88).describe("the HPKE encapsulated key (65 bytes), base64"),
          ciphertext: base64(1100).describe("the share sealed with HPKE to the Coordinator's attested key (info: name and attempt; aad: the salt), base64"),
        })
        .strict()
        .optional()
        .describe("the share sealed to the HPKE key the Coordinator's evidence binds, for the current attempt; exactly one of share and sealedShare"),
      force: z
        .boolean()
        .optional()
        .describe("recover even though a ready peer replica was seen within 10 s (else 409 PEERS_READY): the owners' recovery may then split the replicas into two histories"),
    })
    .strict()
    .refine((body) => (body.share === undefined) !== (body.sealedShare === undefined), { message: "exactly one of share and sealedShare is required" }),
);

/** DELETE /v1/recover */
export const resetRecoveryRequest = z.lazy(() =>
  z
    .object({
      ownerPublicKey: hexKey().describe("a seed-share owner, exactly as the stored manifest lists it"),
      signature: base64(2048).describe("RSA-PSS (SHA-256, salt 32) over the recovery reset statement with the attempt's nonce"),
    })
    .strict(),
);

const progress = () =>
  z.object({
    threshold: z.number().int(),
    received: z.number().int(),
    nonce: z.string().nullable().describe("identifies the current recovery attempt, from the start of recovery-required or stale: shares are sealed for it, and a reset is signed over it"),
  });

/** Answer of POST /v1/recover */
export const recoverResponse = z.lazy(() => z.object({ state: z.string(), recovery: progress() }));

/** POST /v1/mesh/certificate */
export const meshCertificateRequest = z.lazy(() =>
  z
    .object({
      publicKey: base64(1024).describe("the workload's public key, DER SPKI (ECDSA P-256 or P-384)"),
      evidence: z
        .record(z.string(), z.unknown())
        .optional()
        .describe("attestation evidence; `type` picks the validator; absent: 401 ATTESTATION_REQUIRED with a nonce to bind"),
    })
    .strict(),
);

/** Answer of POST /v1/mesh/certificate */
export const meshCertificateResponse = z.lazy(() =>
  z.object({
    certChain: pem().describe("leaf, then intermediate"),
    meshCA: pem(),
    rootCA: pem(),
    workloadSecret: z.string().describe("hex"),
    workloadSecretID: z.string(),
    policyHash: sha256Hex,
  }),
);

/** Answer of GET /v1/seedshares */
export const seedSharesResponse = z.lazy(() =>
  z.object({
    seedShares: seedShareDocumentSchema,
    verified: z.boolean().describe("true when the Coordinator is ready (the head it comes from is verified); before recovery it comes from the stored, unverified head"),
  }),
);

/** Answer of GET /v1/status */
export const statusResponse = z.lazy(() =>
  z.object({
    state: z.enum(["uninitialized", "recovery-required", "ready", "stale"]),
    name: z.string(),
    generation: z.number().int().nullable(),
    latestTransition: sha256Hex.nullable(),
    recovery: progress().nullable(),
    damage: z
      .object({ key: z.string(), message: z.string() })
      .optional()
      .describe("a stored object the background re-verification found missing or changed; writes are refused until it is restored"),
    refusedHead: z
      .object({ code: z.string(), message: z.string() })
      .optional()
      .describe("recovery-required only: why the last recovery from a peer refused the stored head, e.g. ROLLBACK_DETECTED (a ready peer holds a newer transition than the store)"),
  }),
);

/** Answer of GET /v1/manifests */
export const historyResponse = z.lazy(() =>
  z.object({
    name: z.string(),
    generation: z.number().int(),
    latestTransition: sha256Hex,
    transitions: z.array(sha256Hex).describe("oldest first"),
    manifests: z.array(z.string()).describe("exact bytes, base64, oldest first"),
    policies: z.record(sha256Hex, z.string()).describe("exact bytes, base64, by hash"),
    rootCA: pem(),
    meshCA: pem(),
    intermediateCA: pem(),
    transactionSigner: pem().describe("the transaction-signing key's certificate, issued by the root CA"),
    head: z.string().describe("the signed head, exact stored bytes, base64"),
  }),
);

/** Every error body. */
export const errorResponse = z.lazy(() =>
  z.object({
    error: z.object({ code: z.string(), message: z.string(), key: z.string().optional(), reason: z.string().optional() }),
  }),
);

/** POST /v1/peers/seed: `{}` asks for a nonce (401 ATTESTATION_REQUIRED); then all three fields. */
export const peerSeedRequest = z.lazy(() =>
  z
    .object({
      nonce: z.string().regex(/^[0-9a-f]{64}$/, "32 bytes, lower-case hex").optional().describe("the nonce of this Coordinator's 401 answer"),
      hpkePublicKey: base64(128).optional().describe("the requester's HPKE public key (65-byte uncompressed P-256 point), base64"),
      evidence: z
        .record(z.string(), z.unknown())
        .optional()
        .describe("the requester's evidence in the shape of GET /v1/attestation's `evidence`: REPORT_DATA binds the nonce, its HPKE key, this Coordinator's name and no held state"),
    })
    .strict()
    .refine((b) => [b.nonce, b.hpkePublicKey, b.evidence].every((v) => v === undefined) || [b.nonce, b.hpkePublicKey, b.evidence].every((v) => v !== undefined), {
      message: "send {} for a nonce, or all of nonce, hpkePublicKey and evidence",
    }),
);

/** Answer of POST /v1/peers/seed */
export const peerSeedResponse = z.lazy(() =>
  z.object({
    enc: z.string().describe("the HPKE encapsulated key (65 bytes), base64"),
    ciphertext: z.string().describe("salt (32 bytes) ‖ root seed, sealed with HPKE to the requester's key (info: label, name, nonce), base64"),
    latestTransition: sha256Hex.describe("informative: the transition of the state the seed was served from (the peer's evidence binds the one to trust)"),
    generation: z.number().int(),
  }),
);
