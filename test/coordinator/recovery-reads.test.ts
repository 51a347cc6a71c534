// Recovery reads a fixed set of objects plus one per index segment, at most ceil(n / 2,048) + 1 of them, whatever the history's length (the head's index stands for the rest); a head written before the index existed still recovers by the full walk and gets an index at the next set; an index of several segments verifies, and a damaged segment is named.
import type { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { auditObjects } from "../../src/coordinator/audit.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { loadReady } from "../../src/coordinator/ready.js";
import type { Ready } from "../../src/coordinator/ready.js";
import { openRootSeed } from "../../src/coordinator/recovery.js";
import { setManifest } from "../../src/coordinator/set.js";
import type { SetEnvironment, SetManifestInput } from "../../src/coordinator/set.js";
import { SeedEngine } from "../../src/crypto/seedengine.js";
import { combineShares } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromBase64, fromHex, toBase64 } from "../../src/encoding.js";
import { CoordinatorError } from "../../src/errors.js";
import { headKey as headKeyOf, parseHead, signHead } from "../../src/history/head.js";
import { readIndex } from "../../src/history/history-index.js";
import type { HistoryEntry, HistoryIndex } from "../../src/history/history-index.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { contentVersion, createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { firstSetBody, manifestBytes, policy, post, recoverBody, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import { failingStore } from "./failing-store.js";
import type { FailingStore } from "./failing-store.js";

const name = "alpha";
const headKey = headKeyOf(name);
const validators = new Map([["insecure-simulated", simulatedValidator]]);

type Owners = { seed: Awaited<ReturnType<typeof seedShareOwner>>; workload: Awaited<ReturnType<typeof workloadOwner>> };

interface Answer {
  status: number;
  text: string;
  json: Record<string, unknown>;
}

async function call(app: Hono, method: "GET" | "POST", path: string, body?: unknown): Promise<Answer> {
  const res = await app.request(path, method === "POST" ? post(body) : { method });
  const text = await res.text();
  return { status: res.status, text, json: (text.startsWith("{") ? JSON.parse(text) : {}) as Record<string, unknown> };
}

async function start(store: Store): Promise<{ coordinator: Coordinator; app: Hono }> {
  const coordinator = await Coordinator.start({ store, name, validators });
  return { coordinator, app: createApp({ coordinator }) };
}

/** Manifest `i`: two policies, one of them new in this revision, so every update stores a manifest and a policy. */
async function revision(owners: Owners, i: number): Promise<{ manifest: Uint8Array; policies: Uint8Array[] }> {
  const [shared, own] = await Promise.all([policy("the shared policy\n"), policy(`policy of revision ${i}\n`)]);
  const manifest = manifestBytes({
    policies: [
      { hash: shared.hash, name: "shared" },
      { hash: own.hash, name: `web-${i}` },
    ],
    workloadOwners: [owners.workload.digest],
    seedShareOwners: [owners.seed.publicHex],
  });
  return { manifest, policies: [shared.bytes, own.bytes] };
}

/** A store holding a history of `generations` manifests, with what recovering it needs and what it served before. */
interface Built {
  store: Store;
  recover: { share: string; salt: string };
  history: string;
  rootCA: string;
  latest: string;
}

async function build(owners: Owners, generations: number): Promise<Built> {
  const store = createStore(memoryDriver());
  const { app } = await start(store);
  const rev0 = await revision(owners, 0);
  const first = await call(app, "POST", "/v1/manifest", firstSetBody(rev0.manifest, rev0.policies));
  expect(first.status, first.text).toBe(200);
  const rootCA = first.json.rootCA as string;
  let latest = first.json.transition as string;
  for (let i = 1; i < generations; i++) {
    const rev = await revision(owners, i);
    const r = await call(app, "POST", "/v1/manifest", await updateBody(rev.manifest, rev.policies, latest, owners.workload, { name, rootCA }));
    expect(r.status, r.text).toBe(200);
    latest = r.json.transition as string;
  }
  const history = await call(app, "GET", "/v1/manifests");
  expect(history.json.generation).toBe(generations);
  return { store, recover: await recoverBody(first.json.seedShares as SeedShareDocument, owners.seed.keys.privateKey), history: history.text, rootCA, latest };
}

/** Recovers a fresh Coordinator on `store` and returns the store reads the recovery made (`kind` of each key, sorted) and the app. */
async function recoverCounting(store: Store, recover: Built["recover"]): Promise<{ reads: string[]; app: Hono; coordinator: Coordinator }> {
  const counting = failingStore(store);
  const { app, coordinator } = await start(counting);
  counting.disarm(); // resets the counters: only the recovery's reads are counted
  const r = await call(app, "POST", "/v1/recover", recover);
  expect(r.status, r.text).toBe(200);
  const reads = counting.ops.filter((o) => !o.write).map((o) => o.key.slice(0, o.key.indexOf(":")));
  expect(counting.ops.filter((o) => o.write)).toEqual([]);
  counting.disarm();
  return { reads: reads.sort(), app, coordinator };
}

