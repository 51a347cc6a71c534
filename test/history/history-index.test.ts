// The history index on its own: its exact encoding, its segments (written whole or entry by entry: a small rewritten tail merged into the segment before it), what each set writes, and every way a segment can be missing, changed or inconsistent with the head, each named.
import { describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/errors.js";
import { randomBytes, sha256 } from "../../src/crypto/provider.js";
import { concat, fromUtf8, toHex, utf8 } from "../../src/encoding.js";
import { historyIndexFormat, readIndex, segmentLimits, writeIndex } from "../../src/history/history-index.js";
import type { HistoryEntry, HistoryIndex, SegmentLimits } from "../../src/history/history-index.js";
import { zeroHash } from "../../src/history/transition.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { failingStore } from "../coordinator/failing-store.js";

/** A linked history of `n` manifests; each has 1–3 policies from a small pool, so policies repeat. */
async function history(n: number, label = "manifest"): Promise<HistoryEntry[]> {
  const pool = await Promise.all(Array.from({ length: 5 }, (_, i) => sha256(utf8(`policy ${i}`)).then(toHex)));
  const entries: HistoryEntry[] = [];
  let previous: Uint8Array = zeroHash;
  for (let i = 0; i < n; i++) {
    const manifest = await sha256(utf8(`${label} ${i}`));
    const transition = await sha256(concat(manifest, previous));
    const policies = [...new Set([pool[i % 5]!, pool[(i * 3) % 5]!, pool[(i + 2) % 5]!].slice(0, 1 + (i % 3)))].sort();
    entries.push({ manifest: toHex(manifest), transition: toHex(transition), policies });
    previous = transition;
  }
  return entries;
}

/** What readIndex needs of a head: its generation, latest transition and the index's last segment. */
function headOf(entries: HistoryEntry[], index: HistoryIndex): { generation: number; latestTransition: string; objects: { history: string } } {
  return { generation: entries.length, latestTransition: entries[entries.length - 1]!.transition, objects: { history: index[index.length - 1]!.hash } };
}

/** Writes a history entry by entry, as successive sets do. */
async function appendAll(store: Store, entries: HistoryEntry[], limits: SegmentLimits): Promise<HistoryIndex> {
  let index: HistoryIndex | null = null;
  for (let n = 1; n <= entries.length; n++) index = await writeIndex(store, index, entries.slice(0, n), limits);
  return index!;
}

async function corruptKey(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CoordinatorError);
  expect((err as CoordinatorError).code).toBe("STATE_CORRUPT");
  return (err as CoordinatorError).key;
}

/** Segment bytes as the format says (for forged segments): compact JSON, fixed key order, a final newline. */
function segmentText(first: number, previous: string | null, entries: HistoryEntry[]): string {
  const table: string[] = [];
  const rows = entries.map((e) => [e.manifest, e.policies.map((p) => (table.includes(p) ? table.indexOf(p) : table.push(p) - 1))]);
  return JSON.stringify({ format: historyIndexFormat, first, previous, policies: table, manifests: rows }) + "\n";
}

/** The segment text of `entries` with its rows changed by `change`. */
function mutated(entries: HistoryEntry[], change: (rows: [string, number[]][]) => unknown): string {
  const segment = JSON.parse(segmentText(1, null, entries)) as { manifests: [string, number[]][] };
  change(segment.manifests);
  return JSON.stringify(segment) + "\n";
}

async function put(store: Store, text: string): Promise<string> {
  const bytes = utf8(text);
  const hash = toHex(await sha256(bytes));
  await store.put(`histories:${hash}`, bytes);
  return hash;
}

describe("the encoding of a segment", () => {
  it("is compact JSON: format, first generation, previous segment, the policy table in order of first use, [manifest, policy indices] per generation", async () => {
    const store = createStore(memoryDriver());
    const entries = await history(2);
    const [ref] = await writeIndex(store, null, entries);
    const stored = fromUtf8((await store.get(`histories:${ref!.hash}`))!);
    expect(stored).toBe(segmentText(1, null, entries));
    expect(JSON.parse(stored)).toEqual({
      format: "contrast-coordinator-history/v1",
      first: 1,
      previous: null,
      policies: [...new Set(entries.flatMap((e) => e.policies))],
      manifests: entries.map((e) => [e.manifest, expect.any(Array)]),
    });
    expect(ref).toEqual({ hash: toHex(await sha256(utf8(stored))), first: 1, count: 2 });
  });
});

