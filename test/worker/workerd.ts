// Test helpers for workerd: the Worker bundle, Miniflare instances over it (with persisted Durable Object storage), and the driver harness reached over dispatchFetch.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll } from "vitest";
import { StoreError } from "../../src/storage/store.js";
import type { CoordinatorDriver, StoreErrorCode } from "../../src/storage/store.js";
import type { HarnessCall } from "./driver-harness.js";
import { ensureBundle } from "../e2e/process.js";

/** The project root, the Worker bundle, and the compatibility date wrangler.toml names. */
export const projectRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const workerBundle = join(projectRoot, "dist", "worker.mjs");
export const compatibilityDate = "2026-04-26";

/** Builds dist/worker.mjs with build.mjs if it is missing or older than a source file. */
export function ensureWorkerBundle(): void {
  ensureBundle(workerBundle);
}

/** A running workerd (through Miniflare) and the lines it logged. */
export interface Workerd {
  mf: Miniflare;
  /** Every line the Workers wrote to stdout or stderr so far. */
  logs: string[];
  /** A request to the first Worker (or the one named `worker`). */
  fetch(path: string, init?: RequestInit, worker?: string): Promise<Response>;
  dispose(): Promise<void>;
}

/** One Coordinator Worker to run: its name, its vars, and whether it gets the Durable Object binding. */
export interface WorkerSpec {
  name: string;
  vars?: Record<string, string>;
  withBinding?: boolean;
}

function collect(lines: string[], stream: NodeJS.ReadableStream): void {
  let rest = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop() ?? "";
    lines.push(...parts.filter((l) => l !== ""));
  });
}

/**
 * Starts Coordinator Workers (dist/worker.mjs) in one workerd, each with the Durable Object binding
 * of wrangler.toml (unless `withBinding` is false) and its vars; the objects' SQLite files live under
 * `persistDir`, which dispose keeps, so a new instance on the same directory finds the same state.
 */
export async function startWorkers(persistDir: string, specs: WorkerSpec[], bundle = workerBundle): Promise<Workerd> {
  const logs: string[] = [];
  const mf = new Miniflare({
    workers: specs.map((spec) => ({
      name: spec.name,
      modules: true,
      scriptPath: bundle,
      modulesRoot: resolve(bundle, ".."),
      compatibilityDate,
      bindings: spec.vars ?? {},
      durableObjects: spec.withBinding === false ? {} : { COORDINATOR: { className: "CoordinatorObject", useSQLite: true } },
    })),
    durableObjectsPersist: persistDir,
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      collect(logs, stdout);
      collect(logs, stderr);
    },
  });
  await mf.ready;
  return {
    mf,
    logs,
    async fetch(path, init, worker) {
      // miniflare types getWorker with workers-types' Fetcher, which this project does not install.
      const target = (await mf.getWorker(worker ?? specs[0]!.name)) as unknown as { fetch(url: string, init?: RequestInit): Promise<Response> };
      return target.fetch(`http://coordinator.test${path}`, init);
    },
    dispose: () => mf.dispose(),
  };
}

/** Starts one Coordinator Worker; see startWorkers. */
export function startWorker(opts: { persistDir: string; vars?: Record<string, string>; withBinding?: boolean }): Promise<Workerd> {
  return startWorkers(opts.persistDir, [{ name: "coordinator", vars: opts.vars ?? {}, withBinding: opts.withBinding ?? true }]);
}

/** Bundles the driver harness (test/worker/driver-harness.ts) for workerd, with the options build.mjs uses for the Worker. */
export async function buildHarness(outfile: string): Promise<void> {
  await build({
    entryPoints: [join(projectRoot, "test", "worker", "driver-harness.ts")],
    outfile,
    bundle: true,
    platform: "neutral",
    format: "esm",
    target: "es2022",
    conditions: ["workerd", "worker", "browser", "import", "default"],
    mainFields: ["module", "main"],
    logLevel: "warning",
  });
}

/** The harness Worker running in workerd, and the loopback URL it answers on. */
export interface Harness {
  mf: Miniflare;
  url: URL;
}

/**
 * Starts the harness Worker in workerd; each instance name is its own Durable Object with its own
 * storage, as SQLite files under `persistDir`.
 */
