// Issuing a mesh certificate: the workload's evidence checked, its policy found in the current manifest, its key certified by the mesh CA.
import { toHex } from "../encoding.js";
import { issueLeafDer, toPem } from "../crypto/ca.js";
import { canonicalEcKey, frozenClaim, isValidEcPoint } from "../crypto/leaf.js";
import { subtle } from "../crypto/provider.js";
import type { SeedEngine } from "../crypto/seedengine.js";
import { validatorFor } from "../attestation/validator.js";
import type { Validators } from "../attestation/validator.js";
import type { NonceBook } from "../attestation/nonces.js";
import { workloadSecretIdClaim } from "../attestation/claims.js";
import type { Claim } from "../attestation/claims.js";
import { CoordinatorError } from "../errors.js";
import { generalName } from "../manifest/san.js";
import type { GeneralName } from "../manifest/san.js";
import type { Manifest } from "../manifest/manifest.js";
import type { Ready } from "./ready.js";

/** A mesh certificate and what comes with it. */
export interface MeshCertificate {
  certChain: string;
  meshCA: string;
  rootCA: string;
  workloadSecret: string;
  workloadSecretID: string;
  policyHash: string;
}

/** Where issuance takes its state from: the state holder's newest ready state. */
export interface IssuingState {
  /** The newest ready state, once every head already read is settled; throws outside ready. */
  newest(): Promise<Ready>;
  /**
   * Whether `ready` is still the newest state the Coordinator has seen. Synchronous: the certificate
   * is handed out in the same step as this check, so no state swap can fall between them.
   */
  isNewest(ready: Ready): boolean;
}

/** How often a certificate is made again under a newer state before issuance gives up (BUSY). */
const maxRounds = 3;

/**
 * Issues a mesh certificate to an attested workload whose policy is in the newest manifest. If the
 * state changed while the certificate was made (another process moved the head, and this one read
 * it), the certificate is dropped and made again under the new state: evidence, reference values
 * and policy checked against the new manifest, the evidence's nonce consumed only once.
 */
export async function issueMeshCertificate(
  state: IssuingState,
  validators: Validators,
  input: { publicKey: Uint8Array; evidence: unknown },
  now: Date,
  nonces: NonceBook,
): Promise<MeshCertificate> {
  const consumed = new Map<string, Promise<Uint8Array>>();
  const consumeNonce = (hex: string): Promise<Uint8Array> => {
    let bytes = consumed.get(hex);
    if (bytes === undefined) consumed.set(hex, (bytes = nonces.consume(hex)));
    return bytes;
  };
  for (let round = 1; ; round++) {
    const ready = await state.newest();
    let certificate: MeshCertificate;
    try {
      certificate = await issueUnder(ready, validators, input, now, consumeNonce);
    } catch (err) {
      // A refusal under a state that was superseded meanwhile is decided again under the new one.
      if (state.isNewest(ready) || round === maxRounds) throw err;
      continue;
    }
    // No await between this check and the return: the certificate leaves under the newest state.
    if (state.isNewest(ready)) return certificate;
    if (round === maxRounds) {
      throw new CoordinatorError("BUSY", "the manifest changed while the certificate was issued, several times in a row; retry");
    }
  }
}

