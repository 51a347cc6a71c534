// The domain-separated statements that owners sign: a manifest update, a rekey approval and a recovery reset, each good for one Coordinator.
import { concat, fromHex, utf8 } from "../encoding.js";
import { domainMessage, signingAlgorithm } from "../crypto/ca.js";
import { subtle } from "../crypto/provider.js";

/** Tag of a workload owner's update signature (v2 binds the Coordinator; v1 bound only the transition). */
export const updateTag = "CONTRAST COORDINATOR MANIFEST UPDATE v2";
/** Tag of a seed-share owner's approval of a change of the seed-share owners or the threshold. */
export const rekeyApprovalTag = "CONTRAST COORDINATOR REKEY APPROVAL v1";
/** Tag of a seed-share owner's request to discard an unfinished recovery attempt. */
export const recoveryResetTag = "CONTRAST COORDINATOR RECOVERY RESET v1";

/** RSA-PSS with SHA-256 and a 32-byte salt: how seed-share owners sign. */
export const ownerSignatureAlgorithm = { name: "RSA-PSS", saltLength: 32 } as const;
/** How a seed-share owner's public key is imported to verify their signatures. */
export const ownerVerifyImport = { name: "RSA-PSS", hash: "SHA-256" } as const;

/** The Coordinator a statement is good for: its name and the SHA-256 of its root CA certificate's DER. */
export interface CoordinatorIdentity {
  name: string;
  /** 32 bytes, or 64 hex digits. */
  rootCA: Uint8Array | string;
}

/** The name as a length-prefixed field (2 bytes big-endian, then UTF-8), so no two names share a prefix. */
function nameField(name: string): Uint8Array {
  const bytes = utf8(name);
  if (bytes.length > 0xffff) throw new RangeError("name too long");
  return concat(Uint8Array.of(bytes.length >> 8, bytes.length & 0xff), bytes);
}

function fixed(value: Uint8Array | string, length: number, what: string): Uint8Array {
  const bytes = typeof value === "string" ? fromHex(value) : value;
  if (bytes.length !== length) throw new RangeError(`${what}: ${bytes.length} bytes, ${length} expected`);
  return bytes;
}

function bound(tag: string, id: CoordinatorIdentity, newTransition: Uint8Array | string): Uint8Array {
  return domainMessage(
    tag,
    concat(nameField(id.name), fixed(id.rootCA, 32, "root CA hash"), fixed(newTransition, 32, "transition hash")),
  );
}

/**
 * What a workload owner signs (ECDSA P-384/SHA-384, IEEE P1363) to update the manifest:
 * tag ‖ 0x00 ‖ len(name) ‖ name ‖ SHA-256(root CA DER) ‖ new transition hash.
 */
export function updateStatement(id: CoordinatorIdentity, newTransition: Uint8Array | string): Uint8Array {
  return bound(updateTag, id, newTransition);
}

/**
 * What each of t current seed-share owners signs (RSA-PSS/SHA-256) to approve an update that changes
 * the seed-share owners or the threshold: the same layout as an update, under its own tag.
 */
export function rekeyApprovalStatement(id: CoordinatorIdentity, newTransition: Uint8Array | string): Uint8Array {
  return bound(rekeyApprovalTag, id, newTransition);
}

/**
 * What one current seed-share owner signs (RSA-PSS/SHA-256) to discard an unfinished recovery:
 * tag ‖ 0x00 ‖ len(name) ‖ name ‖ the attempt's 16-byte nonce.
 */
export function recoveryResetStatement(name: string, nonce: Uint8Array | string): Uint8Array {
  return domainMessage(recoveryResetTag, concat(nameField(name), fixed(nonce, 16, "attempt nonce")));
}

/** Signs a statement as a workload owner (ECDSA P-384/SHA-384, IEEE P1363). */
export async function signAsWorkloadOwner(privateKey: CryptoKey, statement: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(signingAlgorithm, privateKey, statement as BufferSource));
}

/** Signs a statement as a seed-share owner; `signingKey` is the owner's RSA private key imported for RSA-PSS/SHA-256. */
export async function signAsSeedShareOwner(signingKey: CryptoKey, statement: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(ownerSignatureAlgorithm, signingKey, statement as BufferSource));
}

/** Whether a seed-share owner (DER SPKI of an RSA key) signed a statement; any failure is false. */
export async function verifySeedShareOwner(spki: Uint8Array, signature: Uint8Array, statement: Uint8Array): Promise<boolean> {
  try {
    const key = await subtle().importKey("spki", spki as BufferSource, ownerVerifyImport, false, ["verify"]);
    return await subtle().verify(ownerSignatureAlgorithm, key, signature as BufferSource, statement as BufferSource);
  } catch {
    return false;
  }
}

/** Whether a workload owner (DER SPKI of an ECDSA P-384 key) signed a statement; any failure is false. */
export async function verifyWorkloadOwner(spki: Uint8Array, signature: Uint8Array, statement: Uint8Array): Promise<boolean> {
  try {
    const key = await subtle().importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, false, ["verify"]);
    return await subtle().verify(signingAlgorithm, key, signature as BufferSource, statement as BufferSource);
  } catch {
    return false;
  }
}
