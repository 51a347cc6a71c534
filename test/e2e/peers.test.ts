// Replicas recover from each other, over two real processes on one fs store that sign their evidence with one saved test TEE (--simulated-tee) and list each other as --peers: a replica killed with -9 comes back ready without the owners, the owners recover one of two dead replicas and the other follows from it, a forged or replayed seed request gets nothing, a rolled-back head is refused while a peer knows the newer one, and an owner recover while a ready peer exists is refused unless forced.
import "reflect-metadata";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fsPathOf } from "../../adapters/node/fs-driver.js";
import { coordinatorReportData } from "../../src/attestation/coordinator-evidence.js";
import { parseSavedTee, savedTeeEvidenceSource } from "../../src/attestation/test-tee.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { HpkeRecipient } from "../../src/crypto/hpke.js";
import { fromHex, toBase64, utf8 } from "../../src/encoding.js";
import { headKey } from "../../src/history/head.js";
import { createTestTee, teeFiles, testMeasurement, testReferenceValues } from "../attestation/make-evidence.js";
import { contrast, ensureBundles } from "../cli/harness.js";
import type { CliRun } from "../cli/harness.js";
import { call, policy, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import type { JsonAnswer } from "../helpers.js";
import { bundlePath, killAll, startCoordinator, freePort, until } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const name = "replicated";

/** The parsed log lines of a process with message `msg`. */
function logLines(proc: CoordinatorProcess, msg: string): Json[] {
  return proc.stdout.flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as Json;
      return parsed.msg === msg ? [parsed] : [];
    } catch {
      return [];
    }
  });
}

