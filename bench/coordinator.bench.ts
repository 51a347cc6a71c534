// Benchmark of the built Coordinator (dist/coordinator.mjs) in its own process: raw signing, mesh issuance, set/recover, startup, size, flood memory.
//
// Run with `npm run bench` (builds first). `BENCH_QUICK=1` (or `--quick`) shrinks the history to 100 and the
// timed phases to about 1 s. `BENCH_CPU_PROF=<dir>` runs the first server (first set and mesh issuance) under
// `node --cpu-prof` and leaves the profile in <dir>; `BENCH_BUNDLE=<file>` benchmarks another build (e.g. an
// unminified one, `BUILD_OUT=<dir> BUILD_MINIFY=0 node build.mjs`, whose profile has readable names).
// `BENCH_CLIENT=fetch` loads the mesh issuance with fetch instead of node:http (the default; it costs the bench
// process a third of what fetch does per request, on a machine the server shares). `BENCH_ONLY=flood` runs only
// the flood of large manifest requests (its peak RSS); `BENCH_ONLY=attestation` only the SEV-SNP and TDX evidence
// verifications against raw P-384 verifies (in process, with a test TEE's roots pinned); `BENCH_ONLY=speed` only
// raw signing against mesh issuance and the start to listening against a bare Node HTTP server. The full run also
// measures three replicas (bench/replicas.ts: kill -9 to ready through peer recovery, issuance over 1–3 replicas)
// and the fs store after 1,000 updates (bench/store-growth.ts). Only loopback
// addresses are used.
import "reflect-metadata";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { gzipSync } from "node:zlib";
import type { SeedShareDocument } from "../src/crypto/seedshares.js";
import { firstSetBody, manifestBytes, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../test/helpers.js";
import type { CoordinatorRef } from "../test/helpers.js";
import { flood, floodBody, floodPolicies, floodShape, memoryMiB, tally } from "../test/e2e/flood.js";
import { createTestTee, makeSnpEvidence, makeTdxEvidence, teeFiles, testReferenceValues } from "../test/attestation/make-evidence.js";
import { parseAttestationRoots } from "../src/attestation/modes.js";
import { expectedReportData } from "../src/attestation/report-data.js";
import { verifySnpAttestation } from "../src/attestation/snp/verify.js";
import { verifyTdxQuote } from "../src/attestation/tdx/verify.js";
import { keepAlivePoster } from "./http-client.js";
import { measureReplicas, replicasLines } from "./replicas.js";
import { measureStoreGrowth, storeGrowthLines } from "./store-growth.js";
import { checkReferenceValues as checkTdxReferenceValues } from "../src/attestation/tdx/reference-values.js";
import { fromBase64, fromHex, toHex } from "../src/encoding.js";

const quick = process.env.BENCH_QUICK === "1" || process.argv.includes("--quick");
const floodOnly = process.env.BENCH_ONLY === "flood";
const attestationOnly = process.env.BENCH_ONLY === "attestation";
const speedOnly = process.env.BENCH_ONLY === "speed";
const cpuProfDir = process.env.BENCH_CPU_PROF;

/** Sizes and durations of every phase; every loop below is bounded by these, in count and in time. */
const cfg = {
  rawLevels: [1, 2, 4, 8, 16],
  rawWarmupMs: quick ? 300 : 1_000,
  rawProbeMs: quick ? 250 : 1_000,
  rawMs: quick ? 1_000 : 3_000,
  rawMaxSigs: 5_000_000,
  clients: 32,
  warmupMs: quick ? 300 : 1_000,
  issueMs: quick ? 1_000 : 5_000,
  issueMaxRequests: 2_000_000,
  history: quick ? 100 : 1_000,
  setSamples: 20,
  recoverSamples: 5,
  startupSamples: quick ? 5 : 9,
  buildDeadlineMs: 20 * 60_000,
  listenTimeoutMs: 30_000,
  exitTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
};

const bundle = resolve(process.env.BENCH_BUNDLE ?? "dist/coordinator.mjs");
const host = "127.0.0.1";
const children = new Set<ChildProcess>();
const tempDirs: string[] = [];

/** Kills every child still running and removes the temp dirs; safe to call more than once. */
function cleanupSync(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  children.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
process.on("exit", cleanupSync);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal}, cleaning up\n`);
    cleanupSync();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// Small statistics and formatting helpers.

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}
/** Nearest-rank percentile (p in 0..1). */
function percentile(xs: number[], p: number): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}
function median(xs: number[]): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
const ms = (x: number): string => (x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`);
const rate = (x: number): string => `${x.toFixed(0)}/s`;
const say = (line: string): void => void process.stdout.write(line + "\n");

// ---------------------------------------------------------------------------------------------
// The server process.

interface Server {
  child: ChildProcess;
  port: number;
  base: string;
  /** startupMs from the `listening` log line. */
  startupMs: number;
  /** Wall-clock time from spawn to reading the `listening` line. */
  wallMs: number;
  state: string;
  exited: Promise<void>;
}

