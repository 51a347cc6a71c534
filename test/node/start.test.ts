// What a new user meets when starting the Coordinator: `--version` from the bundle alone, a clear EADDRINUSE error, and `npm start` whose server stops when npm is signalled.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { bundlePath, ensureBundle, killAll, projectRoot, runBundle, startCoordinator } from "../e2e/process.js";

const packageJson = JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { version: string; scripts: Record<string, string> };

let work: string;
beforeAll(() => {
  ensureBundle();
  work = mkdtempSync(join(tmpdir(), "contrast-start-"));
});
afterEach(() => killAll());
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("--version", () => {
  it("prints the package version and exits 0, from the bundle copied alone (no package.json near it)", async () => {
    const alone = join(work, "alone");
    mkdirSync(alone);
    copyFileSync(bundlePath, join(alone, "coordinator.mjs"));
    const result = await runBundle(["--version"], { cwd: alone, bundle: join(alone, "coordinator.mjs") });
    expect(result).toMatchObject({ code: 0, stdout: `contrast-coordinator ${packageJson.version}\n`, stderr: "" });
  });

  it("is listed in --help", async () => {
    const result = await runBundle(["--help"], { cwd: work });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ {2}--version /m);
  });
});

describe("a port that is already taken", () => {
  it("exits 2 with one line naming the port and saying another process holds it; the first server keeps serving", async () => {
    const first = await startCoordinator({ store: "memory", cwd: work, extraArgs: [] });
    const result = await runBundle(["--port", String(first.port), "--host", "127.0.0.1", "--store", "memory"], { cwd: work });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`^contrast-coordinator: error: cannot listen on 127\\.0\\.0\\.1:${first.port}: another process already holds port ${first.port} \\(EADDRINUSE[^\\n]*\\n$`));
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    expect(await first.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});

/** True if something accepts TCP connections on 127.0.0.1:port. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Listens on the port and closes again: proof that nothing holds it any more. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe("npm start", () => {
  // package.json's real start script, in a checkout whose build step is a no-op and whose dist/
  // holds the real bundle, so the test runs the script as written without rebuilding.
  let checkout: string;
  let npm: ChildProcess | null = null;

  beforeAll(() => {
    checkout = join(work, "checkout");
    mkdirSync(join(checkout, "dist"), { recursive: true });
    writeFileSync(join(checkout, "package.json"), JSON.stringify({ name: "start-check", version: "0.0.0", private: true, scripts: { start: packageJson.scripts.start } }));
    writeFileSync(join(checkout, "build.mjs"), "// no-op: the bundle is already in dist/\n");
    copyFileSync(bundlePath, join(checkout, "dist", "coordinator.mjs"));
  });
  afterEach(() => {
    // npm runs in its own process group: end the whole group, a server it left behind included.
    if (npm?.pid !== undefined) {
      try {
        process.kill(-npm.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    npm = null;
  });

  it.each(["SIGTERM", "SIGINT"] as const)("stops the server when the npm process alone gets %s, freeing the port", async (signal) => {
    const child = spawn("npm", ["start", "--", "--port", "0", "--host", "127.0.0.1", "--store", "memory"], {
      cwd: checkout,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false" },
    });
    npm = child;
    let out = "";
    child.stdout!.setEncoding("utf8");
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start did not log "listening" within 30 s: ${out}`)), 30_000);
      child.stdout!.on("data", (chunk: string) => {
        out += chunk;
        const match = /"msg":"listening"[^\n]*"port":(\d+)/.exec(out);
        if (match !== null) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
      void exited.then(() => reject(new Error(`npm start exited before listening: ${out}`)));
    });
    expect(await accepting(port)).toBe(true);

    process.kill(child.pid!, signal);
    // npm's output pipe closes only when the server holding it has exited too.
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the server kept running after npm got ${signal}: ${out}`)), 30_000);
    });
    await Promise.race([exited, stuck]).finally(() => clearTimeout(timer));
    // The server got the signal: it logged its graceful stop, and the port is free for the next start.
    expect(out).toContain(`"msg":"shutting down","signal":"${signal}"`);
    expect(out).toContain(`"msg":"stopped"`);
    expect(await accepting(port)).toBe(false);
    expect(await bindable(port)).toBe(true);
  });
});
