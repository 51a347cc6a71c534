// Content-addressed objects in the store: written under the SHA-256 of their bytes, checked on every read.
import { bytesEqual, toHex } from "../encoding.js";
import { sha256 } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import type { Store } from "../storage/store.js";

/** The kinds of immutable objects, as store key prefixes. */
export const kinds = {
  policy: "policies",
  manifest: "manifests",
  transition: "transitions",
  certificate: "certificates",
  sealedKey: "keys",
  seedShares: "seedshares",
  /** Segments of the history index (history-index.ts). */
  history: "histories",
} as const;

/** One kind of immutable object. */
export type ObjectKind = (typeof kinds)[keyof typeof kinds];

/** The store key of an object. */
export function objectKey(kind: ObjectKind, hash: string): string {
  return `${kind}:${hash}`;
}

/** Stores bytes under their hash (skipping the write if the exact bytes are there) and returns the hex hash. */
export async function putObject(store: Store, kind: ObjectKind, bytes: Uint8Array): Promise<string> {
  const hash = toHex(await sha256(bytes));
  const key = objectKey(kind, hash);
  const existing = await store.get(key);
  if (existing === null || !bytesEqual(existing, bytes)) await store.put(key, bytes);
  return hash;
}

/** Reads an object and checks that it hashes to its name; a missing or changed object is STATE_CORRUPT naming the key. */
export async function getObject(store: Store, kind: ObjectKind, hash: string): Promise<Uint8Array> {
  const key = objectKey(kind, hash);
  const bytes = await store.get(key);
  if (bytes === null) throw new CoordinatorError("STATE_CORRUPT", `${key} is missing from the store`, { key });
  const actual = toHex(await sha256(bytes));
  if (actual !== hash) {
    throw new CoordinatorError("STATE_CORRUPT", `${key} was changed: its content hashes to ${actual}`, { key });
  }
  return bytes;
}
