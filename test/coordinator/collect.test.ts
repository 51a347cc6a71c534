// Collection of unreferenced objects on the fs store: what crashed and superseded sets left goes, recovery stays byte-identical, and an object a set in another Coordinator is about to reference survives.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterAll, describe, expect, it } from "vitest";
import { fsDriver } from "../../adapters/node/fs-driver.js";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { kinds, putObject } from "../../src/history/objects.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { firstSetBody, manifestBytes, policy, post, recoverBody, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";

const name = "alpha";
const validators = new Map([["insecure-simulated", simulatedValidator]]);
const hour = 3600_000;
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "coordinator-collect-"));
  dirs.push(dir);
  return dir;
}

async function call(app: Hono, method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; text: string; json: Record<string, unknown> }> {
  const res = await app.request(path, method === "POST" ? post(body) : { method });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as Record<string, unknown> };
}

async function start(store: Store): Promise<{ coordinator: Coordinator; app: Hono }> {
  const coordinator = await Coordinator.start({ store, name, validators, collect: false });
  return { coordinator, app: createApp({ coordinator }) };
}

const [seedOwner, owner] = await Promise.all([seedShareOwner(), workloadOwner()]);
const common = { workloadOwners: [owner.digest], seedShareOwners: [seedOwner.publicHex] };

/** Revision `i`: a manifest with a policy of its own and one shared by all. */
async function revision(i: number): Promise<{ manifest: Uint8Array; policies: Uint8Array[] }> {
  const [shared, own] = await Promise.all([policy("shared policy\n"), policy(`policy of revision ${i}\n`)]);
  return { manifest: manifestBytes({ ...common, policies: [{ ...shared, name: "shared" }, { ...own, name: `own-${i}` }] }), policies: [shared.bytes, own.bytes] };
}

/** Sets revision 1, then updates to revisions 2..n; returns the seed-share document and the latest transition. */
async function setUp(app: Hono, n: number): Promise<{ seedShares: SeedShareDocument; latest: string; rootCA: string }> {
  const first = await revision(1);
  const set = await call(app, "POST", "/v1/manifest", firstSetBody(first.manifest, first.policies));
  expect(set.status, set.text).toBe(200);
  let latest = set.json.transition as string;
  const rootCA = set.json.rootCA as string;
  for (let i = 2; i <= n; i++) {
    const rev = await revision(i);
    const update = await call(app, "POST", "/v1/manifest", await updateBody(rev.manifest, rev.policies, latest, owner, { name, rootCA }));
    expect(update.status, update.text).toBe(200);
    latest = update.json.transition as string;
  }
  return { seedShares: set.json.seedShares as SeedShareDocument, latest, rootCA };
}

async function filesOf(base: string, kind: string): Promise<string[]> {
  return (await readdir(join(base, kind)).catch(() => [] as string[])).filter((n) => !n.startsWith(".")).sort();
}