/** Starts the bundle on a free loopback port over `dir` and waits for its `listening` line. */
async function startServer(dir: string, nodeArgs: string[] = []): Promise<Server> {
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [...nodeArgs, bundle, "--port", "0", "--host", host, "--store", `fs:${dir}`, "--attestation", "insecure-simulated"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  children.add(child);
  const exited = new Promise<void>((done) => child.once("exit", () => (children.delete(child), done())));
  let stderr = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    if (stderr.length < 10_000) stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout! });
  return new Promise<Server>((ok, fail) => {
    let settled = false;
    const finish = (err: Error | null, server?: Server) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) {
        child.kill("SIGKILL");
        fail(err);
      } else ok(server!);
    };
    const timer = setTimeout(() => finish(new Error(`no "listening" line within ${cfg.listenTimeoutMs} ms; stderr: ${stderr}`)), cfg.listenTimeoutMs);
    lines.on("line", (line) => {
      if (settled) return; // keep draining stdout so the child never blocks on a full pipe
      let entry: { msg?: unknown; port?: unknown; startupMs?: unknown; state?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        return;
      }
      if (entry.msg !== "listening") return;
      const wallMs = performance.now() - t0;
      if (typeof entry.port !== "number") return finish(new Error(`listening line without a port: ${line}`));
      finish(null, {
        child,
        port: entry.port,
        base: `http://${host}:${entry.port}`,
        startupMs: typeof entry.startupMs === "number" ? entry.startupMs : NaN,
        wallMs,
        state: String(entry.state),
        exited,
      });
    });
    child.once("exit", (code, signal) => finish(new Error(`the server exited before listening (code ${code}, signal ${signal}); stderr: ${stderr}`)));
  });
}

/** SIGTERM, then SIGKILL if it has not exited in time. */
async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((done) => (timer = setTimeout(() => done("late"), cfg.exitTimeoutMs)));
  if ((await Promise.race([server.exited, late])) === "late") {
    server.child.kill("SIGKILL");
    await server.exited;
  }
  clearTimeout(timer);
}

/** Seconds of CPU (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. */
function processCpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100 on Linux)
  } catch {
    return NaN;
  }
}

async function postJson(url: string, body: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(cfg.requestTimeoutMs),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, json };
}

