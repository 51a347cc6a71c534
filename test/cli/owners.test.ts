// Seed-share owners through the built dist/contrast.mjs: a 3-of-5 recovery in real processes, generate's owner and threshold flags, and the usage mistakes of the new flags.
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, snapshot } from "./harness.js";
import type { OwnerKeyFiles } from "./harness.js";

const execFileP = promisify(execFile);

interface Manifest {
  SeedshareOwnerPubKeys: string[];
  Threshold?: number;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;

let work: string;
let owners: OwnerKeyFiles[];

beforeAll(async () => {
  ensureBundles();
  work = mkdtempSync(join(tmpdir(), "contrast-cli-owners-"));
  mkdirSync(join(work, "keys"));
  owners = await Promise.all([1, 2, 3, 4, 5].map((i) => ownerKeyFiles(join(work, "keys"), `owner-${i}`)));
});

afterAll(async () => {
  await killAll();
  rmSync(work, { recursive: true, force: true });
});

describe("3 of 5 seed-share owners (real processes, fs store)", () => {
  it("owners 5, 2 and 4 recover it after SIGKILL: 1 of 3, 2 of 3, recovered; verify/ is byte-identical", async () => {
    const base = join(work, "three-of-five");
    const wo = join(base, "workload-owner");
    mkdirSync(join(wo, "policies"), { recursive: true });
    writeFileSync(join(wo, "policies", "api.rego"), "package api\n");
    const store = `fs:${join(base, "state")}`;
    let proc = await startCoordinator({ store });
    const cli = (ws: string, ...args: string[]) => contrast(["-c", proc.url, "-w", ws, ...args], work);
    const generate = await cli(wo, "generate", ...owners.flatMap((o) => ["--seedshare-owner-key", o.pub]), "--threshold", "3");
    expectOk(generate);
    expect(generate.stdout).toMatch(/5 seed-share owners \(any 3 of them recover\)/);
    expectOk(await cli(wo, "set"));
    expectOk(await cli(wo, "verify"));
    const verifyBefore = snapshot(join(wo, "verify"));
    const doc = readJson<SeedShareDocument>(join(wo, "seed-shares.json"));
    expect(doc.threshold).toBe(3);
    expect(doc.shares.map((s) => s.ownerPublicKey)).toEqual(owners.map((o) => o.spki));

    await proc.stop("SIGKILL");
    proc = await startCoordinator({ store });
    for (const [step, i] of [5, 2, 4].entries()) {
      const ws = join(base, `owner-${i}`);
      mkdirSync(ws);
      for (const f of ["seed-shares.json", "coordinator-root-ca.pem"]) cpSync(join(wo, f), join(ws, f));
      const run = await cli(ws, "recover", "--insecure-http", "--seedshare-owner-key", owners[i - 1]!.pem);
      expectOk(run);
      expect(run.stdout).toMatch(step < 2 ? new RegExp(`^share ${i} accepted: received ${step + 1} of 3 shares \\(attempt [0-9a-f]+\\)`) : /^recovered Coordinator coordinator: ready at generation 1, .*\(share 4 completed 3 of 3\)/);
    }
    expectOk(await cli(wo, "verify"));
    expect(snapshot(join(wo, "verify"))).toEqual(verifyBefore);
    await proc.stop("SIGKILL");
  });
});

describe("generate's seed-share owner flags", () => {
  it("--add-seedshare-owner-key adds; --seedshare-owner-key sets the list; --threshold is kept until given again", async () => {
    const [a, b] = owners as [OwnerKeyFiles, OwnerKeyFiles];
    const ws = join(work, "flags");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    const cli = (...args: string[]) => contrast(["-w", ws, ...args], work);
    const manifest = () => readJson<Manifest>(join(ws, "manifest.json"));

    // A new manifest: the workspace's own seedshare-owner.pem, plus the added key.
    const first = await cli("generate", "--seedshare-owner-bits", "3072", "--add-seedshare-owner-key", a.pub);
    expectOk(first);
    expect(first.stdout).toMatch(/created .*seedshare-owner\.pem/);
    expect(first.stdout).toMatch(/2 seed-share owners \(each alone recovers\)/);
    const own = (await execFileP("/usr/bin/openssl", ["pkey", "-in", join(ws, "seedshare-owner.pem"), "-pubout", "-outform", "DER"], { encoding: "buffer" })).stdout;
    const ownSpki = Buffer.from(own).toString("hex");
    expect(manifest().SeedshareOwnerPubKeys).toEqual([ownSpki, a.spki]);
    expect(manifest().Threshold).toBeUndefined();

    expectOk(await cli("generate", "--threshold", "2"));
    expect(manifest()).toMatchObject({ SeedshareOwnerPubKeys: [ownSpki, a.spki], Threshold: 2 });
    // Once a manifest exists, the workspace key is neither made again nor added: no accidental rotation.
    rmSync(join(ws, "seedshare-owner.pem"));
    const again = await cli("generate");
    expectOk(again);
    expect(again.stdout).not.toMatch(/seed-share owners change/);
    expect(existsSync(join(ws, "seedshare-owner.pem"))).toBe(false);
    expect(manifest()).toMatchObject({ SeedshareOwnerPubKeys: [ownSpki, a.spki], Threshold: 2 });

    // --seedshare-owner-key names the whole list; the same owners in another order keep the earlier order.
    const replaced = await cli("generate", "--seedshare-owner-key", a.pub, "--seedshare-owner-key", b.pub);
    expectOk(replaced);
    expect(manifest()).toMatchObject({ SeedshareOwnerPubKeys: [a.spki, b.spki], Threshold: 2 });
    expect(replaced.stdout).toMatch(/the seed-share owners change \(1 removed, 1 added\)/);
    const same = await cli("generate", "--seedshare-owner-key", b.pem, "--seedshare-owner-key", a.pub);
    expectOk(same);
    expect(same.stdout).not.toMatch(/seed-share owners change/);
    expect(manifest()).toMatchObject({ SeedshareOwnerPubKeys: [a.spki, b.spki], Threshold: 2 });

    // Mistakes: one line, exit 2, manifest.json unchanged.
    const before = readFileSync(join(ws, "manifest.json"), "utf8");
    expect(expectFailure(await cli("generate", "--seedshare-owner-key", a.pub), 2)).toMatch(
      /manifest\.json has Threshold 2, but there would be only 1 seed-share owner; pass --threshold N with N from 1 to 1/,
    );
    expect(expectFailure(await cli("generate", "--seedshare-owner-key", a.pub, "--seedshare-owner-key", a.pem), 2)).toMatch(
      /owner-1\.pub and .*owner-1\.pem are the same seed-share owner key/,
    );
    expect(expectFailure(await cli("generate", "--threshold", "two"), 2)).toMatch(/--threshold two: must be a whole number from 1/);
    expect(readFileSync(join(ws, "manifest.json"), "utf8")).toBe(before);

    // In a fresh workspace a wrong threshold creates no key either.
    const fresh = join(work, "flags-fresh");
    mkdirSync(join(fresh, "policies"), { recursive: true });
    writeFileSync(join(fresh, "policies", "web.rego"), "package web\n");
    expect(expectFailure(await contrast(["-w", fresh, "generate", "--threshold", "2"], work), 2)).toMatch(/--threshold 2: there is only 1 seed-share owner/);
    expect(Object.keys(snapshot(fresh))).toEqual(["policies/web.rego"]);

    // --threshold 1 leaves the field out (absent means 1, as in Contrast's manifest).
    const one = await cli("generate", "--threshold", "1");
    expectOk(one);
    expect(one.stdout).toMatch(/the seed-share owners change \(threshold 2 → 1\)/);
    expect(manifest().Threshold).toBeUndefined();
  });
});

describe("usage mistakes and help of the new commands", () => {
  it("each is one line and exit 2", async () => {
    const ws = join(work, "usage");
    mkdirSync(ws, { recursive: true });
    writeFileSync(join(ws, "seed-shares.json"), "{}");
    for (const [args, message] of [
      [["seedshare"], /contrast seedshare needs a subcommand; usage: contrast seedshare check/],
      [["seedshare", "verify"], /unknown subcommand "seedshare verify"/],
      [["seedshare", "check", "extra"], /unexpected argument "extra"/],
      [["recover", "-c", "http://127.0.0.1:1", "--insecure-http", "--seedshare-owner-key", "a.pem", "--seedshare-owner-key", "b.pem"], /recover takes --seedshare-owner-key once; each seed-share owner runs it with their own key/],
    ] as const) {
      expect(expectFailure(await contrast(["-w", ws, ...args], work), 2)).toMatch(message);
    }
    const help = await contrast(["seedshare", "--help"], work);
    expectOk(help);
    expect(help.stdout).toMatch(/^contrast seedshare check \[--seedshare-owner-key FILE\]/);
    expect((await contrast(["--help"], work)).stdout).toMatch(/ {2}seedshare check +offline: check that this owner's share/);
  });
});