export async function startHarness(bundle: string, persistDir: string): Promise<Harness> {
  const mf = new Miniflare({
    modules: true,
    scriptPath: bundle,
    modulesRoot: resolve(bundle, ".."),
    compatibilityDate,
    durableObjects: { HARNESS: { className: "DriverHarness", useSQLite: true } },
    durableObjectsPersist: persistDir,
  });
  return { mf, url: await mf.ready };
}

/** Sends one call (with `bytes` as the body) to the harness object `instance` and returns its result (bytes for getItemRaw), rethrowing a StoreError with its code. */
export async function callHarness(
  harness: Harness,
  instance: string,
  call: HarnessCall,
  opts: { chunkSize?: number | undefined; bytes?: Uint8Array } = {},
): Promise<unknown> {
  const headers: Record<string, string> = { "x-call": JSON.stringify(call), "content-type": "application/octet-stream" };
  if (opts.chunkSize !== undefined) headers["x-chunk-size"] = String(opts.chunkSize);
  const res = await fetch(new URL(instance, harness.url), { method: "POST", headers, body: (opts.bytes ?? new Uint8Array(0)) as BodyInit });
  if (res.headers.get("content-type") === "application/octet-stream") return new Uint8Array(await res.arrayBuffer());
  const body = (await res.json()) as { result?: unknown; error?: { name: string; code?: StoreErrorCode; message: string } };
  if (body.error !== undefined) {
    if (body.error.name === "StoreError") throw new StoreError(body.error.code!, body.error.message);
    throw new Error(`in workerd: ${body.error.message}`);
  }
  return body.result;
}

function ifMatchPart(opts: unknown): Pick<HarnessCall, "ifMatch"> {
  if (typeof opts === "object" && opts !== null && "ifMatch" in opts) return { ifMatch: (opts as { ifMatch: string | null }).ifMatch };
  return {};
}

function rawBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "string") return new TextEncoder().encode(value);
  throw new Error(`cannot send a ${typeof value} value to workerd`);
}

/**
 * A CoordinatorDriver on the Node side whose every operation runs inside workerd, in the harness's
 * Durable Object `instance`, against the real Durable Object driver and storage.
 */
export function remoteDriver(harness: Harness, instance: string, chunkSize?: number): CoordinatorDriver {
  const call = (c: HarnessCall, bytes?: Uint8Array) => callHarness(harness, instance, c, bytes === undefined ? { chunkSize } : { chunkSize, bytes });
  return {
    name: "coordinator-durable-object (over dispatchFetch)",
    options: {},
    async hasItem(key) {
      return (await call({ op: "hasItem", key })) as boolean;
    },
    async getItem(key) {
      return (await call({ op: "getItem", key })) as string | null;
    },
    async getItemRaw(key) {
      return (await call({ op: "getItemRaw", key })) as Uint8Array | null;
    },
    async setItem(key, value, opts) {
      await call({ op: "setItem", key, ...ifMatchPart(opts) }, new TextEncoder().encode(value));
    },
    async setItemRaw(key, value, opts) {
      await call({ op: "setItemRaw", key, ...ifMatchPart(opts) }, rawBytes(value));
    },
    async removeItem(key) {
      await call({ op: "removeItem", key });
    },
    async getMeta(key) {
      const meta = (await call({ op: "getMeta", key })) as { size: number; mtime: string | null } | null;
      return meta === null ? null : { size: meta.size, ...(meta.mtime === null ? {} : { mtime: new Date(meta.mtime) }) };
    },
    async getKeys(base) {
      return (await call({ op: "getKeys", base })) as string[];
    },
    async clear(base) {
      await call({ op: "clear", base });
    },
  };
}

/**
 * Registers beforeAll/afterAll that bundle the harness and start it on SQLite files in a temp
 * directory (removed afterwards); returns the running harness and a fresh-instance counter.
 */
export function useHarness(label: string): { harness: () => Harness; nextInstance: () => string } {
  let work: string | undefined;
  let running: Harness | undefined;
  let count = 0;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), `coordinator-workerd-${label}-`));
    const bundle = join(work, "harness.mjs");
    await buildHarness(bundle);
    running = await startHarness(bundle, join(work, "do"));
  });
  afterAll(async () => {
    await running?.mf.dispose();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });
  return { harness: () => running!, nextInstance: () => `${label}-${++count}` };
}