function expectOk(what: string, r: { status: number; json: unknown }): void {
  if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 500)}`);
}

// ---------------------------------------------------------------------------------------------
// 1. Raw WebCrypto ECDSA P-384/SHA-384 signing.

/** Signatures per second from `concurrency` chains, and the CPU time (all of this process's threads) per signature in ms. */
async function signRate(key: CryptoKey, concurrency: number, durationMs: number): Promise<{ rate: number; count: number; cpuMs: number }> {
  const message = crypto.getRandomValues(new Uint8Array(32));
  let count = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + durationMs;
  const chain = async () => {
    while (performance.now() < deadline && count < cfg.rawMaxSigs) {
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, key, message);
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, chain));
  const cpu = process.cpuUsage(cpu0);
  return { rate: (count * 1000) / (performance.now() - start), count, cpuMs: (cpu.user + cpu.system) / 1000 / count };
}

/** The raw signing figure: the rate at the best concurrency, and its CPU time per signature (ms). */
interface RawSigning {
  rate: number;
  concurrency: number;
  cpuMs: number;
}

async function benchRawSigning(): Promise<RawSigning> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, false, ["sign", "verify"])) as CryptoKeyPair;
  await signRate(keys.privateKey, 4, cfg.rawWarmupMs); // warm-up
  say(`raw ECDSA P-384/SHA-384 signing (32-byte message), probe of ${cfg.rawProbeMs} ms per concurrency:`);
  let best = { rate: 0, concurrency: 1 };
  for (const concurrency of cfg.rawLevels) {
    const r = await signRate(keys.privateKey, concurrency, cfg.rawProbeMs);
    say(`  concurrency ${String(concurrency).padStart(2)}: ${rate(r.rate)}`);
    if (r.rate > best.rate) best = { rate: r.rate, concurrency };
  }
  const final = await signRate(keys.privateKey, best.concurrency, cfg.rawMs);
  say(`  best: concurrency ${best.concurrency}, ${rate(final.rate)} over ${cfg.rawMs} ms (${final.count} signatures), CPU ${final.cpuMs.toFixed(3)} ms a signature`);
  return { rate: final.rate, concurrency: best.concurrency, cpuMs: final.cpuMs };
}

// ---------------------------------------------------------------------------------------------
// 2. Mesh-certificate issuance over HTTP.

interface IssuanceResult {
  rate: number;
  count: number;
  p50: number;
  p99: number;
  errors: number;
  serverCpu: number;
  clientCpu: number;
  elapsedMs: number;
}

/** Which HTTP client the issuance load generator uses: `http` (node:http, a keep-alive agent; the default) or `fetch` (undici). */
const issuanceClient = process.env.BENCH_CLIENT === "fetch" ? "fetch" : "http";

/** One POST of a JSON body; resolves with the status and the answer's text. */
type Post = (body: string) => Promise<{ status: number; text: string }>;

/**
 * A POST to `url` by the chosen client. Both keep their connections alive, `cfg.clients` at most.
 * node:http costs the bench process about a third of what fetch does per request, and on a 2-core
 * machine every cycle the load generator spends is one the server does not get.
 */
function poster(url: string): { post: Post; close(): void } {
  if (issuanceClient === "fetch") {
    return {
      post: async (body) => {
        const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(cfg.requestTimeoutMs) });
        return { status: res.status, text: await res.text() };
      },
      close: () => undefined,
    };
  }
  return keepAlivePoster(url, { clients: cfg.clients, timeoutMs: cfg.requestTimeoutMs });
}

async function runIssuance(server: Server, body: string, durationMs: number): Promise<IssuanceResult> {
  const client = poster(`${server.base}/v1/mesh/certificate`);
  const latencies: number[] = [];
  let errors = 0;
  let firstError = "";
  const serverCpu0 = processCpuSeconds(server.child.pid);
  const clientCpu0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + durationMs;
  const loop = async () => {
    while (performance.now() < deadline && latencies.length + errors < cfg.issueMaxRequests) {
      const t = performance.now();
      const res = await client.post(body);
      if (res.status === 200) latencies.push(performance.now() - t);
      else {
        errors++;
        if (firstError === "") firstError = `HTTP ${res.status} ${res.text.slice(0, 300)}`;
        if (errors > 100) throw new Error(`mesh issuance keeps failing: ${firstError}`);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: cfg.clients }, loop));
  } finally {
    client.close();
  }
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(clientCpu0);
  if (errors > 0) say(`  ${errors} failed requests, first: ${firstError}`);
  return {
    rate: (latencies.length * 1000) / elapsedMs,
    count: latencies.length,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errors,
    serverCpu: (processCpuSeconds(server.child.pid) - serverCpu0) / (elapsedMs / 1000),
    clientCpu: (cpu.user + cpu.system) / 1e6 / (elapsedMs / 1000),
    elapsedMs,
  };
}

async function benchIssuance(server: Server, policyHash: string): Promise<IssuanceResult> {
  const key = await workloadKey("P-256");
  const body = JSON.stringify({ publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash } });
  const first = await postJson(`${server.base}/v1/mesh/certificate`, JSON.parse(body));
  expectOk("mesh certificate", first);
  const chain = (first.json as { certChain?: unknown }).certChain;
  if (typeof chain !== "string" || (chain.match(/BEGIN CERTIFICATE/g) ?? []).length !== 2) {
    throw new Error(`mesh certificate: unexpected certChain ${JSON.stringify(chain).slice(0, 200)}`);
  }
  say(`mesh issuance: ${cfg.clients} concurrent clients (${issuanceClient === "fetch" ? "fetch/undici" : "node:http agent"}, keep-alive), one P-256 workload key for every request`);
  const warm = await runIssuance(server, body, cfg.warmupMs);
  say(`  warm-up ${cfg.warmupMs} ms: ${warm.count} certificates`);
  const r = await runIssuance(server, body, cfg.issueMs);
  say(
    `  ${r.count} certificates in ${(r.elapsedMs / 1000).toFixed(2)} s: ${rate(r.rate)}, p50 ${ms(r.p50)}, p99 ${ms(r.p99)}; ` +
      `CPU: server ${(r.serverCpu * 100).toFixed(0)}%, bench client ${(r.clientCpu * 100).toFixed(0)}% (of one core)`,
  );
  return r;
}

// ---------------------------------------------------------------------------------------------
// 3. set and recover, history growth, startup.

interface Owners {
  owner: Awaited<ReturnType<typeof workloadOwner>>;
  shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
}

/** The manifest of revision `i`: one policy, distinct per revision, so each update stores a new manifest and policy. */
async function revision(owners: Owners, i: number): Promise<{ manifest: Uint8Array; policies: Uint8Array[]; policyHash: string }> {
  const p = await policy(`bench workload policy, revision ${i}\n`);
  const manifest = manifestBytes({
    policies: [{ hash: p.hash, name: "bench" }],
    workloadOwners: [owners.owner.digest],
    seedShareOwners: [owners.shareOwner.publicHex],
  });
  return { manifest, policies: [p.bytes], policyHash: p.hash };
}

/** The chain of updates: keeps the latest transition and the next revision number. */
interface Chain {
  transition: string;
  generation: number;
  /** The Coordinator the updates are signed for. */
  ref: CoordinatorRef;
}

/** One signed update; the body is made (and signed) before the clock starts. Returns the latency. */
async function update(server: Server, owners: Owners, chain: Chain): Promise<number> {
  const rev = await revision(owners, chain.generation);
  const body = await updateBody(rev.manifest, rev.policies, chain.transition, owners.owner, chain.ref);
  const t = performance.now();
  const r = await postJson(`${server.base}/v1/manifest`, body);
  const latency = performance.now() - t;
  expectOk(`update to generation ${chain.generation + 1}`, r);
  const result = r.json as { transition: string; generation: number };
  if (result.generation !== chain.generation + 1) throw new Error(`update: generation ${result.generation}, expected ${chain.generation + 1}`);
  chain.transition = result.transition;
  chain.generation = result.generation;
  return latency;
}

interface RestartSample {
  recoverMs: number;
  startupMs: number;
  wallMs: number;
}

/** Restarts the server `n` times and times POST /v1/recover until 200; returns the last server, still running. */
async function restarts(
  server: Server,
  dir: string,
  recover: { share: string; salt: string },
  n: number,
): Promise<{ server: Server; samples: RestartSample[] }> {
  const samples: RestartSample[] = [];
  for (let i = 0; i < n; i++) {
    await stopServer(server);
    server = await startServer(dir);
    if (server.state !== "recovery-required") throw new Error(`restarted in state ${server.state}, expected recovery-required`);
    const t = performance.now();
    let r: { status: number; json: unknown } | null = null;
    for (let attempt = 0; attempt < 20 && r === null; attempt++) {
      try {
        r = await postJson(`${server.base}/v1/recover`, recover);
      } catch (err) {
        if (attempt === 19) throw err;
        await new Promise((done) => setTimeout(done, 50)); // connection refused: try again
      }
    }
    const recoverMs = performance.now() - t;
    expectOk("recover", r!);
    const state = (r!.json as { state?: unknown }).state;
    if (state !== "ready") throw new Error(`recover answered 200 but the state is ${JSON.stringify(state)}, expected "ready"`);
    samples.push({ recoverMs, startupMs: server.startupMs, wallMs: server.wallMs });
  }
  return { server, samples };
}

/** A bare Node HTTP server as an ES module file (as the bundle is one): listens on a free loopback port, then prints `listening`. */
const bareServerSource =
  `import { createServer } from "node:http";\n` +
  `createServer((req, res) => res.end("ok")).listen(0, ${JSON.stringify(host)}, () => process.stdout.write("listening\\n"));\n`;

/** Spawns a bare Node HTTP server and returns the time from spawn to reading its `listening` line; kills it. */
async function bareServerStart(file: string): Promise<number> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const exited = new Promise<void>((done) => child.once("exit", () => (children.delete(child), done())));
  const lines = createInterface({ input: child.stdout! });
  try {
    return await new Promise<number>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`the bare server did not listen within ${cfg.listenTimeoutMs} ms`)), cfg.listenTimeoutMs);
      lines.on("line", (line) => {
        if (line !== "listening") return;
        clearTimeout(timer);
        ok(performance.now() - t0);
      });
      child.once("exit", (code) => (clearTimeout(timer), fail(new Error(`the bare server exited (code ${code})`))));
    });
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Start-to-listening figures: medians of wall-clock spawn → `listening` line, in ms. */
interface StartupResult {
  bare: number[];
  /** The bundle on an empty fs store (a fresh directory each time): it starts `uninitialized`. */
  empty: number[];
  /** The bundle on an fs store holding a state (a first set): it starts `recovery-required`. */
  stored: number[];
  /** The `startupMs` the bundle logs on the stored store (from its entry's first line, so without Node's own boot). */
  storedLogged: number[];
}

/** The goal: the bundle listens within twice the time a bare Node HTTP server takes. */
const startupGoal = 2;

/**
 * Starts a bare Node HTTP server and the bundle (fs store, empty and holding a state) one after the
 * other, `cfg.startupSamples` rounds, interleaved so that the machine's load falls on all three alike.
 */
async function benchStartup(owners: Owners): Promise<StartupResult> {
  const scratch = mkdtempSync(join(tmpdir(), "coordinator-bench-start-"));
  tempDirs.push(scratch);
  const bareFile = join(scratch, "bare-server.mjs");
  writeFileSync(bareFile, bareServerSource);
  // A store holding a state: one first set, then the server stopped.
  const storedDir = join(scratch, "stored");
  let server = await startServer(storedDir);
  const rev0 = await revision(owners, 0);
  expectOk("first set for the startup store", await postJson(`${server.base}/v1/manifest`, firstSetBody(rev0.manifest, rev0.policies)));
  await stopServer(server);
  // One untimed start of each first (file cache, code cache).
  await bareServerStart(bareFile);
  await stopServer(await startServer(storedDir));
  const result: StartupResult = { bare: [], empty: [], stored: [], storedLogged: [] };
  say(`start to listening: ${cfg.startupSamples} rounds of a bare Node HTTP server (an .mjs file), the bundle on an empty fs store and on one holding a state`);
  for (let i = 0; i < cfg.startupSamples; i++) {
    result.bare.push(await bareServerStart(bareFile));
    server = await startServer(join(scratch, `empty-${i}`));
    if (server.state !== "uninitialized") throw new Error(`an empty store started in state ${server.state}`);
    result.empty.push(server.wallMs);
    await stopServer(server);
    server = await startServer(storedDir);
    if (server.state !== "recovery-required") throw new Error(`a stored state started in state ${server.state}`);
    result.stored.push(server.wallMs);
    result.storedLogged.push(server.startupMs);
    await stopServer(server);
  }
  const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
  say(`  bare Node HTTP server: median ${ms(median(result.bare))} [${list(result.bare)}]`);
  say(`  bundle, empty store:   median ${ms(median(result.empty))} [${list(result.empty)}]`);
  say(`  bundle, stored state:  median ${ms(median(result.stored))} [${list(result.stored)}] (its own startupMs: median ${median(result.storedLogged)} ms)`);
  return result;
}

function startupLines(s: StartupResult): string[] {
  const bare = median(s.bare);
  const line = (label: string, xs: number[]) => {
    const ratio = median(xs) / bare;
    return `${label.padEnd(18)}${ms(median(xs))}  bare Node HTTP server ${ms(bare)}  ratio ${ratio.toFixed(2)}× (goal ≤ ${startupGoal}×: ${ratio <= startupGoal ? "met" : "NOT met"})`;
  };
  return [
    `${line("start, empty", s.empty)}  spawn→listening, medians of ${s.bare.length}; fs store, empty`,
    `${line("start, stored", s.stored)}  spawn→listening, medians of ${s.bare.length}; fs store holding a state (recovery-required)`,
  ];
}

function issuanceLines(issuance: IssuanceResult, raw: RawSigning): string[] {
  const ratio = issuance.rate / raw.rate;
  // CPU time per certificate, of the server (all its threads) and of the load generator, against one raw signature.
  const serverMs = (issuance.serverCpu * 1000) / issuance.rate;
  const clientMs = (issuance.clientCpu * 1000) / issuance.rate;
  return [
    `${"mesh issuance".padEnd(18)}${rate(issuance.rate)}  p50 ${ms(issuance.p50)}  p99 ${ms(issuance.p99)}  raw sign ${rate(raw.rate)}  ` +
      `ratio ${ratio.toFixed(2)} (goal ≥ 0.5: ${ratio >= 0.5 ? "met" : "NOT met"})  CPU: server ${(issuance.serverCpu * 100).toFixed(0)}%, bench client ${(issuance.clientCpu * 100).toFixed(0)}% (${issuanceClient})`,
    `${"  CPU a request".padEnd(18)}server ${serverMs.toFixed(3)} ms + bench client ${clientMs.toFixed(3)} ms; a raw signature ${raw.cpuMs.toFixed(3)} ms ` +
      `(server ${(serverMs / raw.cpuMs).toFixed(2)}× a signature; with every core busy the ratio would be about ${(raw.cpuMs / (serverMs + clientMs)).toFixed(2)})`,
  ];
}

// ---------------------------------------------------------------------------------------------
// 4. A flood of large anonymous manifest requests: the server's peak memory.

/** The memory limit of deploy/coordinator.yaml, in MiB. */
const deployMemoryLimitMiB = 512;

interface FloodRun {
  peakMiB: number;
  outcomes: Record<string, number>;
  elapsedMs: number;
}

interface FloodResult {
  bodyMiB: number;
  uninitialized: FloodRun;
  ready: FloodRun;
}

/** Floods a server with `body` and reads its peak resident set (VmHWM) afterwards. */
async function floodOnce(server: Server, body: Buffer, label: string): Promise<FloodRun> {
  const t = performance.now();
  const outcomes = tally(await flood(server.base, body, { chunked: "half", timeoutMs: cfg.requestTimeoutMs }));
  const elapsedMs = performance.now() - t;
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    throw new Error(`the server died under the flood (code ${server.child.exitCode}, signal ${server.child.signalCode})`);
  }
  const peakMiB = memoryMiB(server.child.pid!);
  say(`  ${label}: ${(elapsedMs / 1000).toFixed(1)} s, outcomes ${JSON.stringify(outcomes)}, server peak RSS ${peakMiB.toFixed(0)} MiB`);
  return { peakMiB, outcomes, elapsedMs };
}

/**
 * `floodShape.requests` anonymous POST /v1/manifest bodies near 32 MiB at once (half of them chunked),
 * each against a fresh server on its own store: an uninitialized one gets bodies that are invalid
 * after all of them is read and hashed; a ready one (after a first set) gets well-formed updates on the
 * right base without a signature. The figure is the server's peak resident set (VmHWM).
 */
async function benchFlood(owners: Owners): Promise<FloodResult> {
  const policies = await floodPolicies();
  const ownerLists = { workloadOwners: [owners.owner.digest], seedShareOwners: [owners.shareOwner.publicHex] };
  let body = floodBody(policies, { ...ownerLists, referenced: "all-but-last" });
  const bodyMiB = body.length / 2 ** 20;
  say(`flood: ${floodShape.requests} anonymous POST /v1/manifest at once, ${bodyMiB.toFixed(1)} MiB each (half chunked), a fresh server each`);

  const uninitializedDir = mkdtempSync(join(tmpdir(), "coordinator-bench-flood-"));
  tempDirs.push(uninitializedDir);
  let server = await startServer(uninitializedDir);
  const uninitialized = await floodOnce(server, body, "uninitialized, invalid bodies");
  await stopServer(server);

  const readyDir = mkdtempSync(join(tmpdir(), "coordinator-bench-flood-"));
  tempDirs.push(readyDir);
  server = await startServer(readyDir);
  const rev0 = await revision(owners, 0);
  const first = await postJson(`${server.base}/v1/manifest`, firstSetBody(rev0.manifest, rev0.policies));
  expectOk("first set before the flood", first);
  body = floodBody(policies, { ...ownerLists, referenced: "all", extra: { previousTransition: (first.json as { transition: string }).transition } });
  const ready = await floodOnce(server, body, "ready, unsigned updates");
  await stopServer(server);
  return { bodyMiB, uninitialized, ready };
}

function floodLine(f: FloodResult): string {
  const peak = Math.max(f.uninitialized.peakMiB, f.ready.peakMiB);
  return (
    `${"flood peak RSS".padEnd(18)}${peak.toFixed(0)} MiB  (goal < ${deployMemoryLimitMiB} MiB (deploy limit): ${peak < deployMemoryLimitMiB ? "met" : "NOT met"})  ` +
    `uninitialized ${f.uninitialized.peakMiB.toFixed(0)} MiB, ready ${f.ready.peakMiB.toFixed(0)} MiB; ` +
    `${floodShape.requests} anonymous manifest requests of ${f.bodyMiB.toFixed(1)} MiB at once`
  );
}

// ---------------------------------------------------------------------------------------------
// Attestation: SEV-SNP and TDX evidence verifications per second, against raw P-384 verifies.

/** The attestation figures: each at its best concurrency. */
interface AttestationResult {
  rawVerify: { rate: number; concurrency: number };
  snp: { rate: number; concurrency: number };
  tdx: { rate: number; concurrency: number };
}

/** The goal: an evidence verification costs at most ten raw P-384 verifies. */
const attestationGoal = 0.1;

/** Calls of `op` per second from `concurrency` chains over `durationMs` (at most cfg.rawMaxSigs calls). */
async function opRate(op: () => Promise<unknown>, concurrency: number, durationMs: number): Promise<{ rate: number; count: number }> {
  let count = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const chain = async () => {
    while (performance.now() < deadline && count < cfg.rawMaxSigs) {
      await op();
      count++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, chain));
  return { rate: (count * 1000) / (performance.now() - start), count };
}

/** Probes `op` at each concurrency of cfg.rawLevels, then measures it at the best one. */
async function bestRate(label: string, op: () => Promise<unknown>): Promise<{ rate: number; concurrency: number }> {
  await opRate(op, 4, cfg.rawWarmupMs); // warm-up
  let best = { rate: 0, concurrency: 1 };
  const probes: string[] = [];
  for (const concurrency of cfg.rawLevels) {
    const r = await opRate(op, concurrency, cfg.rawProbeMs);
    probes.push(`${concurrency}: ${rate(r.rate)}`);
    if (r.rate > best.rate) best = { rate: r.rate, concurrency };
  }
  const final = await opRate(op, best.concurrency, cfg.rawMs);
  say(`  ${label}: probes ${probes.join(", ")}; best concurrency ${best.concurrency}: ${rate(final.rate)} over ${cfg.rawMs} ms (${final.count} calls)`);
  return { rate: final.rate, concurrency: best.concurrency };
}

/**
 * A test TEE (test/attestation/make-evidence.ts) is made and its roots pinned as --attestation-roots
 * pins them; one piece of SNP and one of TDX evidence, each for a nonce and a P-384 key, are then
 * verified over and over in this process as a Coordinator's validator does: verifySnpAttestation
 * (chain, report signature, REPORT_DATA, reference values) and verifyTdxQuote (PCK chain, QE report,
 * quote signature, REPORT_DATA) with the TDX reference values. The in-process cache of issuer
 * checks (ARK → ASK) is warm after the first call, as in a running Coordinator. Raw P-384 verifies
 * (ECDSA/SHA-384 of a 32-byte message, WebCrypto) are measured in the same run.
 */
async function benchAttestation(): Promise<AttestationResult> {
  const dir = mkdtempSync(join(tmpdir(), "coordinator-bench-tee-"));
  tempDirs.push(dir);
  const t = performance.now();
  await createTestTee(dir);
  say(`attestation: a test TEE made in ${ms(performance.now() - t)} (three RSA-4096 keys); verifications in process, its roots pinned`);
  const roots = parseAttestationRoots(readFileSync(join(dir, teeFiles.roots), "utf8"));
  const referenceValues = testReferenceValues(dir);
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, false, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const nonce = toHex(crypto.getRandomValues(new Uint8Array(32)));
  const policyHash = toHex(crypto.getRandomValues(new Uint8Array(32)));
  const request = { nonce, spki, policyHash };
  const snpJson = await makeSnpEvidence(dir, request);
  const snpEvidence = {
    report: fromBase64(snpJson.report),
    certificates: { vcek: fromBase64(snpJson.certificates.vcek), ask: fromBase64(snpJson.certificates.ask), ark: fromBase64(snpJson.certificates.ark) },
  };
  const quote = fromBase64((await makeTdxEvidence(dir, request)).quote);
  const nonceBytes = fromHex(nonce);

  const snpOnce = async () => {
    const { verified } = await verifySnpAttestation(snpEvidence, {
      trustAnchors: roots.snp,
      now: new Date(),
      referenceValues: referenceValues.snp,
      reportData: await expectedReportData(spki, nonceBytes),
    });
    return verified;
  };
  const tdxOnce = async () => {
    const verified = await verifyTdxQuote(quote, { now: new Date(), trustedRoot: roots.tdx, expectedReportData: await expectedReportData(spki, nonceBytes) });
    checkTdxReferenceValues(verified, referenceValues.tdx);
    return verified;
  };
  // Both must pass, or the figures would time refusals.
  if ((await snpOnce()).hostDataHex !== policyHash) throw new Error("the SNP evidence does not carry the policy hash");
  if ((await tdxOnce()).policyHash !== policyHash) throw new Error("the TDX evidence does not carry the policy hash");

  const message = crypto.getRandomValues(new Uint8Array(32));
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, keys.privateKey, message);
  const rawOnce = async () => {
    if (!(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-384" }, keys.publicKey, signature, message))) throw new Error("raw verify failed");
  };
  const rawVerify = await bestRate("raw ECDSA P-384/SHA-384 verify", rawOnce);
  const snp = await bestRate("SNP evidence verification", snpOnce);
  const tdx = await bestRate("TDX evidence verification", tdxOnce);
  return { rawVerify, snp, tdx };
}

function attestationLines(a: AttestationResult): string[] {
  const line = (label: string, r: { rate: number; concurrency: number }, what: string): string => {
    const ratio = r.rate / a.rawVerify.rate;
    return (
      `${label.padEnd(18)}${rate(r.rate)}  raw verify ${rate(a.rawVerify.rate)}  ratio ${ratio.toFixed(3)} ` +
      `(goal ≥ ${attestationGoal}: ${ratio >= attestationGoal ? "met" : "NOT met"})  concurrency ${r.concurrency}; ${what}`
    );
  };
  return [
    `${"raw verify".padEnd(18)}${rate(a.rawVerify.rate)}  (ECDSA P-384/SHA-384 WebCrypto, best at concurrency ${a.rawVerify.concurrency})`,
    line("SNP evidence", a.snp, "SNP evidence verifications/s: VCEK chain, report signature, REPORT_DATA, reference values"),
    line("TDX evidence", a.tdx, "TDX evidence verifications/s: PCK chain, QE report, quote signature, REPORT_DATA, reference values"),
  ];
}

// ---------------------------------------------------------------------------------------------

const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");

/** A fresh P-384 signing key for the raw figures. */
async function rawKey(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, false, ["sign", "verify"])) as CryptoKeyPair;
}

/** Raw signing at the end of the run against its start: whether the machine's load changed meanwhile. */
function noiseLine(raw: { rate: number }, rawAgain: { rate: number }): string {
  return (
    `${"noise check".padEnd(18)}raw sign again at the end: ${rate(rawAgain.rate)} (${((rawAgain.rate / raw.rate - 1) * 100).toFixed(0)}% vs the start); ` +
    `load average ${load()}`
  );
}

async function main(): Promise<void> {
  const t0 = performance.now();
  say(`contrast-coordinator benchmark${quick ? " (BENCH_QUICK: history 100, ~1 s phases)" : ""}`);
  say(`node ${process.version}, ${cpus().length} CPUs, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? "default (4)"}, load average ${load()}`);
  const size = statSync(bundle).size;
  const gzip = gzipSync(readFileSync(bundle)).length;

  if (attestationOnly) {
    const attestation = await benchAttestation();
    say("");
    say("=== summary (BENCH_ONLY=attestation) ===");
    for (const line of attestationLines(attestation)) say(line);
    return;
  }

  if (speedOnly) {
    const owners: Owners = { owner: await workloadOwner(), shareOwner: await seedShareOwner() };
    const startup = await benchStartup(owners);
    const raw = await benchRawSigning();
    const dir = mkdtempSync(join(tmpdir(), "coordinator-bench-"));
    tempDirs.push(dir);
    const server = await startServer(dir, cpuProfDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${resolve(cpuProfDir)}`]);
    const rev0 = await revision(owners, 0);
    expectOk("first set", await postJson(`${server.base}/v1/manifest`, firstSetBody(rev0.manifest, rev0.policies)));
    const issuance = await benchIssuance(server, rev0.policyHash);
    await stopServer(server);
    if (cpuProfDir !== undefined) say(`  CPU profile of this server written to ${resolve(cpuProfDir)}`);
    const rawAgain = await signRate((await rawKey()).privateKey, raw.concurrency, cfg.rawProbeMs);
    say("");
    say("=== summary (BENCH_ONLY=speed) ===");
    say(`${"raw sign".padEnd(18)}${rate(raw.rate)}  (ECDSA P-384/SHA-384 WebCrypto, best at concurrency ${raw.concurrency})`);
    for (const line of issuanceLines(issuance, raw)) say(line);
    for (const line of startupLines(startup)) say(line);
    say(`${"bundle".padEnd(18)}${relative(process.cwd(), bundle)} ${(size / 1024).toFixed(0)} KiB (${size} bytes), gzip ${(gzip / 1024).toFixed(0)} KiB`);
    say(noiseLine(raw, rawAgain));
    return;
  }

  if (floodOnly) {
    const floodResult = await benchFlood({ owner: await workloadOwner(), shareOwner: await seedShareOwner() });
    say("");
    say("=== summary (BENCH_ONLY=flood) ===");
    say(floodLine(floodResult));
    return;
  }

  const raw = await benchRawSigning();

  const owners: Owners = { owner: await workloadOwner(), shareOwner: await seedShareOwner() };
  const dir = mkdtempSync(join(tmpdir(), "coordinator-bench-"));
  tempDirs.push(dir);

  // Fresh start on an empty store, then the first set.
  let server = await startServer(dir, cpuProfDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${resolve(cpuProfDir)}`]);
  const fresh = { startupMs: server.startupMs, wallMs: server.wallMs };
  say(`startup on an empty store: startupMs ${fresh.startupMs}, spawn→listening ${ms(fresh.wallMs)} (state ${server.state})`);
  const rev0 = await revision(owners, 0);
  const first = await postJson(`${server.base}/v1/manifest`, firstSetBody(rev0.manifest, rev0.policies));
  expectOk("first set", first);
  const firstResult = first.json as { transition: string; generation: number; rootCA: string; seedShares: SeedShareDocument };
  const chain: Chain = {
    transition: firstResult.transition,
    generation: firstResult.generation,
    ref: { name: "coordinator", rootCA: firstResult.rootCA },
  };
  const recover = await recoverBody(firstResult.seedShares, owners.shareOwner.keys.privateKey);

  const issuance = await benchIssuance(server, rev0.policyHash);
  if (cpuProfDir !== undefined) {
    await stopServer(server);
    say(`  CPU profile of this server written to ${resolve(cpuProfDir)}`);
  }

  // History of 1: recover, then set.
  say(`recover with a history of 1: ${cfg.recoverSamples} restarts`);
  let restarted = await restarts(server, dir, recover, cfg.recoverSamples);
  server = restarted.server;
  const recover1 = restarted.samples;
  const set1: number[] = [];
  const buildStart = performance.now();
  for (let i = 0; i < cfg.setSamples; i++) set1.push(await update(server, owners, chain));
  say(`set with a history of 1 (generations 2–${chain.generation}): median ${ms(median(set1))}`);

  // Build the history up to cfg.history manifests through the API.
  const buildDeadline = buildStart + cfg.buildDeadlineMs;
  const buildLatencies = [...set1];
  for (let n = 0; chain.generation < cfg.history && n < cfg.history; n++) {
    if (performance.now() > buildDeadline) throw new Error(`building the history took longer than ${cfg.buildDeadlineMs} ms`);
    buildLatencies.push(await update(server, owners, chain));
  }
  const buildMs = performance.now() - buildStart;
  say(
    `built a history of ${chain.generation} manifests: ${buildLatencies.length} signed updates in ${(buildMs / 1000).toFixed(1)} s ` +
      `(server latency median ${ms(median(buildLatencies))}, p99 ${ms(percentile(buildLatencies, 0.99))}, ` +
      `first 100 median ${ms(median(buildLatencies.slice(0, 100)))}, last 100 median ${ms(median(buildLatencies.slice(-100)))})`,
  );

  const historyN = chain.generation;
  say(`recover with a history of ${historyN}: ${cfg.recoverSamples} restarts`);
  restarted = await restarts(server, dir, recover, cfg.recoverSamples);
  server = restarted.server;
  const recoverN = restarted.samples;
  const setN: number[] = [];
  for (let i = 0; i < cfg.setSamples; i++) setN.push(await update(server, owners, chain));
  say(`set with a history of ${historyN} (generations ${historyN + 1}–${chain.generation}): median ${ms(median(setN))}`);
  await stopServer(server);

  const floodResult = await benchFlood(owners);
  const attestation = await benchAttestation();

  const startup = await benchStartup(owners);
  const replicas = await measureReplicas({ quick });
  const growthUpdates = quick ? 100 : 1000;
  say(`store growth: ${growthUpdates} updates on an fs store, in process`);
  const growth = await measureStoreGrowth(growthUpdates);

  // Raw signing once more, to show whether the machine's load changed during the run.
  const rawAgain = await signRate((await rawKey()).privateKey, raw.concurrency, cfg.rawProbeMs);

  // Summary.
  const pad = (s: string, n: number) => s.padEnd(n);
  const r1 = median(recover1.map((s) => s.recoverMs));
  const rN = median(recoverN.map((s) => s.recoverMs));
  const s1 = median(set1);
  const sN = median(setN);
  say("");
  say("=== summary ===");
  say(`${pad("raw sign", 18)}${rate(raw.rate)}  (ECDSA P-384/SHA-384 WebCrypto, best at concurrency ${raw.concurrency})`);
  for (const line of issuanceLines(issuance, raw)) say(line);
  const goal = (ratio: number, limit: number) => `goal ≤ ${limit}: ${ratio <= limit ? "met" : "NOT met"}`;
  say(`${pad("set", 18)}history 1: ${ms(s1)}  history ${historyN}: ${ms(sN)}  ratio ${(sN / s1).toFixed(2)}  (medians of ${cfg.setSamples}; ${goal(sN / s1, 1.5)})`);
  say(`${pad("recover", 18)}history 1: ${ms(r1)}  history ${historyN}: ${ms(rN)}  ratio ${(rN / r1).toFixed(2)}  (medians of ${cfg.recoverSamples}; ${goal(rN / r1, 1.5)})`);
  say(`${pad("build history", 18)}${buildLatencies.length} updates to ${historyN} manifests in ${(buildMs / 1000).toFixed(1)} s`);
  say(
    `${pad("startup", 18)}empty store: ${fresh.startupMs} ms (wall ${ms(fresh.wallMs)})  ` +
      `history 1: ${median(recover1.map((s) => s.startupMs))} ms (wall ${ms(median(recover1.map((s) => s.wallMs)))})  ` +
      `history ${historyN}: ${median(recoverN.map((s) => s.startupMs))} ms (wall ${ms(median(recoverN.map((s) => s.wallMs)))})  ` +
      `[startupMs from the log; wall = spawn→listening line]`,
  );
  for (const line of startupLines(startup)) say(line);
  say(floodLine(floodResult));
  for (const line of attestationLines(attestation)) say(line);
  for (const line of replicasLines(replicas)) say(line);
  for (const line of storeGrowthLines(growth)) say(line);
  say(
    `${pad("store bound", 18)}head version files ${growth.headVersionFiles} (goal: bounded, not one per update: ${growth.headVersionFiles <= 3 ? "met" : "NOT met"}); ` +
      `after collection ${(growth.collected.bytes / 1024 / 1024).toFixed(2)} MiB for ${growth.updates} updates`,
  );
  say(`${pad("bundle", 18)}${relative(process.cwd(), bundle)} ${(size / 1024).toFixed(0)} KiB (${size} bytes), gzip ${(gzip / 1024).toFixed(0)} KiB`);
  say(noiseLine(raw, rawAgain));
  say(`(bench took ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  cleanupSync();
}
