// Recovery secrets and progress: the sealed root seed, share rotation, and the in-memory attempt that collects shares.
import { concat, fromBase64, fromUtf8, toBase64, toHex } from "../encoding.js";
import { randomBytes } from "../crypto/provider.js";
import { importSealingKey, open, seal } from "../crypto/sealed.js";
import { hkdf } from "../crypto/seedengine.js";
import type { SeedEngine } from "../crypto/seedengine.js";
import { makeSeedShares, seedShareDocumentSchema } from "../crypto/seedshares.js";
import type { SeedShareDocument } from "../crypto/seedshares.js";
import { CoordinatorError } from "../errors.js";
import type { Head } from "../history/head.js";
import { getObject, kinds, objectKey } from "../history/objects.js";
import type { Store } from "../storage/store.js";

/** HKDF label of the key, derived from the recovery seed, that seals the root seed. */
export const recoverySealingLabel = "COORDINATOR RECOVERY SEALING KEY";
/** Length of a fresh recovery seed (and of the root seed). */
export const recoverySeedLength = 64;
/** Length of a salt. */
export const saltLength = 32;
/** How long a partial recovery (some shares received) is kept, unless configured otherwise. */
export const defaultRecoveryTimeoutMs = 10 * 60 * 1000;

function rootSeedIdentity(name: string): string {
  return `contrast-coordinator/root-seed/v1 ${name}`;
}

async function recoverySealingKey(recoverySeed: Uint8Array, salt: Uint8Array): Promise<CryptoKey> {
  return importSealingKey(await hkdf(recoverySeed, salt, recoverySealingLabel, 32));
}

/** The head's recovery parameters for a recovery seed, and the seed-share document for its owners. */
export async function newRecovery(
  root: SeedEngine,
  recoverySeed: Uint8Array,
  recoverySalt: Uint8Array,
  owners: readonly string[],
  threshold: number,
  name: string,
): Promise<{ recovery: Head["recovery"]; seedShares: SeedShareDocument }> {
  const seedShares = await makeSeedShares(recoverySeed, recoverySalt, owners, threshold, name);
  const key = await recoverySealingKey(recoverySeed, recoverySalt);
  const sealed = await seal(key, concat(root.salt, root.seed), rootSeedIdentity(name));
  return {
    recovery: {
      salt: toHex(recoverySalt),
      threshold,
      shares: owners.length,
      commitments: seedShares.shares.map((s) => s.commitment),
      sealedRootSeed: toBase64(sealed),
    },
    seedShares,
  };
}

/** A fresh recovery seed and salt, for a rotation of the seed-share owners. */
export function freshRecoverySeed(): { seed: Uint8Array; salt: Uint8Array } {
  return { seed: randomBytes(recoverySeedLength), salt: randomBytes(saltLength) };
}

/** Opens the sealed root seed with a recovery seed; null if it does not open (wrong seed or salt, or a changed head). */
export async function openRootSeed(
  recoverySeed: Uint8Array,
  salt: Uint8Array,
  sealedRootSeed: string,
  name: string,
): Promise<{ seed: Uint8Array; salt: Uint8Array } | null> {
  try {
    const key = await recoverySealingKey(recoverySeed, salt);
    const plain = await open(key, fromBase64(sealedRootSeed), rootSeedIdentity(name), "root seed");
    if (plain.length < saltLength + 32) return null;
    return { salt: plain.slice(0, saltLength), seed: plain.slice(saltLength) };
  } catch {
    return null;
  }
}

/** Bytes of a recovery attempt's nonce. */
export const attemptNonceBytes = 16;

/**
 * One recovery attempt; lives only in memory. It exists, with its nonce, as soon as the Coordinator
 * needs recovery (shares are sealed for its nonce); its first share binds it to the head version the
 * shares are for and starts its timeout.
 */
export class RecoveryAttempt {
  /** Names the attempt (hex): sealed shares are bound to it, and a reset is signed over it. */
  readonly nonce = toHex(randomBytes(attemptNonceBytes));
  readonly shares = new Map<string, Uint8Array>();
  #headVersion: string | null = null;
  #expiresAt: number | null = null;

  constructor(private readonly timeoutMs: number) {}

  /** Whether a share for head version `version` belongs to this attempt: none was received yet, or they were for the same version. */
  isFor(version: string): boolean {
    return this.#headVersion === null || this.#headVersion === version;
  }

  /** Keeps a share checked against head version `version`; the first one starts the timeout. */
  keep(commitment: string, share: Uint8Array, version: string, now: number): void {
    if (this.#headVersion === null) {
      this.#headVersion = version;
      this.#expiresAt = now + this.timeoutMs;
    }
    this.shares.set(commitment, share.slice());
  }

  /** True once the attempt is older than its timeout (counted from its first share). */
  expired(now: number): boolean {
    return this.#expiresAt !== null && now >= this.#expiresAt;
  }

  /** Forgets the shares (best effort: overwrites them). */
  discard(): void {
    for (const share of this.shares.values()) share.fill(0);
    this.shares.clear();
  }
}

/** Whether a seed-share document is the one of a head's recovery parameters: coordinator, salt, threshold and each commitment in order. */
export function matchesHead(doc: SeedShareDocument, head: Head): boolean {
  const r = head.recovery;
  return (
    doc.coordinator === head.name &&
    doc.salt === r.salt &&
    doc.threshold === r.threshold &&
    doc.shares.length === r.commitments.length &&
    doc.shares.every((s, i) => s.index === i + 1 && s.commitment === r.commitments[i])
  );
}

/**
 * The seed-share document a head references, read and checked against its hash and format. The
 * head may be unverified (before recovery): each owner checks their own share against its
 * commitment, and the Coordinator checks every share it receives against the head.
 */
export async function storedSeedShares(store: Store, head: Head): Promise<SeedShareDocument> {
  const hash = head.objects.seedShares;
  if (hash === undefined) {
    throw new CoordinatorError("NOT_FOUND", "this Coordinator's head was written before seed-share documents were stored with it");
  }
  const key = objectKey(kinds.seedShares, hash);
  const bytes = await getObject(store, kinds.seedShares, hash);
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    json = undefined;
  }
  const parsed = seedShareDocumentSchema.safeParse(json);
  if (!parsed.success || !matchesHead(parsed.data, head)) {
    throw new CoordinatorError("STATE_CORRUPT", `${key} is not the seed-share document of the head's recovery parameters`, { key });
  }
  return parsed.data;
}
