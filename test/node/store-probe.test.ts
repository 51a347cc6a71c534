// A store that can never work stops the start (exit 2, one line), one that breaks while running answers 503 STORE_UNAVAILABLE instead of spinning, and the start-up probe leaves nothing behind.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { fsDriver } from "../../adapters/node/fs-driver.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore, probeStore, StoreError, type CoordinatorDriver } from "../../src/storage/store.js";
import { firstSetBody, manifestBytes, policy, seedShareOwner, workloadOwner } from "../helpers.js";
import { ensureBundle, killAll, runBundle, startCoordinator } from "../e2e/process.js";

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

// Made while the tests are collected: the parametrized cases below name paths inside it.
const work = mkdtempSync(join(tmpdir(), "contrast-store-probe-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Paths that can never hold a store, even for root: mkdir(2) answers ENOENT or ENOTDIR however often it is asked. */
function makeUnusablePaths(): { label: string; dir: string }[] {
  const file = join(work, "a-regular-file");
  writeFileSync(file, "not a directory");
  const dangling = join(work, "dangling");
  rmSync(dangling, { force: true });
  symlinkSync(join(work, "nothing-here"), dangling);
  const intoProc = join(work, "into-proc");
  rmSync(intoProc, { force: true });
  symlinkSync("/proc/nope", intoProc);
  return [
    { label: "a directory under /proc", dir: "/proc/nope" },
    { label: "a deeper path under /proc", dir: "/proc/nope/deeper/still" },
    { label: "a regular file", dir: file },
    { label: "a path under a dangling symlink", dir: join(dangling, "state") },
    { label: "a symlink into /proc", dir: intoProc },
  ];
}

const unusable = makeUnusablePaths();

describe("fs driver: a path that cannot hold directories fails at once", () => {
  // Node's mkdir({ recursive: true }) loops forever on these (ENOENT although the parent exists);
  // were that still used, these calls would never settle and the test would time out.
  it.each(unusable)("$label: writes and compare-and-swap are UNAVAILABLE", async ({ dir }) => {
    const store = createStore(fsDriver({ base: dir }));
    await expect(store.put("policies:x", text("x"))).rejects.toMatchObject({ name: "StoreError", code: "UNAVAILABLE" });
    await expect(store.compareAndSwap("heads:x", text("x"), null)).rejects.toMatchObject({ name: "StoreError", code: "UNAVAILABLE" });
    await expect(probeStore(store, "coordinator")).rejects.toMatchObject({ name: "StoreError", code: "UNAVAILABLE" });
  });
});

describe("probeStore", () => {
  it("passes on a working store and leaves no key behind", async () => {
    const driver = memoryDriver();
    const store = createStore(driver);
    await store.put("policies:kept", text("data"));
    await probeStore(store, "coordinator");
    expect(await driver.getKeys!("", {})).toEqual(["policies:kept"]);
  });

  it("on an fs store, leaves only an empty probes/ directory and touches no other key", async () => {
    const base = join(work, "probed");
    const store = createStore(fsDriver({ base }));
    await store.put("policies:kept", text("data"));
    await probeStore(store, "one");
    await probeStore(store, "two");
    expect(readdirSync(base).sort()).toEqual(["policies", "probes"]);
    expect(readdirSync(join(base, "probes"))).toEqual([]);
    expect(readdirSync(join(base, "policies"))).toEqual(["kept"]);
  });

  it("reports a store that loses what it was given as UNAVAILABLE", async () => {
    const inner = memoryDriver();
    const forgetful: CoordinatorDriver = { ...inner, setItemRaw: async () => undefined };
    const err = await probeStore(createStore(forgetful), "coordinator").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe("UNAVAILABLE");
  });
});

describe("the Coordinator process on a store that can never work", () => {
  beforeAll(() => ensureBundle());
  afterEach(() => killAll());

  it.each(unusable)("$label: exits 2 with one error line and never listens", async ({ dir }) => {
    // runBundle kills the process and fails the test if it does not exit by itself.
    const result = await runBundle(["--port", "0", "--host", "127.0.0.1", "--store", `fs:${dir}`], { cwd: work, timeoutMs: 20_000 });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^contrast-coordinator: error: the store fs:\S+ cannot be used: [^\n]+\n$/);
    expect(result.stdout).not.toContain("listening");
  });

  it("starts on a fresh directory, and the probe leaves only an empty probes/ directory", async () => {
    const dir = join(work, "fresh");
    const proc = await startCoordinator({ store: `fs:${dir}`, cwd: work });
    expect(readdirSync(dir)).toEqual(["probes"]);
    expect(readdirSync(join(dir, "probes"))).toEqual([]);
    expect(await proc.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});

describe("a store that stops working while the Coordinator runs", () => {
  let body: Record<string, unknown>;

  beforeAll(async () => {
    ensureBundle();
    const [shareOwner, owner, pol] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy: the store test\n")]);
    const manifest = manifestBytes({ policies: [{ hash: pol.hash, name: "web" }], workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] });
    body = firstSetBody(manifest, [pol.bytes]);
  }, 120_000);
  afterEach(() => killAll());

  async function post(url: string): Promise<{ status: number; code: unknown }> {
    // A hang fails the test through the abort instead of stalling the run.
    const res = await fetch(`${url}/v1/manifest`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const json = (await res.json()) as { error?: { code?: unknown } };
    return { status: res.status, code: json.error?.code };
  }

  async function status(url: string): Promise<{ state: unknown; generation: unknown }> {
    const json = (await (await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(30_000) })).json()) as Record<string, unknown>;
    return { state: json.state, generation: json.generation };
  }

  const breakages: { label: string; breakIt: (dir: string) => void }[] = [
    { label: "the directory replaced by a regular file", breakIt: (dir) => writeFileSync(dir, "not a directory") },
    { label: "the directory replaced by a symlink into /proc", breakIt: (dir) => symlinkSync("/proc/nope", dir) },
  ];

  it.each(breakages)("$label: the first set answers 503 STORE_UNAVAILABLE, changes nothing, and works once repaired", async ({ label, breakIt }) => {
    const dir = join(work, `running-${label.replace(/\W+/g, "-")}`);
    const proc = await startCoordinator({ store: `fs:${dir}`, cwd: work });
    const before = await status(proc.url);
    expect(before.state).toBe("uninitialized");

    rmSync(dir, { recursive: true, force: true });
    breakIt(dir);
    expect(await post(proc.url)).toEqual({ status: 503, code: "STORE_UNAVAILABLE" });
    expect(await status(proc.url)).toEqual(before);

    // Repaired: the same request now succeeds, so the failure left nothing half-done behind.
    rmSync(dir, { force: true });
    mkdirSync(dir);
    expect((await post(proc.url)).status).toBe(200);
    expect((await status(proc.url)).state).toBe("ready");
    expect(await proc.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});
