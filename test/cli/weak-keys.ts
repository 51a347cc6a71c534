// Test helpers that make the weak RSA owner keys an attacker would name: a real modulus with public exponent 1 or 3, as DER SPKI, PEM and a matching private key.
import { createPrivateKey } from "node:crypto";
import type { JsonWebKey as NodeJsonWebKey } from "node:crypto";
import { integer, oid, sequence, smallInteger, tlv } from "../../src/crypto/der.js";
import { fromBase64Url } from "../../src/encoding.js";
import { toPem } from "../../src/crypto/ca.js";

/** The modulus (big-endian bytes) of an RSA public key given as DER SPKI. */
export async function modulusOf(spki: Uint8Array): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("spki", spki as BufferSource, { name: "RSA-OAEP", hash: "SHA-256" }, true, ["encrypt"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return fromBase64Url(jwk.n!);
}

/** The DER SPKI of an RSA public key with this modulus and public exponent, built with the project's DER encoder. */
export function rsaSpki(modulus: Uint8Array, exponent: number): Uint8Array {
  const algorithm = sequence(oid("1.2.840.113549.1.1.1"), tlv(0x05));
  const rsaPublicKey = sequence(integer(modulus), smallInteger(exponent));
  return sequence(algorithm, tlv(0x03, Uint8Array.of(0), rsaPublicKey));
}

/** The SPKI of `spki`'s modulus with another public exponent (1 makes RSA the identity on the padded message). */
export async function withExponent(spki: Uint8Array, exponent: number): Promise<Uint8Array> {
  return rsaSpki(await modulusOf(spki), exponent);
}

/** PEM (`PUBLIC KEY`) of a DER SPKI. */
export function spkiPem(spki: Uint8Array): string {
  return toPem(spki, "PUBLIC KEY");
}

/**
 * The PKCS#1 PEM of a private key with `pem`'s primes but public exponent 1 (so d = dp = dq = 1):
 * the key an owner would hold whose seed share is stored in the clear. openssl refuses to generate one.
 */
export function exponentOnePrivatePem(pem: string): string {
  const jwk = createPrivateKey(pem).export({ format: "jwk" }) as NodeJsonWebKey;
  const one = "AQ";
  const weak = createPrivateKey({
    key: { kty: "RSA", n: jwk.n, e: one, d: one, p: jwk.p, q: jwk.q, dp: one, dq: one, qi: jwk.qi },
    format: "jwk",
  });
  return weak.export({ type: "pkcs1", format: "pem" }) as string;
}

/**
 * Reads an RSA-OAEP (SHA-256, label "seedshare") ciphertext made with public exponent 1 without the
 * owner's key: with e = 1 the ciphertext is the padded message itself, which any key with d = 1 and a
 * modulus of the same size "decrypts". Here the attacker uses primes of a key of their own.
 */
export async function readExponentOneCiphertext(ciphertext: Uint8Array, attackerPem: string): Promise<Uint8Array> {
  const jwk = createPrivateKey(attackerPem).export({ format: "jwk" }) as NodeJsonWebKey;
  const one = "AQ";
  const key = await crypto.subtle.importKey(
    "jwk",
    { kty: "RSA", n: jwk.n, e: one, d: one, p: jwk.p, q: jwk.q, dp: one, dq: one, qi: jwk.qi, ext: true },
    { name: "RSA-OAEP", hash: "SHA-256" },
    false,
    ["decrypt"],
  );
  const plain = await crypto.subtle.decrypt({ name: "RSA-OAEP", label: new TextEncoder().encode("seedshare") }, key, ciphertext as BufferSource);
  return new Uint8Array(plain);
}
