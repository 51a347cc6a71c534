// Attacks on who may recover, through real processes (dist/coordinator.mjs and dist/contrast.mjs): a workload owner who rekeys alone, forged or misdirected approvals, and anonymous resets of a recovery.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryResponse } from "../../src/client/client.js";
import { loadSeedShareOwnerKey, loadWorkloadOwnerKey } from "../../src/client/keys.js";
import { makeApproval, signedUpdate } from "../../src/client/update.js";
import { verifyHistory } from "../../src/client/verify.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64 } from "../../src/encoding.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, snapshot } from "./harness.js";
import type { OwnerKeyFiles } from "./harness.js";

type Owner = OwnerKeyFiles;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;

let work: string;

beforeAll(() => {
  ensureBundles();
  work = mkdtempSync(join(tmpdir(), "contrast-cli-rekey-"));
  mkdirSync(join(work, "keys"));
});

afterAll(async () => {
  await killAll();
  rmSync(work, { recursive: true, force: true });
});

/** What must not move when a rekey is refused: generation, latest transition and the seed-share salt of the verified head. */
async function recoveryState(url: string): Promise<{ generation: number; latestTransition: string; salt: string; threshold: number; shares: number }> {
  const history = await verifyHistory((await (await fetch(`${url}/v1/manifests`)).json()) as HistoryResponse);
  const r = history.head.recovery;
  return { generation: history.generation, latestTransition: history.latestTransition, salt: r.salt, threshold: r.threshold, shares: r.shares };
}