/** How many segments the index of the head stored in `store` has. */
async function segmentCount(store: Store): Promise<number> {
  return (await readIndex(store, parseHead((await store.get(headKey))!, headKey))).index.length;
}

let owners: Owners;
let short: Built;
let long: Built;
const longHistory = 200;

beforeAll(async () => {
  const [seed, workload] = await Promise.all([seedShareOwner(), workloadOwner()]);
  owners = { seed, workload };
  [short, long] = [await build(owners, 1), await build(owners, longHistory)];
}, 120_000);

describe("the store reads of a recovery", () => {
  it(`are the same at history 1 and ${longHistory} but for one read per index segment: the head, its index, the CA objects, the sealed key and the active state`, async () => {
    const one = await recoverCounting(short.store, short.recover);
    const many = await recoverCounting(long.store, long.recover);
    const segments = await segmentCount(long.store);
    process.stdout.write(`\nrecovery store reads: history 1: ${one.reads.length} (${one.reads.join(" ")}); history ${longHistory}: ${many.reads.length} (${segments} index segments)\n`);
    expect(one.reads).toEqual(["certificates", "certificates", "certificates", "certificates", "heads", "histories", "keys", "manifests", "policies", "policies", "transitions"]);
    // no manifest, transition or policy beyond the newest one's: only the index segments add reads
    expect(many.reads.filter((k) => k !== "histories")).toEqual(one.reads.filter((k) => k !== "histories"));
    expect(many.reads.filter((k) => k === "histories")).toHaveLength(segments);
    expect(segments).toBeGreaterThan(1);
    expect(segments).toBeLessThanOrEqual(Math.ceil(longHistory / 2048) + 1);
    expect(many.reads).toHaveLength(one.reads.length - 1 + segments);
    // and the recovered Coordinators serve exactly the history they served before
    expect((await call(one.app, "GET", "/v1/manifests")).text).toBe(short.history);
    expect((await call(many.app, "GET", "/v1/manifests")).text).toBe(long.history);
    expect(await many.coordinator.audit()).toEqual({ kind: "ok" });
  });
});

describe("a head written before the index existed", () => {
  it("recovers by reading the whole history, and the next set writes the index: from then on a recovery reads the fixed set plus one read per index segment", async () => {
    // The long history's head, signed again without the index (as the earlier version wrote it).
    const store = createStore(memoryDriver());
    for (const kind of ["policies", "manifests", "transitions", "certificates", "keys", "seedshares", "histories", "heads"]) {
      for (const key of await long.store.keys(kind)) await store.put(key, (await long.store.get(key))!);
    }
    const stored = (await store.getVersioned(headKey))!;
    const signed = parseHead(stored.value, headKey);
    const { history: _index, ...objects } = signed.objects;
    expect(_index).toBeDefined();
    const recoverySeed = await combineShares([fromBase64(long.recover.share)]);
    const root = (await openRootSeed(recoverySeed, fromHex(long.recover.salt), signed.recovery.sealedRootSeed, name))!;
    const engine = await SeedEngine.create(root.seed, root.salt);
    const old = await signHead({ ...signed, objects }, engine.transactionSigningKey.privateKey);
    await store.compareAndSwap(headKey, old.bytes, stored.version);
    expect(JSON.parse(new TextDecoder().decode(old.bytes)).objects).not.toHaveProperty("history");

    const walked = await recoverCounting(store, long.recover);
    const indexed = await recoverCounting(long.store, long.recover);
    // the walk reads every transition, manifest and policy
    expect(walked.reads.filter((k) => k === "transitions")).toHaveLength(longHistory);
    expect(walked.reads.filter((k) => k === "manifests").length).toBeGreaterThanOrEqual(longHistory);
    expect(walked.reads).not.toContain("histories");
    const served = JSON.parse((await call(walked.app, "GET", "/v1/manifests")).text) as Record<string, unknown>;
    const before = JSON.parse(long.history) as Record<string, unknown>;
    expect({ ...served, head: null }).toEqual({ ...before, head: null });
    expect(served.head).toBe(toBase64(old.bytes));

    // The next set writes the index of the whole history, and the head names it.
    const rev = await revision(owners, longHistory);
    const update = await call(walked.app, "POST", "/v1/manifest", await updateBody(rev.manifest, rev.policies, long.latest, owners.workload, { name, rootCA: long.rootCA }));
    expect(update.status, update.text).toBe(200);
    const head = parseHead((await store.get(headKey))!, headKey);
    expect(head.generation).toBe(longHistory + 1);
    expect(head.objects.history).toMatch(/^[0-9a-f]{64}$/);
    const after = await call(walked.app, "GET", "/v1/manifests");
    const again = await recoverCounting(store, long.recover);
    // the fixed set plus one read per segment of the index written at once (full segments: one here)
    expect(again.reads.filter((k) => k !== "histories")).toEqual(indexed.reads.filter((k) => k !== "histories"));
    expect(again.reads.filter((k) => k === "histories")).toHaveLength(await segmentCount(store));
    expect(await segmentCount(store)).toBe(Math.ceil((longHistory + 1) / 2048));
    expect((await call(again.app, "GET", "/v1/manifests")).text).toBe(after.text);
  });
});

