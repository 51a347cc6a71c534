// A malicious server in front of the CLI, through real processes: a proxy that lies about the result of a set cannot make `set` remember a wrong state or replace seed-shares.json, and `recover` sends no share over plain http unless told to, but works over https with a private CA.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryResponse } from "../../src/client/client.js";
import { loadSeedShareOwnerKey } from "../../src/client/keys.js";
import { openOwnShare } from "../../src/client/seedshares.js";
import { verifyHistory } from "../../src/client/verify.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64 } from "../../src/encoding.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, rewritingProxy, snapshot } from "./harness.js";
import type { Exchange } from "./harness.js";

let work: string;

beforeAll(() => {
  ensureBundles();
  work = mkdtempSync(join(tmpdir(), "contrast-cli-untrusted-"));
  mkdirSync(join(work, "keys"));
});

afterAll(async () => {
  await killAll();
  rmSync(work, { recursive: true, force: true });
});

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;
const isSet = (e: Exchange) => e.method === "POST" && e.url === "/v1/manifest";
const isHistory = (e: Exchange) => e.method === "GET" && e.url === "/v1/manifests";

describe("a proxy that lies about a set cannot make set remember a wrong state", () => {
  let proc: CoordinatorProcess;
  let ws: string;
  let history1: string;
  const cli = (url: string, ...args: string[]) => contrast(["-c", url, "-w", ws, ...args], work);
  let policy = 0;
  /** A new policy and manifest.json, so that the next set is an update. */
  const change = async (...generateArgs: string[]) => {
    writeFileSync(join(ws, "policies", `p${++policy}.rego`), `package p${policy}\n`);
    expectOk(await cli(proc.url, "generate", ...generateArgs));
  };
  const generation = async () => ((await (await fetch(`${proc.url}/v1/status`)).json()) as { generation: number }).generation;

  beforeAll(async () => {
    ws = join(work, "proxy", "ws");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    proc = await startCoordinator({ store: "memory" });
    expectOk(await cli(proc.url, "generate", "--seedshare-owner-bits", "3072"));
    expectOk(await cli(proc.url, "set"));
    history1 = await (await fetch(`${proc.url}/v1/manifests`)).text();
    await change();
    expectOk(await cli(proc.url, "set"));
    expect(readJson<{ generation: number }>(join(ws, ".contrast-state.json")).generation).toBe(2);
  });

  it("an answer rewritten to an older generation: set fails and .contrast-state.json is unchanged", async () => {
    const old = JSON.parse(history1) as HistoryResponse;
    const proxy = await rewritingProxy(proc.url, (e) => {
      if (!isSet(e) || e.status !== 200) return undefined;
      return JSON.stringify({ ...(JSON.parse(e.body) as object), generation: 1, transition: old.latestTransition });
    });
    try {
      await change();
      const before = snapshot(ws);
      const line = expectFailure(await cli(proxy.url, "set"));
      expect(line).toMatch(/the update was sent, but its result does not verify: the Coordinator answered generation 1, .* but this set makes generation 3.*\.contrast-state\.json was not changed/);
      expect(proxy.exchanges.some(isSet)).toBe(true);
      expect(snapshot(ws)).toEqual(before);
      expect(await generation()).toBe(3);
    } finally {
      await proxy.close();
    }
  });

  it("the history after the set rewritten to an older one: set fails and .contrast-state.json is unchanged", async () => {
    let posted = false;
    const proxy = await rewritingProxy(proc.url, (e) => {
      if (isSet(e)) posted = true;
      return posted && isHistory(e) ? history1 : undefined;
    });
    try {
      await change();
      const before = snapshot(ws);
      const line = expectFailure(await cli(proxy.url, "set"));
      expect(line).toMatch(/the update was sent, but its result does not verify: the Coordinator's verified history is at generation 1 .*not at this set's generation 4/);
      expect(snapshot(ws)).toEqual(before);
      expect(await generation()).toBe(4);
    } finally {
      await proxy.close();
    }
  });

  it("a rekey whose result does not verify keeps the new shares aside and never replaces seed-shares.json", async () => {
    const other = await ownerKeyFiles(join(work, "keys"), "other");
    await change("--add-seedshare-owner-key", other.pub);
    expectOk(await cli(proc.url, "seedshare", "approve"));
    let posted = false;
    const proxy = await rewritingProxy(proc.url, (e) => {
      if (isSet(e)) posted = true;
      return posted && isHistory(e) ? history1 : undefined;
    });
    const oldShares = readFileSync(join(ws, "seed-shares.json"), "utf8");
    const memory = readFileSync(join(ws, ".contrast-state.json"), "utf8");
    try {
      const line = expectFailure(await cli(proxy.url, "set"));
      expect(line).toMatch(/its result does not verify: .*\.contrast-state\.json was not changed; the seed shares it answered with are kept in seed-shares\.unverified-[0-9a-f]{16}\.json/);
    } finally {
      await proxy.close();
    }
    expect(readFileSync(join(ws, "seed-shares.json"), "utf8")).toBe(oldShares);
    expect(readFileSync(join(ws, ".contrast-state.json"), "utf8")).toBe(memory);
    // The kept document is the genuine one: it is what the Coordinator's signed head commits to, and it opens for the new owner.
    const pending = readdirSync(ws).filter((f) => f.startsWith("seed-shares.unverified-"));
    expect(pending).toHaveLength(1);
    const doc = readJson<SeedShareDocument>(join(ws, pending[0]!));
    const real = await verifyHistory((await (await fetch(`${proc.url}/v1/manifests`)).json()) as HistoryResponse);
    expect(real.generation).toBe(5);
    expect(doc.salt).toBe(real.head.recovery.salt);
    await openOwnShare(doc, await loadSeedShareOwnerKey(readFileSync(other.pem, "utf8"), other.pem));
    // Verifying directly moves the memory forward, as it should.
    expectOk(await cli(proc.url, "verify"));
    expect(readJson<{ generation: number }>(join(ws, ".contrast-state.json")).generation).toBe(5);
  });

  it("seed shares slipped into the answer of an update that changes no owner are not written", async () => {
    const foreign = readFileSync(join(ws, "seed-shares.json"), "utf8");
    const proxy = await rewritingProxy(proc.url, (e) =>
      isSet(e) && e.status === 200 ? JSON.stringify({ ...(JSON.parse(e.body) as object), seedShares: JSON.parse(foreign) as unknown }) : undefined,
    );
    try {
      await change();
      const run = await cli(proxy.url, "set");
      expectOk(run);
      expect(run.stdout).not.toMatch(/seed-shares\.json/);
    } finally {
      await proxy.close();
    }
    expect(readFileSync(join(ws, "seed-shares.json"), "utf8")).toBe(foreign);
    expect(existsSync(join(ws, "seed-shares.previous.json"))).toBe(false);
    expect(readJson<{ generation: number }>(join(ws, ".contrast-state.json")).generation).toBe(6);
  });

  it("a first set whose history does not verify keeps seed-shares.json (the only copy) but pins and remembers nothing", async () => {
    const stateDir = join(work, "proxy", "first-state");
    let first = await startCoordinator({ store: `fs:${stateDir}` });
    const fresh = join(work, "proxy", "fresh");
    mkdirSync(join(fresh, "policies"), { recursive: true });
    writeFileSync(join(fresh, "policies", "web.rego"), "package web\n");
    cpSync(join(ws, "seedshare-owner.pem"), join(fresh, "seedshare-owner.pem"));
    expectOk(await contrast(["-w", fresh, "generate"], work));
    // The proxy serves another Coordinator's history after the set.
    const proxy = await rewritingProxy(first.url, (e) => (isHistory(e) ? history1 : undefined));
    try {
      const line = expectFailure(await contrast(["-c", proxy.url, "-w", fresh, "set"], work));
      expect(line).toMatch(/the first set was sent, but its result does not verify: .*root CA.*seed-shares\.json was written anyway \(it may be the only copy of the seed shares\), but no root CA was pinned/);
    } finally {
      await proxy.close();
    }
    expect(readdirSync(fresh).sort()).toEqual(["manifest.json", "policies", "seed-shares.json", "seedshare-owner.pem", "workload-owner.pem"]);
    // It is genuine: after a restart it recovers the real Coordinator.
    await first.stop("SIGKILL");
    first = await startCoordinator({ store: `fs:${stateDir}` });
    const run = await contrast(["-c", first.url, "-w", fresh, "recover", "--insecure-http"], work);
    expectOk(run);
    expect(run.stdout).toMatch(/^recovered Coordinator coordinator: ready at generation 1/);
    await first.stop("SIGKILL");
  });
});