function pem(der: Uint8Array, label: string): string {
  return `-----BEGIN ${label}-----\n${toBase64(der).match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

describe("replicas recover from each other (two processes on one fs store)", () => {
  let root: string;
  let storeDir: string;
  let teeDir: string;
  let ws: string;
  let ports: { a: number; b: number };
  let coordinatorPolicyHash: string;
  let manifestFile: string;
  let doc: SeedShareDocument;
  let rootCA: string;
  let firstTransition: string;
  let workload: Awaited<ReturnType<typeof workloadOwner>>;
  const policies: Uint8Array[] = [];
  const procs: { a?: CoordinatorProcess; b?: CoordinatorProcess } = {};
  /** The head of generation 1, as the store held it (for the rollbacks). */
  let head1: Buffer;

  const url = (which: "a" | "b") => `http://127.0.0.1:${ports[which]}`;
  const other = (which: "a" | "b") => (which === "a" ? "b" : "a");

  /** Starts replica `which` on its fixed port, signing with the shared test TEE, its peer the other replica. */
  async function start(which: "a" | "b"): Promise<CoordinatorProcess> {
    const proc = await startCoordinator({
      store: `fs:${storeDir}`,
      timeoutMs: 30_000,
      extraArgs: [
        "--port", String(ports[which]),
        "--name", name,
        "--evidence", "simulated",
        "--simulated-tee", join(teeDir, teeFiles.secrets),
        "--simulated-measurement", testMeasurement.snp,
        "--simulated-host-data", coordinatorPolicyHash,
        "--attestation-roots", join(teeDir, teeFiles.roots),
        "--peers", url(other(which)),
      ],
    });
    procs[which] = proc;
    return proc;
  }

  const status = async (which: "a" | "b"): Promise<Json> => (await call(url(which), "GET", "/v1/status")).body;
  const history = async (which: "a" | "b"): Promise<JsonAnswer> => call(url(which), "GET", "/v1/manifests");
  /** How many of a replica's peer rounds refused the stored head as a rollback (its metric). */
  const rollbackRounds = async (which: "a" | "b"): Promise<number> => {
    const text = (await call(url(which), "GET", "/metrics")).text;
    return Number(/coordinator_peer_recovery_rounds_total\{outcome="ROLLBACK_DETECTED"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  const readyAt = (which: "a" | "b", generation: number) => until(() => status(which), (s) => s.state === "ready" && s.generation === generation);

  /** `contrast recover` of the one seed-share owner against replica `which`, checking its evidence (roots of the test TEE, the manifest's reference values). */
  const recoverWithCli = (which: "a" | "b", ...extra: string[]): Promise<CliRun> =>
    contrast(
      ["recover", "-c", url(which), "-w", ws, "--attestation-roots", join(teeDir, teeFiles.roots), "--coordinator-reference-values", manifestFile, "--timeout", "20s", "--json", ...extra],
      ws,
      90_000,
      { attest: true },
    );

  beforeAll(async () => {
    ensureBundles();
    root = mkdtempSync(join(tmpdir(), "contrast-peers-"));
    storeDir = join(root, "store");
    teeDir = join(root, "tee");
    ws = join(root, "owner");
    mkdirSync(ws);
    const [, owner, w, web, coordinator, a, b] = await Promise.all([
      createTestTee(teeDir),
      seedShareOwner(),
      workloadOwner(),
      policy("policy of web\n"),
      policy("package coordinator\n"),
      freePort(),
      freePort(),
    ]);
    workload = w;
    ports = { a, b };
    coordinatorPolicyHash = coordinator.hash;
    policies.push(web.bytes, coordinator.bytes);
    const manifest = utf8(
      JSON.stringify({
        Policies: { [web.hash]: { SANs: ["web"], WorkloadSecretID: "web" }, [coordinator.hash]: { SANs: ["coordinator"], Role: "coordinator" } },
        ReferenceValues: { snp: testReferenceValues(teeDir).snp },
        WorkloadOwnerKeyDigests: [w.digest],
        SeedshareOwnerPubKeys: [owner.publicHex],
      }),
    );
    manifestFile = join(root, "manifest.json");
    writeFileSync(manifestFile, manifest);
    writeFileSync(join(ws, "seedshare-owner.pem"), pem(new Uint8Array(await crypto.subtle.exportKey("pkcs8", owner.keys.privateKey)), "PRIVATE KEY"), { mode: 0o600 });

    // Both replicas start on an empty store; the first set goes through A.
    await Promise.all([start("a"), start("b")]);
    const set = await call(url("a"), "POST", "/v1/manifest", { manifest: toBase64(manifest), policies: policies.map(toBase64) });
    expect(set.status, set.text).toBe(200);
    doc = set.body.seedShares as SeedShareDocument;
    rootCA = set.body.rootCA as string;
    firstTransition = set.body.transition as string;
    writeFileSync(join(ws, "seed-shares.json"), JSON.stringify(doc, null, 2) + "\n");
  }, 180_000);

  afterAll(async () => {
    await killAll();
    rmSync(root, { recursive: true, force: true });
  });

  it("a replica that started uninitialized notices the first set and recovers from its peer, with no owner", async () => {
    await readyAt("b", 1);
    expect((await history("b")).text).toBe((await history("a")).text);
    expect(logLines(procs.b!, "another Coordinator initialized the store: recovery required")).toHaveLength(1);
    expect(logLines(procs.b!, "recovered from a peer replica")).toHaveLength(1);
    expect(logLines(procs.a!, "served the root seed to an attested peer replica")).toHaveLength(1);
  }, 60_000);

  it("kill -9 one replica: it comes back ready with no owner action", async () => {
    const killedAt = Date.now();
    expect((await procs.b!.stop("SIGKILL")).signal).toBe("SIGKILL");
    const b = await start("b");
    const { at } = await readyAt("b", 1);
    const recovered = logLines(b, "recovered from a peer replica");
    expect(recovered).toHaveLength(1);
    expect(logLines(b, "recovered")).toHaveLength(0); // no owner's share was ever sent
    console.log(
      `peers: kill -9 → ready through peer recovery in ${at - killedAt} ms (process start to recovered: ${String(recovered[0].sinceProcessStartMs)} ms; 2 shared cores, fs store)`,
    );
    expect((await history("b")).text).toBe((await history("a")).text);
  }, 60_000);

  it("a forged, relayed or replayed seed request to a real replica gets nothing and changes nothing", async () => {
    const before = { a: (await call(url("a"), "GET", "/v1/status")).text, history: (await history("a")).text };
    const tee = parseSavedTee(readFileSync(join(teeDir, teeFiles.secrets), "utf8"), "tee.json");
    const genuine = savedTeeEvidenceSource(tee, { measurement: fromHex(testMeasurement.snp), hostData: fromHex(coordinatorPolicyHash) });
    const impostor = savedTeeEvidenceSource(tee, { measurement: fromHex("6b".repeat(48)), hostData: fromHex(coordinatorPolicyHash) });
    const key = (await HpkeRecipient.generate()).publicKey;
    const nonce = async (): Promise<string> => {
      const challenge = await call(url("a"), "POST", "/v1/peers/seed", {});
      expect(challenge.status).toBe(401);
      return challenge.body.nonce as string;
    };
    const request = async (n: string, source = genuine, bound = key, sent = key) => ({
      nonce: n,
      hpkePublicKey: toBase64(sent),
      evidence: await source.evidence(await coordinatorReportData({ nonce: fromHex(n), hpkePublicKey: bound, name, state: null })),
    });
    const refusals: [unknown, string, string | undefined][] = [
      [await request(await nonce(), impostor), "ATTESTATION_FAILED", "SNP_MEASUREMENT_MISMATCH"],
      [await request(await nonce(), genuine, key, (await HpkeRecipient.generate()).publicKey), "ATTESTATION_FAILED", "COORDINATOR_REPORT_DATA_MISMATCH"],
      [await request("00".repeat(32)), "NONCE_INVALID", undefined],
    ];
    // What a genuine requester sent once, captured and sent again.
    const captured = await request(await nonce());
    const served = await call(url("a"), "POST", "/v1/peers/seed", captured);
    expect(served.status, served.text).toBe(200);
    refusals.push([captured, "NONCE_REPLAYED", undefined]);
    for (const [body, code, reason] of refusals) {
      const answer = await call(url("a"), "POST", "/v1/peers/seed", body);
      expect({ status: answer.status, code: (answer.body.error as Json)?.code, reason: (answer.body.error as Json)?.reason }, answer.text).toEqual({ status: 403, code, reason });
      expect(answer.text).not.toMatch(/ciphertext/);
    }
    expect({ a: (await call(url("a"), "GET", "/v1/status")).text, history: (await history("a")).text }).toEqual(before);
  }, 60_000);

  it("kill -9 both: the owners recover one, and the other recovers from it", async () => {
    await Promise.all([procs.a!.stop("SIGKILL"), procs.b!.stop("SIGKILL")]);
    const [a, b] = await Promise.all([start("a"), start("b")]);
    expect((await status("a")).state).toBe("recovery-required");
    expect((await status("b")).state).toBe("recovery-required");
    // Neither has a ready peer: the owners are needed, and not refused.
    const run = await recoverWithCli("a");
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ state: "ready", recovered: true, generation: 1 });
    await readyAt("b", 1);
    expect(logLines(b, "recovered from a peer replica")).toHaveLength(1);
    expect(logLines(a, "recovered")).toHaveLength(1);
    expect((await history("b")).text).toBe((await history("a")).text);
  }, 120_000);

  it("a head rolled back in the store is refused while a peer knows the newer one; the restored head is adopted", async () => {
    const headFile = await fsPathOf(storeDir, headKey(name));
    head1 = readFileSync(headFile);
    // An update through A; B follows it.
    const db = await policy("policy of db\n");
    const manifest2 = JSON.parse(readFileSync(manifestFile, "utf8")) as Json;
    manifest2.Policies[db.hash] = { SANs: ["db"], WorkloadSecretID: "db" };
    const body = await updateBody(utf8(JSON.stringify(manifest2)), [...policies, db.bytes], firstTransition, workload, { name, rootCA });
    const update = await call(url("a"), "POST", "/v1/manifest", body);
    expect(update.status, update.text).toBe(200);
    await readyAt("b", 2);
    const newestFile = await fsPathOf(storeDir, headKey(name));
    const head2 = readFileSync(newestFile);

    // B dies; someone with access to the disk puts the older, once valid head back.
    await procs.b!.stop("SIGKILL");
    writeFileSync(newestFile, head1);
    const b = await start("b");
    const refused = await until(() => status("b"), (s) => s.refusedHead !== undefined);
    expect(refused.value).toMatchObject({ state: "recovery-required", generation: null, refusedHead: { code: "ROLLBACK_DETECTED" } });
    expect(refused.value.refusedHead.message).toMatch(/older head than a peer: rollback refused/);
    const logged = await until(async () => logLines(b, "the store holds an older head than a peer: rollback refused"), (lines) => lines.length > 0);
    expect(logged.value[0]).toMatchObject({ level: "error", code: "ROLLBACK_DETECTED" });
    expect(await rollbackRounds("b")).toBeGreaterThanOrEqual(1);
    // It stays so round after round, and writes nothing: the store still holds the rolled-back head; A keeps generation 2.
    await until(() => rollbackRounds("b"), (n) => n >= 2);
    expect(readFileSync(newestFile)).toEqual(head1);
    expect((await status("b")).state).toBe("recovery-required");
    expect((await status("a")).generation).toBe(2);

    // The newest head restored: B adopts it by itself.
    writeFileSync(newestFile, head2);
    await readyAt("b", 2);
    expect((await history("b")).text).toBe((await history("a")).text);
  }, 120_000);

  it("an owner recover while a ready peer exists is refused PEERS_READY (nothing kept); --force recovers, onto whatever head the store holds", async () => {
    const headFile = await fsPathOf(storeDir, headKey(name));
    // B dies again and the store is rolled back again: B cannot recover from A, and sees A ready.
    await procs.b!.stop("SIGKILL");
    writeFileSync(headFile, head1);
    await start("b");
    await until(() => status("b"), (s) => s.refusedHead?.code === "ROLLBACK_DETECTED");
    const before = await status("b");

    const refused = await recoverWithCli("b");
    expect(refused.code).toBe(1);
    const error = (JSON.parse(refused.stdout) as Json).error;
    expect(error.code).toBe("PEERS_READY");
    expect(error.hint).toMatch(/--force/);
    expect(error.hint).toMatch(/split/);
    const after = await status("b");
    expect({ state: after.state, received: after.recovery.received, nonce: after.recovery.nonce }).toEqual({
      state: before.state,
      received: 0,
      nonce: before.recovery.nonce,
    });

    const forced = await recoverWithCli("b", "--force");
    expect(forced.code, forced.stderr + forced.stdout).toBe(0);
    expect(forced.stderr).toMatch(/--force: .*split the replicas/);
    // What --force risks: B now serves the rolled-back generation 1 while A holds generation 2.
    expect(JSON.parse(forced.stdout)).toMatchObject({ state: "ready", recovered: true, generation: 1 });
    expect((await status("b")).generation).toBe(1);
    expect((await status("a")).generation).toBe(2);
  }, 120_000);
});