describe("an index of several segments", () => {
  const limits = { entries: 4, bytes: 512 * 1024, tail: 2 };

  /** Sets ten manifests through setManifest with segments of four entries and tails of two; returns each ready state. */
  async function tenGenerations(store: Store): Promise<Ready[]> {
    const env = (): SetEnvironment => ({ store, name, now: new Date(), indexLimits: limits });
    const rev0 = await revision(owners, 0);
    const states: Ready[] = [];
    let { ready, result } = await setManifest(env(), null, { manifest: rev0.manifest, policies: () => rev0.policies });
    states.push(ready);
    for (let i = 1; i < 10; i++) {
      const rev = await revision(owners, i);
      const body = await updateBody(rev.manifest, rev.policies, ready.head.latestTransition, owners.workload, { name, rootCA: result.rootCA });
      const signature = body.signature as { publicKey: string; value: string };
      const input: SetManifestInput = {
        manifest: rev.manifest,
        policies: () => rev.policies,
        previousTransition: ready.head.latestTransition,
        signature: { publicKey: fromBase64(signature.publicKey), value: fromBase64(signature.value) },
      };
      ({ ready, result } = await setManifest(env(), ready, input));
      states.push(ready);
    }
    return states;
  }

  async function load(store: Store, engine: SeedEngine): Promise<Ready> {
    const stored = (await store.get(headKey))!;
    return loadReady(store, engine, parseHead(stored, headKey), stored, await contentVersion(stored), headKey);
  }

  it("recovery reads each segment once and verifies the whole chain; a damaged sealed segment is named at recovery and by the audit", async () => {
    const store = createStore(memoryDriver());
    const states = await tenGenerations(store);
    const last = states[states.length - 1]!;
    // each set rewrites the tail of two, merges a full one into the segment before it, or starts a new one
    expect(states.map((s) => s.index!.map((r) => r.count))).toEqual([[1], [2], [2, 1], [2, 2], [4, 1], [4, 2], [4, 2, 1], [4, 2, 2], [4, 4, 1], [4, 4, 2]]);
    expect(last.index!.map((s) => [s.first, s.count])).toEqual([
      [1, 4],
      [5, 4],
      [9, 2],
    ]);
    const counting = failingStore(store);
    const loaded = await load(counting, last.engine);
    expect(loaded.history).toEqual(last.history);
    expect(loaded.index).toEqual(last.index);
    expect(counting.ops.filter((o) => o.key.startsWith("histories:")).map((o) => o.key)).toEqual(
      [...last.index!].reverse().map((s) => `histories:${s.hash}`),
    );
    expect(await auditObjects(store, loaded)).toEqual({ kind: "ok" });

    const sealed = `histories:${last.index![0]!.hash}`;
    const original = (await store.get(sealed))!;
    await store.put(sealed, original.subarray(0, original.length - 2));
    const err = await load(store, last.engine).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(err).toMatchObject({ code: "STATE_CORRUPT", key: sealed });
    expect(await auditObjects(store, loaded)).toMatchObject({ kind: "damaged", damage: { key: sealed } });
    await store.put(sealed, original);
    expect((await load(store, last.engine)).history).toEqual(last.history);
  });
  it("the audit after each set re-reads the segments that set wrote (the merged one too) and a fixed count of objects at every length", async () => {
    const store = createStore(memoryDriver());
    const states = await tenGenerations(store);
    const counting = failingStore(store);
    const fixed = new Set<number>();
    for (const [i, state] of states.entries()) {
      counting.disarm();
      expect(await auditObjects(counting, state, "newest")).toEqual({ kind: "ok" });
      const reads = counting.ops.map((o) => o.key);
      // A set that started a tail (count 1) may have merged the segment before it: both are re-read.
      const written = state.index!.slice(state.index!.at(-1)!.count === 1 ? -2 : -1);
      expect(reads.filter((k) => k.startsWith("histories:")), `generation ${i + 1}`).toEqual(written.map((s) => `histories:${s.hash}`));
      expect(reads.filter((k) => k.startsWith("manifests:")), `generation ${i + 1}`).toEqual([`manifests:${state.history.at(-1)!.manifest}`]);
      fixed.add(reads.length - written.length);
    }
    expect(fixed.size).toBe(1);
    // The write that merged: generation 5 merged [3,4] into [1,2] and started a tail; the merged segment is new.
    expect(states[4]!.index!.map((r) => r.count)).toEqual([4, 1]);
    expect(states[3]!.index!.map((r) => r.hash)).not.toContain(states[4]!.index![0]!.hash);
  });
});

