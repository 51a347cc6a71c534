// A forked history through real processes: the store is swapped for a copy that branched off at generation 1 and moved past the generation a workspace remembers; verify must say FORK and keep its memory.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, snapshot } from "./harness.js";

interface Memory {
  generation: number;
  latestTransition: string;
  rootCA: string;
}

interface History {
  transitions: string[];
  rootCA: string;
}

describe("a forked history that moved past the remembered generation (real processes, fs store)", () => {
  let work: string;
  let stateDir: string;
  let proc: CoordinatorProcess;
  /** The workspace that saw generation 2 of the original history. */
  let alice: string;
  /** A copy of it from generation 1: the same keys, which the attacker uses to grow the fork. */
  let forker: string;
  let seen: Memory;
  let original: History;

  const cli = (ws: string, ...args: string[]) => contrast(["-c", proc.url, "-w", ws, ...args], work);
  const memoryOf = (ws: string) => JSON.parse(readFileSync(join(ws, ".contrast-state.json"), "utf8")) as Memory;
  const history = async (): Promise<History> => (await (await fetch(`${proc.url}/v1/manifests`)).json()) as History;

  async function addPolicyAndSet(ws: string, name: string): Promise<void> {
    writeFileSync(join(ws, "policies", `${name}.rego`), `package ${name}\n`);
    expectOk(await cli(ws, "generate"));
    expectOk(await cli(ws, "set"));
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-fork-"));
    stateDir = join(work, "state");
    alice = join(work, "alice");
    forker = join(work, "forker");
    mkdirSync(join(alice, "policies"), { recursive: true });
    writeFileSync(join(alice, "policies", "web.rego"), "package web\n");
    proc = await startCoordinator({ store: `fs:${stateDir}` });

    // Generation 1; the store and the workspace are copied here, where the fork will branch off.
    expectOk(await cli(alice, "generate", "--seedshare-owner-bits", "3072"));
    expectOk(await cli(alice, "set"));
    expectOk(await cli(alice, "verify"));
    cpSync(stateDir, join(work, "state-at-1"), { recursive: true });
    cpSync(alice, forker, { recursive: true });

    // Generation 2 of the original history, verified and remembered by alice.
    await addPolicyAndSet(alice, "api");
    expectOk(await cli(alice, "verify"));
    seen = memoryOf(alice);
    expect(seen.generation).toBe(2);
    original = await history();

    // The attack: the store is replaced by the copy from generation 1 and the Coordinator restarted on it;
    // recovered with the same seed, it has the same root CA, and the fork is grown to generation 3.
    await proc.stop("SIGKILL");
    renameSync(stateDir, join(work, "state-original"));
    renameSync(join(work, "state-at-1"), stateDir);
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    expectOk(await cli(forker, "recover", "--insecure-http"));
    await addPolicyAndSet(forker, "db");
    await addPolicyAndSet(forker, "cache");
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("the fork has the same root CA and first transition, another transition at generation 2, and is at generation 3", async () => {
    const forked = await history();
    expect(forked.rootCA).toBe(original.rootCA);
    expect(forked.transitions).toHaveLength(3);
    expect(forked.transitions[0]).toBe(original.transitions[0]);
    expect(forked.transitions[1]).not.toBe(seen.latestTransition);
    expect(original.transitions[1]).toBe(seen.latestTransition);
    // The fork itself verifies offline, and a workspace that only saw generation 1 accepts it: it descends from there.
    expectOk(await cli(forker, "verify"));
    expect(memoryOf(forker).generation).toBe(3);
  });

  it("contrast verify in the workspace that saw generation 2 fails with FORK and changes nothing in it", async () => {
    const before = snapshot(alice);
    const run = await cli(alice, "--json", "verify");
    expectFailure(run);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe("FORK");
    const line = expectFailure(await cli(alice, "verify"));
    expect(line).toMatch(new RegExp(`at generation 2, but this workspace has seen ${seen.latestTransition} there`));
    // The memory is the evidence: it still names the transition seen at generation 2.
    expect(memoryOf(alice)).toEqual(seen);
    expect(snapshot(alice)).toEqual(before);
  });
});
