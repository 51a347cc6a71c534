// Replica benchmark over real processes of dist/coordinator.mjs on one fs store: the time from kill -9 to `ready` through peer recovery, and mesh issuance over HTTP spread over 1, 2 and 3 replicas (`node --import tsx bench/replicas.ts [--quick]`).
import "reflect-metadata";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { keepAlivePoster } from "./http-client.js";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { toBase64, utf8 } from "../src/encoding.js";
import { createTestTee, teeFiles, testMeasurement, testReferenceValues } from "../test/attestation/make-evidence.js";
import { policy, seedShareOwner, workloadKey, workloadOwner } from "../test/helpers.js";
import { freePort, pause } from "../test/e2e/process.js";

/** What measureReplicas measures. */
export interface ReplicasResult {
  /** Milliseconds from kill -9 of a ready replica to its restarted process answering `/readyz` 200 (recovered from a peer, no owner), one per sample. */
  killToReadyMs: number[];
  /** Of the same samples: milliseconds from the restarted process's start to its `listening` log line (Node and bundle start-up). */
  startToListeningMs: number[];
  /** Of the same samples: milliseconds from the restarted process's start to its `recovered from a peer replica` log line. */
  startToRecoveredMs: number[];
  /** Mesh certificates per second with 32 concurrent clients spread evenly over `replicas` processes on one store. */
  issuance: { replicas: number; rate: number; p50Ms: number; p99Ms: number }[];
}

/** How long and how often; `quick` shortens every phase. */
export interface ReplicasOptions {
  /** Kill → ready samples (default 5, quick 3). */
  samples?: number;
  /** Warm-up and measured duration of each issuance level, ms (default 1000 and 5000; quick 300 and 1500). */
  warmupMs?: number;
  issueMs?: number;
  quick?: boolean;
  /** The Coordinator bundle (default dist/coordinator.mjs, or BENCH_BUNDLE). */
  bundle?: string;
}

const clients = 32;
const host = "127.0.0.1";
const name = "bench-replicas";
const listenTimeoutMs = 30_000;
const readyTimeoutMs = 60_000;
const requestTimeoutMs = 60_000;
const projectRoot = resolve(fileURLToPath(new URL("..", import.meta.url)));

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

/** One replica process. */
interface Replica {
  child: ChildProcess;
  base: string;
  /** Its parsed stdout log lines so far. */
  lines: { msg?: unknown; sinceProcessStartMs?: unknown }[];
  exited: Promise<void>;
}