describe("a workload owner cannot rekey alone (2 of 3 owners, real processes)", () => {
  let alice: Owner, bob: Owner, carol: Owner, mallory: Owner;
  let proc: CoordinatorProcess;
  let wo: string;
  let stateDir: string;
  const dir = (...parts: string[]) => join(work, "two-of-three", ...parts);
  const asWorkloadOwner = (...args: string[]) => contrast(["-c", proc.url, "-w", wo, ...args], work);
  const owners = () => [alice.pub, bob.pub, carol.pub].flatMap((k) => ["--seedshare-owner-key", k]);
  /** A seed-share owner approves manifest.json of a copy of the workload owner's workspace; returns the approval file's path. */
  const approve = async (name: string, owner: Owner): Promise<string> => {
    rmSync(dir(name), { recursive: true, force: true });
    cpSync(wo, dir(name), { recursive: true, filter: (src) => !/(workload-owner\.pem|seed-shares[^/]*\.json|approvals|verify)$/.test(src) });
    const run = await contrast(["-c", proc.url, "-w", dir(name), "seedshare", "approve", "--seedshare-owner-key", owner.pem], work);
    expectOk(run);
    const files = readdirSync(dir(name, "approvals"));
    expect(files).toHaveLength(1);
    return dir(name, "approvals", files[0]!);
  };
  const handBack = (file: string) => {
    mkdirSync(join(wo, "approvals"), { recursive: true });
    cpSync(file, join(wo, "approvals", file.split("/").pop()!));
  };

  /** The update of the workspace's manifest.json as the workload owner would send it, signed, with the given approvals, sent straight over HTTP. */
  async function sendDirectly(approvals: { ownerPublicKey: string; signature: string }[]): Promise<{ status: number; code: string | undefined }> {
    const history = await verifyHistory((await (await fetch(`${proc.url}/v1/manifests`)).json()) as HistoryResponse);
    const owner = await loadWorkloadOwnerKey(readFileSync(join(wo, "workload-owner.pem"), "utf8"), "workload-owner.pem");
    const manifest = new Uint8Array(readFileSync(join(wo, "manifest.json")));
    const policies = readdirSync(join(wo, "policies")).map((f) => new Uint8Array(readFileSync(join(wo, "policies", f))));
    const { body } = await signedUpdate({
      manifest,
      policies,
      previousTransition: history.latestTransition,
      owner,
      coordinator: { name: history.name, rootCA: history.rootCA.hash },
    });
    const res = await fetch(`${proc.url}/v1/manifest`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, ...(approvals.length > 0 ? { approvals } : {}) }),
    });
    const json = (await res.json()) as { error?: { code: string } };
    return { status: res.status, code: json.error?.code };
  }

  /** An approval signed by `owner` for the workspace's manifest.json over the Coordinator's current state (as `seedshare approve` makes it, minus its checks). */
  async function forgedApproval(owner: Owner, manifest?: Uint8Array): Promise<{ ownerPublicKey: string; signature: string }> {
    const history = await verifyHistory((await (await fetch(`${proc.url}/v1/manifests`)).json()) as HistoryResponse);
    const key = await loadSeedShareOwnerKey(readFileSync(owner.pem, "utf8"), owner.pem);
    const a = await makeApproval({
      coordinator: { name: history.name, rootCA: history.rootCA.hash },
      previousTransition: history.latestTransition,
      manifest: manifest ?? new Uint8Array(readFileSync(join(wo, "manifest.json"))),
      owner: key,
    });
    return { ownerPublicKey: a.ownerPublicKey, signature: a.signature };
  }

  beforeAll(async () => {
    [alice, bob, carol, mallory] = (await Promise.all(["alice", "bob", "carol", "mallory"].map((n) => ownerKeyFiles(join(work, "keys"), n)))) as [Owner, Owner, Owner, Owner];
    wo = dir("workload-owner");
    stateDir = dir("state");
    mkdirSync(join(wo, "policies"), { recursive: true });
    writeFileSync(join(wo, "policies", "web.rego"), "package web\n");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    expectOk(await asWorkloadOwner("generate", ...owners(), "--threshold", "2"));
    expectOk(await asWorkloadOwner("set"));
  });

  it("adding the workload owner's own key as a seed-share owner is refused by the CLI before sending", async () => {
    expectOk(await asWorkloadOwner("generate", ...owners(), "--seedshare-owner-key", mallory.pub, "--threshold", "2"));
    const before = await recoveryState(proc.url);
    const wsBefore = snapshot(wo);
    const line = expectFailure(await asWorkloadOwner("set"));
    expect(line).toMatch(/this update changes the seed-share owners \(1 added\), so it needs the approval of 2 of the 3 current seed-share owners, but approvals\/ holds no valid approval;.*nothing was sent/);
    expect(await recoveryState(proc.url)).toEqual(before);
    expect(snapshot(wo)).toEqual(wsBefore);
  });

  it("lowering the threshold is refused by the CLI before sending", async () => {
    expectOk(await asWorkloadOwner("generate", ...owners(), "--threshold", "1"));
    const before = await recoveryState(proc.url);
    const line = expectFailure(await asWorkloadOwner("set"));
    expect(line).toMatch(/this update changes the seed-share owners \(threshold 2 → 1\), so it needs the approval of 2 of the 3/);
    expect(await recoveryState(proc.url)).toEqual(before);
  });

  it("with the CLI's check bypassed, the Coordinator refuses both with 403 REKEY_NOT_APPROVED and changes nothing", async () => {
    const before = await recoveryState(proc.url);
    for (const threshold of ["1", "2"]) {
      const extra = threshold === "2" ? ["--seedshare-owner-key", mallory.pub] : [];
      expectOk(await asWorkloadOwner("generate", ...owners(), ...extra, "--threshold", threshold));
      // No approval; one genuine approval (too few); the attacker's own approval plus one genuine one.
      expect(await sendDirectly([])).toEqual({ status: 403, code: "REKEY_NOT_APPROVED" });
      expect(await sendDirectly([await forgedApproval(alice)])).toEqual({ status: 403, code: "REKEY_NOT_APPROVED" });
      expect(await sendDirectly([await forgedApproval(mallory), await forgedApproval(alice)])).toEqual({ status: 403, code: "REKEY_NOT_APPROVED" });
      // The same owner twice counts once.
      const a = await forgedApproval(alice);
      expect(await sendDirectly([a, a])).toEqual({ status: 403, code: "REKEY_NOT_APPROVED" });
      // Bob's approval of another manifest does not count for this one.
      const other = new Uint8Array(Buffer.from(readFileSync(join(wo, "manifest.json"), "utf8") + "\n"));
      expect(await sendDirectly([await forgedApproval(bob, other), a])).toEqual({ status: 403, code: "REKEY_NOT_APPROVED" });
      expect(await recoveryState(proc.url)).toEqual(before);
    }
  });

  it("approvals/ files that do not count are ignored by set: a non-owner's, one for another manifest, garbage", async () => {
    expectOk(await asWorkloadOwner("generate", ...owners(), "--seedshare-owner-key", mallory.pub, "--threshold", "2"));
    // Mallory's own approval (she is no current owner: seedshare approve refuses her, so she writes the file herself).
    mkdirSync(join(wo, "approvals"), { recursive: true });
    const history = await verifyHistory((await (await fetch(`${proc.url}/v1/manifests`)).json()) as HistoryResponse);
    const malloryKey = await loadSeedShareOwnerKey(readFileSync(mallory.pem, "utf8"), mallory.pem);
    const forged = await makeApproval({
      coordinator: { name: history.name, rootCA: history.rootCA.hash },
      previousTransition: history.latestTransition,
      manifest: new Uint8Array(readFileSync(join(wo, "manifest.json"))),
      owner: malloryKey,
    });
    writeFileSync(join(wo, "approvals", "mallory.json"), JSON.stringify(forged));
    cpSync(wo, dir("mallory"), { recursive: true, filter: (src) => !/(workload-owner\.pem|approvals)$/.test(src) });
    expect(expectFailure(await contrast(["-c", proc.url, "-w", dir("mallory"), "seedshare", "approve", "--seedshare-owner-key", mallory.pem], work))).toMatch(
      /mallory\.pem \(sha256 [0-9a-f]{64}\) is not a seed-share owner of the Coordinator's current manifest/,
    );
    // Bob approves a different manifest (the workload owner changed it afterwards).
    const planned = readFileSync(join(wo, "manifest.json"), "utf8");
    writeFileSync(join(wo, "manifest.json"), planned.trimEnd() + "\n\n");
    handBack(await approve("bob-other", bob));
    writeFileSync(join(wo, "manifest.json"), planned);
    writeFileSync(join(wo, "approvals", "garbage.json"), "{not json");
    // Alice's approval is genuine: one of two.
    handBack(await approve("alice", alice));

    const before = await recoveryState(proc.url);
    const line = expectFailure(await asWorkloadOwner("set"));
    expect(line).toMatch(/needs the approval of 2 of the 3 current seed-share owners, but approvals\/ holds 1 valid approval \(ignored: /);
    expect(line).toMatch(/approvals\/garbage\.json: not JSON/);
    expect(line).toMatch(/approvals\/mallory\.json: its key is not a seed-share owner of the current manifest/);
    expect(line).toMatch(/approvals\/[0-9a-f]{64}\.json: it approves another manifest/);
    expect(line).toMatch(/1 more needed, from any of: sha256 [0-9a-f]{64}, sha256 [0-9a-f]{64};/);
    expect(await recoveryState(proc.url)).toEqual(before);
  });

  it("with 2 current owners' approvals the rekey goes through, and the new seed-shares.json opens for the new owner", async () => {
    handBack(await approve("carol", carol));
    const before = await recoveryState(proc.url);
    const run = await asWorkloadOwner("set");
    expectOk(run);
    expect(run.stdout).toMatch(/updated the manifest of Coordinator coordinator: generation 2, .*\(verified\)/);
    expect(run.stdout).toMatch(/approved by 2 of the 3 previous seed-share owners/);
    const after = await recoveryState(proc.url);
    expect(after).toMatchObject({ generation: before.generation + 1, threshold: 2, shares: 4 });
    expect(after.salt).not.toBe(before.salt);
    const doc = readJson<SeedShareDocument>(join(wo, "seed-shares.json"));
    expect(doc.salt).toBe(after.salt);
    expect(doc.shares.map((s) => s.ownerPublicKey)).toEqual([alice.spki, bob.spki, carol.spki, mallory.spki]);
    for (const owner of [mallory, alice]) {
      const check = await contrast(["-w", wo, "seedshare", "check", "--seedshare-owner-key", owner.pem], work);
      expectOk(check);
    }
    expect(readJson<{ generation: number; latestTransition: string }>(join(wo, ".contrast-state.json"))).toMatchObject({ generation: 2, latestTransition: after.latestTransition });
  });

  it("an old approval does not carry over to another rekey", async () => {
    // The approvals/ of the last rekey are still there; removing mallory again needs new ones.
    expectOk(await asWorkloadOwner("generate", ...owners(), "--threshold", "2"));
    const before = await recoveryState(proc.url);
    const line = expectFailure(await asWorkloadOwner("set"));
    expect(line).toMatch(/holds no valid approval \(ignored: approvals\/[0-9a-f]{64}\.json: it approves another manifest/);
    expect(await recoveryState(proc.url)).toEqual(before);
    expectOk(await asWorkloadOwner("generate", ...owners(), "--seedshare-owner-key", mallory.pub, "--threshold", "2"));
  });

  describe("recovery resets", () => {
    it("recover --reset from an empty directory is a usage mistake and sends nothing", async () => {
      const empty = dir("empty");
      mkdirSync(empty, { recursive: true });
      const line = expectFailure(await contrast(["-c", proc.url, "-w", empty, "recover", "--reset"], work), 2);
      expect(line).toMatch(/--reset must be signed by a seed-share owner, but no key was given and .*seedshare-owner\.pem does not exist/);
    });

    it("a loop of anonymous DELETEs does not stall a 2-of-4 recovery: two owners recover it to ready", async () => {
      await proc.stop("SIGKILL");
      proc = await startCoordinator({ store: `fs:${stateDir}` });
      for (const name of ["alice-r", "bob-r"]) {
        mkdirSync(dir(name), { recursive: true });
        for (const f of ["seed-shares.json", "coordinator-root-ca.pem"]) cpSync(join(wo, f), dir(name, f));
      }
      let stop = false;
      let sent = 0;
      const answers = new Map<string, number>();
      const bodies: (() => RequestInit)[] = [
        () => ({ method: "DELETE" }),
        () => ({ method: "DELETE", headers: { "content-type": "application/json" }, body: "{}" }),
        () => ({
          method: "DELETE",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ownerPublicKey: alice.spki, signature: toBase64(new Uint8Array(384).fill(7)) }),
        }),
      ];
      const loop = (async () => {
        while (!stop) {
          const res = await fetch(`${proc.url}/v1/recover`, bodies[sent % bodies.length]!());
          const json = (await res.json()) as { error?: { code: string } };
          const key = `${res.status} ${json.error?.code ?? "ok"}`;
          answers.set(key, (answers.get(key) ?? 0) + 1);
          sent++;
        }
      })();
      try {
        const first = await contrast(["-c", proc.url, "-w", dir("alice-r"), "recover", "--insecure-http", "--seedshare-owner-key", alice.pem], work);
        expectOk(first);
        expect(first.stdout).toMatch(/received 1 of 2 shares/);
        // Let the loop hammer the attempt that holds alice's share before bob sends his.
        const mark = sent;
        while (sent < mark + 30) await new Promise((r) => setTimeout(r, 10));
        const second = await contrast(["-c", proc.url, "-w", dir("bob-r"), "recover", "--insecure-http", "--seedshare-owner-key", bob.pem], work);
        expectOk(second);
        expect(second.stdout).toMatch(/^recovered Coordinator coordinator: ready at generation 2/);
      } finally {
        stop = true;
        await loop;
      }
      expect([...answers.keys()].every((k) => !k.endsWith(" ok")), JSON.stringify([...answers])).toBe(true);
      expect(answers.get("403 RESET_UNAUTHORIZED") ?? 0).toBeGreaterThan(0);
      expect(((await (await fetch(`${proc.url}/v1/status`)).json()) as { state: string }).state).toBe("ready");
    });
  });
});

