// Every way `contrast` must fail: user mistakes (one clear line, nothing changed on the Coordinator), a tampered store, a foreign root CA and a rolled-back head.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fsPathOf } from "../../adapters/node/fs-driver.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, snapshot } from "./harness.js";

const openssl = "/usr/bin/openssl";

interface Status {
  state: string;
  generation: number | null;
  latestTransition: string | null;
}

describe("contrast failures (real processes)", () => {
  let work: string;
  let ws: string;
  let stateDir: string;
  let proc: CoordinatorProcess;
  const cli = (args: string[], dir = ws) => contrast(["-c", proc.url, "-w", dir, ...args], work);

  async function status(url = proc.url): Promise<Status> {
    return (await (await fetch(`${url}/v1/status`)).json()) as Status;
  }

  /** Runs a failing command and checks the exit status, the one line, and that the Coordinator did not change. */
  async function fails(args: string[], pattern: RegExp, opts: { code?: number; dir?: string } = {}): Promise<string> {
    const before = await status();
    const line = expectFailure(await cli(args, opts.dir), opts.code ?? 1);
    expect(line).toMatch(pattern);
    expect(await status()).toEqual(before);
    return line;
  }

  /** A fresh workspace directory holding copies of the named files of the main one. */
  function workspace(name: string, copy: string[] = []): string {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    for (const f of copy) cpSync(join(ws, f), join(dir, f), { recursive: true });
    return dir;
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-cli-failures-"));
    ws = join(work, "ws");
    stateDir = join(work, "state");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    execFileSync(openssl, ["genrsa", "-traditional", "-out", join(work, "other-rsa.pem"), "3072"], { stdio: "pipe" });
    execFileSync(openssl, ["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", join(work, "other-ec.pem")], { stdio: "pipe" });
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    expectOk(await cli(["generate", "--seedshare-owner-bits", "3072"]));
    expectOk(await cli(["set"]));
    expectOk(await cli(["verify"]));
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  describe("usage mistakes exit 2", () => {
    it.each([
      [["status", "--frobnicate"], /Unknown option '--frobnicate'/],
      [["launch"], /unknown command "launch"/],
      [["status", "--timeout", "soon"], /--timeout: "soon" is not a duration/],
      [["mesh-cert", "--policy", "x", "-o", "y"], /no attestation evidence.*--attestation insecure-simulated/],
      [["mesh-cert", "--policy", "x", "-o", "y", "--attestation", "snp"], /--attestation snp: unknown kind/],
      [["mesh-cert", "-o", "y", "--attestation", "insecure-simulated"], /--policy is required/],
      [["generate", "--seedshare-owner-bits", "2048"], /--seedshare-owner-bits 2048/],
      [["verify", "extra"], /unexpected argument "extra"/],
    ])("%j", async (args, pattern) => {
      await fails(args, pattern, { code: 2 });
    });

    it("no Coordinator URL, or a malformed one", async () => {
      const line = expectFailure(await contrast(["-w", ws, "status"], work), 2);
      expect(line).toMatch(/no Coordinator given.*CONTRAST_COORDINATOR/);
      expect(expectFailure(await contrast(["-c", "not a url", "status"], work), 2)).toMatch(/is not a URL/);
      expect(expectFailure(await contrast(["-c", "ftp://127.0.0.1", "status"], work), 2)).toMatch(/not an http/);
    });
  });

  describe("the wrong Coordinator URL", () => {
    it("a closed port: retried until --timeout, then one line", async () => {
      const server = createServer();
      await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
      const port = (server.address() as AddressInfo).port;
      await new Promise<void>((done) => server.close(() => done()));
      const line = expectFailure(await contrast(["-c", `http://127.0.0.1:${port}`, "--timeout", "1s", "status"], work));
      expect(line).toMatch(/gave up after 1s: cannot reach the Coordinator at http:\/\/127\.0\.0\.1:\d+.*ECONNREFUSED.*nothing listens there: check the host and port in --coordinator/);
    });

    it("something that is not a Coordinator", async () => {
      const server = createServer((_req, res) => {
        res.writeHead(200, { "content-type": "text/html" });
        res.end("<html>hello</html>");
      });
      await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        expect(expectFailure(await contrast(["-c", url, "-w", ws, "verify"], work))).toMatch(/not JSON; is this a Coordinator/);
      } finally {
        await new Promise<void>((done) => server.close(() => done()));
      }
    });
  });

  describe("user mistakes exit 1 and change nothing", () => {
    it("missing workspace, files and policies", async () => {
      await fails(["verify"], /workspace .*nowhere does not exist/, { dir: join(work, "nowhere") });
      const empty = workspace("empty");
      await fails(["set"], /manifest\.json does not exist; run contrast generate/, { dir: empty });
      await fails(["generate"], /policies\/ does not exist; create it/, { dir: empty });
      // Without seed-shares.json, recover would fetch it from the Coordinator, but first it needs the owner's key.
      await fails(["recover", "--insecure-http"], /seedshare-owner\.pem does not exist; a seed-share owner's private key is needed/, { dir: empty });
      await fails(["verify"], /manifest\.json does not exist/, { dir: empty });
      const noPolicy = workspace("no-policy", ["manifest.json", "workload-owner.pem"]);
      await fails(["set"], /references policy [0-9a-f]{64} \(workload web\), but no file in .*policies\/ has that hash/, { dir: noPolicy });
      await fails(["mesh-cert", "--policy", join(work, "missing.rego"), "-o", join(work, "out"), "--attestation", "insecure-simulated"], /missing\.rego does not exist/);
    });

    it("a malformed manifest", async () => {
      const bad = workspace("bad-manifest", ["policies", "workload-owner.pem", "seedshare-owner.pem"]);
      writeFileSync(join(bad, "manifest.json"), '{"Policies": {}, "Surprise": 1}');
      await fails(["set"], /manifest\.json is not a valid manifest/, { dir: bad });
      await fails(["generate"], /manifest\.json is not a valid manifest.*fix it or delete it/, { dir: bad });
      writeFileSync(join(bad, "manifest.json"), "{ not json");
      await fails(["set"], /not a valid manifest: manifest is not UTF-8 JSON/, { dir: bad });
    });

    it("the wrong key type, or a key that is not a workload owner", async () => {
      // An update (a manifest other than the current one), so that set needs the workload owner's key.
      const changeManifest = (dir: string) => {
        const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { Policies: Record<string, { SANs: string[] }> };
        for (const entry of Object.values(m.Policies)) entry.SANs.push("web.changed");
        writeFileSync(join(dir, "manifest.json"), JSON.stringify(m, null, 2) + "\n");
      };
      const wrongType = workspace("wrong-type", ["policies", "manifest.json"]);
      changeManifest(wrongType);
      cpSync(join(work, "other-rsa.pem"), join(wrongType, "workload-owner.pem"));
      await fails(["set"], /workload-owner\.pem is an RSA key; a workload owner key must be ECDSA P-384/, { dir: wrongType });
      await fails(["generate"], /workload-owner\.pem is an RSA key/, { dir: wrongType });
      const notOwner = workspace("not-owner", ["policies", "manifest.json"]);
      changeManifest(notOwner);
      cpSync(join(work, "other-ec.pem"), join(notOwner, "workload-owner.pem"));
      await fails(["set"], /workload-owner\.pem \(sha256 [0-9a-f]{64}\) is not a workload owner/, { dir: notOwner });
      await fails(["generate", "--add-workload-owner-key", join(work, "other-rsa.pem")], /other-rsa\.pem is an RSA key/);
    });

    it("the wrong seed-share owner key, or a damaged seed-shares.json", async () => {
      await fails(["recover", "--insecure-http", "--seedshare-owner-key", join(work, "other-rsa.pem")], /other-rsa\.pem is not one of the 1 seed-share owner in seed-shares\.json.*nothing was sent/);
      await fails(["recover", "--insecure-http", "--seedshare-owner-key", join(work, "other-ec.pem")], /is an EC P-384 key; a seed-share owner key must be RSA/);
      const damaged = workspace("damaged-shares", ["seedshare-owner.pem"]);
      writeFileSync(join(damaged, "seed-shares.json"), '{"format": "something else"}');
      await fails(["recover", "--insecure-http"], /seed-shares\.json is not a seed-share document/, { dir: damaged });
    });

    it("a first set from a workspace that already set up a Coordinator is refused (its state may have been deleted)", async () => {
      const fresh = await startCoordinator({ store: "memory" });
      try {
        const line = expectFailure(await contrast(["-c", fresh.url, "-w", ws, "set"], work));
        expect(line).toMatch(/has no state, but this workspace has seen generation 1: its store was deleted or replaced/);
        expect((await status(fresh.url)).state).toBe("uninitialized");
        expect(expectFailure(await contrast(["-c", fresh.url, "-w", ws, "verify"], work))).toMatch(/store was deleted or replaced/);
      } finally {
        await fresh.stop("SIGKILL");
      }
    });

    it("verify fails when the newest manifest is not the workspace's", async () => {
      const other = workspace("other-manifest", ["policies", "manifest.json", ".contrast-state.json", "coordinator-root-ca.pem"]);
      writeFileSync(join(other, "manifest.json"), readFileSync(join(ws, "manifest.json"), "utf8") + "\n");
      await fails(["verify"], /the history verifies, but the Coordinator's newest manifest \(generation 1/, { dir: other });
    });

    it("mesh-cert for a policy the manifest does not list", async () => {
      writeFileSync(join(work, "rogue.rego"), "package rogue\n");
      await fails(["mesh-cert", "--policy", join(work, "rogue.rego"), "-o", join(work, "rogue"), "--attestation", "insecure-simulated"], /POLICY_NOT_IN_MANIFEST/);
    });
  });

  it("verify fails loudly against a Coordinator with another root CA", async () => {
    const other = await startCoordinator({ store: "memory" });
    try {
      const ws2 = workspace("ws-other");
      mkdirSync(join(ws2, "policies"));
      writeFileSync(join(ws2, "policies", "web.rego"), "package web\n");
      cpSync(join(ws, "seedshare-owner.pem"), join(ws2, "seedshare-owner.pem"));
      expectOk(await contrast(["-c", other.url, "-w", ws2, "generate"], work));
      expectOk(await contrast(["-c", other.url, "-w", ws2, "set"], work));
      const before = snapshot(ws);
      const line = expectFailure(await contrast(["-c", other.url, "-w", ws, "verify"], work));
      expect(line).toMatch(/verification failed: the Coordinator's root CA \(sha256 [0-9a-f]{64}\) is not the one this workspace set up.*do not trust this Coordinator/);
      expect(snapshot(ws)).toEqual(before);
      // Without the pinned file, the rollback memory still knows the root.
      const memoryOnly = workspace("memory-only", ["manifest.json", ".contrast-state.json"]);
      expect(expectFailure(await contrast(["-c", other.url, "-w", memoryOnly, "verify"], work))).toMatch(/root CA .* is not the one this workspace has seen/);
    } finally {
      await other.stop("SIGKILL");
    }
  });

  it("verify fails when a stored manifest was tampered with", async () => {
    const manifestHash = readdirSync(join(stateDir, "manifests"))[0]!;
    const path = await fsPathOf(stateDir, `manifests:${manifestHash}`);
    const original = readFileSync(path);
    writeFileSync(path, original.toString("utf8").replace("web", "wEb"));
    try {
      const line = expectFailure(await cli(["verify"]));
      expect(line).toMatch(new RegExp(`manifests:${manifestHash}.*STATE_CORRUPT.*restore the store`));
    } finally {
      writeFileSync(path, original);
    }
    expectOk(await cli(["verify"]));
  });

  it("verify and recover fail when the head was rolled back to an older signed version", async () => {
    // The head of generation 1, signed and once valid: what someone with the disk can put back later.
    const generationOne = readFileSync(await fsPathOf(stateDir, "heads:coordinator"));
    expect((JSON.parse(generationOne.toString("utf8")) as { generation: number }).generation).toBe(1);
    writeFileSync(join(ws, "policies", "api.rego"), "package api\n");
    expectOk(await cli(["generate"]));
    expectOk(await cli(["set"]));
    expectOk(await cli(["verify"]));
    expect((await status()).generation).toBe(2);

    await proc.stop("SIGKILL");
    // Roll the head back: the store keeps no old versions, so the saved bytes of generation 1 are written over the current one.
    writeFileSync(await fsPathOf(stateDir, "heads:coordinator"), generationOne);
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    const recover = expectFailure(await cli(["recover", "--insecure-http"]));
    expect(recover).toMatch(/shows generation 1, but this workspace has seen generation 2 .*rolled back.*do not trust/);
    const verify = expectFailure(await cli(["verify"]));
    expect(verify).toMatch(/shows generation 1, but this workspace has seen generation 2/);
    // The memory is not lowered by the failures.
    expect(JSON.parse(readFileSync(join(ws, ".contrast-state.json"), "utf8"))).toMatchObject({ generation: 2 });
  });
});