describe("--peers, --peer-interval and --simulated-tee mistakes", () => {
  it("exit 2 with one line naming the flag", () => {
    const dir = mkdtempSync(join(tmpdir(), "contrast-peers-config-"));
    writeFileSync(join(dir, "not-a-tee.json"), JSON.stringify({ format: "something else" }));
    const cases: [string[], RegExp][] = [
      [["--peers", "ftp://peer:1313"], /--peers: .* must be an http:\/\/ or https:\/\/ base URL/],
      [["--peers", "http://peer:1313/v1"], /--peers: .* without a path/],
      [["--peers", "not a url"], /--peers must be a comma-separated list/],
      [["--peers", "kubernetes:port=1313"], /--peers kubernetes: service=NAME is required/],
      [["--peers", "kubernetes:service=coordinator-peers,color=blue"], /--peers kubernetes: unknown option "color"/],
      [["--peers", "kubernetes:service=coordinator-peers"], /needs the Kubernetes store/],
      [["--peer-interval", "10ms"], /--peer-interval must be a duration from 100ms to 1h/],
      [["--simulated-tee", join(dir, "not-a-tee.json")], /--simulated-tee signs the simulated evidence, so it needs --evidence simulated/],
      [["--evidence", "simulated", "--simulated-tee", join(dir, "not-a-tee.json")], /--simulated-tee .*is not a saved test TEE/],
      [["--evidence", "simulated", "--simulated-tee", join(dir, "missing.json")], /--simulated-tee .*ENOENT/],
    ];
    try {
      for (const [flags, message] of cases) {
        const run = spawnSync(process.execPath, [bundlePath, "--store", "memory", "--port", "0", "--host", "127.0.0.1", ...flags], { cwd: dir, encoding: "utf8", timeout: 20_000 });
        expect({ flags, code: run.status }).toEqual({ flags, code: 2 });
        expect(run.stderr).toMatch(/^contrast-coordinator: error: /);
        expect(run.stderr.trim().split("\n")).toHaveLength(1);
        expect(run.stderr).toMatch(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
