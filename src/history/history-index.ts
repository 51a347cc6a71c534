// The history index: content-addressed segments, named by the signed head, listing every manifest and policy hash (the transitions follow from them), so that recovery reads one segment per 2,048 generations plus a small tail whatever the history's length, and a set writes that small tail (now and then one merged segment) rather than a segment as long as the history.
import { sha256 as sha256Sync } from "@noble/hashes/sha2.js";
import { bytesEqual, fromHex, fromUtf8, toHex, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import type { Store } from "../storage/store.js";
import { getObject, kinds, objectKey, putObject } from "./objects.js";

/** The format tag of index segments this code writes and reads. */
export const historyIndexFormat = "contrast-coordinator-history/v1";

/**
 * The default limits: a set rewrites only the last segment, the tail, until it holds 64 entries
 * (about 9 KiB at one new policy per manifest); then the next set merges the tail into the segment
 * before it, if that stays within 2,048 entries and 512 KiB (far below the ~1 MiB of a Kubernetes
 * object), and starts a new tail. So a set writes at most one tail and, once per 64 sets, one merged
 * segment, and a history of n generations is at most ceil(n / 2,048) + 1 segments (while 2,048
 * entries fit in 512 KiB: 256 bytes an entry, a manifest and about two policies new to its segment).
 */
export const segmentLimits: Readonly<SegmentLimits> = { entries: 2048, bytes: 512 * 1024, tail: 64 };

/** How large segments grow: a set never writes one past `entries` or `bytes`, and rewrites the tail only while it is below `tail`. */
export interface SegmentLimits {
  /** The most entries of any segment. */
  entries: number;
  /** The most encoded bytes of any segment (a single entry always goes in). */
  bytes: number;
  /**
   * The most entries of the tail (the last segment, which each set rewrites with one more entry);
   * a full tail is merged into the segment before it. From 1 to `entries`; `tail === entries` is
   * the layout before tails: each set rewrites the last segment until it is full (`entries` or
   * `bytes`), and sealed segments are never merged.
   */
  tail: number;
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
 * whose last segment is the tail T and the one before it A (if any):
 * 1. while T holds fewer than `limits.tail` entries (and one more fits `limits.bytes`), T is
 *    rewritten with the newest entry: one object written;
 * 2. else, if A and T together fit one segment (`limits.entries`, `limits.bytes`), they are
 *    written merged as A' (A's previous segment before it) and the newest entry starts a new tail
 *    after A': two objects written;
 * 3. else T stays as it is (later tails merge into it) and the newest entry starts a new tail after T.
 * Without `current` (a head written before the index existed), every segment is written, each
 * filled as far as `entries` and `bytes` allow. Objects only: the caller writes the head after them;
 * the segments a set replaced stay in the store until collected.
 */
export async function writeIndex(
  store: Store,
  current: HistoryIndex | null,
  history: readonly HistoryEntry[],
  limits: Readonly<SegmentLimits> = segmentLimits,
): Promise<HistoryIndex> {
  const { entries, bytes: maxBytes, tail } = limits;
  if (!Number.isInteger(tail) || tail < 1 || tail > entries) throw new TypeError(`writeIndex: the tail limit ${tail} is not from 1 to ${entries}`);
  const put = async (refs: readonly SegmentRef[], start: number, bytes: Uint8Array, count: number): Promise<SegmentRef[]> => [
    ...refs,
    { hash: await putObject(store, kinds.history, bytes), first: start + 1, count },
  ];
  if (current !== null && current.length > 0) {
    const last = current[current.length - 1]!;
    if (last.first + last.count !== history.length) {
      throw new TypeError(`writeIndex: the index covers ${last.first + last.count - 1} generations, the history before the update ${history.length - 1}`);
    }
    const newest = history.length - 1;
    // 1. The tail takes the newest entry.
    const beforeLast = current.slice(0, -1);
    if (last.count < tail) {
      const bytes = segmentBytes(beforeLast, history, last.first - 1, last.count + 1);
      if (bytes.length <= maxBytes) return put(beforeLast, last.first - 1, bytes, last.count + 1);
    }
    // 2. The full tail merged into the segment before it; the newest entry starts a new tail.
    const merge = current.length >= 2 ? current[current.length - 2]! : null;
    if (merge !== null && merge.count + last.count <= entries) {
      const beforeMerge = current.slice(0, -2);
      const bytes = segmentBytes(beforeMerge, history, merge.first - 1, merge.count + last.count);
      if (bytes.length <= maxBytes) {
        const merged = await put(beforeMerge, merge.first - 1, bytes, merge.count + last.count);
        return put(merged, newest, segmentBytes(merged, history, newest, 1), 1);
      }
    }
    // 3. The tail stays (the segment later tails merge into); the newest entry starts a new tail.
    return put(current, newest, segmentBytes(current, history, newest, 1), 1);
  }
  let refs: SegmentRef[] = [];
  for (let start = 0; start < history.length; ) {
    // The most entries that fit (the size grows with the count); a single entry always goes in.
    let low = 1;
    let high = Math.min(entries, history.length - start);
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      if (segmentBytes(refs, history, start, mid).length <= maxBytes) low = mid;
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
