// Attestation nonces: stateless to issue (an expiry and a MAC under a per-process key), remembered once used so a replay is refused.
import { bytesEqual, concat, fromHex, toHex } from "../encoding.js";
import { randomBytes, subtle } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";

/** A nonce is 32 bytes: its expiry (8 bytes, ms since the epoch, big-endian), 8 random bytes, and 16 bytes of HMAC-SHA256 over both. */
export const nonceLength = 32;

/** Options of a nonce book. */
export interface NonceOptions {
  /** How long a nonce is good for (default 5 minutes). */
  ttlMs?: number;
  /** How many used, unexpired nonces are remembered at most (default 100,000); beyond, new ones are refused as BUSY. */
  capacity?: number;
  now?: () => number;
}

/**
 * Issues nonces that need no state until used, and accepts each at most once before it expires. The
 * MAC key lives only in memory: after a restart every earlier nonce is refused, which only makes a
 * workload ask again.
 */
export class NonceBook {
  private readonly ttlMs: number;
  private readonly capacity: number;
  private readonly now: () => number;
  private key: Promise<CryptoKey> | null = null;
  /** Used nonces (hex) and their expiry. */
  private readonly used = new Map<string, number>();

  constructor(options: NonceOptions = {}) {
    this.ttlMs = options.ttlMs ?? 5 * 60 * 1000;
    this.capacity = options.capacity ?? 100_000;
    this.now = options.now ?? (() => Date.now());
  }

  private macKey(): Promise<CryptoKey> {
    this.key ??= subtle().importKey("raw", randomBytes(32) as BufferSource, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return this.key;
  }

  private async mac(body: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await subtle().sign("HMAC", await this.macKey(), body as BufferSource)).slice(0, 16);
  }

  /** A fresh nonce, hex. */
  async issue(): Promise<string> {
    const expiry = new Uint8Array(8);
    new DataView(expiry.buffer).setBigUint64(0, BigInt(this.now() + this.ttlMs));
    const body = concat(expiry, randomBytes(8));
    return toHex(concat(body, await this.mac(body)));
  }

  /**
   * Accepts a nonce once: it must be one this book issued (NONCE_INVALID), not expired
   * (NONCE_EXPIRED) and not used before (NONCE_REPLAYED). Returns its bytes.
   */
  async consume(hex: string): Promise<Uint8Array> {
    if (!/^[0-9a-f]*$/.test(hex) || hex.length !== nonceLength * 2) {
      throw new CoordinatorError("NONCE_INVALID", `the nonce must be ${nonceLength} bytes, hex, as the Coordinator issued it`);
    }
    const bytes = fromHex(hex);
    if (!bytesEqual(await this.mac(bytes.subarray(0, 16)), bytes.subarray(16))) {
      throw new CoordinatorError("NONCE_INVALID", "this nonce was not issued by this Coordinator (or it restarted since): ask for a new one");
    }
    const expiry = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0));
    const now = this.now();
    if (now >= expiry) throw new CoordinatorError("NONCE_EXPIRED", "this nonce has expired: ask for a new one");
    if (this.used.has(hex)) throw new CoordinatorError("NONCE_REPLAYED", "this nonce was already used: ask for a new one");
    if (this.used.size >= this.capacity) {
      for (const [key, until] of this.used) if (until <= now) this.used.delete(key);
      if (this.used.size >= this.capacity) throw new CoordinatorError("BUSY", "too many attestations at once; retry later");
    }
    this.used.set(hex, expiry);
    return bytes;
  }
}
