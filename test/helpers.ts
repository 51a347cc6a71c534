// Test helpers: owner keys, manifests, requests and recovery as the CLI will do them, all in memory.
import "reflect-metadata";
import { fromBase64, toBase64, toHex, utf8 } from "../src/encoding.js";
import { keyDigest } from "../src/manifest/manifest.js";
import { decryptSeedShare } from "../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../src/crypto/seedshares.js";
import { transitionHash } from "../src/history/transition.js";
import { sha256 } from "../src/crypto/provider.js";
import { updateMessage } from "../src/coordinator/coordinator.js";
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

/** The body of a signed update over `previous`. */
export async function updateBody(
  manifest: Uint8Array,
  policies: Uint8Array[],
  previous: string,
  owner: { keys: CryptoKeyPair; spki: Uint8Array },
): Promise<Record<string, unknown>> {
  const next = await transitionHash(await sha256(manifest), fromHex(previous));
  const value = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, owner.keys.privateKey, updateMessage(next) as BufferSource),
  );
  return {
    manifest: toBase64(manifest),
    policies: policies.map(toBase64),
    previousTransition: previous,
    signature: { publicKey: toBase64(owner.spki), value: toBase64(value) },
  };
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
