// A Store wrapper for crash tests: counts reads and writes and fails the k-th one, before or after it takes effect.
import { StoreError } from "../../src/storage/store.js";
import type { Store, Versioned } from "../../src/storage/store.js";

/** Where an armed write failure strikes: before the write (nothing stored) or after it (stored, then the caller sees an error). */
export type FailMode = "before" | "after";

/** One operation that went through the wrapper, in call order. */
export interface StoreOp {
  op: "get" | "getVersioned" | "keys" | "put" | "compareAndSwap" | "remove";
  key: string;
  /** True for put, compareAndSwap and remove. */
  write: boolean;
  /** True if this operation was the one made to fail. */
  failed: boolean;
}

/** A Store that passes everything to `inner` until armed, then fails exactly the k-th write or read counted from the arming. */
export interface FailingStore extends Store {
  /** The store every operation goes to. */
  readonly inner: Store;
  /** Operations since the last `arm`/`disarm`/`reset`. */
  readonly ops: StoreOp[];
  /** Writes (put, compareAndSwap, remove) since the last `arm`/`disarm`/`reset`. */
  readonly writes: number;
  /** Reads (get, getVersioned, keys) since the last `arm`/`disarm`/`reset`. */
  readonly reads: number;
  /** Resets the counters and fails the `k`-th write from now on (1-based), in `mode`. */
  armWrite(k: number, mode?: FailMode): void;
  /** Resets the counters and fails the `k`-th read from now on (1-based). */
  armRead(k: number): void;
  /** Resets the counters and stops failing. */
  disarm(): void;
}

/** Wraps `inner`; no failure is armed until `armWrite` or `armRead` is called. */
export function failingStore(inner: Store): FailingStore {
  let ops: StoreOp[] = [];
  let writes = 0;
  let reads = 0;
  let failWrite: { k: number; mode: FailMode } | null = null;
  let failRead: number | null = null;

  function fail(what: string, key: string): never {
    throw new StoreError("UNAVAILABLE", `injected failure: ${what} ${key}`);
  }

  async function read<T>(op: "get" | "getVersioned" | "keys", key: string, run: () => Promise<T>): Promise<T> {
    reads += 1;
    const failed = failRead !== null && reads === failRead;
    ops.push({ op, key, write: false, failed });
    if (failed) fail(op, key);
    return run();
  }

  async function write<T>(op: "put" | "compareAndSwap" | "remove", key: string, run: () => Promise<T>): Promise<T> {
    writes += 1;
    const armed = failWrite !== null && writes === failWrite.k ? failWrite.mode : null;
    ops.push({ op, key, write: true, failed: armed !== null });
    if (armed === "before") fail(op, key);
    const result = await run();
    if (armed === "after") fail(`${op} (performed)`, key);
    return result;
  }

  function reset(): void {
    ops = [];
    writes = 0;
    reads = 0;
  }

  return {
    inner,
    get ops() {
      return ops;
    },
    get writes() {
      return writes;
    },
    get reads() {
      return reads;
    },
    armWrite(k, mode = "before") {
      reset();
      failRead = null;
      failWrite = { k, mode };
    },
    armRead(k) {
      reset();
      failWrite = null;
      failRead = k;
    },
    disarm() {
      reset();
      failWrite = null;
      failRead = null;
    },
    get(key) {
      return read("get", key, () => inner.get(key));
    },
    getVersioned(key): Promise<Versioned | null> {
      return read("getVersioned", key, () => inner.getVersioned(key));
    },
    keys(kind) {
      return read("keys", `${kind}:`, () => inner.keys(kind));
    },
    put(key, value) {
      return write("put", key, () => inner.put(key, value));
    },
    compareAndSwap(key, value, expected) {
      return write("compareAndSwap", key, () => inner.compareAndSwap(key, value, expected));
    },
    remove(key) {
      return write("remove", key, () => inner.remove(key));
    },
  };
}