/** Spawns the bundle with `args` and waits for its `listening` line. */
async function spawnReplica(bundle: string, port: number, args: string[], children: Set<ChildProcess>): Promise<Replica> {
  const child = spawn(process.execPath, [bundle, "--host", host, "--port", String(port), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const exited = new Promise<void>((done) => child.once("exit", () => (children.delete(child), done())));
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    if (stderr.length < 10_000) stderr += chunk;
  });
  const replica: Replica = { child, base: `http://${host}:${port}`, lines: [], exited };
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no "listening" line within ${listenTimeoutMs} ms; stderr: ${stderr}`)), listenTimeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const entry = JSON.parse(line) as Replica["lines"][number];
        replica.lines.push(entry);
        if (entry.msg === "listening") {
          clearTimeout(timer);
          ok();
        }
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`the replica exited before listening (code ${code}, signal ${signal}); stderr: ${stderr}`));
    });
  });
  return replica;
}

async function kill(replica: Replica, signal: NodeJS.Signals): Promise<void> {
  if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill(signal);
  await replica.exited;
}

/** Polls `/readyz` every 20 ms until it answers 200; rejects after readyTimeoutMs. */
async function untilReady(replica: Replica): Promise<void> {
  const deadline = performance.now() + readyTimeoutMs;
  while (performance.now() < deadline) {
    try {
      if ((await fetch(`${replica.base}/readyz`, { signal: AbortSignal.timeout(5_000) })).status === 200) return;
    } catch {
      // not listening yet, or slow
    }
    await pause(20);
  }
  throw new Error(`${replica.base} was not ready within ${readyTimeoutMs} ms: ${JSON.stringify(replica.lines.slice(-5))}`);
}

async function postJson(url: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(requestTimeoutMs) });
  return { status: res.status, text: await res.text() };
}

/** A keep-alive node:http POSTer of JSON to `url` that answers the status (the bench client bench/coordinator.bench.ts uses by default). */
function poster(url: string): { post: (body: string) => Promise<number>; close(): void } {
  const client = keepAlivePoster(url, { clients, timeoutMs: requestTimeoutMs });
  return { post: async (body) => (await client.post(body)).status, close: client.close };
}

/** `clients` loops, client j on replica j mod n, for `durationMs`: certificates per second and latency percentiles. */
async function issue(targets: Replica[], body: string, durationMs: number): Promise<{ rate: number; p50Ms: number; p99Ms: number; count: number }> {
  const posters = targets.map((r) => poster(`${r.base}/v1/mesh/certificate`));
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const loop = async (j: number) => {
    const client = posters[j % posters.length]!;
    while (performance.now() < deadline) {
      const t = performance.now();
      const status = await client.post(body);
      if (status === 200) latencies.push(performance.now() - t);
      else if (++errors > 100) throw new Error(`mesh issuance keeps failing (HTTP ${status})`);
    }
  };
  try {
    await Promise.all(Array.from({ length: clients }, (_, j) => loop(j)));
  } finally {
    for (const p of posters) p.close();
  }
  const elapsed = performance.now() - start;
  return { rate: (latencies.length * 1000) / elapsed, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), count: latencies.length };
}

/**
 * Three replicas of dist/coordinator.mjs on one fs store, each signing its evidence with one saved
 * test TEE and listing the others in --peers (mutual attestation as in production, pinned test
 * roots). Kills a ready replica with SIGKILL, restarts it and times it to `/readyz` 200 (through
 * recovery from a peer, no owner); then mesh issuance (insecure-simulated workload evidence, one
 * P-256 key) with 32 concurrent clients spread over 3, 2 and 1 running replicas. On a machine with
 * few cores the replicas share them: the issuance figures show the overhead of replication, not scaling.
 */
export async function measureReplicas(options: ReplicasOptions = {}): Promise<ReplicasResult> {
  const quick = options.quick ?? false;
  const samples = options.samples ?? (quick ? 3 : 5);
  const warmupMs = options.warmupMs ?? (quick ? 300 : 1_000);
  const issueMs = options.issueMs ?? (quick ? 1_500 : 5_000);
  const bundle = resolve(options.bundle ?? process.env.BENCH_BUNDLE ?? join(projectRoot, "dist", "coordinator.mjs"));
  const root = mkdtempSync(join(tmpdir(), "contrast-bench-replicas-"));
  const children = new Set<ChildProcess>();
  try {
    const teeDir = join(root, "tee");
    const [, shareOwner, owner, web, coordinatorPolicy, ...ports] = await Promise.all([
      createTestTee(teeDir),
      seedShareOwner(),
      workloadOwner(),
      policy("bench workload policy\n"),
      policy("package coordinator\n"),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const manifest = utf8(
      JSON.stringify({
        Policies: { [web.hash]: { SANs: ["web"], WorkloadSecretID: "web" }, [coordinatorPolicy.hash]: { SANs: ["coordinator"], Role: "coordinator" } },
        ReferenceValues: { snp: testReferenceValues(teeDir).snp },
        WorkloadOwnerKeyDigests: [owner.digest],
        SeedshareOwnerPubKeys: [shareOwner.publicHex],
      }),
    );
    const args = [
      "--store", `fs:${join(root, "store")}`,
      "--name", name,
      "--attestation", "insecure-simulated",
      "--evidence", "simulated",
      "--simulated-tee", join(teeDir, teeFiles.secrets),
      "--simulated-measurement", testMeasurement.snp,
      "--simulated-host-data", coordinatorPolicy.hash,
      "--attestation-roots", join(teeDir, teeFiles.roots),
      "--peers", ports.map((p) => `http://${host}:${p}`).join(","),
    ];
    const start = (i: number) => spawnReplica(bundle, ports[i]!, args, children);

    // All three on an empty store; the first set through replica 0; 1 and 2 recover from it.
    const replicas = await Promise.all([0, 1, 2].map(start));
    const set = await postJson(`${replicas[0]!.base}/v1/manifest`, { manifest: toBase64(manifest), policies: [web.bytes, coordinatorPolicy.bytes].map(toBase64) });
    if (set.status !== 200) throw new Error(`first set: HTTP ${set.status} ${set.text.slice(0, 300)}`);
    await Promise.all(replicas.map(untilReady));

    const killToReadyMs: number[] = [];
    const startToListeningMs: number[] = [];
    const startToRecoveredMs: number[] = [];
    for (let s = 0; s < samples; s++) {
      const i = 1 + (s % 2);
      const killedAt = performance.now();
      await kill(replicas[i]!, "SIGKILL");
      const restarted = await start(i);
      replicas[i] = restarted;
      await untilReady(restarted);
      killToReadyMs.push(performance.now() - killedAt);
      const recovered = restarted.lines.find((l) => l.msg === "recovered from a peer replica");
      if (recovered === undefined) throw new Error(`replica ${i} became ready without recovering from a peer: ${JSON.stringify(restarted.lines)}`);
      startToRecoveredMs.push(Number(recovered.sinceProcessStartMs));
      startToListeningMs.push(Number(restarted.lines.find((l) => l.msg === "listening")?.sinceProcessStartMs));
    }

    const key = await workloadKey("P-256");
    const body = JSON.stringify({ publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: web.hash } });
    for (const r of replicas) {
      const first = await postJson(`${r.base}/v1/mesh/certificate`, JSON.parse(body));
      if (first.status !== 200) throw new Error(`mesh certificate from ${r.base}: HTTP ${first.status} ${first.text.slice(0, 300)}`);
    }
    const issuance: ReplicasResult["issuance"] = [];
    for (const n of [3, 2, 1]) {
      while (replicas.length > n) await kill(replicas.pop()!, "SIGTERM");
      await issue(replicas, body, warmupMs);
      const r = await issue(replicas, body, issueMs);
      issuance.push({ replicas: n, rate: r.rate, p50Ms: r.p50Ms, p99Ms: r.p99Ms });
    }
    issuance.reverse();
    return { killToReadyMs, startToListeningMs, startToRecoveredMs, issuance };
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await Promise.all([...children].map((c) => new Promise<void>((done) => (c.exitCode !== null || c.signalCode !== null ? done() : c.once("exit", () => done())))));
    rmSync(root, { recursive: true, force: true });
  }
}

