// Deterministic P-384 key generation (c2sp.org/det-keygen) and import of P-384 scalars as WebCrypto ECDSA keys.
import { p384 } from "@noble/curves/nist.js";
import { subtle } from "./provider.js";
import { concat, toBase64Url, toHex, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";

/** Byte length of a P-384 scalar. */
const scalarLength = 48;

/** The order n of the P-384 group. */
const order: bigint = p384.Point.Fn.ORDER;

/** The C2SP personalization string for P-384. */
const personalization = utf8("det ECDSA key gen P-384");

/**
 * A P-384 key derived or generated: private scalar, uncompressed public point (97 bytes, 0x04‖x‖y),
 * and WebCrypto keys (ECDSA, private key usages ["sign"], public ["verify"], private key NOT extractable).
 */
export interface P384Key {
  d: Uint8Array;
  publicPoint: Uint8Array;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** HMAC-SHA256(key, message) through the active WebCrypto. */
async function hmacSha256(key: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const k = await subtle().importKey("raw", key as BufferSource, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle().sign("HMAC", k, message as BufferSource));
}

/** The scalar of 48 big-endian bytes. */
function scalarOf(bytes: Uint8Array): bigint {
  return BigInt("0x" + toHex(bytes));
}

/**
 * C2SP det-keygen for P-384: HMAC_DRBG (HMAC-SHA256) seeded with the secret and the personalization
 * "det ECDSA key gen P-384", 48 bytes drawn as d; d == 0 or d >= n is a fatal error, as the spec says.
 */
export async function detKeygenP384(secret: Uint8Array): Promise<P384Key> {
  if (secret.length < 16) {
    throw new CoordinatorError("INVALID_REQUEST", `det-keygen secret is ${secret.length} bytes, at least 16 needed`);
  }
  let k: Uint8Array = new Uint8Array(32);
  let v: Uint8Array = new Uint8Array(32).fill(0x01);
  k = await hmacSha256(k, concat(v, Uint8Array.of(0x00), secret, personalization));
  v = await hmacSha256(k, v);
  k = await hmacSha256(k, concat(v, Uint8Array.of(0x01), secret, personalization));
  v = await hmacSha256(k, v);
  const blocks: Uint8Array[] = [];
  for (let have = 0; have < scalarLength; have += v.length) {
    v = await hmacSha256(k, v);
    blocks.push(v);
  }
  const d = concat(...blocks).slice(0, scalarLength);
  const scalar = scalarOf(d);
  if (scalar === 0n || scalar >= order) {
    throw new CoordinatorError("INVALID_REQUEST", "det-keygen produced a P-384 scalar out of range");
  }
  return importP384(d);
}

/** Imports a P-384 private scalar (computes the public point with noble) as ECDSA keys. */
export async function importP384(d: Uint8Array): Promise<P384Key> {
  if (d.length !== scalarLength) {
    throw new CoordinatorError("INVALID_REQUEST", `P-384 private scalar is ${d.length} bytes, not ${scalarLength}`);
  }
  const scalar = scalarOf(d);
  if (scalar === 0n || scalar >= order) {
    throw new CoordinatorError("INVALID_REQUEST", "P-384 private scalar out of range");
  }
  const own = d.slice();
  const publicPoint = new Uint8Array(p384.getPublicKey(own, false));
  const x = toBase64Url(publicPoint.subarray(1, 1 + scalarLength));
  const y = toBase64Url(publicPoint.subarray(1 + scalarLength));
  const algorithm: EcKeyImportParams = { name: "ECDSA", namedCurve: "P-384" };
  const [privateKey, publicKey] = await Promise.all([
    subtle().importKey("jwk", { kty: "EC", crv: "P-384", x, y, d: toBase64Url(own) }, algorithm, false, ["sign"]),
    subtle().importKey("jwk", { kty: "EC", crv: "P-384", x, y }, algorithm, true, ["verify"]),
  ]);
  return { d: own, publicPoint, privateKey, publicKey };
}