describe("writing and reading the index", () => {
  it("with the default limits a history of 300 is a merged segment and a tail of at most 64; reading it is one store read per segment and gives the history back", async () => {
    const store = failingStore(createStore(memoryDriver()));
    const entries = await history(300);
    const index = await appendAll(store, entries, segmentLimits);
    expect(segmentLimits).toEqual({ entries: 2048, bytes: 512 * 1024, tail: 64 });
    expect(index.map((s) => [s.first, s.count])).toEqual([
      [1, 256],
      [257, 44],
    ]);
    store.disarm();
    expect(await readIndex(store, headOf(entries, index))).toEqual({ index, entries });
    expect(store.reads).toBe(2);
  });

  it("with tail = entries (the layout before tails) full segments are sealed and chained; entry by entry gives the same segments as writing the whole history at once", async () => {
    const limits = { entries: 4, bytes: segmentLimits.bytes, tail: 4 };
    const entries = await history(11);
    const appended = await appendAll(createStore(memoryDriver()), entries, limits);
    const store = failingStore(createStore(memoryDriver()));
    const whole = await writeIndex(store, null, entries, limits);
    expect(whole).toEqual(appended);
    expect(whole.map((s) => [s.first, s.count])).toEqual([
      [1, 4],
      [5, 4],
      [9, 3],
    ]);
    store.disarm();
    expect(await readIndex(store, headOf(entries, whole))).toEqual({ index: whole, entries });
    expect(store.reads).toBe(3);
  });

  it("a segment is sealed before it would pass the byte limit (a single entry always fits)", async () => {
    const entries = await history(9);
    const one = segmentText(1, null, entries.slice(0, 1)).length;
    const limits = { entries: 100, bytes: one * 3, tail: 100 };
    const store = createStore(memoryDriver());
    const index = await appendAll(store, entries, limits);
    expect(index.length).toBeGreaterThan(2);
    for (const s of index) expect((await store.get(`histories:${s.hash}`))!.length).toBeLessThanOrEqual(limits.bytes);
    expect(await writeIndex(createStore(memoryDriver()), null, entries, limits)).toEqual(index);
    expect((await readIndex(store, headOf(entries, index))).entries).toEqual(entries);
    const tiny = await writeIndex(createStore(memoryDriver()), null, entries.slice(0, 2), { entries: 100, bytes: 1, tail: 100 });
    expect(tiny.map((s) => s.count)).toEqual([1, 1]);
  });

  it("an update rewrites only the last segment: one object written", async () => {
    const limits = { entries: 4, bytes: segmentLimits.bytes, tail: 4 };
    const entries = await history(7);
    const store = failingStore(createStore(memoryDriver()));
    const before = await writeIndex(store, null, entries.slice(0, 6), limits);
    store.disarm();
    const after = await writeIndex(store, before, entries, limits);
    expect(store.ops.filter((o) => o.write).map((o) => o.key)).toEqual([`histories:${after[1]!.hash}`]);
    expect(after[0]).toEqual(before[0]);
  });
});