/** The report lines of one measurement. */
export function replicasLines(r: ReplicasResult): string[] {
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
  const one = r.issuance.find((x) => x.replicas === 1)?.rate ?? NaN;
  return [
    `replicas: kill -9 → ready through peer recovery (fs store, 3 replicas, no owner): median ${median(r.killToReadyMs).toFixed(0)} ms ` +
      `(${ms(r.killToReadyMs)}); process start → listening ${median(r.startToListeningMs).toFixed(0)} ms, → recovered from a peer ${median(r.startToRecoveredMs).toFixed(0)} ms (medians)`,
    `replicas: mesh issuance, ${clients} concurrent clients spread over N replicas on one fs store (${cpus().length} CPUs shared: this shows the overhead of replicas, not scaling):`,
    ...r.issuance.map(
      (x) => `  ${x.replicas} replica${x.replicas === 1 ? " " : "s"}: ${x.rate.toFixed(0)}/s (${((x.rate / one) * 100).toFixed(0)}% of 1), p50 ${x.p50Ms.toFixed(1)} ms, p99 ${x.p99Ms.toFixed(1)} ms`,
    ),
  ];
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const quick = process.env.BENCH_QUICK === "1" || process.argv.includes("--quick");
  for (const line of replicasLines(await measureReplicas({ quick }))) console.log(line);
}
