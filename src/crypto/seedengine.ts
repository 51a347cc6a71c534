// The seed engine: every secret and key the Coordinator derives from its seed and salt, as Contrast derives them.
import { subtle } from "./provider.js";
import { detKeygenP384 } from "./detkeygen.js";
import type { P384Key } from "./detkeygen.js";
import { utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";

export { detKeygenP384, importP384 } from "./detkeygen.js";
export type { P384Key } from "./detkeygen.js";
export { ecPrivateKeyDer } from "./sec1.js";

/** The four Contrast HKDF labels. */
export const labels = {
  podStateSeed: "POD STATE SECRET",
  historySeed: "HISTORY SECRET",
  transactionSigningSecret: "TRANSACTION SIGNING SECRET",
  rootCASeed: "ROOT CA SEED",
} as const;

/** The salt length the engine requires. */
const saltLength = 32;
/** The shortest seed the engine accepts. */
const minSeedLength = 32;
/** The longest output HKDF-SHA256 can give (255 blocks). */
const maxHkdfLength = 255 * 32;

/** HKDF-SHA256(ikm, salt, info=label, length) */
export async function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string, length: number): Promise<Uint8Array> {
  if (!Number.isInteger(length) || length < 1 || length > maxHkdfLength) {
    throw new CoordinatorError("INVALID_REQUEST", `HKDF length ${length} is not in 1..${maxHkdfLength}`);
  }
  const key = await subtle().importKey("raw", ikm as BufferSource, "HKDF", false, ["deriveBits"]);
  const bits = await subtle().deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: salt as BufferSource, info: utf8(info) as BufferSource },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

/** Everything derived from one seed and salt. */
export class SeedEngine {
  /** The seed as given (a copy). */
  readonly seed: Uint8Array;
  /** The salt as given (a copy). */
  readonly salt: Uint8Array;
  /** HKDF(seed, salt, "POD STATE SECRET"); the input of workload secrets. */
  readonly podStateSeed: Uint8Array;
  /** HKDF(seed, salt, "HISTORY SECRET"). */
  readonly historySeed: Uint8Array;
  /** det-keygen P-384 key of HKDF(seed, salt, "ROOT CA SEED"). */
  readonly rootCAKey: P384Key;
  /** det-keygen P-384 key of HKDF(seed, salt, "TRANSACTION SIGNING SECRET"). */
  readonly transactionSigningKey: P384Key;

  private constructor(
    seed: Uint8Array,
    salt: Uint8Array,
    podStateSeed: Uint8Array,
    historySeed: Uint8Array,
    rootCAKey: P384Key,
    transactionSigningKey: P384Key,
  ) {
    this.seed = seed;
    this.salt = salt;
    this.podStateSeed = podStateSeed;
    this.historySeed = historySeed;
    this.rootCAKey = rootCAKey;
    this.transactionSigningKey = transactionSigningKey;
  }

  /** Derives everything from a seed (at least 32 bytes) and a salt (exactly 32 bytes). */
  static async create(seed: Uint8Array, salt: Uint8Array): Promise<SeedEngine> {
    if (salt.length !== saltLength) {
      throw new CoordinatorError("INVALID_REQUEST", `salt is ${salt.length} bytes, not ${saltLength}`);
    }
    if (seed.length < minSeedLength) {
      throw new CoordinatorError("INVALID_REQUEST", `seed is ${seed.length} bytes, at least ${minSeedLength} needed`);
    }
    const ownSeed = seed.slice();
    const ownSalt = salt.slice();
    const derive = (label: string) => hkdf(ownSeed, ownSalt, label, ownSeed.length);
    const [podStateSeed, historySeed, rootCASeed, transactionSigningSecret] = await Promise.all([
      derive(labels.podStateSeed),
      derive(labels.historySeed),
      derive(labels.rootCASeed),
      derive(labels.transactionSigningSecret),
    ]);
    const [rootCAKey, transactionSigningKey] = await Promise.all([
      detKeygenP384(rootCASeed),
      detKeygenP384(transactionSigningSecret),
    ]);
    return new SeedEngine(ownSeed, ownSalt, podStateSeed, historySeed, rootCAKey, transactionSigningKey);
  }

  /** HKDF(seed, salt, label, length); length defaults to the seed's length. */
  deriveSecret(label: string, length: number = this.seed.length): Promise<Uint8Array> {
    return hkdf(this.seed, this.salt, label, length);
  }

  /** HKDF(podStateSeed, salt, "WORKLOAD SECRET ID: " + id, podStateSeed.length); an empty id throws. */
  async workloadSecret(id: string): Promise<Uint8Array> {
    if (id === "") throw new CoordinatorError("INVALID_REQUEST", "empty workload secret id");
    return hkdf(this.podStateSeed, this.salt, "WORKLOAD SECRET ID: " + id, this.podStateSeed.length);
  }
}
