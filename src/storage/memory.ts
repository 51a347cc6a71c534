// An in-memory Coordinator driver with real compare-and-swap, for tests and single-process use.
import type { TransactionOptions } from "unstorage";
import { contentVersion, StoreError, type ConditionalWrite, type CoordinatorDriver } from "./store.js";

interface Entry {
  bytes: Uint8Array;
  /** Content version (SHA-256 hex) of `bytes`, kept next to them so a conditional write checks synchronously. */
  version: string;
  mtime: Date;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A private copy of a value given to `setItemRaw` (bytes, any typed-array view, ArrayBuffer or a string as UTF-8). */
export function bytesOf(value: unknown, key: string): Uint8Array {
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  throw new StoreError("UNAVAILABLE", `cannot store a ${typeof value} value under ${key}: expected bytes`);
}

/** The `ifMatch` of write options, or undefined for an unconditional write. */
export function ifMatchOf(opts: TransactionOptions | undefined): string | null | undefined {
  const ifMatch = (opts as ConditionalWrite | undefined)?.ifMatch;
  if (ifMatch === undefined || ifMatch === null || typeof ifMatch === "string") return ifMatch;
  throw new StoreError("UNAVAILABLE", "ifMatch must be a content version string or null");
}

/**
 * A driver that keeps copies of the bytes in a Map. Conditional writes compute the new value's
 * version first, then compare and set in one synchronous step, so concurrent callers cannot interleave.
 */
export function memoryDriver(): CoordinatorDriver {
  const data = new Map<string, Entry>();

  async function write(key: string, value: unknown, opts: TransactionOptions | undefined): Promise<void> {
    const ifMatch = ifMatchOf(opts);
    const bytes = bytesOf(value, key);
    const version = await contentVersion(bytes);
    // From here to the end: no await, so the check and the set are one step.
    if (ifMatch !== undefined) {
      const current = data.get(key);
      const ok = ifMatch === null ? current === undefined : current !== undefined && current.version === ifMatch;
      if (!ok) throw new StoreError("CONFLICT", `${key} has changed`);
    }
    data.set(key, { bytes, version, mtime: new Date() });
  }

  return {
    name: "coordinator-memory",
    options: {},
    hasItem(key) {
      return data.has(key);
    },
    getItem(key) {
      const entry = data.get(key);
      return entry === undefined ? null : decoder.decode(entry.bytes);
    },
    getItemRaw(key) {
      const entry = data.get(key);
      return entry === undefined ? null : new Uint8Array(entry.bytes);
    },
    setItem(key, value, opts) {
      return write(key, value, opts);
    },
    setItemRaw(key, value, opts) {
      return write(key, value, opts);
    },
    removeItem(key) {
      data.delete(key);
    },
    getMeta(key) {
      const entry = data.get(key);
      return entry === undefined ? null : { mtime: entry.mtime, size: entry.bytes.length };
    },
    getKeys(base) {
      const prefix = base ?? "";
      return [...data.keys()].filter((k) => k.startsWith(prefix));
    },
    clear(base) {
      const prefix = base ?? "";
      for (const k of [...data.keys()]) if (k.startsWith(prefix)) data.delete(k);
    },
  };
}