describe("a small tail, merged into the segment before it", () => {
  const small = { entries: 8, bytes: segmentLimits.bytes, tail: 2 };
  /** [first, count] of each segment, from the counts. */
  const layout = (counts: number[]): [number, number][] => counts.map((c, i) => [1 + counts.slice(0, i).reduce((a, b) => a + b, 0), c]);

  /** The segments written by appending entries 1 to `n` one at a time, and what each append wrote (keys and bytes). */
  async function appendCounting(entries: HistoryEntry[], limits: SegmentLimits, from: HistoryIndex | null = null, store = failingStore(createStore(memoryDriver()))) {
    const steps: { index: HistoryIndex; written: { hash: string; bytes: number }[] }[] = [];
    let index = from;
    for (let n = (from === null ? 0 : from.at(-1)!.first + from.at(-1)!.count - 1) + 1; n <= entries.length; n++) {
      store.disarm();
      index = await writeIndex(store, index, entries.slice(0, n), limits);
      const written = store.ops.filter((o) => o.write).map((o) => o.key);
      steps.push({ index, written: await Promise.all(written.map(async (k) => ({ hash: k.slice("histories:".length), bytes: (await store.inner.get(k))!.length }))) });
    }
    store.disarm();
    return { store, steps };
  }

  it("entry by entry: the tail grows to `tail` entries, then merges into the segment before it until that one is full; every index reads back as exactly the history", async () => {
    const entries = await history(21);
    const expected = [
      [1],
      [2],
      [2, 1],
      [2, 2],
      [4, 1],
      [4, 2],
      [6, 1],
      [6, 2],
      [8, 1],
      [8, 2],
      [8, 2, 1],
      [8, 2, 2],
      [8, 4, 1],
      [8, 4, 2],
      [8, 6, 1],
      [8, 6, 2],
      [8, 8, 1],
      [8, 8, 2],
      [8, 8, 2, 1],
      [8, 8, 2, 2],
      [8, 8, 4, 1],
    ];
    const { store, steps } = await appendCounting(entries, small);
    expect(steps.map((s) => s.index.map((r) => [r.first, r.count]))).toEqual(expected.map(layout));
    for (const [i, { index }] of steps.entries()) {
      const n = i + 1;
      expect(index.length).toBeLessThanOrEqual(Math.ceil(n / small.entries) + 1);
      expect(await readIndex(store, headOf(entries.slice(0, n), index))).toEqual({ index, entries: entries.slice(0, n) });
      expect(store.reads).toBe(index.length);
      store.disarm();
    }
  });

  it("an append writes one tail of at most `tail` entries, or a merged segment and a new tail of one entry; merges come at most once per `tail` appends", async () => {
    const entries = await history(1000);
    const { steps } = await appendCounting(entries, segmentLimits);
    const merges: number[] = [];
    let tailBytes = 0;
    for (const [i, { index, written }] of steps.entries()) {
      const tail = index.at(-1)!;
      expect(tail.count).toBeLessThanOrEqual(segmentLimits.tail);
      expect(written.at(-1)!.hash).toBe(tail.hash);
      if (written.length === 2) {
        merges.push(i + 1);
        expect(tail.count).toBe(1);
        expect(written[0]!.hash).toBe(index.at(-2)!.hash);
        expect(index.at(-2)!.count).toBeLessThanOrEqual(segmentLimits.entries);
        expect(written[0]!.bytes).toBeLessThanOrEqual(segmentLimits.bytes);
        // everything before the merged segment is as it was
        expect(index.slice(0, -2)).toEqual(steps[i - 1]!.index.slice(0, -2));
      } else {
        // the tail rewritten with one more entry, or a new tail after the one that stays
        expect(written).toHaveLength(1);
        const before = steps[i - 1]?.index ?? [];
        expect(index.slice(0, -1)).toEqual(tail.count === 1 ? before : before.slice(0, -1));
      }
      tailBytes = Math.max(tailBytes, written.at(-1)!.bytes);
    }
    expect(merges).toEqual(Array.from({ length: 14 }, (_, k) => 129 + 64 * k));
    // A tail costs the same at any history length: the largest is the size of the first 64 appends'
    // largest but for the previous segment's name (64 hex digits where the first has null) and a longer `first`.
    const firstTails = Math.max(...steps.slice(0, 64).map((s) => s.written[0]!.bytes));
    expect(tailBytes).toBeGreaterThanOrEqual(firstTails);
    expect(tailBytes).toBeLessThanOrEqual(firstTails + 64 + 8);
    // Against the layout before tails: the bytes written over 1,000 appends, a fraction of them.
    const total = (s: typeof steps) => s.reduce((sum, step) => sum + step.written.reduce((a, w) => a + w.bytes, 0), 0);
    const before = total((await appendCounting(entries, { ...segmentLimits, tail: segmentLimits.entries })).steps);
    const now = total(steps);
    process.stdout.write(`\nhistory index bytes written over 1,000 appends: ${now} with a tail of 64, ${before} with the last segment rewritten whole\n`);
    expect(now * 8).toBeLessThan(before);
  });

  it("an index written with the layout before tails is read, then extended with tails", async () => {
    const entries = await history(20);
    const store = failingStore(createStore(memoryDriver()));
    const old = await appendAll(store, entries.slice(0, 11), { ...small, tail: small.entries });
    expect(old.map((r) => [r.first, r.count])).toEqual(layout([8, 3]));
    expect(await readIndex(store, headOf(entries.slice(0, 11), old))).toEqual({ index: old, entries: entries.slice(0, 11) });
    const { steps } = await appendCounting(entries, small, old, store);
    expect(steps.map((s) => s.index.map((r) => [r.first, r.count]))).toEqual(
      [
        [8, 3, 1],
        [8, 3, 2],
        [8, 5, 1],
        [8, 5, 2],
        [8, 7, 1],
        [8, 7, 2],
        [8, 7, 2, 1],
        [8, 7, 2, 2],
        [8, 7, 4, 1],
      ].map(layout),
    );
    const last = steps.at(-1)!.index;
    expect(last[0]).toEqual(old[0]);
    expect(await readIndex(store, headOf(entries, last))).toEqual({ index: last, entries });
  });

  it("a tail limit outside 1 to `entries` is refused", async () => {
    const entries = await history(2);
    for (const tail of [0, 9, 1.5]) {
      await expect(writeIndex(createStore(memoryDriver()), null, entries, { ...small, tail })).rejects.toBeInstanceOf(TypeError);
    }
  });
});

