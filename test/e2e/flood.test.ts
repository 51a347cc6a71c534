// Attack over a real process: 100 anonymous POST /v1/manifest bodies near 32 MiB at once must neither exhaust memory nor change state.
import "reflect-metadata";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstSetBody, manifestBytes, policy, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";
import { flood, floodBody, floodPolicies, floodShape, memoryMiB, tally } from "./flood.js";
import type { FloodOutcome, FloodPolicies } from "./flood.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

/** The memory limit of deploy/coordinator.yaml, in MiB. */
const deployMemoryLimitMiB = 512;

type Json = Record<string, unknown>;

async function getText(base: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(base + path);
  return { status: res.status, text: await res.text() };
}

async function postJson(base: string, path: string, payload: unknown): Promise<{ status: number; body: Json; text: string }> {
  const res = await fetch(base + path, { method: "POST", body: JSON.stringify(payload), headers: { "content-type": "application/json" } });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text };
}

/** Every file under `dir` with its size: what the fs store holds (empty if the directory does not exist yet). */
function storeFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    let entries;
    try {
      entries = readdirSync(at, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(`${relative(dir, path)} ${statSync(path).size}`);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Every outcome is a refusal: an answer with one of `codes` (at its status), 503 BUSY with a Retry-After,
 * or a connection the server closed before it read the whole body.
 */
function expectAllRefused(outcomes: FloodOutcome[], codes: Record<string, number>): void {
  const summary = JSON.stringify(tally(outcomes));
  expect(outcomes).toHaveLength(floodShape.requests);
  for (const o of outcomes) {
    if (o.kind === "refused") {
      expect(["EPIPE", "ECONNRESET"], summary).toContain(o.error);
    } else if (o.code === "BUSY") {
      expect(o.status, summary).toBe(503);
      expect(o.retryAfter, summary).toMatch(/^[1-9]\d*$/);
    } else {
      expect(Object.keys(codes), summary).toContain(o.code);
      expect(o.status, summary).toBe(codes[o.code!]);
    }
  }
  // The admission control was what held: some requests were turned away without being read.
  expect(outcomes.filter((o) => o.kind === "refused" || o.code === "BUSY").length, summary).toBeGreaterThan(0);
}

describe("a flood of large anonymous manifest requests (real process, fs store)", () => {
  let work: string;
  let shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
  let owner: Awaited<ReturnType<typeof workloadOwner>>;
  let small: Awaited<ReturnType<typeof policy>>;
  let policies: FloodPolicies;

  const owners = () => ({ workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] });
  const smallManifest = () => manifestBytes({ policies: [{ hash: small.hash, name: "web" }], ...owners() });

  /** A fresh Coordinator on its own fs store: each flood is measured on a process of its own. */
  async function start(label: string): Promise<{ proc: CoordinatorProcess; stateDir: string }> {
    const stateDir = join(work, label);
    return { proc: await startCoordinator({ store: `fs:${stateDir}` }), stateDir };
  }

  /** The process is still running and answers. */
  async function expectAlive(proc: CoordinatorProcess): Promise<void> {
    const health = await getText(proc.url, "/healthz").catch((err: unknown) => ({ status: 0, text: String(err) }));
    expect(proc.child.exitCode, proc.stderr()).toBeNull();
    expect(proc.child.signalCode, proc.stderr()).toBeNull();
    expect(health.status, `${health.text}; stderr: ${proc.stderr().slice(-2000)}`).toBe(200);
  }

  /** What an observer can see: the status, the history answer, the store's files. */
  async function observe(proc: CoordinatorProcess, stateDir: string): Promise<{ status: string; manifests: { status: number; text: string }; files: string[] }> {
    return { status: (await getText(proc.url, "/v1/status")).text, manifests: await getText(proc.url, "/v1/manifests"), files: storeFiles(stateDir) };
  }

  beforeAll(async () => {
    ensureBundle();
    work = mkdtempSync(join(tmpdir(), "coordinator-flood-"));
    [shareOwner, owner, small, policies] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy of the one real workload\n"), floodPolicies()]);
  });

  afterAll(async () => {
    await killAll();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it("uninitialized: 100 invalid 32 MiB bodies at once are refused within the memory limit, and a first set then succeeds", async () => {
    const { proc, stateDir } = await start("uninitialized");
    const body = floodBody(policies, { ...owners(), referenced: "all-but-last" });
    expect(body.length).toBeGreaterThan(30 * 1024 * 1024);
    const before = await observe(proc, stateDir);
    expect(JSON.parse(before.status).state).toBe("uninitialized");

    const outcomes = await flood(proc.url, body, { chunked: "half" });

    await expectAlive(proc);
    expectAllRefused(outcomes, { POLICY_NOT_REFERENCED: 400 });
    expect(memoryMiB(proc.child.pid!)).toBeLessThan(deployMemoryLimitMiB);
    expect(await observe(proc, stateDir)).toEqual(before);

    const first = await postJson(proc.url, "/v1/manifest", firstSetBody(smallManifest(), [small.bytes]));
    expect(first.status, first.text).toBe(200);
    expect(first.body.generation).toBe(1);
    await proc.stop("SIGKILL");
  }, 120_000);

  it("ready: 100 unsigned 32 MiB updates at once are refused within the memory limit, change nothing, and a signed update then succeeds", async () => {
    const { proc, stateDir } = await start("ready");
    const first = await postJson(proc.url, "/v1/manifest", firstSetBody(smallManifest(), [small.bytes]));
    expect(first.status, first.text).toBe(200);
    const transition = first.body.transition as string;
    const ref: CoordinatorRef = { name: "coordinator", rootCA: first.body.rootCA as string };
    // A well-formed update on the right base: only the missing workload-owner signature keeps it out.
    const body = floodBody(policies, { ...owners(), referenced: "all", extra: { previousTransition: transition } });
    const before = await observe(proc, stateDir);
    expect(JSON.parse(before.status)).toMatchObject({ state: "ready", generation: 1 });

    const outcomes = await flood(proc.url, body, { chunked: "half" });

    await expectAlive(proc);
    expectAllRefused(outcomes, { UNAUTHORIZED_UPDATE: 403 });
    expect(memoryMiB(proc.child.pid!)).toBeLessThan(deployMemoryLimitMiB);
    expect(await observe(proc, stateDir)).toEqual(before);

    const manifest = manifestBytes({ policies: [{ hash: small.hash, name: "web" }, { hash: policies.hashes[0]!, name: "w0" }], ...owners() });
    const update = await postJson(proc.url, "/v1/manifest", await updateBody(manifest, [small.bytes, policies.bytes[0]!], transition, owner, ref));
    expect(update.status, update.text).toBe(200);
    expect(update.body.generation).toBe(2);
    await proc.stop("SIGKILL");
  }, 120_000);
});
