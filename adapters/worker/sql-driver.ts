// A Coordinator driver over a Durable Object's SQLite storage: exact bytes in chunks, compare-and-swap in one synchronous transaction.
import type { TransactionOptions } from "unstorage";
import { bytesOf, ifMatchOf } from "../../src/storage/memory.js";
import { contentVersion, StoreError, type CoordinatorDriver } from "../../src/storage/store.js";
import type { DurableObjectStorage } from "./types.js";

/**
 * Bytes per stored chunk. A SQLite-backed Durable Object stores at most 2 MB in one row, and a
 * policy can be larger, so values are split; 512 KiB keeps every row far below the limit.
 */
export const defaultChunkSize = 512 * 1024;

/** Options of the driver. */
export interface DurableObjectDriverOptions {
  /** Bytes per chunk (tests use small ones to exercise splitting). */
  chunkSize?: number;
}

interface ObjectRow {
  version: string;
  size: number;
  chunks: number;
  mtime: number;
  [column: string]: unknown;
}

const decoder = new TextDecoder();

/** Creates the driver's two tables if they are not there yet (idempotent, synchronous). */
export function createTables(storage: DurableObjectStorage): void {
  storage.sql.exec(
    "CREATE TABLE IF NOT EXISTS coordinator_objects (key TEXT PRIMARY KEY, version TEXT NOT NULL, size INTEGER NOT NULL, chunks INTEGER NOT NULL, mtime INTEGER NOT NULL)",
  );
  storage.sql.exec(
    "CREATE TABLE IF NOT EXISTS coordinator_chunks (key TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (key, idx))",
  );
}

/**
 * The driver. Each value is a row in `coordinator_objects` (its content version, size and chunk
 * count) plus its bytes in `coordinator_chunks`. A write first hashes the new bytes (the only await),
 * then checks `ifMatch` and replaces the rows inside one `transactionSync`: nothing else can run in
 * the single-threaded object between the check and the write, and a reader never sees half a value.
 * Only the Durable Object itself can reach its storage, and the runtime guarantees one instance per
 * id, so this compare-and-swap holds across the whole deployment.
 */
export function durableObjectDriver(storage: DurableObjectStorage, options: DurableObjectDriverOptions = {}): CoordinatorDriver {
  const chunkSize = options.chunkSize ?? defaultChunkSize;
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > 1024 * 1024) {
    throw new StoreError("UNAVAILABLE", `chunkSize must be an integer from 1 to 1048576, not ${chunkSize}`);
  }
  const sql = storage.sql;
  createTables(storage);

  function row(key: string): ObjectRow | undefined {
    return sql.exec<ObjectRow>("SELECT version, size, chunks, mtime FROM coordinator_objects WHERE key = ?", key).toArray()[0];
  }

  function read(key: string): Uint8Array | null {
    const meta = row(key);
    if (meta === undefined) return null;
    const parts = sql
      .exec<{ data: ArrayBuffer }>("SELECT data FROM coordinator_chunks WHERE key = ? ORDER BY idx", key)
      .toArray();
    const out = new Uint8Array(meta.size);
    let offset = 0;
    for (const part of parts) {
      const bytes = new Uint8Array(part.data);
      if (offset + bytes.length > out.length) break;
      out.set(bytes, offset);
      offset += bytes.length;
    }
    if (parts.length !== meta.chunks || offset !== meta.size) {
      throw new StoreError("UNAVAILABLE", `${key}: stored chunks do not add up to ${meta.size} bytes`);
    }
    return out;
  }

  function remove(key: string): void {
    sql.exec("DELETE FROM coordinator_chunks WHERE key = ?", key);
    sql.exec("DELETE FROM coordinator_objects WHERE key = ?", key);
  }

  async function write(key: string, value: unknown, opts: TransactionOptions | undefined): Promise<void> {
    const ifMatch = ifMatchOf(opts);
    const bytes = bytesOf(value, key);
    const version = await contentVersion(bytes);
    // From here on: synchronous, one transaction. The check and the write are one step.
    storage.transactionSync(() => {
      if (ifMatch !== undefined) {
        const current = row(key);
        const ok = ifMatch === null ? current === undefined : current !== undefined && current.version === ifMatch;
        if (!ok) throw new StoreError("CONFLICT", `${key} has changed`);
      }
      remove(key);
      const chunks = Math.ceil(bytes.length / chunkSize);
      for (let i = 0; i < chunks; i++) {
        const part = bytes.slice(i * chunkSize, Math.min(bytes.length, (i + 1) * chunkSize));
        sql.exec("INSERT INTO coordinator_chunks (key, idx, data) VALUES (?, ?, ?)", key, i, part.buffer);
      }
      sql.exec(
        "INSERT INTO coordinator_objects (key, version, size, chunks, mtime) VALUES (?, ?, ?, ?, ?)",
        key,
        version,
        bytes.length,
        chunks,
        Date.now(),
      );
    });
  }

  function keysUnder(base: string | undefined): string[] {
    const prefix = base ?? "";
    return sql
      .exec<{ key: string }>("SELECT key FROM coordinator_objects WHERE substr(key, 1, ?) = ? ORDER BY key", prefix.length, prefix)
      .toArray()
      .map((r) => r.key);
  }

  return {
    name: "coordinator-durable-object",
    options: { chunkSize },
    hasItem(key) {
      return row(key) !== undefined;
    },
    getItem(key) {
      const bytes = read(key);
      return bytes === null ? null : decoder.decode(bytes);
    },
    getItemRaw(key) {
      return read(key);
    },
    setItem(key, value, opts) {
      return write(key, value, opts);
    },
    setItemRaw(key, value, opts) {
      return write(key, value, opts);
    },
    removeItem(key) {
      storage.transactionSync(() => remove(key));
    },
    getMeta(key) {
      const meta = row(key);
      return meta === undefined ? null : { mtime: new Date(meta.mtime), size: meta.size };
    },
    getKeys(base) {
      return keysUnder(base);
    },
    clear(base) {
      storage.transactionSync(() => {
        for (const key of keysUnder(base)) remove(key);
      });
    },
  };
}
