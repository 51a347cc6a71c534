// The Store the Coordinator persists through: exact bytes over an unstorage driver, plus compare-and-swap.
import { createStorage, type Driver, type Storage } from "unstorage";
import { toHex } from "../encoding.js";
import { randomBytes, sha256 } from "../crypto/provider.js";

/**
 * Options a Coordinator driver accepts on `setItemRaw`.
 * `ifMatch` makes the write conditional: a string is the content version (SHA-256 hex of the bytes)
 * the key must hold right now, `null` means the key must not exist. On mismatch the driver throws a
 * `StoreError` with code `CONFLICT`, and nothing is written.
 */
export interface ConditionalWrite {
  ifMatch?: string | null;
}

/**
 * An unstorage driver the Coordinator can use: `getItemRaw` returns exact bytes (`Uint8Array`) or
 * null, `setItemRaw` stores exact bytes atomically and honours `ConditionalWrite` for real.
 * `collectObjects` is optional (the fs driver has it).
 */
export type CoordinatorDriver = Driver & {
  getItemRaw: NonNullable<Driver["getItemRaw"]>;
  setItemRaw: NonNullable<Driver["setItemRaw"]>;
  collectObjects?: (request: CollectRequest) => Promise<CollectReport>;
};

/**
 * A request to collect unreferenced objects (src/coordinator/collect.ts makes it): objects of `kinds`
 * not written (or restored) for `graceMs` are set aside where reads still find them, and objects set
 * aside for `graceMs` are deleted, each only if `referenced`, asked after their ages were read, says
 * no. `referenced` answers null when it cannot tell (nothing is set aside or deleted then).
 */
export interface CollectRequest {
  kinds: readonly string[];
  graceMs: number;
  /** The time to judge ages by (ms since the epoch); default now. */
  now?: number;
  referenced: () => Promise<((key: string) => boolean) | null>;
}

/** What one collection did: objects in place and set aside afterwards, how many were set aside, deleted and brought back. */
export interface CollectReport {
  objects: number;
  inTrash: number;
  trashed: number;
  purged: number;
  restored: number;
  /** True when `referenced` answered null and nothing was done. */
  skipped: boolean;
}

/** Stable codes of storage failures. */
export type StoreErrorCode = "CONFLICT" | "UNAVAILABLE" | "INVALID_KEY";

/** A storage failure with a stable code. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "StoreError";
    this.code = code;
  }
}

/** The content version of bytes: the SHA-256 hex every driver compares `ifMatch` against. */
export async function contentVersion(bytes: Uint8Array): Promise<string> {
  return toHex(await sha256(bytes));
}

/** A value read together with its content version. */
export interface Versioned {
  value: Uint8Array;
  version: string;
}

/** Keys are `kind:name`; both parts are lower-case letters, digits, dots and dashes. */
const keyPattern = /^[a-z][a-z0-9-]{0,62}:[a-z0-9][a-z0-9.-]{0,252}$/;

/** Throws unless `key` is a valid two-part store key. */
export function checkKey(key: string): void {
  if (!keyPattern.test(key)) throw new StoreError("INVALID_KEY", `invalid store key ${JSON.stringify(key)}`);
}

/** The Coordinator's view of persistence. */
export interface Store {
  /** The exact bytes under `key`, or null. */
  get(key: string): Promise<Uint8Array | null>;
  /** Stores exact bytes under `key` (immutable, content-addressed objects). */
  put(key: string, value: Uint8Array): Promise<void>;
  /** The bytes under `key` with their content version, or null. */
  getVersioned(key: string): Promise<Versioned | null>;
  /**
   * Replaces the value under `key` only if it still has version `expected` (null: only if absent).
   * Returns the new version; throws `StoreError("CONFLICT")` if someone else got there first.
   */
  compareAndSwap(key: string, value: Uint8Array, expected: string | null): Promise<string>;
  /** Every key of one kind (`kind:` prefix). */
  keys(kind: string): Promise<string[]>;
  /** Removes `key` if present. */
  remove(key: string): Promise<void>;
  /** Collects unreferenced objects (see CollectRequest); absent where the store cannot. */
  collectObjects?: (request: CollectRequest) => Promise<CollectReport>;
}

function asBytes(value: unknown, key: string): Uint8Array | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Uint8Array) return value;
  throw new StoreError("UNAVAILABLE", `driver returned a non-byte value for ${key}`);
}

function wrap(err: unknown, what: string): never {
  if (err instanceof StoreError) throw err;
  throw new StoreError("UNAVAILABLE", `${what} failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

/** The Store over an unstorage instance mounted on a Coordinator driver. */
export function createStore(driver: CoordinatorDriver): Store & { storage: Storage } {
  const storage = createStorage({ driver });
  return {
    storage,
    async get(key) {
      checkKey(key);
      try {
        return asBytes(await storage.getItemRaw(key), key);
      } catch (err) {
        return wrap(err, `reading ${key}`);
      }
    },
    async put(key, value) {
      checkKey(key);
      try {
        await storage.setItemRaw(key, value);
      } catch (err) {
        wrap(err, `writing ${key}`);
      }
    },
    async getVersioned(key) {
      const value = await this.get(key);
      return value === null ? null : { value, version: await contentVersion(value) };
    },
    async compareAndSwap(key, value, expected) {
      checkKey(key);
      const options: ConditionalWrite = { ifMatch: expected };
      try {
        await storage.setItemRaw(key, value, options);
      } catch (err) {
        wrap(err, `updating ${key}`);
      }
      return contentVersion(value);
    },
    async keys(kind) {
      try {
        const keys = await storage.getKeys(`${kind}:`);
        return keys.filter((k) => k.startsWith(`${kind}:`)).sort();
      } catch (err) {
        return wrap(err, `listing ${kind}`);
      }
    },
    async remove(key) {
      checkKey(key);
      try {
        await storage.removeItem(key);
      } catch (err) {
        wrap(err, `removing ${key}`);
      }
    },
    ...(driver.collectObjects === undefined ? {} : { collectObjects: driver.collectObjects }),
  };
}

/** The store kind of the objects `probeStore` writes: never read, listed or written by the Coordinator otherwise. */
export const probeKind = "probes";

/**
 * Checks that a store works end to end before the Coordinator relies on it: writes a random value
 * under a fresh key `probes:<name>-<32 hex>` (a kind of its own, so it cannot collide with real data
 * or another Coordinator's probe), reads it back, removes it and checks it is gone. Throws a
 * StoreError (UNAVAILABLE) saying which step failed. For stores that allow create and delete (fs,
 * memory); the Kubernetes Role grants no delete, so the Node adapter probes it differently.
 */
export async function probeStore(store: Store, name: string): Promise<void> {
  const nonce = randomBytes(16);
  const key = `${probeKind}:${name}-${toHex(nonce)}`;
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new StoreError("UNAVAILABLE", `cannot ${what} a probe object: ${message}`, { cause: err });
    }
  };
  await step("write", () => store.put(key, nonce));
  const back = await step("read back", () => store.get(key));
  if (back === null || toHex(back) !== toHex(nonce)) {
    throw new StoreError("UNAVAILABLE", `the probe object ${key} did not read back as written`);
  }
  await step("remove", () => store.remove(key));
  if ((await step("read back", () => store.get(key))) !== null) {
    throw new StoreError("UNAVAILABLE", `the probe object ${key} is still there after removal`);
  }
}
