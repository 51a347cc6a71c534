// Spawns the built Coordinator bundle as a real process, learns its port from the `listening` log line, and kills it.
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root and the bundle the end-to-end tests run. */
export const projectRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const bundlePath = join(projectRoot, "dist", "coordinator.mjs");

/** How an exited process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running (or exited) Coordinator process. */
export interface CoordinatorProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Every stdout line so far, in order. */
  stdout: string[];
  /** Everything written to stderr so far. */
  stderr: () => string;
  /** Resolves when the process has exited. */
  exited: Promise<Exit>;
  /** Sends a signal and waits for the exit. */
  stop(signal: NodeJS.Signals): Promise<Exit>;
}

/** Every child this module started and that has not exited yet; `killAll` ends them. */
const running = new Set<ChildProcess>();

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Builds the bundles (build.mjs) if `bundle` is missing or older than a source file, so the tests run on their own. */
export function ensureBundle(bundle: string = bundlePath): void {
  const sources = Math.max(newestMtime(join(projectRoot, "src")), newestMtime(join(projectRoot, "adapters")));
  if (existsSync(bundle) && statSync(bundle).mtimeMs >= sources) return;
  execFileSync(process.execPath, ["build.mjs"], { cwd: projectRoot, stdio: "pipe" });
}

/** Resolves on 'close', which comes after 'exit' once the pipes are drained (so every log line is in). */
function watchExit(child: ChildProcess): Promise<Exit> {
  return new Promise((resolveExit) => {
    child.once("close", (code, signal) => {
      running.delete(child);
      resolveExit({ code, signal });
    });
  });
}

/** The environment of a child: this one's, without anything that could find modules elsewhere. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_PATH;
  delete env.NODE_OPTIONS;
  return env;
}

/**
 * Starts `node <bundle> --port 0 --host 127.0.0.1 --store <store> [...extra]` and waits for its
 * `listening` line. Rejects (after killing it) if it exits first or is not listening within `timeoutMs`.
 */
export async function startCoordinator(opts: {
  store: string;
  bundle?: string;
  cwd?: string;
  extraArgs?: string[];
  timeoutMs?: number;
}): Promise<CoordinatorProcess> {
  const args = [
    opts.bundle ?? bundlePath,
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--store",
    opts.store,
    ...(opts.extraArgs ?? ["--attestation", "insecure-simulated"]),
  ];
  const child = spawn(process.execPath, args, { cwd: opts.cwd ?? projectRoot, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const exited = watchExit(child);
  const stdout: string[] = [];
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));

  const port = await new Promise<number>((resolvePort, reject) => {
    let partial = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the Coordinator did not log "listening" within ${opts.timeoutMs ?? 15_000} ms; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 15_000);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      partial += chunk;
      const lines = partial.split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        stdout.push(line);
        let parsed: { msg?: unknown; port?: unknown };
        try {
          parsed = JSON.parse(line) as typeof parsed;
        } catch {
          continue;
        }
        if (parsed.msg === "listening" && typeof parsed.port === "number") {
          clearTimeout(timer);
          resolvePort(parsed.port);
        }
      }
    });
    void exited.then((exit) => {
      clearTimeout(timer);
      reject(new Error(`the Coordinator exited (${JSON.stringify(exit)}) before listening; stderr: ${stderr}`));
    });
  });

  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    stdout,
    stderr: () => stderr,
    exited,
    stop(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs the bundle to completion with the given arguments; kills it (and rejects) after `timeoutMs`. */
export async function runBundle(
  args: string[],
  opts: { cwd: string; bundle?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv },
): Promise<Exit & { stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [opts.bundle ?? bundlePath, ...args], {
    cwd: opts.cwd,
    env: { ...childEnv(), ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  const closed = watchExit(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`node ${args.join(" ")} did not exit within ${opts.timeoutMs ?? 10_000} ms; stdout: ${stdout}`));
    }, opts.timeoutMs ?? 10_000);
  });
  try {
    const exit = await Promise.race([closed, timeout]);
    return { ...exit, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Kills (SIGKILL) every child still running and waits until each has exited. */
export async function killAll(): Promise<void> {
  const children = [...running];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once("exit", () => done());
          child.kill("SIGKILL");
        }),
    ),
  );
  running.clear();
}

/** Resolves after `ms` milliseconds. */
export const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` every 20 ms until `done` holds, and says when it held (the test's own timeout bounds the wait: no timed assertion). */
export async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean): Promise<{ value: T; at: number }> {
  for (;;) {
    const value = await probe();
    const at = Date.now();
    if (done(value)) return { value, at };
    await pause(20);
  }
}

/** A loopback port nobody listens on now (for processes that must know each other's ports before they start). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
