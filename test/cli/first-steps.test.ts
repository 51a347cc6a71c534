// What a new user stumbles on: waits that cannot end well end at once, messages that say what to do, and no silent surprises (an empty policies/, an overwritten key.pem).
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, isPlainHttpAnswer, normalizeBaseUrl } from "../../src/client/client.js";
import { parseDuration } from "../../src/client/retry.js";
import { parseSeedShareDocument } from "../../src/client/seedshares.js";
import { errorStatus } from "../../src/errors.js";
import { requestTimeout } from "../../adapters/cli/context.js";
import type { Context } from "../../adapters/cli/context.js";
import { toCliError } from "../../adapters/cli/errors.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, rewritingProxy, snapshot } from "./harness.js";

const openssl = (dir: string, ...args: string[]) => execFileSync("/usr/bin/openssl", args, { cwd: dir, stdio: "pipe" });

/** An HTTP server that accepts every request and never answers. */
async function silentServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer(() => undefined);
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** The code of a --json failure. */
function jsonCode(stdout: string): string {
  return (JSON.parse(stdout) as { error: { code: string } }).error.code;
}

describe("first steps of a new user (real processes)", () => {
  let work: string;
  let ws: string;
  let stateDir: string;
  let proc: CoordinatorProcess;
  const cli = (args: string[], dir = ws, url = proc.url) => contrast(["-c", url, "-w", dir, ...args], work);

  async function status(url = proc.url): Promise<{ state: string; generation: number | null }> {
    return (await (await fetch(`${url}/v1/status`)).json()) as { state: string; generation: number | null };
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-first-steps-"));
    ws = join(work, "ws");
    stateDir = join(work, "state");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    expectOk(await cli(["generate", "--seedshare-owner-bits", "3072"]));
    expectOk(await cli(["set"]));
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  describe("no silent surprises", () => {
    it("generate refuses an empty policies/ and writes nothing", async () => {
      const empty = join(work, "empty-policies");
      mkdirSync(join(empty, "policies"), { recursive: true });
      writeFileSync(join(empty, "policies", ".keep"), "");
      const before = snapshot(empty);
      const run = await contrast(["-w", empty, "generate", "--json"], work);
      const line = expectFailure(run);
      expect(jsonCode(run.stdout)).toBe("NO_POLICIES");
      expect(line).toMatch(/policies\/ holds no policy file, and a manifest without policies admits no workload; put one file per workload policy there/);
      expect(snapshot(empty)).toEqual(before);
      // With a policy it works.
      writeFileSync(join(empty, "policies", "web.rego"), "package web\n");
      expectOk(await contrast(["-w", empty, "generate", "--seedshare-owner-bits", "3072"], work));
      expect(existsSync(join(empty, "manifest.json"))).toBe(true);
    });

    it("mesh-cert does not replace an existing key.pem without --force, and asks the Coordinator nothing", async () => {
      const out = join(work, "certs");
      const args = ["mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", out, "--attestation", "insecure-simulated"];
      expectOk(await cli(args));
      const first = snapshot(out);
      const proxy = await rewritingProxy(proc.url, () => undefined);
      try {
        const run = await contrast(["-c", proxy.url, "-w", ws, "--json", ...args], work);
        expect(expectFailure(run)).toMatch(/certs\/ already holds key\.pem, cert-chain\.pem, mesh-ca\.pem, coordinator-root-ca\.pem, workload-secret, which this would replace.*--force.*nothing was requested/);
        expect(jsonCode(run.stdout)).toBe("OUTPUT_EXISTS");
        expect(proxy.exchanges).toEqual([]);
        expect(snapshot(out)).toEqual(first);
        // One leftover file is enough to refuse.
        const partial = join(work, "partial");
        mkdirSync(partial);
        writeFileSync(join(partial, "key.pem"), "mine\n");
        const again = await contrast(["-c", proxy.url, "-w", ws, ...args.slice(0, 3), "-o", partial, "--attestation", "insecure-simulated"], work);
        expect(expectFailure(again)).toMatch(/partial\/ already holds key\.pem,/);
        expect(readFileSync(join(partial, "key.pem"), "utf8")).toBe("mine\n");
        expect(proxy.exchanges).toEqual([]);
      } finally {
        await proxy.close();
      }
      const forced = await cli([...args, "--force"]);
      expectOk(forced);
      expect(forced.stdout).toMatch(/\(replaced key\.pem, cert-chain\.pem, mesh-ca\.pem, coordinator-root-ca\.pem, workload-secret: --force\)/);
      expect(readFileSync(join(out, "key.pem"), "hex")).not.toBe(first["key.pem"]);
    });
  });

  describe("messages that say what to do", () => {
    it("a URL with the API path: exit 2, naming the base URL", async () => {
      for (const suffix of ["/v1", "/v1/", "/v1/status"]) {
        const line = expectFailure(await contrast(["-c", `${proc.url}${suffix}`, "status"], work), 2);
        expect(line).toContain(`includes the API path /v1`);
        expect(line).toContain(`use the base URL ${proc.url}`);
      }
    });

    it("a negative or missing --timeout: exit 2, a usage line of its own", async () => {
      expect(expectFailure(await cli(["status", "--timeout", "-5s"]), 2)).toMatch(/--timeout -5s: a duration cannot be negative; a duration is e\.g\. 30s/);
      expect(expectFailure(await cli(["status", "--timeout=-5s"]), 2)).toMatch(/--timeout: "-5s" is negative/);
      expect(expectFailure(await cli(["status", "--timeout"]), 2)).toMatch(/--timeout needs a value/);
      expect(expectFailure(await contrast(["status", "-c", "-x"], work), 2)).toMatch(/-c -x: the value of --coordinator starts with "-".*--coordinator=-x/);
    });

    it("a truncated seed-shares.json: not JSON, truncated", async () => {
      const damaged = join(work, "truncated");
      mkdirSync(damaged);
      cpSync(join(ws, "seedshare-owner.pem"), join(damaged, "seedshare-owner.pem"));
      const full = readFileSync(join(ws, "seed-shares.json"), "utf8");
      writeFileSync(join(damaged, "seed-shares.json"), full.slice(0, full.length / 2));
      const run = await contrast(["-w", damaged, "seedshare", "check", "--json"], work);
      expect(expectFailure(run)).toMatch(/seed-shares\.json is not a seed-share document \(it is not JSON: the file is empty, truncated or damaged\)/);
      expect(jsonCode(run.stdout)).toBe("FILE_INVALID");
    });

    it("a damaged key file is named, whatever part of it is wrong", async () => {
      const keys = join(work, "bad-keys");
      mkdirSync(keys);
      openssl(keys, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", "rsa.pem");
      const pem = readFileSync(join(keys, "rsa.pem"), "utf8");
      const bad: Record<string, string> = {
        "base64.pem": "-----BEGIN PRIVATE KEY-----\nMIIB!!!\n-----END PRIVATE KEY-----\n",
        "sec1.pem": "-----BEGIN EC PRIVATE KEY-----\nMAMCAQE=\n-----END EC PRIVATE KEY-----\n",
        "pkcs8.pem": "-----BEGIN PRIVATE KEY-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n",
        "cut.pem": pem.slice(0, 200) + "\n-----END PRIVATE KEY-----\n",
      };
      for (const [name, text] of Object.entries(bad)) writeFileSync(join(keys, name), text);
      for (const name of Object.keys(bad)) {
        const file = join(keys, name);
        const check = await contrast(["-w", ws, "seedshare", "check", "--seedshare-owner-key", file, "--json"], work);
        expect(expectFailure(check)).toContain(`bad-keys/${name} is not a valid key file: `);
        expect(jsonCode(check.stdout)).toBe("KEY_INVALID");
        expect(expectFailure(await contrast(["-w", ws, "generate", "--add-workload-owner-key", file], work))).toContain(`${file} is not a valid key file: `);
      }
    });

    it("https against a plain http Coordinator: use http://, and recover then needs --insecure-http", async () => {
      const https = proc.url.replace(/^http:/, "https:");
      const run = await contrast(["-c", https, "status", "--json"], work);
      const line = expectFailure(run);
      expect(line).toContain(`the Coordinator at ${https} does not speak https: it answered in plain http (wrong version number): use ${proc.url}`);
      expect(line).toMatch(/contrast recover also needs --insecure-http/);
      expect(jsonCode(run.stdout)).toBe("UNREACHABLE");
      // The same through the fetch that trusts a private CA (node:https).
      const ca = join(work, "some-ca");
      mkdirSync(ca);
      openssl(ca, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=some CA", "-keyout", "ca-key.pem", "-out", "ca.pem");
      expect(expectFailure(await contrast(["-c", https, "--ca", join(ca, "ca.pem"), "status"], work))).toContain(`does not speak https: it answered in plain http (wrong version number): use ${proc.url}`);
      const before = await status();
      expect(expectFailure(await cli(["recover"], ws, https))).toContain("does not speak https");
      expect(await status()).toEqual(before);
    });

    it("http against an https Coordinator: use https:// (no wait)", async () => {
      const dir = join(work, "tls");
      mkdirSync(dir);
      openssl(dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem");
      const tls = await startCoordinator({ store: "memory", extraArgs: ["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")] });
      try {
        // Without the fix this waited --timeout (3 minutes by default), retrying a closed connection.
        const line = expectFailure(await contrast(["-c", tls.url, "status"], work));
        expect(line).toContain(`the Coordinator at ${tls.url} speaks https, not plain http`);
        expect(line).toContain(`use https://127.0.0.1:${tls.port}`);
        expectOk(await contrast(["-c", `https://127.0.0.1:${tls.port}`, "--ca", join(dir, "cert.pem"), "status"], work));
      } finally {
        await tls.stop("SIGKILL");
      }
    });
  });

  describe("no long silent waits", () => {
    it("a Coordinator that never answers: --timeout bounds each request", async () => {
      const silent = await silentServer();
      try {
        const run = await contrast(["-c", silent.url, "-w", ws, "--timeout", "2s", "status", "--json"], work);
        expect(expectFailure(run)).toMatch(/gave up after 2s: GET http:\/\/127\.0\.0\.1:\d+\/v1\/status got no answer within \d+(ms|s)/);
        expect(jsonCode(run.stdout)).toBe("REQUEST_TIMEOUT");
        // set waits for the status first: bounded the same way (it took the request's 60 s before).
        const set = await contrast(["-c", silent.url, "-w", ws, "--timeout", "2s", "set", "--json"], work);
        expect(expectFailure(set)).toMatch(/gave up after 2s: GET .*\/v1\/status got no answer/);
        expect(jsonCode(set.stdout)).toBe("REQUEST_TIMEOUT");
      } finally {
        await silent.close();
      }
    });

    it("an uninitialized Coordinator: mesh-cert ends at once with what to do", async () => {
      const fresh = await startCoordinator({ store: "memory" });
      try {
        const run = await contrast(["-c", fresh.url, "--json", "mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", join(work, "nowhere"), "--attestation", "insecure-simulated"], work);
        const line = expectFailure(run);
        expect(line).toMatch(/has no manifest yet \[409 NOT_INITIALIZED\]; the workload owner runs contrast set first; or pass --timeout DURATION/);
        expect(jsonCode(run.stdout)).toBe("NOT_INITIALIZED");
        expect(existsSync(join(work, "nowhere"))).toBe(false);
      } finally {
        await fresh.stop("SIGKILL");
      }
    });

    it("a Coordinator that needs recovery: set, verify and mesh-cert end at once; with --timeout they wait, then say the same", async () => {
      await proc.stop("SIGKILL");
      proc = await startCoordinator({ store: `fs:${stateDir}` });
      expect((await status()).state).toBe("recovery-required");
      writeFileSync(join(ws, "policies", "api.rego"), "package api\n");
      expectOk(await cli(["generate"]));
      const before = snapshot(ws);
      // set checks the state itself before it sends anything.
      const set = await cli(["set", "--json"]);
      expect(expectFailure(set)).toMatch(/recovery-required.*each seed-share owner runs contrast recover/);
      expect(jsonCode(set.stdout)).toBe("RECOVERY_REQUIRED");
      for (const args of [["verify"], ["mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", join(work, "later"), "--attestation", "insecure-simulated"]]) {
        // The default --timeout is 3 minutes; the harness kills a run after 30 s, so none of these waited.
        const run = await cli([...args, "--json"]);
        const line = expectFailure(run);
        expect(line, args[0]).toMatch(/the Coordinator at http:\/\/127\.0\.0\.1:\d+ needs recovery: it restarted and waits for its seed-share owners \[409 RECOVERY_REQUIRED\]; each seed-share owner runs contrast recover .*; or pass --timeout DURATION/);
        expect(jsonCode(run.stdout)).toBe("RECOVERY_REQUIRED");
      }
      const waited = expectFailure(await cli(["verify", "--timeout", "1s"]));
      expect(waited).toMatch(/^contrast: error: gave up after 1s: the Coordinator at .* needs recovery: .*\[409 RECOVERY_REQUIRED\]; each seed-share owner runs contrast recover/);
      expect(waited).not.toMatch(/or pass --timeout/);
      expect(snapshot(ws)).toEqual(before);
      expect(await status()).toMatchObject({ state: "recovery-required" });
      // The way out it names works.
      expectOk(await cli(["recover", "--insecure-http"]));
      expectOk(await cli(["set"]));
    });
  });
});

describe("the pieces", () => {
  it("normalizeBaseUrl refuses an API path and names the base URL", () => {
    expect(normalizeBaseUrl("http://h:1313/")).toBe("http://h:1313");
    expect(normalizeBaseUrl("https://h/coordinator")).toBe("https://h/coordinator");
    expect(normalizeBaseUrl("http://h/v1beta")).toBe("http://h/v1beta");
    expect(() => normalizeBaseUrl("http://h:1313/v1")).toThrow(/use the base URL http:\/\/h:1313$/);
    expect(() => normalizeBaseUrl("https://h/prefix/v1/manifests")).toThrow(/API path \/v1\/manifests.*use the base URL https:\/\/h\/prefix$/);
  });

  it("isPlainHttpAnswer knows OpenSSL's words for a plain http answer, and nothing else", () => {
    expect(isPlainHttpAnswer(new TypeError("fetch failed", { cause: Object.assign(new Error("x"), { code: "ERR_SSL_WRONG_VERSION_NUMBER" }) }))).toBe(true);
    expect(isPlainHttpAnswer(Object.assign(new Error("write EPROTO 80:error:0A0000C6:SSL routines:tls_get_more_records:packet length too long"), { code: "EPROTO" }))).toBe(true);
    expect(isPlainHttpAnswer(new TypeError("fetch failed", { cause: Object.assign(new Error("self-signed certificate"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }) }))).toBe(false);
    expect(isPlainHttpAnswer(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(false);
  });

  it("a request gets what is left of --timeout (1 s to 60 s); a state-changing one 60 s unless --timeout was given", () => {
    const ctx = (timeoutMs: number, timeoutGiven: boolean): Context => ({ workspace: ".", coordinator: undefined, timeoutMs, timeoutGiven, deadline: 1_000_000 + timeoutMs, out: undefined as never, flags: {} });
    expect(requestTimeout(ctx(5_000, true), "GET", 1_000_000)).toBe(5_000);
    expect(requestTimeout(ctx(5_000, true), "POST", 1_002_000)).toBe(3_000);
    expect(requestTimeout(ctx(5_000, true), "GET", 1_009_000)).toBe(1_000);
    expect(requestTimeout(ctx(180_000, false), "GET", 1_000_000)).toBe(60_000);
    expect(requestTimeout(ctx(180_000, false), "GET", 1_170_000)).toBe(10_000);
    expect(requestTimeout(ctx(180_000, false), "POST", 1_170_000)).toBe(60_000);
    expect(requestTimeout(ctx(0, true), "GET", 1_000_000)).toBe(60_000);
  });

  it("durations: a negative one is named as such", () => {
    expect(() => parseDuration("-5s")).toThrow(/"-5s" is negative/);
  });

  it("a seed-share document that is not JSON, or not an object, says so", () => {
    expect(() => parseSeedShareDocument(undefined)).toThrow(/not JSON: the file is empty, truncated or damaged/);
    expect(() => parseSeedShareDocument([])).toThrow(/not an object of the format contrast-seed-shares\/v1/);
  });

  it("every code the Coordinator can answer with has a hint", () => {
    for (const code of Object.keys(errorStatus)) {
      const err = toCliError(new ClientError(code, `something about ${code}`, { status: errorStatus[code as keyof typeof errorStatus] }));
      expect(err.code).toBe(code);
      expect(err.hint, code).not.toBe("");
    }
    for (const code of ["UNREACHABLE", "REQUEST_TIMEOUT", "BAD_RESPONSE"]) expect(toCliError(new ClientError(code, "x")).hint, code).not.toBe("");
  });
});