describe("collecting unreferenced objects on the fs store", () => {
  it("deletes what a crashed set and superseded sets left, keeps every referenced object, and a restart recovers the same history", async () => {
    const base = await tempDir();
    const store = createStore(fsDriver({ base }));
    const { coordinator, app } = await start(store);
    const { seedShares } = await setUp(app, 5);
    // A set that died before its head: its policy, manifest, certificate and sealed key stay behind.
    const orphanPolicy = await putObject(store, kinds.policy, new TextEncoder().encode("policy of a set that crashed\n"));
    const orphanManifest = await putObject(store, kinds.manifest, new TextEncoder().encode("{}"));
    const orphanKey = await putObject(store, kinds.sealedKey, new Uint8Array(64).fill(7));
    const before = await call(app, "GET", "/v1/manifests");
    expect(before.status).toBe(200);
    const certificatesBefore = (await filesOf(base, "certificates")).length;

    // Nothing is younger than the grace period yet: nothing moves.
    expect(await coordinator.collect()).toMatchObject({ kind: "collected", report: { trashed: 0, purged: 0 } });
    const aside = await coordinator.collect({ now: Date.now() + 2 * hour });
    expect(aside).toMatchObject({ kind: "collected", report: { purged: 0 } });
    const trashed = aside.kind === "collected" ? aside.report.trashed : 0;
    // The orphans, and the mesh CA certificate, intermediate and sealed key of each of the 4 earlier heads.
    expect(trashed).toBeGreaterThanOrEqual(3 + 4 * 3);
    const gone = await coordinator.collect({ now: Date.now() + 4 * hour });
    expect(gone).toMatchObject({ kind: "collected", report: { purged: trashed, inTrash: 0, restored: 0 } });

    for (const [kind, hash] of [
      ["policies", orphanPolicy],
      ["manifests", orphanManifest],
      ["keys", orphanKey],
    ] as const) {
      expect(existsSync(join(base, kind, hash))).toBe(false);
      expect(existsSync(join(base, kind, ".trash", hash))).toBe(false);
    }
    expect(await filesOf(base, "certificates")).toHaveLength(certificatesBefore - 8);
    expect(await filesOf(base, "certificates")).toHaveLength(4);
    expect(await filesOf(base, "keys")).toHaveLength(1);
    expect(await filesOf(base, "manifests")).toHaveLength(5);
    expect(await filesOf(base, "transitions")).toHaveLength(5);
    expect(await filesOf(base, "policies")).toHaveLength(6);
    expect(await readdir(join(base, "heads", `${name}@v`, "chain"))).toHaveLength(1);
    expect((await call(app, "GET", "/v1/manifests")).text).toBe(before.text);

    // A restart: recovery reads only what was kept, and serves the same history.
    const restarted = await start(createStore(fsDriver({ base })));
    const recovered = await call(restarted.app, "POST", "/v1/recover", await recoverBody(seedShares, seedOwner.keys.privateKey));
    expect(recovered.status, recovered.text).toBe(200);
    expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe(before.text);
    expect(await restarted.coordinator.audit()).toEqual({ kind: "ok" });
  });

  it("keeps an old orphan that a set in another Coordinator found stored and is about to reference: set aside while that set holds, put back once its head landed", async () => {
    const base = await tempDir();
    let hold: { reached: () => void; go: Promise<void> } | null = null;
    const storeA = createStore(
      fsDriver({
        base,
        beforeCommit: async () => {
          if (hold === null) return;
          hold.reached();
          await hold.go;
        },
      }),
    );
    const a = await start(storeA);
    const { seedShares, latest, rootCA } = await setUp(a.app, 1);
    // Coordinator B on the same directory (as another process would be), recovered to the same head.
    const storeB = createStore(fsDriver({ base }));
    const b = await start(storeB);
    expect((await call(b.app, "POST", "/v1/recover", await recoverBody(seedShares, seedOwner.keys.privateKey))).status).toBe(200);

    // Long ago, a set of revision 2 died before its head: its manifest and policies are stored, three hours old.
    const rev = await revision(2);
    const manifestHash = await putObject(storeA, kinds.manifest, rev.manifest);
    const policyHashes = await Promise.all(rev.policies.map((p) => putObject(storeA, kinds.policy, p)));
    const old = new Date(Date.now() - 3 * hour);
    for (const path of [join(base, "manifests", manifestHash), ...policyHashes.map((h) => join(base, "policies", h))]) await utimes(path, old, old);

    // A sets revision 2 again: it finds both objects stored, writes the rest, and is held right before its head's claim.
    let reached: () => void = () => undefined;
    let go: () => void = () => undefined;
    const atHead = new Promise<void>((resolve) => (reached = resolve));
    hold = { reached: () => reached(), go: new Promise<void>((resolve) => (go = resolve)) };
    const update = call(a.app, "POST", "/v1/manifest", await updateBody(rev.manifest, rev.policies, latest, owner, { name, rootCA }));
    await atHead;

    // Meanwhile B collects: the head it holds is the stored one, which does not reference them, and they are old.
    const collected = await b.coordinator.collect({ graceMs: hour });
    expect(collected).toMatchObject({ kind: "collected" });
    expect(existsSync(join(base, "manifests", manifestHash))).toBe(false);
    expect(existsSync(join(base, "manifests", ".trash", manifestHash))).toBe(true);

    go();
    hold = null;
    const answer = await update;
    expect(answer.status, answer.text).toBe(200);
    expect(answer.json.generation).toBe(2);
    // B holds an older head now: it collects nothing.
    expect(await b.coordinator.collect({ now: Date.now() + 2 * hour })).toEqual({ kind: "skipped", reason: "behind" });
    // A, holding the stored head, puts back what it references instead of deleting it.
    // Aside: the manifest and revision 2's own policy (the shared one, referenced by generation 1, never was).
    const aside = policyHashes.filter((h) => existsSync(join(base, "policies", ".trash", h)));
    expect(aside).toHaveLength(1);
    const put = await a.coordinator.collect({ now: Date.now() + 2 * hour });
    expect(put).toMatchObject({ kind: "collected", report: { restored: 2, purged: 0 } });
    expect(existsSync(join(base, "manifests", manifestHash))).toBe(true);
    await a.coordinator.collect({ now: Date.now() + 4 * hour });
    for (const hash of policyHashes) expect(existsSync(join(base, "policies", hash))).toBe(true);

    const restarted = await start(createStore(fsDriver({ base })));
    expect((await call(restarted.app, "POST", "/v1/recover", await recoverBody(seedShares, seedOwner.keys.privateKey))).status).toBe(200);
    expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe((await call(a.app, "GET", "/v1/manifests")).text);
    expect(await restarted.coordinator.audit()).toEqual({ kind: "ok" });
  });
});
