// Helpers of the CLI tests: run the built dist/contrast.mjs, snapshot directories, and a gating proxy that makes two updates race deterministically.
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "vitest";
import { ensureBundle, projectRoot, runBundle } from "../e2e/process.js";

/** The CLI bundle under test. */
export const cliPath = join(projectRoot, "dist", "contrast.mjs");

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds both bundles if either is missing or older than a source file. */
export function ensureBundles(): void {
  ensureBundle();
  const sources = Math.max(newestMtime(join(projectRoot, "src")), newestMtime(join(projectRoot, "adapters")));
  if (existsSync(cliPath) && statSync(cliPath).mtimeMs >= sources) return;
  execFileSync(process.execPath, ["build.mjs"], { cwd: projectRoot, stdio: "pipe" });
}

/** The result of one CLI run. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The warning the CLI prints when attestation is skipped (adapters/cli/attest.ts skipWarning). */
const skipWarningLine = /^contrast: warning: attestation skipped .*\n/gm;

/**
 * Runs `node dist/contrast.mjs ...args` in `cwd` and waits for it. The Coordinators of most tests
 * serve no evidence, so the CLI runs with CONTRAST_INSECURE_SKIP_ATTESTATION=1 and its warning about
 * that is taken out of stderr; `{ attest: true }` runs it as a user would, checking the Coordinator.
 */
export async function contrast(args: string[], cwd: string, timeoutMs = 30_000, opts: { attest?: boolean } = {}): Promise<CliRun> {
  const attest = opts.attest === true;
  const env = attest ? { CONTRAST_INSECURE_SKIP_ATTESTATION: "" } : { CONTRAST_INSECURE_SKIP_ATTESTATION: "1" };
  const result = await runBundle(args, { cwd, bundle: cliPath, timeoutMs, env });
  return { code: result.code, stdout: result.stdout, stderr: attest ? result.stderr : result.stderr.replace(skipWarningLine, "") };
}

/** Asserts success: exit 0 and nothing on stderr. */
export function expectOk(run: CliRun): void {
  expect(run.stderr, run.stderr).toBe("");
  expect(run.code, run.stdout).toBe(0);
}

/** Asserts a clean failure: the exit status, exactly one stderr line `contrast: error: …`, no stack trace; returns the line. */
export function expectFailure(run: CliRun, code = 1): string {
  expect(run.code, `stdout: ${run.stdout} stderr: ${run.stderr}`).toBe(code);
  const lines = run.stderr.split("\n").filter((l) => l !== "");
  expect(lines, run.stderr).toHaveLength(1);
  expect(lines[0]!.startsWith("contrast: error: "), run.stderr).toBe(true);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

/** Every file under a directory (relative path → bytes as hex), for byte-for-byte comparisons. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const rel = prefix === "" ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) walk(join(d, entry.name), rel);
      else out[rel] = readFileSync(join(d, entry.name)).toString("hex");
    }
  };
  walk(dir, "");
  return out;
}

/** A seed-share owner's key files as an owner makes them with openssl: `<name>.pem` (private) and `<name>.pub` (public), and the hex DER SPKI the manifest lists. */
export interface OwnerKeyFiles {
  pem: string;
  pub: string;
  spki: string;
}

/** Makes a seed-share owner's RSA key pair (3072 bits, the smallest allowed, to stay fast) in `dir` with openssl. */
export async function ownerKeyFiles(dir: string, name: string): Promise<OwnerKeyFiles> {
  const run = promisify(execFile);
  const pem = join(dir, `${name}.pem`);
  const pub = join(dir, `${name}.pub`);
  await run("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", pem]);
  await run("/usr/bin/openssl", ["pkey", "-in", pem, "-pubout", "-out", pub]);
  const { stdout } = await run("/usr/bin/openssl", ["pkey", "-in", pem, "-pubout", "-outform", "DER"], { encoding: "buffer" });
  return { pem, pub, spki: Buffer.from(stdout).toString("hex") };
}

/** A proxy in front of a Coordinator. */
export interface GateProxy {
  url: string;
  close(): Promise<void>;
}

/** Serves a proxy's handler on a free loopback port; a handler failure answers 599. `onClose` runs first on close. */
async function serveProxy(forward: (req: IncomingMessage, res: ServerResponse) => Promise<void>, onClose?: () => void): Promise<GateProxy> {
  const server: Server = createServer((req, res) => {
    forward(req, res).catch((err: unknown) => {
      res.writeHead(599);
      res.end(String(err));
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((done) => {
        onClose?.();
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/**
 * A proxy that forwards everything to `target`, except that it holds the first POST /v1/manifest
 * until a second one has been answered. Two `contrast set` runs through it race deterministically:
 * both read the same base, the second to post wins, the held one then finds its base stale.
 */
export async function racingProxy(target: string): Promise<GateProxy> {
  let release: (() => void) | null = null;
  const firstHeld = new Promise<void>((resolve) => (release = resolve));
  let posts = 0;
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const isSet = req.method === "POST" && req.url === "/v1/manifest";
    const order = isSet ? ++posts : 0;
    if (order === 1) await firstHeld;
    const headers: Record<string, string> = {};
    if (req.headers["content-type"] !== undefined) headers["content-type"] = req.headers["content-type"];
    const answer = await fetch(target + req.url, { method: req.method, headers, body: body.length > 0 ? body : undefined });
    const text = Buffer.from(await answer.arrayBuffer());
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" });
    res.end(text);
    if (order === 2) release!();
  };
  return serveProxy(forward, () => release!());
}

/** One request as a rewriting proxy saw it, and the answer it got from the Coordinator. */
export interface Exchange {
  method: string;
  url: string;
  requestBody: string;
  status: number;
  body: string;
}

/** A proxy that can change answers, and what passed through it. */
export interface RewritingProxy extends GateProxy {
  exchanges: Exchange[];
}

/**
 * A proxy (a malicious server in front of the CLI) that forwards everything to `target` and lets
 * `rewrite` replace an answer: it returns a new body (same status) or undefined to pass it through.
 */
export async function rewritingProxy(target: string, rewrite: (exchange: Exchange) => string | undefined): Promise<RewritingProxy> {
  const exchanges: Exchange[] = [];
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    if (req.headers["content-type"] !== undefined) headers["content-type"] = req.headers["content-type"];
    const answer = await fetch(target + req.url, { method: req.method, headers, body: body.length > 0 ? body : undefined });
    const exchange: Exchange = { method: req.method ?? "", url: req.url ?? "", requestBody: body.toString("utf8"), status: answer.status, body: await answer.text() };
    exchanges.push(exchange);
    const replaced = rewrite(exchange);
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" });
    res.end(replaced ?? exchange.body);
  };
  return { ...(await serveProxy(forward)), exchanges };
}
