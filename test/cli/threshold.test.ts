// Multi-party recovery through the built dist/contrast.mjs against the built Coordinator in real processes: 2 of 3 with refused, repeated and corrupted shares, then an owner rotation.
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSeedShareOwnerKey } from "../../src/client/keys.js";
import { decryptSeedShare, seedShareLabel, shareCommitment } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromHex, toBase64, utf8 } from "../../src/encoding.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, snapshot } from "./harness.js";
import type { OwnerKeyFiles } from "./harness.js";

const execFileP = promisify(execFile);
const openssl = "/usr/bin/openssl";

interface Manifest {
  SeedshareOwnerPubKeys: string[];
  Threshold?: number;
}

let work: string;

type Owner = OwnerKeyFiles;

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;

/** The leaf certificate of a chain file, written beside it as leaf.pem. */
function leafOf(dir: string): string {
  const chain = readFileSync(join(dir, "cert-chain.pem"), "utf8");
  writeFileSync(join(dir, "leaf.pem"), chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
  return join(dir, "leaf.pem");
}

async function opensslVerifies(args: string[]): Promise<void> {
  await execFileP(openssl, ["verify", ...args]);
}

/** A copy of a seed-share document in which `owner`'s share is replaced by another valid-looking share, encrypted to the owner. */
async function withAlteredShare(doc: SeedShareDocument, owner: Owner, opts: { recommit: boolean }): Promise<SeedShareDocument> {
  const key = await loadSeedShareOwnerKey(readFileSync(owner.pem, "utf8"), owner.pem);
  const copy = structuredClone(doc);
  const entry = copy.shares.find((s) => s.ownerPublicKey === owner.spki)!;
  const share = await decryptSeedShare(entry.encryptedShare, key.privateKey);
  share[0] = share[0]! ^ 0x01;
  const publicKey = await crypto.subtle.importKey("spki", fromHex(owner.spki) as BufferSource, { name: "RSA-OAEP", hash: "SHA-256" }, false, ["encrypt"]);
  const encrypted = await crypto.subtle.encrypt({ name: "RSA-OAEP", label: utf8(seedShareLabel) as BufferSource }, publicKey, share as BufferSource);
  entry.encryptedShare = toBase64(new Uint8Array(encrypted));
  if (opts.recommit) entry.commitment = await shareCommitment(fromHex(doc.salt), share);
  return copy;
}

beforeAll(() => {
  ensureBundles();
  work = mkdtempSync(join(tmpdir(), "contrast-cli-threshold-"));
  mkdirSync(join(work, "keys"));
});

afterAll(async () => {
  await killAll();
  rmSync(work, { recursive: true, force: true });
});

describe("2 of 3 seed-share owners, then an owner rotation (real processes, fs store)", () => {
  let alice: Owner, bob: Owner, carol: Owner, dave: Owner;
  let proc: CoordinatorProcess;
  let stateDir: string;
  let wo: string;
  let verifyBefore: Record<string, string>;
  const dir = (...parts: string[]) => join(work, "two-of-three", ...parts);
  /** The workload owner runs generate, set, verify and mesh-cert in their workspace. */
  const asWorkloadOwner = (...args: string[]) => contrast(["-c", proc.url, "-w", wo, ...args], work);
  /** A seed-share owner runs a command in their own workspace with their own key. */
  const asOwner = (name: string, owner: Owner, ...args: string[]) =>
    contrast(["-c", proc.url, "-w", dir(name), ...args, "--seedshare-owner-key", owner.pem], work);
  const status = async () => (await (await fetch(`${proc.url}/v1/status`)).json()) as {
    state: string;
    generation: number | null;
    recovery: { threshold: number; received: number; nonce: string | null } | null;
  };
  /** What the workload owner hands each seed-share owner: seed-shares.json and the root CA that pins the Coordinator. */
  const handOut = (name: string) => {
    mkdirSync(dir(name), { recursive: true });
    for (const f of ["seed-shares.json", "coordinator-root-ca.pem"]) cpSync(join(wo, f), dir(name, f));
  };
  const restart = async () => {
    expect((await proc.stop("SIGKILL")).signal).toBe("SIGKILL");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
  };

  beforeAll(async () => {
    [alice, bob, carol, dave] = (await Promise.all(["alice", "bob", "carol", "dave"].map((name) => ownerKeyFiles(join(work, "keys"), name)))) as [Owner, Owner, Owner, Owner];
    wo = dir("workload-owner");
    stateDir = dir("state");
    mkdirSync(join(wo, "policies"), { recursive: true });
    writeFileSync(join(wo, "policies", "web.rego"), "package web\nallow := true\n");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
  });

  it("generate lists exactly the three owners, in order, with Threshold 2, and makes no seed-share key of its own", async () => {
    const run = await asWorkloadOwner("generate", "--seedshare-owner-key", alice.pub, "--seedshare-owner-key", bob.pub, "--seedshare-owner-key", carol.pub, "--threshold", "2");
    expectOk(run);
    expect(run.stdout).toMatch(/1 policy, 1 workload owner, 3 seed-share owners \(any 2 of them recover\)/);
    expect(run.stdout).toMatch(/seed-share owner 3 +sha256 [0-9a-f]{64} +.*carol\.pub/);
    const manifest = readJson<Manifest>(join(wo, "manifest.json"));
    expect(manifest.SeedshareOwnerPubKeys).toEqual([alice.spki, bob.spki, carol.spki]);
    expect(manifest.Threshold).toBe(2);
    expect(existsSync(join(wo, "seedshare-owner.pem"))).toBe(false);
  });

  it("a threshold out of range is one line, exit 2, and changes nothing", async () => {
    const before = snapshot(wo);
    for (const [value, message] of [
      ["4", /--threshold 4: there are only 3 seed-share owners; pass --threshold N with N from 1 to 3/],
      ["0", /--threshold 0: must be a whole number from 1 to the number of seed-share owners/],
    ] as const) {
      expect(expectFailure(await asWorkloadOwner("generate", "--threshold", value), 2)).toMatch(message);
    }
    expect(snapshot(wo)).toEqual(before);
    // Regenerating without the flags keeps the owners and the threshold.
    expectOk(await asWorkloadOwner("generate"));
    expect(snapshot(wo)).toEqual(before);
  });

  it("set writes a 2-of-3 seed-shares.json", async () => {
    const run = await asWorkloadOwner("set");
    expectOk(run);
    expect(run.stdout).toMatch(/wrote .*seed-shares\.json: 3 seed-share owners, any 2 of them together recover the Coordinator; give every seed-share owner a copy/);
    const doc = readJson<SeedShareDocument>(join(wo, "seed-shares.json"));
    expect(doc.threshold).toBe(2);
    expect(doc.shares.map((s) => [s.index, s.ownerPublicKey])).toEqual([[1, alice.spki], [2, bob.spki], [3, carol.spki]]);
    for (const name of ["alice", "bob", "carol"]) handOut(name);
  });

  it("each owner checks their share offline, without a Coordinator", async () => {
    for (const [name, owner, index] of [["alice", alice, 1], ["carol", carol, 3]] as const) {
      const run = await contrast(["-w", dir(name), "seedshare", "check", "--seedshare-owner-key", owner.pem], work);
      expectOk(run);
      expect(run.stdout).toMatch(new RegExp(`^OK: share ${index} of 3 in .*seed-shares\\.json decrypts with .*${name}\\.pem and matches its commitment`));
      expect(run.stdout).toMatch(/threshold +2 of 3: any 2 of the 3 owners together recover the Coordinator/);
    }
    const json = await contrast(["-w", dir("bob"), "seedshare", "check", "--seedshare-owner-key", bob.pem, "--json"], work);
    expectOk(json);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, coordinator: "coordinator", index: 2, shares: 3, threshold: 2 });

    // A key that owns no share, a share that does not decrypt, a share that does not match its commitment.
    const fails = async (doc: SeedShareDocument | null, key: string, message: RegExp) => {
      const bad = dir("bad-check");
      mkdirSync(bad, { recursive: true });
      if (doc !== null) writeFileSync(join(bad, "seed-shares.json"), JSON.stringify(doc));
      expect(expectFailure(await contrast(["-w", bad, "seedshare", "check", "--seedshare-owner-key", key], work))).toMatch(message);
    };
    const doc = readJson<SeedShareDocument>(join(wo, "seed-shares.json"));
    await fails(doc, dave.pem, /dave\.pem is not one of the 3 seed-share owners in seed-shares\.json/);
    const swapped = structuredClone(doc);
    swapped.shares[1]!.encryptedShare = doc.shares[0]!.encryptedShare;
    await fails(swapped, bob.pem, /share 2 in .*seed-shares\.json does not decrypt with .*bob\.pem; the file is damaged/);
    await fails(await withAlteredShare(doc, bob, { recommit: false }), bob.pem, /share 2 in .*seed-shares\.json decrypts with .*bob\.pem but does not match its commitment: the share or the file is corrupted/);
  });

  it("a workload gets a mesh certificate, and verify writes verify/", async () => {
    expectOk(await asWorkloadOwner("mesh-cert", "--policy", join(wo, "policies", "web.rego"), "-o", dir("cert-before"), "--attestation", "insecure-simulated"));
    expectOk(await asWorkloadOwner("verify"));
    verifyBefore = snapshot(join(wo, "verify"));
  });

  it("after SIGKILL and a restart, status shows 0 of 2", async () => {
    await restart();
    const run = await asWorkloadOwner("status");
    expectOk(run);
    expect(run.stdout).toMatch(/state +recovery-required/);
    expect(run.stdout).toMatch(/recovery +0 of 2 shares received \(attempt [0-9a-f]{32}\); each seed-share owner runs contrast recover with their own key/);
    expect(await status()).toMatchObject({ state: "recovery-required", recovery: { threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) } });
  });

  let nonce: string;

  it("alice's share: received 1 of 2, and the Coordinator stays in recovery", async () => {
    const run = await asOwner("alice", alice, "recover", "--insecure-http");
    expectOk(run);
    const match = /^share 1 accepted: received 1 of 2 shares \(attempt ([0-9a-f]+)\)\n/.exec(run.stdout);
    expect(match, run.stdout).not.toBeNull();
    nonce = match![1]!;
    expect(run.stdout).toMatch(/stays recovery-required until 1 more seed-share owner runs contrast recover/);
    expect(await status()).toMatchObject({ state: "recovery-required", recovery: { threshold: 2, received: 1, nonce } });
    expect(expectFailure(await asWorkloadOwner("verify", "--timeout", "0"))).toMatch(/RECOVERY_REQUIRED/);
  });

  it("alice again: SHARE_REPEATED, and her share still counts", async () => {
    const line = expectFailure(await asOwner("alice", alice, "recover", "--insecure-http"));
    expect(line).toMatch(new RegExp(`refused share 1: it was already submitted in this recovery attempt \\(${nonce}\\) \\[409 SHARE_REPEATED\\]; it still counts: 1 more seed-share owner must run contrast recover`));
    expect(await status()).toMatchObject({ recovery: { received: 1, nonce } });
  });

  it("a corrupted share: refused before sending if it misses its commitment, SHARE_INVALID from the Coordinator if the commitment was altered too", async () => {
    const doc = readJson<SeedShareDocument>(dir("bob", "seed-shares.json"));
    const corrupted = dir("bob-corrupted");
    mkdirSync(corrupted);
    writeFileSync(join(corrupted, "seed-shares.json"), JSON.stringify(await withAlteredShare(doc, bob, { recommit: false })));
    expect(expectFailure(await asOwner("bob-corrupted", bob, "recover", "--insecure-http"))).toMatch(/share 2 in .*seed-shares\.json decrypts with .*bob\.pem but does not match its commitment.*nothing was sent/);
    writeFileSync(join(corrupted, "seed-shares.json"), JSON.stringify(await withAlteredShare(doc, bob, { recommit: true })));
    const line = expectFailure(await asOwner("bob-corrupted", bob, "recover", "--insecure-http"));
    expect(line).toMatch(/the Coordinator refused share 2: it matches none of the Coordinator's share commitments, so it is corrupted \[403 SHARE_INVALID\]; restore seed-shares\.json from your backup and run contrast seedshare check; the shares already received stay counted/);
    expect(await status()).toMatchObject({ state: "recovery-required", recovery: { received: 1, nonce } });
  });

  it("recover --reset needs a seed-share owner's signature: no key and a non-owner's key are refused and the share stays", async () => {
    // The workload owner's workspace holds no seed-share owner key: a usage mistake, nothing sent.
    expect(expectFailure(await asWorkloadOwner("recover", "--reset"), 2)).toMatch(/--reset must be signed by a seed-share owner, but no key was given/);
    // Dave is no owner (yet): the Coordinator refuses his signed reset.
    mkdirSync(dir("dave-early"), { recursive: true });
    const line = expectFailure(await asOwner("dave-early", dave, "recover", "--reset"));
    expect(line).toMatch(/refused the reset signed by .*dave\.pem .*not a seed-share owner.*\[403 RESET_UNAUTHORIZED\]/);
    expect(await status()).toMatchObject({ state: "recovery-required", recovery: { received: 1, nonce } });
  });

  it("recover --reset signed by an owner discards the shares received so far; alice submits again in a new attempt", async () => {
    const reset = await asOwner("bob", bob, "recover", "--reset");
    expectOk(reset);
    expect(reset.stdout).toMatch(new RegExp(`discarded the shares of the unfinished recovery \\(attempt ${nonce}\\): received 0 of 2`));
    // Nothing left to reset now.
    expect(expectFailure(await asOwner("bob", bob, "recover", "--reset"))).toMatch(/has received no share yet.*nothing to reset/);
    expect(await status()).toMatchObject({ state: "recovery-required", recovery: { threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) } });
    const again = await asOwner("alice", alice, "recover", "--insecure-http");
    expectOk(again);
    const match = /received 1 of 2 shares \(attempt ([0-9a-f]+)\)/.exec(again.stdout);
    expect(match?.[1]).toBeDefined();
    expect(match![1]).not.toBe(nonce);
    nonce = match![1]!;
  });

  it("carol's share completes it: recovered, and verify/ is byte-identical", async () => {
    const run = await asOwner("carol", carol, "recover", "--insecure-http");
    expectOk(run);
    expect(run.stdout).toMatch(/^recovered Coordinator coordinator: ready at generation 1, transition [0-9a-f]{64} \(share 3 completed 2 of 2\)\n/);
    expect(run.stdout).toMatch(/its history verifies/);
    // Carol's workspace now remembers the generation it verified.
    expect(readJson<{ generation: number }>(dir("carol", ".contrast-state.json")).generation).toBe(1);
    expectOk(await asWorkloadOwner("verify"));
    expect(snapshot(join(wo, "verify"))).toEqual(verifyBefore);
    // Bob, too late: nothing to recover.
    const late = await asOwner("bob", bob, "recover", "--insecure-http");
    expectOk(late);
    expect(late.stdout).toMatch(/already ready \(generation 1\); nothing to recover/);
  });

  it("certificates from before and after the restart verify against both CA sets", async () => {
    expectOk(await asWorkloadOwner("mesh-cert", "--policy", join(wo, "policies", "web.rego"), "-o", dir("cert-after"), "--attestation", "insecure-simulated"));
    const before = dir("cert-before");
    const after = dir("cert-after");
    await opensslVerifies(["-CAfile", join(before, "coordinator-root-ca.pem"), "-untrusted", join(after, "cert-chain.pem"), leafOf(after)]);
    await opensslVerifies(["-CAfile", join(before, "mesh-ca.pem"), leafOf(after)]);
    await opensslVerifies(["-CAfile", join(after, "coordinator-root-ca.pem"), "-untrusted", join(before, "cert-chain.pem"), leafOf(before)]);
    await opensslVerifies(["-CAfile", join(after, "mesh-ca.pem"), leafOf(before)]);
  });

  describe("rotation: dave replaces bob, and the threshold goes to 3", () => {
    let oldDoc: string;
    let rootBefore: string;

    it("generate with the new owners says that the shares will change", async () => {
      const run = await asWorkloadOwner("generate", "--seedshare-owner-key", alice.pub, "--seedshare-owner-key", carol.pub, "--seedshare-owner-key", dave.pub, "--threshold", "3");
      expectOk(run);
      expect(run.stdout).toMatch(/3 seed-share owners \(any 3 of them recover\)/);
      expect(run.stdout).toMatch(/the seed-share owners change \(1 removed, 1 added, threshold 2 → 3\): the next contrast set hands out new shares, and the old ones stop working/);
      expect(readJson<Manifest>(join(wo, "manifest.json"))).toMatchObject({ SeedshareOwnerPubKeys: [alice.spki, carol.spki, dave.spki], Threshold: 3 });
    });

    it("set refuses the rekey before sending while fewer than 2 current owners approved it", async () => {
      const before = await status();
      const wsBefore = snapshot(wo);
      const line = expectFailure(await asWorkloadOwner("set"));
      expect(line).toMatch(/this update changes the seed-share owners \(1 removed, 1 added, threshold 2 → 3\), so it needs the approval of 2 of the 3 current seed-share owners, but approvals\/ holds no valid approval/);
      expect(line).toMatch(/2 more needed, from any of: sha256 [0-9a-f]{64}, sha256 [0-9a-f]{64}, sha256 [0-9a-f]{64}; each runs contrast seedshare approve .*nothing was sent/);
      expect(await status()).toEqual(before);
      expect(snapshot(wo)).toEqual(wsBefore);
    });

    it("alice and carol approve on copies of the workload owner's workspace; dave (not yet an owner) cannot", async () => {
      for (const name of ["alice-approves", "carol-approves", "dave-approves"]) {
        cpSync(wo, dir(name), { recursive: true, filter: (src) => !/(workload-owner\.pem|seed-shares.*\.json|verify)$/.test(src) });
      }
      const approve = (name: string, owner: Owner) => contrast(["-c", proc.url, "-w", dir(name), "seedshare", "approve", "--seedshare-owner-key", owner.pem], work);
      const refused = expectFailure(await approve("dave-approves", dave));
      expect(refused).toMatch(/dave\.pem \(sha256 [0-9a-f]{64}\) is not a seed-share owner of the Coordinator's current manifest \(generation 1\).*nothing was approved/);
      for (const [name, owner] of [["alice-approves", alice], ["carol-approves", carol]] as const) {
        const run = await approve(name, owner);
        expectOk(run);
        expect(run.stdout).toMatch(/^approved a change of the seed-share owners of Coordinator coordinator/);
        expect(run.stdout).toMatch(/owners +3 → 3\n +removed +sha256 [0-9a-f]{64}\n +added +sha256 [0-9a-f]{64}\n +threshold +2 → 3/);
        const files = readdirSync(dir(name, "approvals"));
        expect(files).toHaveLength(1);
        mkdirSync(join(wo, "approvals"), { recursive: true });
        cpSync(dir(name, "approvals", files[0]!), join(wo, "approvals", files[0]!));
      }
      expect(readdirSync(join(wo, "approvals"))).toHaveLength(2);
    });

    it("with two approvals, set writes the new seed-shares.json and keeps the old one as seed-shares.previous.json", async () => {
      oldDoc = readFileSync(join(wo, "seed-shares.json"), "utf8");
      rootBefore = readFileSync(join(wo, "coordinator-root-ca.pem"), "utf8");
      const run = await asWorkloadOwner("set");
      expectOk(run);
      expect(run.stdout).toMatch(/approved by 2 of the 3 previous seed-share owners/);
      expect(run.stdout).toMatch(/updated the manifest of Coordinator coordinator: generation 2/);
      expect(run.stdout).toMatch(/wrote .*seed-shares\.json: the seed-share owners or the threshold changed, so there are new shares for 3 seed-share owners, any 3 of them together recover the Coordinator; the old shares no longer work \(the old file is seed-shares\.previous\.json\)/);
      expect(readFileSync(join(wo, "seed-shares.previous.json"), "utf8")).toBe(oldDoc);
      const doc = readJson<SeedShareDocument>(join(wo, "seed-shares.json"));
      expect(doc.threshold).toBe(3);
      expect(doc.shares.map((s) => s.ownerPublicKey)).toEqual([alice.spki, carol.spki, dave.spki]);
      expect(doc.salt).not.toBe(readJson<SeedShareDocument>(join(wo, "seed-shares.previous.json")).salt);
      // The root CA stays; the new document goes to the new owners (bob keeps his old one).
      expectOk(await asWorkloadOwner("verify"));
      expect(readFileSync(join(wo, "coordinator-root-ca.pem"), "utf8")).toBe(rootBefore);
      verifyBefore = snapshot(join(wo, "verify"));
      mkdirSync(dir("alice-old"));
      cpSync(dir("alice", "seed-shares.json"), dir("alice-old", "seed-shares.json"));
      for (const name of ["alice", "carol", "dave"]) handOut(name);
      const check = await contrast(["-w", dir("dave"), "seedshare", "check", "--seedshare-owner-key", dave.pem], work);
      expectOk(check);
      expect(check.stdout).toMatch(/^OK: share 3 of 3 .*\n.*\n +threshold +3 of 3/);
    });

    it("after a restart, the old shares are refused: the removed owner's and a kept owner's", async () => {
      await restart();
      expect(await status()).toMatchObject({ state: "recovery-required", recovery: { threshold: 3, received: 0 } });
      for (const [name, owner, index] of [["bob", bob, 2], ["alice-old", alice, 1]] as const) {
        const line = expectFailure(await asOwner(name, owner, "recover", "--insecure-http"));
        expect(line).toMatch(new RegExp(`the Coordinator refused share ${index}: it belongs to another deployment, or to seed-share owners that a manifest update replaced \\(this seed-shares\\.json is a 2-of-3 one, but the Coordinator needs 3 shares\\) \\[403 SALT_MISMATCH\\]; use the newest seed-shares\\.json`));
      }
      expect(await status()).toMatchObject({ recovery: { received: 0 } });
    });

    it("the new owners recover it: 1 of 3, 2 of 3, recovered; same root CA, byte-identical verify/", async () => {
      const first = await asOwner("dave", dave, "recover", "--insecure-http", "--json");
      expectOk(first);
      const answer = JSON.parse(first.stdout) as { state: string; index: number; recovery: { threshold: number; received: number; nonce: string } };
      expect(answer).toMatchObject({ state: "recovery-required", index: 3, recovery: { threshold: 3, received: 1 } });
      const second = await asOwner("alice", alice, "recover", "--insecure-http");
      expectOk(second);
      expect(second.stdout).toMatch(new RegExp(`^share 1 accepted: received 2 of 3 shares \\(attempt ${answer.recovery.nonce}\\)`));
      const last = await asOwner("carol", carol, "recover", "--insecure-http");
      expectOk(last);
      expect(last.stdout).toMatch(/^recovered Coordinator coordinator: ready at generation 2, .*\(share 2 completed 3 of 3\)/);
      expectOk(await asWorkloadOwner("verify"));
      expect(snapshot(join(wo, "verify"))).toEqual(verifyBefore);
      expect(readFileSync(join(wo, "verify", "coordinator-root-ca.pem"), "utf8")).toBe(rootBefore);
      // A certificate issued now still chains to the root CA from the first set.
      expectOk(await asWorkloadOwner("mesh-cert", "--policy", join(wo, "policies", "web.rego"), "-o", dir("cert-rotated"), "--attestation", "insecure-simulated"));
      await opensslVerifies(["-CAfile", join(dir("cert-before"), "coordinator-root-ca.pem"), "-untrusted", join(dir("cert-rotated"), "cert-chain.pem"), leafOf(dir("cert-rotated"))]);
    });
  });
});