describe("the audit after a write", () => {
  /** Ten generations through the Coordinator on a counting store; returns them and the index and history the stored head names. */
  async function coordinatorWithTen(): Promise<{ store: Store; counting: FailingStore; coordinator: Coordinator; index: HistoryIndex; history: HistoryEntry[] }> {
    const store = createStore(memoryDriver());
    const counting = failingStore(store);
    const coordinator = await Coordinator.start({ store: counting, name, validators });
    const app = createApp({ coordinator });
    const rev0 = await revision(owners, 0);
    const first = await call(app, "POST", "/v1/manifest", firstSetBody(rev0.manifest, rev0.policies));
    expect(first.status, first.text).toBe(200);
    let latest = first.json.transition as string;
    for (let i = 1; i < 10; i++) {
      const rev = await revision(owners, i);
      const r = await call(app, "POST", "/v1/manifest", await updateBody(rev.manifest, rev.policies, latest, owners.workload, { name, rootCA: first.json.rootCA as string }));
      expect(r.status, r.text).toBe(200);
      latest = r.json.transition as string;
    }
    const { index, entries } = await readIndex(store, parseHead((await store.get(headKey))!, headKey));
    return { store, counting, coordinator, index, history: entries };
  }

  it("re-reads only what the write added; the full audit reads every object and alone clears damage", async () => {
    const { store, counting, coordinator, index, history } = await coordinatorWithTen();
    counting.disarm();
    expect(await coordinator.audit("newest")).toEqual({ kind: "ok" });
    const newest = counting.ops.filter((o) => o.op === "get").map((o) => o.key);
    const last = history[history.length - 1]!;
    // The head's objects, the index's last segment and the newest entry's transition, manifest and policies; then the head.
    expect(newest.filter((k) => k.startsWith("manifests:"))).toEqual([`manifests:${last.manifest}`]);
    expect(newest.filter((k) => k.startsWith("transitions:"))).toEqual([`transitions:${last.transition}`]);
    expect(newest.filter((k) => k.startsWith("policies:")).sort()).toEqual(last.policies.map((p) => `policies:${p}`).sort());
    expect(newest.filter((k) => k.startsWith("histories:"))).toEqual([`histories:${index.at(-1)!.hash}`]);
    expect(newest.length).toBe(6 + 1 + 2 + last.policies.length + 1);

    counting.disarm();
    expect(await coordinator.audit()).toEqual({ kind: "ok" });
    const all = counting.ops.filter((o) => o.op === "get").map((o) => o.key);
    expect(all.filter((k) => k.startsWith("manifests:"))).toHaveLength(10);
    expect(all.filter((k) => k.startsWith("transitions:"))).toHaveLength(10);

    // An older manifest damaged: the write's audit does not read it; the full one finds it, and a
    // later clean `newest` audit leaves the damage recorded (writes stay refused) until a full one clears it.
    const old = `manifests:${history[3]!.manifest}`;
    const original = (await store.get(old))!;
    await store.put(old, original.subarray(1));
    expect(await coordinator.audit("newest")).toEqual({ kind: "ok" });
    expect(coordinator.status().damage).toBeUndefined();
    expect(await coordinator.audit()).toMatchObject({ kind: "damaged", damage: { key: old } });
    expect(await coordinator.audit("newest")).toEqual({ kind: "ok" });
    expect(coordinator.status().damage).toMatchObject({ key: old });
    await store.put(old, original);
    expect(await coordinator.audit()).toEqual({ kind: "ok" });
    expect(coordinator.status().damage).toBeUndefined();

    // The newest manifest damaged: the write's audit finds it.
    const newestKey = `manifests:${last.manifest}`;
    const bytes = (await store.get(newestKey))!;
    await store.put(newestKey, bytes.subarray(1));
    expect(await coordinator.audit("newest")).toMatchObject({ kind: "damaged", damage: { key: newestKey } });
    expect(coordinator.status().damage).toMatchObject({ key: newestKey });
  });
});