/** Makes a mesh certificate under one ready state. */
async function issueUnder(
  ready: Ready,
  validators: Validators,
  input: { publicKey: Uint8Array; evidence: unknown },
  now: Date,
  consumeNonce: (hex: string) => Promise<Uint8Array>,
): Promise<MeshCertificate> {
  const validator = validatorFor(validators, input.evidence);
  const publicKey = await checkWorkloadKey(input.publicKey);
  const { policyHash, claims } = await validator.validate(input.evidence, {
    publicKey: input.publicKey,
    referenceValues: ready.manifest.ReferenceValues,
    now,
    consumeNonce,
  });
  const entry = ready.manifest.Policies[policyHash];
  if (entry === undefined) {
    throw new CoordinatorError("POLICY_NOT_IN_MANIFEST", `policy ${policyHash} is not in the current manifest`);
  }
  const leafOf = leafPartsOf(entry, policyHash);
  const secretID = leafOf.secretID;
  const leaf = await issueLeafDer(
    ready.mesh,
    {
      ...(publicKey === null ? {} : { publicKey }),
      subjectPublicKeyInfo: input.publicKey,
      sans: leafOf.sans,
      commonName: leafOf.commonName,
      // The attested claims and the workload secret ID, under Contrast's OIDs.
      extensions: [...(claims ?? []), leafOf.secretIdClaim],
    },
    now,
  );
  const secret = await workloadSecret(ready.engine, secretID);
  return {
    certChain: toPem(leaf) + ready.intermediateCA.pem,
    meshCA: ready.meshCA.pem,
    rootCA: ready.rootCA.pem,
    workloadSecret: secret,
    workloadSecretID: secretID,
    policyHash,
  };
}

type PolicyEntry = Manifest["Policies"][string];

/** What a policy's leaves say besides the key and the attested claims. */
interface LeafParts {
  sans: readonly GeneralName[];
  commonName: string;
  secretID: string;
  secretIdClaim: Readonly<Claim>;
}

/** The leaf parts of each policy entry of a manifest (entries are never changed), made once. */
const leafParts = new WeakMap<PolicyEntry, LeafParts>();

function leafPartsOf(entry: PolicyEntry, policyHash: string): LeafParts {
  let parts = leafParts.get(entry);
  if (parts === undefined) {
    // Contrast omits an empty WorkloadSecretID; then the policy hash names the secret.
    const secretID = entry.WorkloadSecretID ?? policyHash;
    parts = {
      sans: Object.freeze(entry.SANs.map((san) => Object.freeze(generalName(san)))),
      commonName: entry.SANs[0] ?? policyHash,
      secretID,
      secretIdClaim: frozenClaim(workloadSecretIdClaim(secretID)),
    };
    leafParts.set(entry, parts);
  }
  return parts;
}

const curveOids: [string, Uint8Array][] = [
  ["P-384", Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22)],
  ["P-256", Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07)],
];

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * Checks a workload's public key (DER SPKI, ECDSA P-256 or P-384); anything else is INVALID_REQUEST.
 * An SPKI in the form WebCrypto exports (named curve, uncompressed point: what workloads send) is
 * checked in place, its point on its curve, and needs no import (null); any other encoding is
 * imported, the import checking the whole structure, and the key is returned.
 */
async function checkWorkloadKey(spki: Uint8Array): Promise<CryptoKey | null> {
  const canonical = canonicalEcKey(spki);
  if (canonical !== null) {
    if (isValidEcPoint(canonical)) return null;
    throw invalidWorkloadKey();
  }
  // The curve's OID picks the import parameters; the import itself checks the whole structure.
  const namedCurve = curveOids.find(([, oid]) => contains(spki.subarray(0, 32), oid))?.[0];
  if (namedCurve !== undefined) {
    try {
      return await subtle().importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve }, true, ["verify"]);
    } catch {
      // fall through to the error below
    }
  }
  throw invalidWorkloadKey();
}

function invalidWorkloadKey(): CoordinatorError {
  return new CoordinatorError("INVALID_REQUEST", "publicKey must be a DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key");
}

/** Workload secrets by root seed and WorkloadSecretID: deterministic, so derived once. */
const workloadSecrets = new WeakMap<SeedEngine, Map<string, string>>();

async function workloadSecret(engine: SeedEngine, id: string): Promise<string> {
  let cache = workloadSecrets.get(engine);
  if (cache === undefined) workloadSecrets.set(engine, (cache = new Map()));
  let secret = cache.get(id);
  if (secret === undefined) cache.set(id, (secret = toHex(await engine.workloadSecret(id))));
  return secret;
}
