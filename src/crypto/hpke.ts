// The Coordinator's ephemeral HPKE (RFC 9180) key: made at start, kept only in memory, bound in its evidence, so clients can seal secrets (seed shares) to the attested process.
import { Aes128Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";
import { CoordinatorError } from "../errors.js";

/** The HPKE suite: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (base mode). WebCrypto suffices on every runtime. */
export function hpkeSuite(): CipherSuite {
  return new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
}

/** What a sender gets from sealing: the encapsulated key (65 bytes for DHKEM(P-256)) and the ciphertext (plaintext plus a 16-byte tag). */
export interface HpkeSealed {
  enc: Uint8Array;
  ciphertext: Uint8Array;
}

/**
 * The sender side: seals `plaintext` (single-shot, base mode) to the serialized public key `publicKey`
 * (a 65-byte uncompressed P-256 point) with the application's `info` and additional data `aad`. A
 * public key that is not a point of P-256 is INVALID_REQUEST.
 */
export async function sealTo(publicKey: Uint8Array, plaintext: Uint8Array, info: Uint8Array, aad: Uint8Array = new Uint8Array(0)): Promise<HpkeSealed> {
  const suite = hpkeSuite();
  let recipientPublicKey: CryptoKey;
  try {
    recipientPublicKey = await suite.kem.deserializePublicKey(publicKey);
  } catch (err) {
    throw new CoordinatorError("INVALID_REQUEST", "the HPKE public key is not an uncompressed P-256 point", { cause: err });
  }
  const sealed = await suite.seal({ recipientPublicKey, info }, plaintext, aad);
  return { enc: new Uint8Array(sealed.enc), ciphertext: new Uint8Array(sealed.ct) };
}

/** An HPKE recipient whose private key never leaves this object (and never leaves memory). */
export class HpkeRecipient {
  /** The serialized public key (the 65-byte uncompressed P-256 point). */
  readonly publicKey: Uint8Array;
  readonly #privateKey: CryptoKey;
  readonly #suite: CipherSuite;

  private constructor(suite: CipherSuite, privateKey: CryptoKey, publicKey: Uint8Array) {
    this.#suite = suite;
    this.#privateKey = privateKey;
    this.publicKey = publicKey;
  }

  /** Makes a fresh key pair. */
  static async generate(): Promise<HpkeRecipient> {
    const suite = hpkeSuite();
    const pair = await suite.kem.generateKeyPair();
    const publicKey = new Uint8Array(await suite.kem.serializePublicKey(pair.publicKey));
    return new HpkeRecipient(suite, pair.privateKey, publicKey);
  }

  /**
   * Opens a message sealed (single-shot, base mode) to this key: `enc` is the sender's encapsulated
   * key, `info` the application's context string, `aad` the additional data. A message that does not
   * open is INVALID_REQUEST.
   */
  async open(enc: Uint8Array, ciphertext: Uint8Array, info: Uint8Array, aad: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    try {
      const plain = await this.#suite.open({ recipientKey: this.#privateKey, enc, info }, ciphertext, aad);
      return new Uint8Array(plain);
    } catch (err) {
      throw new CoordinatorError("INVALID_REQUEST", "the sealed message does not open with this Coordinator's HPKE key", { cause: err });
    }
  }
}