describe("a damaged index is STATE_CORRUPT naming the segment", () => {
  const limits = { entries: 3, bytes: segmentLimits.bytes, tail: 3 };

  it.each([
    ["changed", (bytes: Uint8Array) => Uint8Array.from(bytes, (b, i) => (i === 40 ? b ^ 1 : b))],
    ["missing", () => null],
    ["swapped for another segment of the same history", null],
  ] as const)("each segment %s", async (_how, change) => {
    const entries = await history(8);
    for (let i = 0; i < 3; i++) {
      const store = createStore(memoryDriver());
      const index = await writeIndex(store, null, entries, limits);
      const key = `histories:${index[i]!.hash}`;
      const other = (await store.get(`histories:${index[(i + 1) % 3]!.hash}`))!;
      const replaced = change === null ? other : change((await store.get(key))!);
      if (replaced === null) await store.remove(key);
      else await store.put(key, replaced);
      expect(await corruptKey(readIndex(store, headOf(entries, index)))).toBe(key);
    }
  });

  // Segments written under their own hash (as anyone with store access can), named by a head as if signed.
  it.each([
    ["a changed manifest hash (the transitions no longer reach the head's)", (e: HistoryEntry[]) => segmentText(1, null, e.map((x, i) => (i === 2 ? { ...x, manifest: e[0]!.manifest } : x)))],
    ["two manifests swapped", (e: HistoryEntry[]) => segmentText(1, null, [e[1]!, e[0]!, e[2]!, e[3]!])],
    ["an entry too few for the head's generation", (e: HistoryEntry[]) => segmentText(1, null, e.slice(0, -1))],
    ["no previous segment, but not starting at generation 1", (e: HistoryEntry[]) => segmentText(2, null, e.slice(1))],
    ["a previous segment although it starts at generation 1", (e: HistoryEntry[]) => segmentText(1, "ab".repeat(32), e)],
    ["a re-formatted encoding", (e: HistoryEntry[]) => segmentText(1, null, e).replace('"first":1', '"first": 1')],
    ["unsorted policies", (e: HistoryEntry[]) => mutated(e, (rows) => rows.find((r) => r[1].length > 1)![1].reverse())],
    ["repeated policies", (e: HistoryEntry[]) => mutated(e, (rows) => rows[0]![1].push(rows[0]![1][0]!))],
    ["a policy index outside its table", (e: HistoryEntry[]) => mutated(e, (rows) => (rows[0]![1][0] = 99))],
    ["a manifest with an extra field", (e: HistoryEntry[]) => mutated(e, (rows) => (rows[0] as unknown[]).push("x"))],
    ["another format", (e: HistoryEntry[]) => segmentText(1, null, e).replace("history/v1", "history/v2")],
    ["an unknown field", (e: HistoryEntry[]) => segmentText(1, null, e).replace('{"format"', '{"extra":1,"format"')],
    ["no JSON", () => "not json"],
  ])("a segment with %s", async (_what, forge) => {
    const entries = await history(4);
    const store = createStore(memoryDriver());
    const hash = await put(store, forge(entries));
    const head = { generation: 4, latestTransition: entries[3]!.transition, objects: { history: hash } };
    expect(await corruptKey(readIndex(store, head))).toBe(`histories:${hash}`);
  });

  it("a chain whose last transition is not the head's", async () => {
    const entries = await history(4);
    const store = createStore(memoryDriver());
    const hash = await put(store, segmentText(1, null, entries));
    const head = { generation: 4, latestTransition: toHex(randomBytes(32)), objects: { history: hash } };
    expect(await corruptKey(readIndex(store, head))).toBe(`histories:${hash}`);
  });

  it("segments that overlap or leave a gap", async () => {
    const entries = await history(6);
    const store = createStore(memoryDriver());
    const first = await put(store, segmentText(1, null, entries.slice(0, 3)));
    const overlap = await put(store, segmentText(3, first, entries.slice(2)));
    expect(await corruptKey(readIndex(store, { generation: 6, latestTransition: entries[5]!.transition, objects: { history: overlap } }))).toBe(`histories:${first}`);
    const gap = await put(store, segmentText(5, first, entries.slice(4)));
    expect(await corruptKey(readIndex(store, { generation: 6, latestTransition: entries[5]!.transition, objects: { history: gap } }))).toBe(`histories:${first}`);
  });

  it("a previous segment that links to the wrong transition", async () => {
    const entries = await history(6);
    const other = await history(7, "another manifest");
    const store = createStore(memoryDriver());
    // A valid first segment of another history, chained before this history's second half.
    const first = await put(store, segmentText(1, null, other.slice(0, 3)));
    const last = await put(store, segmentText(4, first, entries.slice(3)));
    const key = await corruptKey(readIndex(store, { generation: 6, latestTransition: entries[5]!.transition, objects: { history: last } }));
    expect([`histories:${first}`, `histories:${last}`]).toContain(key);
    // the recomputed chain does not reach the head's latest transition: the head's segment is named
    expect(key).toBe(`histories:${last}`);
    expect(entries[0]!.manifest).not.toBe(other[0]!.manifest);
  });
});