describe("threshold 1 with one owner: the workload owner who is also the seed-share owner approves in the same workspace", () => {
  it("set is refused until seedshare approve, then the rekey goes through", async () => {
    const other = await ownerKeyFiles(join(work, "keys"), "other");
    const ws = join(work, "single", "ws");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\n");
    const proc = await startCoordinator({ store: "memory" });
    const cli = (...args: string[]) => contrast(["-c", proc.url, "-w", ws, ...args], work);
    try {
      expectOk(await cli("generate", "--seedshare-owner-bits", "3072"));
      expectOk(await cli("set"));
      expectOk(await cli("generate", "--add-seedshare-owner-key", other.pub));
      const before = await recoveryState(proc.url);
      expect(expectFailure(await cli("set"))).toMatch(/needs the approval of 1 of the 1 current seed-share owners, but approvals\/ holds no valid approval/);
      expect(await recoveryState(proc.url)).toEqual(before);
      const approval = await cli("seedshare", "approve");
      expectOk(approval);
      expect(approval.stdout).toMatch(/owners +1 → 2\n +added +sha256 [0-9a-f]{64}\n +threshold +1 \(unchanged\)/);
      const run = await cli("set");
      expectOk(run);
      expect(run.stdout).toMatch(/generation 2/);
      expect((await recoveryState(proc.url)).salt).not.toBe(before.salt);
      expectOk(await cli("seedshare", "check", "--seedshare-owner-key", other.pem));
      expectOk(await cli("seedshare", "check"));
      // Approving a manifest that changes no owner is pointless, and says so.
      expect(expectFailure(await cli("seedshare", "approve"))).toMatch(/keeps the seed-share owners and the threshold .* needs no approval/);
    } finally {
      await proc.stop("SIGKILL");
    }
  });
});
