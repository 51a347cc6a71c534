// The end-to-end flow through the built dist/contrast.mjs against the built Coordinator in real processes: generate, set, mesh-cert, verify, SIGKILL, recover, byte-identical verify/, CA continuity with openssl, updates and a race.
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { opensslVerify } from "../certificates.js";
import { contrast, ensureBundles, expectFailure, expectOk, racingProxy, snapshot } from "./harness.js";

const execFileP = promisify(execFile);


describe("contrast end to end (real processes, fs store)", () => {
  let work: string;
  let ws: string;
  let stateDir: string;
  let proc: CoordinatorProcess;
  let verifyBefore: Record<string, string>;
  const cli = (...args: string[]) => contrast(["-c", proc.url, "-w", ws, ...args], work);
  const file = (...parts: string[]) => join(work, ...parts);

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-cli-e2e-"));
    ws = join(work, "ws");
    stateDir = join(work, "state");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\nallow := true\n");
    writeFileSync(join(ws, "policies", "db.rego"), "package db\nallow := true\n");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("generate creates the keys and the manifest", async () => {
    const run = await cli("generate", "--seedshare-owner-bits", "3072");
    expectOk(run);
    expect(run.stdout).toMatch(/created .*workload-owner\.pem/);
    expect(statSync(join(ws, "workload-owner.pem")).mode & 0o777).toBe(0o600);
    expect(statSync(join(ws, "seedshare-owner.pem")).mode & 0o777).toBe(0o600);
    const manifest = JSON.parse(readFileSync(join(ws, "manifest.json"), "utf8")) as {
      Policies: Record<string, { SANs: string[]; WorkloadSecretID: string }>;
      WorkloadOwnerKeyDigests: string[];
      SeedshareOwnerPubKeys: string[];
    };
    expect(Object.values(manifest.Policies).map((p) => p.WorkloadSecretID).sort()).toEqual(["db", "web"]);
    expect(Object.values(manifest.Policies).map((p) => p.SANs)).toContainEqual(["web"]);
    expect(manifest.WorkloadOwnerKeyDigests).toHaveLength(1);
    expect(manifest.SeedshareOwnerPubKeys).toHaveLength(1);
    // The key openssl reads is the one the manifest names.
    const { stdout } = await execFileP("/usr/bin/openssl", ["pkey", "-in", join(ws, "seedshare-owner.pem"), "-pubout", "-outform", "DER"], { encoding: "buffer" });
    expect(manifest.SeedshareOwnerPubKeys[0]).toBe(Buffer.from(stdout).toString("hex"));
  });

  it("set sends the first manifest and writes the seed shares and the CA files", async () => {
    const run = await cli("set");
    expectOk(run);
    expect(run.stdout).toMatch(/generation 1/);
    const shares = JSON.parse(readFileSync(join(ws, "seed-shares.json"), "utf8")) as { format: string; shares: unknown[] };
    expect(shares.format).toBe("contrast-seed-shares/v1");
    expect(shares.shares).toHaveLength(1);
    expect(statSync(join(ws, "seed-shares.json")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(ws, "coordinator-root-ca.pem"), "utf8")).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(readFileSync(join(ws, "mesh-ca.pem"), "utf8")).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it("mesh-cert writes a key and a chain that openssl verifies against the workspace's CA files", async () => {
    const run = await cli("mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", file("cert1"), "--attestation", "insecure-simulated");
    expectOk(run);
    expect(statSync(file("cert1", "key.pem")).mode & 0o777).toBe(0o600);
    const chain = readFileSync(file("cert1", "cert-chain.pem"), "utf8");
    writeFileSync(file("cert1", "leaf.pem"), chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    for (const args of [
      ["-CAfile", join(ws, "coordinator-root-ca.pem"), "-untrusted", file("cert1", "cert-chain.pem"), file("cert1", "leaf.pem")],
      ["-CAfile", join(ws, "mesh-ca.pem"), file("cert1", "leaf.pem")],
    ]) {
      const result = await opensslVerify(args);
      expect(result.ok, result.output).toBe(true);
    }
    // The key in key.pem is the certified one.
    const { stdout: keyPub } = await execFileP("/usr/bin/openssl", ["pkey", "-in", file("cert1", "key.pem"), "-pubout"]);
    const { stdout: certPub } = await execFileP("/usr/bin/openssl", ["x509", "-in", file("cert1", "leaf.pem"), "-noout", "-pubkey"]);
    expect(keyPub).toBe(certPub);
  });

  it("verify checks the history and writes verify/", async () => {
    const run = await cli("verify");
    expectOk(run);
    expect(run.stdout).toMatch(/verified Coordinator coordinator/);
    verifyBefore = snapshot(join(ws, "verify"));
    const names = Object.keys(verifyBefore);
    expect(names.filter((n) => !n.startsWith("policies/")).sort()).toEqual(["coordinator-root-ca.pem", "latest-transition", "manifest.1.json", "mesh-ca.pem"]);
    expect(names.filter((n) => /^policies\/[0-9a-f]{64}$/.test(n))).toHaveLength(2);
    expect(verifyBefore["manifest.1.json"]).toBe(readFileSync(join(ws, "manifest.json")).toString("hex"));
    cpSync(join(ws, "coordinator-root-ca.pem"), file("root-before.pem"));
    cpSync(join(ws, "mesh-ca.pem"), file("mesh-before.pem"));
  });

  it("after SIGKILL and a restart, status shows that recovery is needed", async () => {
    expect((await proc.stop("SIGKILL")).signal).toBe("SIGKILL");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    const run = await cli("status");
    expectOk(run);
    expect(run.stdout).toMatch(/state\s+recovery-required/);
    expect(run.stdout).toMatch(/0 of 1 share received/);
    const json = await cli("status", "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ state: "recovery-required", recovery: { threshold: 1, received: 0 } });
  });

  it("verify waits for readiness and gives up cleanly at --timeout", async () => {
    const line = expectFailure(await cli("verify", "--timeout", "1s"));
    expect(line).toMatch(/gave up after .*RECOVERY_REQUIRED.*contrast recover/);
  });

  it("recover brings it back, and verify writes a byte-identical verify/", async () => {
    const run = await cli("recover", "--insecure-http");
    expectOk(run);
    expect(run.stdout).toMatch(/recovered Coordinator coordinator: ready at generation 1/);
    expectOk(await cli("verify"));
    expect(snapshot(join(ws, "verify"))).toEqual(verifyBefore);
    // A second recover has nothing to do and says so.
    const again = await cli("recover", "--insecure-http");
    expectOk(again);
    expect(again.stdout).toMatch(/already ready/);
  });

  it("certificates from before and after the restart verify against both sets of CA files", async () => {
    expectOk(await cli("mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", file("cert2"), "--attestation", "insecure-simulated"));
    const chain = readFileSync(file("cert2", "cert-chain.pem"), "utf8");
    writeFileSync(file("cert2", "leaf.pem"), chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    const checks: [string, string[]][] = [
      ["new cert, root from before", ["-CAfile", file("root-before.pem"), "-untrusted", file("cert2", "cert-chain.pem"), file("cert2", "leaf.pem")]],
      ["new cert, mesh CA from before", ["-CAfile", file("mesh-before.pem"), file("cert2", "leaf.pem")]],
      ["old cert, root from after", ["-CAfile", file("cert2", "coordinator-root-ca.pem"), "-untrusted", file("cert1", "cert-chain.pem"), file("cert1", "leaf.pem")]],
      ["old cert, mesh CA from after", ["-CAfile", file("cert2", "mesh-ca.pem"), file("cert1", "leaf.pem")]],
    ];
    for (const [what, args] of checks) {
      const result = await opensslVerify(args);
      expect(result.ok, `${what}: ${result.output}`).toBe(true);
    }
    expect(readFileSync(file("cert2", "workload-secret"), "utf8")).toBe(readFileSync(file("cert1", "workload-secret"), "utf8"));
  });

  it("set updates the manifest after the recovery, signed by the workload owner", async () => {
    writeFileSync(join(ws, "policies", "cache.rego"), "package cache\n");
    expectOk(await cli("generate"));
    const run = await cli("set");
    expectOk(run);
    expect(run.stdout).toMatch(/generation 2/);
    const verify = await cli("verify");
    expectOk(verify);
    expect(verify.stdout).toMatch(/generation\s+2/);
    expect(readFileSync(join(ws, "verify", "manifest.2.json"))).toEqual(readFileSync(join(ws, "manifest.json")));
    expect(readFileSync(join(ws, "verify", "manifest.1.json")).toString("hex")).toBe(verifyBefore["manifest.1.json"]);
  });

  it("of two concurrent updates with the same owner key, one wins and the loser fails cleanly and changes nothing", async () => {
    // A second workspace with the same owner key and its own change.
    const ws2 = file("ws2");
    mkdirSync(join(ws2, "policies"), { recursive: true });
    for (const f of ["workload-owner.pem", "seedshare-owner.pem", "manifest.json"]) cpSync(join(ws, f), join(ws2, f));
    cpSync(join(ws, "policies"), join(ws2, "policies"), { recursive: true });
    writeFileSync(join(ws2, "policies", "queue.rego"), "package queue\n");
    expectOk(await contrast(["-w", ws2, "generate"], work));
    writeFileSync(join(ws, "policies", "search.rego"), "package search\n");
    expectOk(await cli("generate"));

    const before = { ws: snapshot(ws), ws2: snapshot(ws2) };
    const proxy = await racingProxy(proc.url);
    try {
      const runs = await Promise.all([ws, ws2].map((dir) => contrast(["-c", proxy.url, "-w", dir, "set"], work)));
      const winners = runs.filter((r) => r.code === 0);
      const losers = runs.filter((r) => r.code !== 0);
      expect(winners, JSON.stringify(runs)).toHaveLength(1);
      expect(losers).toHaveLength(1);
      expect(expectFailure(losers[0]!)).toMatch(/someone else updated the manifest first.*nothing was changed/);
      const loserDir = runs[0]!.code === 0 ? ws2 : ws;
      const winnerDir = loserDir === ws ? ws2 : ws;
      expect(snapshot(loserDir)).toEqual(loserDir === ws ? before.ws : before.ws2);

      const status = JSON.parse((await cli("status", "--json")).stdout) as { generation: number };
      expect(status.generation).toBe(3);
      expectOk(await contrast(["-c", proc.url, "-w", winnerDir, "verify"], work));
      // The loser's verify shows the winner's manifest, not its own.
      const mismatch = expectFailure(await contrast(["-c", proc.url, "-w", loserDir, "verify"], work));
      expect(mismatch).toMatch(/newest manifest \(generation 3/);
    } finally {
      await proxy.close();
    }
  });
});
