// The Kubernetes store never sends its bearer token over plain http unless insecure-http=true says so: settings checks, and the real bundle against a listener that records Authorization headers.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../adapters/node/config.js";
import { kubernetesStore, resolveKubernetesSettings } from "../../adapters/node/kubernetes.js";
import { ensureBundle, killAll, runBundle, startCoordinator } from "../e2e/process.js";

let dir: string;
let tokenFile: string;
const token = `secret-token-${Math.random().toString(36).slice(2)}`;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "contrast-k8s-http-"));
  tokenFile = join(dir, "token");
  writeFileSync(tokenFile, `${token}\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("resolveKubernetesSettings: plain http and tokens", () => {
  it("refuses an http:// server with a token file, with a one-line ConfigError", () => {
    let error: unknown;
    try {
      resolveKubernetesSettings({ kind: "kubernetes", mode: "crd", server: "http://127.0.0.1:8080", namespace: "x", tokenFile }, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^--store kubernetes: refusing to send the token to http:\/\/127\.0\.0\.1:8080 over plain http/);
    expect((error as Error).message).not.toContain("\n");
  });

  it("accepts an http:// server without a token, and with one when insecure-http=true", () => {
    expect(resolveKubernetesSettings({ kind: "kubernetes", mode: "crd", server: "http://127.0.0.1:8001", namespace: "x" }, {})).toMatchObject({
      tokenFile: null,
    });
    const settings = resolveKubernetesSettings(
      { kind: "kubernetes", mode: "crd", server: "http://127.0.0.1:8080", namespace: "x", tokenFile, insecureHttp: true },
      {},
    );
    expect(settings).toMatchObject({ server: "http://127.0.0.1:8080", tokenFile, insecureHttp: true });
  });

  it("refuses settings made by hand that would send a token over http (the driver checks too)", () => {
    expect(() =>
      kubernetesStore({ server: "http://127.0.0.1:8080", namespace: "x", tokenFile, caFile: null, mode: "crd" }, "coordinator"),
    ).toThrow(/refusing to send the token/);
  });
});

/**
 * A fake API server that records the Authorization header of every request and answers 404 (nothing
 * stored), except that it accepts the start-up probe's dry-run creates (201, nothing stored).
 */
async function listener(): Promise<{ server: Server; port: number; seen: { method: string; url: string; authorization: string | undefined }[] }> {
  const seen: { method: string; url: string; authorization: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization });
    req.resume();
    if (req.method === "POST" && (req.url ?? "").includes("dryRun=All")) {
      res.writeHead(201, { "content-type": "application/json" });
      res.end("{}");
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 }));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address();
  return { server, port: typeof address === "object" && address !== null ? address.port : 0, seen };
}

describe("the bundle against a plain-http listener (the token-theft attack)", () => {
  let fake: Awaited<ReturnType<typeof listener>>;

  beforeAll(async () => {
    ensureBundle();
    fake = await listener();
  });
  afterEach(async () => {
    await killAll();
    fake.seen.length = 0;
  });
  afterAll(async () => {
    await new Promise((done) => fake.server.close(done));
  });

  it("exits 2 with one error line, and no request (so no token) reaches the listener", async () => {
    const result = await runBundle(
      ["--port", "0", "--host", "127.0.0.1", "--store", `kubernetes:server=http://127.0.0.1:${fake.port},namespace=x,token-file=${tokenFile}`],
      { cwd: dir },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^contrast-coordinator: error: --store kubernetes: refusing to send the token to http:\/\/127\.0\.0\.1:\d+ over plain http.*\n$/);
    expect(result.stderr.split("\n").filter((l) => l !== "")).toHaveLength(1);
    expect(result.stdout).not.toContain("listening");
    expect(fake.seen).toEqual([]);
  });

  it("with insecure-http=true it starts, warns, and really sends the token there (what the refusal prevents)", async () => {
    const proc = await startCoordinator({
      store: `kubernetes:server=http://127.0.0.1:${fake.port},namespace=x,token-file=${tokenFile},insecure-http=true`,
      extraArgs: [],
      cwd: dir,
    });
    const lines = proc.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
    const warning = lines.find((l) => l.level === "warn" && typeof l.msg === "string" && l.msg.includes("plain http"));
    expect(warning).toMatchObject({ server: `http://127.0.0.1:${fake.port}`, token: true });
    expect(lines.find((l) => l.msg === "listening")).toMatchObject({ state: "uninitialized" });
    // The start read the head from the listener, bearer token attached: exactly the leak the default refuses.
    const headRead = fake.seen.find((s) => s.method === "GET" && s.url.includes("/namespaces/x/coordinatorheads/coordinator"));
    expect(headRead?.authorization).toBe(`Bearer ${token}`);
    expect(fake.seen.every((s) => s.authorization === `Bearer ${token}`)).toBe(true);
    expect(await proc.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});
