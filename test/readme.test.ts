// Runs the README's "Quick start" as a reader pastes it: its ```sh blocks in bash, from the checkout, against the real built Coordinator and CLI.
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectRoot, freePort } from "./e2e/process.js";
import { ensureBundles } from "./cli/harness.js";

/** The ```sh blocks of one README section, in order. */
export function shellBlocks(readme: string, heading: string): string[] {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README.md has no section ${heading}`);
  const rest = readme.slice(start + heading.length + 2);
  const next = rest.search(/^## /m);
  const section = next < 0 ? rest : rest.slice(0, next);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script with `bash -euo pipefail` in the checkout, killing it after `timeoutMs`. */
function bash(script: string, env: NodeJS.ProcessEnv, timeoutMs = 50_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-euo", "pipefail", "-c", script], { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the quick start did not finish within ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Whether a process is still running (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** Waits (at most 15 s) for a process to be gone; true if it is. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 150 && alive(pid); i++) await new Promise((done) => setTimeout(done, 100));
  return !alive(pid);
}

/** The pids of running processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text) && alive(Number(entry))) out.push(Number(entry));
    } catch {
      // it ended meanwhile
    }
  }
  return out;
}

describe("README quick start (bash, real processes)", () => {
  const readme = readFileSync(join(projectRoot, "README.md"), "utf8");
  const blocks = shellBlocks(readme, "## Quick start");
  let work: string;
  let env: NodeJS.ProcessEnv;
  let temp: string;

  beforeAll(async () => {
    // The bundles `npm run build` makes: built here (as every test of real processes does), so the
    // block's `npm run build` is answered by a stand-in that only checks it was asked for exactly that.
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-readme-"));
    const bin = join(work, "bin");
    mkdirSync(bin);
    writeFileSync(
      join(bin, "npm"),
      '#!/bin/sh\n[ "$*" = "run build" ] || { echo "npm stand-in: unexpected npm $*" >&2; exit 1; }\necho "npm run build: built by the test"\n',
    );
    chmodSync(join(bin, "npm"), 0o755);
    temp = join(work, "tmp");
    mkdirSync(temp);
    env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}`, TMPDIR: temp, CONTRAST_PORT: String(await freePort()) };
    delete env.CONTRAST_COORDINATOR;
    delete env.NODE_OPTIONS;
    delete env.NODE_PATH;
  });

  afterAll(() => {
    for (const pid of processesMentioning(work)) process.kill(pid, "SIGKILL");
    rmSync(work, { recursive: true, force: true });
  });

  it("has the blocks: start, workspace, restart and recover, mesh certificate and stop", () => {
    expect(blocks).toHaveLength(4);
    expect(blocks.join("")).toMatch(/mktemp -d/);
    expect(blocks.join("")).toMatch(/trap .* EXIT/);
  });

  it("runs pasted into bash from the checkout: exit 0, the key lines, nothing left behind", async () => {
    const before = readdirSync(projectRoot).sort();
    const run = await bash(blocks.join("\n"), env);
    expect(run.code, `stdout: ${run.stdout}\nstderr: ${run.stderr}`).toBe(0);
    // The only stderr: the CLI's warning that attestation is skipped (the Quick start has no TEE).
    expect(run.stderr.replace(/^contrast: warning: attestation skipped .*\n/gm, "")).toBe("");
    expect(run.stderr).toContain("contrast: warning: attestation skipped");
    const lines = [
      /^npm run build: built by the test$/m,
      /^created workload-owner\.pem$/m,
      /^created seedshare-owner\.pem$/m,
      /^wrote manifest\.json: 1 policy, 1 workload owner, 1 seed-share owner$/m,
      /^set the first manifest of Coordinator coordinator: generation 1, transition [0-9a-f]{64} \(verified\)$/m,
      /^verified Coordinator coordinator at http:\/\/127\.0\.0\.1:\d+$/m,
      /^state\s+ready$/m,
      /^state\s+recovery-required$/m,
      /^recovery\s+0 of 1 share received/m,
      /^recovered Coordinator coordinator: ready at generation 1, transition [0-9a-f]{64}$/m,
      /^issued a mesh certificate for workload web \(policy [0-9a-f]{64}\)$/m,
    ];
    for (const line of lines) expect(run.stdout).toMatch(line);
    // Both verifications, before and after the restart, see the root CA pinned by the first set.
    const roots = [...run.stdout.matchAll(/^ {2}root CA\s+sha256 ([0-9a-f]{64}) \(matches coordinator-root-ca\.pem\)$/gm)].map((m) => m[1]);
    expect(roots).toHaveLength(2);
    expect(roots[1]).toBe(roots[0]);
    // Nothing in the checkout, nothing in the temp directory, no Coordinator still running.
    expect(readdirSync(projectRoot).sort()).toEqual(before);
    expect(readdirSync(temp)).toEqual([]);
    expect(processesMentioning(temp)).toEqual([]);
  }, 60_000);

  it("stops its Coordinator when a step fails", async () => {
    // The first block, a command that answers (so the Coordinator is up), then a failing step.
    const script = `${blocks[0]}\ncontrast status >/dev/null\necho "coordinator $coordinator"\nfalse\n`;
    const run = await bash(script, env);
    expect(run.code).not.toBe(0);
    const pid = Number(/^coordinator (\d+)$/m.exec(run.stdout)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(await gone(pid)).toBe(true);
    expect(processesMentioning(temp)).toEqual([]);
    rmSync(temp, { recursive: true, force: true });
    mkdirSync(temp);
  }, 60_000);
});
