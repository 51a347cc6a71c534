// The history index: content-addressed segments, named by the signed head, listing every manifest and policy hash (the transitions follow from them), so that recovery reads a fixed number of objects whatever the history's length.
import { sha256 as sha256Sync } from "@noble/hashes/sha2.js";
import { bytesEqual, fromHex, fromUtf8, toHex, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import type { Store } from "../storage/store.js";
import { getObject, kinds, objectKey, putObject } from "./objects.js";

/** The format tag of index segments this code writes and reads. */
export const historyIndexFormat = "contrast-coordinator-history/v1";

/**
 * When a segment is full: a set starts a new segment rather than grow one past this many entries or
 * encoded bytes (a segment stays far below the ~1 MiB of a Kubernetes object, and a set rewrites at
 * most one segment). A history of up to 2,048 manifests with few policies each is one segment.
 */
export const segmentLimits: Readonly<SegmentLimits> = { entries: 2048, bytes: 512 * 1024 };

/** How many entries and encoded bytes a segment may hold before a set starts a new one. */
export interface SegmentLimits {
  entries: number;
  bytes: number;
}

/** One link of the history, oldest first: its transition, its manifest and the manifest's policies (sorted). */
export interface HistoryEntry {
  transition: string;
  manifest: string;
  policies: string[];
}

/** Where one segment of the index is and which generations it covers (`first` to `first + count - 1`). */
export interface SegmentRef {
  hash: string;
  first: number;
  count: number;
}

/** The index as a ready state holds it: its segments, oldest first; the head names the last one. */
export type HistoryIndex = readonly SegmentRef[];

/** One entry as a segment holds it: the transition is not stored, it follows from the manifests. */
type SegmentEntry = Omit<HistoryEntry, "transition">;

/** One decoded segment. */
interface Segment {
  /** The generation of the first entry. */
  first: number;
  /** The segment before this one (null only for the segment that starts at generation 1). */
  previous: string | null;
  entries: SegmentEntry[];
}

/**
 * The one byte encoding of a segment: compact JSON with a fixed key order and a final newline,
 * `{"format", "first", "previous", "policies": [every policy hash once, in order of first use],
 * "manifests": [[manifest hash, [indices into policies]], …]}`, one manifest per generation, oldest first.
 */
function encodeSegment(segment: Segment): Uint8Array {
  const table = new Map<string, number>();
  const manifests = segment.entries.map((e) => [
    e.manifest,
    e.policies.map((p) => {
      let i = table.get(p);
      if (i === undefined) table.set(p, (i = table.size));
      return i;
    }),
  ]);
  const ordered = { format: historyIndexFormat, first: segment.first, previous: segment.previous, policies: [...table.keys()], manifests };
  return utf8(JSON.stringify(ordered) + "\n");
}

const hashPattern = /^[0-9a-f]{64}$/;
const isHash = (v: unknown): v is string => typeof v === "string" && hashPattern.test(v);

/**
 * Parses stored segment bytes; anything malformed or not in its one encoding (which also refuses
 * unknown fields, unsorted or repeated policies and unused table rows) is STATE_CORRUPT naming the key.
 */
function parseSegment(bytes: Uint8Array, key: string): Segment {
  const corrupt = (why: string) => new CoordinatorError("STATE_CORRUPT", `${key} ${why}`, { key });
  let json: { format?: unknown; first?: unknown; previous?: unknown; policies?: unknown; manifests?: unknown };
  try {
    json = JSON.parse(fromUtf8(bytes)) as typeof json;
  } catch {
    throw corrupt("is not valid JSON");
  }
  const { format, first, previous, policies, manifests } = json ?? {};
  if (format !== historyIndexFormat) throw corrupt(`is not a ${historyIndexFormat} segment`);
  if (typeof first !== "number" || !Number.isSafeInteger(first) || first < 1) throw corrupt("is malformed at first");
  if (previous !== null && !isHash(previous)) throw corrupt("is malformed at previous");
  if ((first === 1) !== (previous === null)) throw corrupt("names a previous segment if and only if it does not start at generation 1");
  if (!Array.isArray(policies) || !policies.every(isHash)) throw corrupt("is malformed at policies");
  if (!Array.isArray(manifests) || manifests.length === 0) throw corrupt("is malformed at manifests");
  const entries: SegmentEntry[] = [];
  for (const [i, row] of (manifests as unknown[]).entries()) {
    const [manifest, refs] = Array.isArray(row) && row.length === 2 ? (row as unknown[]) : [];
    if (!isHash(manifest) || !Array.isArray(refs)) throw corrupt(`is malformed at manifests.${i}`);
    const named: string[] = [];
    for (const ref of refs as unknown[]) {
      const policy = typeof ref === "number" ? (policies as string[])[ref] : undefined;
      if (policy === undefined || (named.length > 0 && named[named.length - 1]! >= policy)) {
        throw corrupt(`is malformed at manifests.${i}: policies must be distinct entries of its table, in order`);
      }
      named.push(policy);
    }
    entries.push({ manifest, policies: named });
  }
  const segment = { first, previous: previous as string | null, entries };
  if (!bytesEqual(encodeSegment(segment), bytes)) throw corrupt("is not in its canonical encoding");
  return segment;
}

/**
 * Reads the index a head names and checks it against the head: each segment hashes to its name
 * (the head names the last, each names the one before), the segments cover generations 1 to the
 * head's generation without gap or overlap, and the transitions recomputed from the manifest hashes,
 * `t_i = SHA-256(m_i ‖ t_{i-1})` from 32 zero bytes, end at the head's latest transition. Every
 * failure is STATE_CORRUPT naming a segment. One read per segment; no other object is read.
 */
export async function readIndex(
  store: Store,
  head: { generation: number; latestTransition: string; objects: { history?: string | undefined } },
): Promise<{ index: HistoryIndex; entries: HistoryEntry[] }> {
  const last = head.objects.history;
  if (last === undefined) throw new TypeError("readIndex: the head names no history index");
  const segments: { ref: SegmentRef; entries: SegmentEntry[] }[] = [];
  let name: string | null = last;
  let end = head.generation;
  while (name !== null) {
    const key = objectKey(kinds.history, name);
    // A segment holds at least one generation: more segments than generations cannot be.
    if (segments.length >= head.generation) throw new CoordinatorError("STATE_CORRUPT", `${key}: the index is longer than the head's generation`, { key });
    const segment = parseSegment(await getObject(store, kinds.history, name), key);
    const count = segment.entries.length;
    if (segment.first + count - 1 !== end) {
      throw new CoordinatorError(
        "STATE_CORRUPT",
        `${key} covers generations ${segment.first} to ${segment.first + count - 1}, but the next one starts at ${end + 1}`,
        { key },
      );
    }
    segments.unshift({ ref: { hash: name, first: segment.first, count }, entries: segment.entries });
    end = segment.first - 1;
    name = segment.previous;
  }
  // The chain, recomputed: synchronous SHA-256 (a WebCrypto call per link costs more than the hash).
  const entries: HistoryEntry[] = [];
  const link = new Uint8Array(64);
  for (const s of segments) {
    for (const e of s.entries) {
      link.set(fromHex(e.manifest), 0);
      const transition = sha256Sync(link);
      link.set(transition, 32);
      entries.push({ transition: toHex(transition), manifest: e.manifest, policies: e.policies });
    }
  }
  const latest = entries[entries.length - 1]!.transition;
  if (latest !== head.latestTransition) {
    const key = objectKey(kinds.history, last);
    throw new CoordinatorError("STATE_CORRUPT", `${key}: its manifests link to transition ${latest}, but the head's latest transition is ${head.latestTransition}`, { key });
  }
  return { index: segments.map((s) => s.ref), entries };
}

/**
 * Writes the index of `history` (the whole history, the newest entry last) and returns it; the new
 * head names its last segment. With the index of the history before the newest entry (`current`),
 * the newest entry extends the last segment (one object rewritten) or, when that one is full, starts
 * a new one; without one (a head written before the index existed), every segment is written, each
 * filled as far as the limits allow, as entry-by-entry appends would have. Objects only: the caller
 * writes the head after them.
 */
export async function writeIndex(
  store: Store,
  current: HistoryIndex | null,
  history: readonly HistoryEntry[],
  limits: Readonly<SegmentLimits> = segmentLimits,
): Promise<HistoryIndex> {
  const put = async (refs: readonly SegmentRef[], start: number, bytes: Uint8Array, count: number): Promise<SegmentRef[]> => [
    ...refs,
    { hash: await putObject(store, kinds.history, bytes), first: start + 1, count },
  ];
  if (current !== null && current.length > 0) {
    const last = current[current.length - 1]!;
    if (last.first + last.count !== history.length) {
      throw new TypeError(`writeIndex: the index covers ${last.first + last.count - 1} generations, the history before the update ${history.length - 1}`);
    }
    const before = current.slice(0, -1);
    if (last.count < limits.entries) {
      const bytes = segmentBytes(before, history, last.first - 1, last.count + 1);
      if (bytes.length <= limits.bytes) return put(before, last.first - 1, bytes, last.count + 1);
    }
    return put(current, history.length - 1, segmentBytes(current, history, history.length - 1, 1), 1);
  }
  let refs: SegmentRef[] = [];
  for (let start = 0; start < history.length; ) {
    // The most entries that fit (the size grows with the count); a single entry always goes in.
    let low = 1;
    let high = Math.min(limits.entries, history.length - start);
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (segmentBytes(refs, history, start, mid).length <= limits.bytes) low = mid;
      else high = mid - 1;
    }
    refs = await put(refs, start, segmentBytes(refs, history, start, low), low);
    start += low;
  }
  return refs;
}

function segmentBytes(refs: readonly SegmentRef[], history: readonly HistoryEntry[], start: number, count: number): Uint8Array {
  const previous = refs.length === 0 ? null : refs[refs.length - 1]!.hash;
  return encodeSegment({ first: start + 1, previous, entries: history.slice(start, start + count) });
}