describe("recover over plain http and over https", () => {
  it("without --insecure-http, recover to an http:// URL refuses and sends nothing; with it, the share is in the clear on the wire", async () => {
    const ws = join(work, "http", "ws");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    const proc = await startCoordinator({ store: "memory" });
    try {
      expectOk(await contrast(["-c", proc.url, "-w", ws, "generate", "--seedshare-owner-bits", "3072"], work));
      expectOk(await contrast(["-c", proc.url, "-w", ws, "set"], work));
    } finally {
      await proc.stop("SIGKILL");
    }
    // A listener that poses as a Coordinator in recovery and records every request.
    const seen: { method: string; url: string; body: string }[] = [];
    const listener = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8").on("data", (c: string) => (body += c));
      req.on("end", () => {
        seen.push({ method: req.method ?? "", url: req.url ?? "", body });
        const recovery = { threshold: 1, received: 0, nonce: null };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(req.method === "GET" ? { state: "recovery-required", name: "coordinator", generation: null, latestTransition: null, recovery } : { state: "recovery-required", recovery }));
      });
    });
    await new Promise<void>((done) => listener.listen(0, "127.0.0.1", done));
    const url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    try {
      const line = expectFailure(await contrast(["-c", url, "-w", ws, "recover"], work), 2);
      expect(line).toMatch(/refusing to send a seed share to http:\/\/127\.0\.0\.1:\d+ over plain http without attestation: anyone on the network path can pose as the Coordinator.*--insecure-http.*nothing was sent/);
      expect(seen).toEqual([]);
      // What the refusal prevents: with --insecure-http the listener reads the share (with threshold 1, the root seed).
      expectOk(await contrast(["-c", url, "-w", ws, "recover", "--insecure-http"], work));
      const doc = readJson<SeedShareDocument>(join(ws, "seed-shares.json"));
      const { share } = await openOwnShare(doc, await loadSeedShareOwnerKey(readFileSync(join(ws, "seedshare-owner.pem"), "utf8"), "seedshare-owner.pem"));
      expect(seen.some((r) => r.method === "POST" && r.body.includes(toBase64(share)))).toBe(true);
    } finally {
      await new Promise<void>((done) => listener.close(() => done()));
    }
  });

  describe("https with a private CA", () => {
    let dir: string;
    let proc: CoordinatorProcess;
    let url: string;
    let ws: string;
    const cli = (...args: string[]) => contrast(["-c", url, "-w", ws, ...args], work);

    beforeAll(async () => {
      dir = join(work, "tls");
      mkdirSync(dir, { recursive: true });
      const openssl = (...args: string[]) => execFileSync("/usr/bin/openssl", args, { cwd: dir, stdio: "pipe" });
      // A private CA, and a server certificate it issues for 127.0.0.1.
      openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=test CA", "-keyout", "ca-key.pem", "-out", "ca.pem");
      openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=coordinator", "-keyout", "key.pem", "-out", "server.csr");
      writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
      openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "cert.pem");
      const store = `fs:${join(dir, "state")}`;
      const tls = ["--attestation", "insecure-simulated", "--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")];
      proc = await startCoordinator({ store, extraArgs: tls });
      url = `https://127.0.0.1:${proc.port}`;
      ws = join(dir, "ws");
      mkdirSync(join(ws, "policies"), { recursive: true });
      writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
      expectOk(await cli("generate", "--seedshare-owner-bits", "3072"));
      expectOk(await cli("--ca", join(dir, "ca.pem"), "set"));
      await proc.stop("SIGKILL");
      proc = await startCoordinator({ store, extraArgs: tls });
      url = `https://127.0.0.1:${proc.port}`;
    });

    it("without --ca the server's certificate is not trusted and nothing is sent", async () => {
      const line = expectFailure(await cli("recover", "--timeout", "0"));
      expect(line).toMatch(/cannot reach the Coordinator at https:\/\/127\.0\.0\.1:\d+: .*(self-signed|unable to verify|certificate)/i);
      const status = JSON.parse((await cli("--ca", join(dir, "ca.pem"), "status", "--json")).stdout) as { state: string; recovery: { received: number } };
      expect(status).toMatchObject({ state: "recovery-required", recovery: { received: 0 } });
    });

    it("a --ca that did not issue the certificate is not trusted either", async () => {
      execFileSync("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=other CA", "-keyout", "other-key.pem", "-out", "other-ca.pem"], { cwd: dir, stdio: "pipe" });
      expect(expectFailure(await cli("--ca", join(dir, "other-ca.pem"), "recover", "--timeout", "0"))).toMatch(/cannot reach the Coordinator at https:/);
      expect(expectFailure(await contrast(["-c", "http://127.0.0.1:1", "-w", ws, "--ca", join(dir, "ca.pem"), "status"], work), 2)).toMatch(/--ca is for an https:\/\/ Coordinator/);
      expect(expectFailure(await cli("--ca", join(dir, "missing.pem"), "status"))).toMatch(/--ca .*missing\.pem: does not exist/);
    });

    it("with --ca, recover sends the share over https and the Coordinator is ready; verify works over it too", async () => {
      const run = await cli("--ca", join(dir, "ca.pem"), "recover");
      expectOk(run);
      expect(run.stdout).toMatch(/^recovered Coordinator coordinator: ready at generation 1/);
      expectOk(await cli("--ca", join(dir, "ca.pem"), "verify"));
    });
  });
});
