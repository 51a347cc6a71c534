// Test helpers: owner keys, manifests, requests and recovery as the CLI will do them, all in memory.
import "reflect-metadata";
import { fromBase64, toBase64, toHex, utf8 } from "../src/encoding.js";
import { keyDigest } from "../src/manifest/manifest.js";
import { decryptSeedShare } from "../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../src/crypto/seedshares.js";
import { transitionHash } from "../src/history/transition.js";
import { sha256 } from "../src/crypto/provider.js";
import {
  recoveryResetStatement,
  rekeyApprovalStatement,
  signAsSeedShareOwner,
  signAsWorkloadOwner,
  updateStatement,
} from "../src/coordinator/statements.js";
import type { CoordinatorIdentity } from "../src/coordinator/statements.js";
import { certificateDerOf } from "../src/client/verify.js";
import { fromHex } from "../src/encoding.js";

/** A seed-share owner's RSA key pair (3072 bits keeps tests fast; the CLI's default is 4096). */
export async function seedShareOwner(bits = 3072): Promise<{ keys: CryptoKeyPair; publicHex: string }> {
  const keys = (await crypto.subtle.generateKey(
    { name: "RSA-OAEP", modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["encrypt", "decrypt"],
  )) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  return { keys, publicHex: toHex(spki) };
}

/** A workload owner's ECDSA P-384 key pair with its SPKI and digest. */
export async function workloadOwner(): Promise<{ keys: CryptoKeyPair; spki: Uint8Array; digest: string }> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  return { keys, spki, digest: await keyDigest(spki) };
}

/** A policy document and its hash. */
export async function policy(text: string): Promise<{ bytes: Uint8Array; hash: string }> {
  const bytes = utf8(text);
  return { bytes, hash: toHex(await sha256(bytes)) };
}

/** Manifest bytes with the given policies (name → hash), owners and seed-share owners. */
export function manifestBytes(opts: {
  policies: { hash: string; name: string }[];
  workloadOwners: string[];
  seedShareOwners: string[];
}): Uint8Array {
  const Policies: Record<string, { SANs: string[]; WorkloadSecretID: string }> = {};
  for (const p of opts.policies) Policies[p.hash] = { SANs: [p.name, `${p.name}.default.svc`], WorkloadSecretID: p.name };
  return utf8(
    JSON.stringify(
      { Policies, ReferenceValues: {}, WorkloadOwnerKeyDigests: opts.workloadOwners, SeedshareOwnerPubKeys: opts.seedShareOwners },
      null,
      2,
    ),
  );
}

/** The body of a first set. */
export function firstSetBody(manifest: Uint8Array, policies: Uint8Array[]): Record<string, unknown> {
  return { manifest: toBase64(manifest), policies: policies.map(toBase64) };
}

/** A Coordinator as owners' statements name it: its name and its root CA (PEM, or hex SHA-256 of the DER). */
export interface CoordinatorRef {
  name: string;
  rootCA: string;
}

/** The identity of a Coordinator reference, as src/coordinator/statements.ts takes it. */
export async function identityOf(ref: CoordinatorRef): Promise<CoordinatorIdentity> {
  const rootCA = /^[0-9a-f]{64}$/.test(ref.rootCA) ? ref.rootCA : toHex(await sha256(certificateDerOf(ref.rootCA)));
  return { name: ref.name, rootCA };
}

/** The new transition of a manifest over `previous`. */
export async function nextTransition(manifest: Uint8Array, previous: string): Promise<Uint8Array> {
  return transitionHash(await sha256(manifest), fromHex(previous));
}

/** A seed-share owner's RSA key imported for RSA-PSS signing, as the CLI does. */
async function ownerSigningKey(owner: { keys: CryptoKeyPair }): Promise<CryptoKey> {
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", owner.keys.privateKey);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]);
}

/** A seed-share owner's approval of the update of `manifest` over `previous` (a rekey), as the body lists it. */
export async function approvalOf(
  owner: { keys: CryptoKeyPair; publicHex: string },
  coordinator: CoordinatorRef,
  manifest: Uint8Array,
  previous: string,
): Promise<{ ownerPublicKey: string; signature: string }> {
  const signingKey = await ownerSigningKey(owner);
  const statement = rekeyApprovalStatement(await identityOf(coordinator), await nextTransition(manifest, previous));
  return { ownerPublicKey: owner.publicHex, signature: toBase64(await signAsSeedShareOwner(signingKey, statement)) };
}

/** A seed-share owner's signed request to reset the recovery attempt `nonce` of Coordinator `name`. */
export async function resetBody(
  owner: { keys: CryptoKeyPair; publicHex: string },
  name: string,
  nonce: string,
): Promise<{ ownerPublicKey: string; signature: string }> {
  const signingKey = await ownerSigningKey(owner);
  return { ownerPublicKey: owner.publicHex, signature: toBase64(await signAsSeedShareOwner(signingKey, recoveryResetStatement(name, nonce))) };
}

/** The body of an update over `previous`, signed by a workload owner for `coordinator`; `approvals` for a rekey. */
export async function updateBody(
  manifest: Uint8Array,
  policies: Uint8Array[],
  previous: string,
  owner: { keys: CryptoKeyPair; spki: Uint8Array },
  coordinator: CoordinatorRef,
  approvals?: { ownerPublicKey: string; signature: string }[],
): Promise<Record<string, unknown>> {
  const statement = updateStatement(await identityOf(coordinator), await nextTransition(manifest, previous));
  const value = await signAsWorkloadOwner(owner.keys.privateKey, statement);
  const body: Record<string, unknown> = {
    manifest: toBase64(manifest),
    policies: policies.map(toBase64),
    previousTransition: previous,
    signature: { publicKey: toBase64(owner.spki), value: toBase64(value) },
  };
  if (approvals !== undefined) body["approvals"] = approvals;
  return body;
}

/** The recover body an owner makes from a seed-share document and their private key. */
export async function recoverBody(doc: SeedShareDocument, privateKey: CryptoKey, index = 0): Promise<{ share: string; salt: string }> {
  const share = doc.shares[index]!;
  return { share: toBase64(await decryptSeedShare(share.encryptedShare, privateKey)), salt: doc.salt };
}

/** A workload key and its SPKI in base64. */
export async function workloadKey(curve: "P-256" | "P-384" = "P-256"): Promise<{ keys: CryptoKeyPair; spki: string }> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])) as CryptoKeyPair;
  return { keys, spki: toBase64(new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey))) };
}

/** JSON request init for app.request. */
export function post(body: unknown): RequestInit {
  return { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
}

export { fromBase64 };

/** A JSON answer: its status, the parsed body ({} when it is not JSON, e.g. probes and metrics) and the text. */
export interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
  text: string;
}

/** Reads an answer as JSON where it is JSON. */
export async function jsonAnswer(res: Response): Promise<JsonAnswer> {
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // probes and metrics answer plain text
  }
  return { status: res.status, body, text };
}

/** One request to a Coordinator's `base` URL, with a JSON body if `payload` is given. */
export async function call(base: string, method: "GET" | "POST" | "DELETE", path: string, payload?: unknown): Promise<JsonAnswer> {
  return jsonAnswer(
    await fetch(base + path, {
      method,
      ...(payload === undefined ? {} : { body: JSON.stringify(payload), headers: { "content-type": "application/json" } }),
    }),
  );
}
