// Secrets at rest: AES-256-GCM under a seed-derived key, bound to the object's identity as associated data.
import { concat, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { randomBytes, subtle } from "./provider.js";

const nonceLength = 12;

/** Imports 32 bytes as an AES-256-GCM key for sealing state. */
export async function importSealingKey(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw new TypeError("a sealing key is 32 bytes");
  return subtle().importKey("raw", raw as BufferSource, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/** Encrypts `plaintext` bound to `identity`: nonce ‖ ciphertext ‖ tag. */
export async function seal(key: CryptoKey, plaintext: Uint8Array, identity: string): Promise<Uint8Array> {
  const iv = randomBytes(nonceLength);
  const ciphertext = await subtle().encrypt(
    { name: "AES-GCM", iv: iv as BufferSource, additionalData: utf8(identity) as BufferSource },
    key,
    plaintext as BufferSource,
  );
  return concat(iv, new Uint8Array(ciphertext));
}

/** Decrypts what `seal` made for the same identity; a wrong key, identity or a changed byte is STATE_CORRUPT. */
export async function open(key: CryptoKey, sealed: Uint8Array, identity: string, storeKey: string): Promise<Uint8Array> {
  if (sealed.length < nonceLength + 16) {
    throw new CoordinatorError("STATE_CORRUPT", `${storeKey}: sealed object is too short`, { key: storeKey });
  }
  try {
    const plaintext = await subtle().decrypt(
      {
        name: "AES-GCM",
        iv: sealed.slice(0, nonceLength) as BufferSource,
        additionalData: utf8(identity) as BufferSource,
      },
      key,
      sealed.slice(nonceLength) as BufferSource,
    );
    return new Uint8Array(plaintext);
  } catch (err) {
    throw new CoordinatorError("STATE_CORRUPT", `${storeKey}: sealed object does not decrypt for ${identity}`, {
      key: storeKey,
      cause: err,
    });
  }
}
