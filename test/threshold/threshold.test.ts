// Threshold recovery (G7): t-of-n Shamir shares checked one by one against commitments, progress, reset, expiry, rotation.
import type { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64, utf8 } from "../../src/encoding.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { call, get, postJson, simulated } from "../api/fixture.js";
import type { Answer } from "../api/fixture.js";
import { approvalOf, firstSetBody, resetBody, policy, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";

type SeedOwner = Awaited<ReturnType<typeof seedShareOwner>>;
type WorkloadOwner = Awaited<ReturnType<typeof workloadOwner>>;

const name = "threshold";
let owners: SeedOwner[];
let workload: WorkloadOwner;
let web: Awaited<ReturnType<typeof policy>>;

beforeAll(async () => {
  owners = await Promise.all(Array.from({ length: 5 }, () => seedShareOwner()));
  workload = await workloadOwner();
  web = await policy("policy of web\n");
}, 120_000);

function manifest(seedOwners: SeedOwner[], threshold?: number, policyText = web): Uint8Array {
  return utf8(
    JSON.stringify({
      Policies: { [policyText.hash]: { SANs: ["web"], WorkloadSecretID: "web" } },
      WorkloadOwnerKeyDigests: [workload.digest],
      SeedshareOwnerPubKeys: seedOwners.map((o) => o.publicHex),
      ...(threshold === undefined ? {} : { Threshold: threshold }),
    }),
  );
}

async function start(store: Store, opts: { now?: () => Date; recoveryTimeoutMs?: number } = {}): Promise<Hono> {
  const coordinator = await Coordinator.start({ store, name, validators: simulated(), ...opts });
  return createApp({ coordinator });
}

/** The share that `owner` decrypts from the document, as a recover body. */
async function shareOf(doc: SeedShareDocument, owner: SeedOwner): Promise<{ share: string; salt: string }> {
  const entry = doc.shares.find((s) => s.ownerPublicKey === owner.publicHex);
  if (entry === undefined) throw new Error("owner has no share in this document");
  return { share: toBase64(await decryptSeedShare(entry.encryptedShare, owner.keys.privateKey)), salt: doc.salt };
}

/** A DELETE with a JSON body. */
function del(body: unknown): RequestInit {
  return { method: "DELETE", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
}

function expectCode(answer: Answer, status: number, code: string): void {
  expect({ status: answer.status, code: answer.json?.error?.code }).toEqual({ status, code });
}

async function deploy(
  seedOwners: SeedOwner[],
  threshold: number,
): Promise<{ store: Store; doc: SeedShareDocument; history: string; transition: string; m: Uint8Array; ref: CoordinatorRef }> {
  const store = createStore(memoryDriver());
  const app = await start(store);
  const m = manifest(seedOwners, threshold);
  const set = await postJson(app, "/v1/manifest", firstSetBody(m, [web.bytes]));
  expect(set.status, set.text).toBe(200);
  const ref = { name, rootCA: set.json.rootCA as string };
  return { store, doc: set.json.seedShares, history: (await get(app, "/v1/manifests")).text, transition: set.json.transition, m, ref };
}

describe("2 of 3", () => {
  it("hands out three distinct Shamir shares, each with its own commitment", async () => {
    const { doc } = await deploy(owners.slice(0, 3), 2);
    expect(doc.threshold).toBe(2);
    expect(doc.shares.map((s) => s.index)).toEqual([1, 2, 3]);
    expect(new Set(doc.shares.map((s) => s.commitment)).size).toBe(3);
    const shares = await Promise.all(owners.slice(0, 3).map((o) => shareOf(doc, o)));
    expect(new Set(shares.map((s) => s.share)).size).toBe(3);
    for (const s of shares) expect(atob(s.share).length).toBe(65);
  });

  it.each([
    [0, 1],
    [0, 2],
    [1, 2],
    [2, 0],
  ])("recovers with owners %i and %i: progress, then byte-identical state", async (a, b) => {
    const { store, doc, history } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    // The attempt and its nonce exist before the first share (shares are sealed for it); the first share keeps it.
    const before = (await get(app, "/v1/status")).json.recovery;
    expect(before).toEqual({ threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    const first = await postJson(app, "/v1/recover", await shareOf(doc, owners[a]!));
    expect(first.status, first.text).toBe(200);
    expect(first.json).toEqual({ state: "recovery-required", recovery: { threshold: 2, received: 1, nonce: before.nonce } });
    expect((await get(app, "/v1/status")).json.recovery).toEqual(first.json.recovery);
    expectCode(await get(app, "/v1/manifests"), 409, "RECOVERY_REQUIRED");
    const second = await postJson(app, "/v1/recover", await shareOf(doc, owners[b]!));
    expect(second.status, second.text).toBe(200);
    expect(second.json).toEqual({ state: "ready", recovery: { threshold: 2, received: 2, nonce: first.json.recovery.nonce } });
    expect((await get(app, "/v1/manifests")).text).toBe(history);
  });

  it("rejects a repeated, a corrupted and a foreign share each with its own code, keeping the good one counted", async () => {
    const { store, doc, history } = await deploy(owners.slice(0, 3), 2);
    const other = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    const good = await shareOf(doc, owners[0]!);
    const first = await postJson(app, "/v1/recover", good);
    const progress = first.json.recovery;
    expect(progress.received).toBe(1);

    expectCode(await postJson(app, "/v1/recover", good), 409, "SHARE_REPEATED");
    const bytes = Uint8Array.from(atob((await shareOf(doc, owners[1]!)).share), (c) => c.charCodeAt(0));
    bytes[7]! ^= 0x40;
    expectCode(await postJson(app, "/v1/recover", { share: toBase64(bytes), salt: doc.salt }), 403, "SHARE_INVALID");
    expectCode(await postJson(app, "/v1/recover", await shareOf(other.doc, owners[1]!)), 403, "SALT_MISMATCH");
    // another deployment's share sent with this deployment's salt: matches no commitment
    const foreign = await shareOf(other.doc, owners[1]!);
    expectCode(await postJson(app, "/v1/recover", { share: foreign.share, salt: doc.salt }), 403, "SHARE_INVALID");
    expect((await get(app, "/v1/status")).json.recovery).toEqual(progress);

    const done = await postJson(app, "/v1/recover", await shareOf(doc, owners[2]!));
    expect(done.json.state).toBe("ready");
    expect((await get(app, "/v1/manifests")).text).toBe(history);
  });

  it("a reset signed by one owner over the attempt's nonce discards partial progress; the next share starts a new attempt", async () => {
    const { store, doc } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    const first = await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    const reset = await call(app, "/v1/recover", del(await resetBody(owners[1]!, name, first.json.recovery.nonce)));
    expect(reset.status, reset.text).toBe(200);
    expect(reset.json).toEqual({ state: "recovery-required", recovery: { threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) } });
    expect(reset.json.recovery.nonce).not.toBe(first.json.recovery.nonce);
    const again = await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    expect(again.json.recovery.received).toBe(1);
    expect(again.json.recovery.nonce).toBe(reset.json.recovery.nonce);
  });

  it("partial progress expires after the configured time", async () => {
    const { store, doc } = await deploy(owners.slice(0, 3), 2);
    let now = Date.parse("2026-11-28T12:00:00Z");
    const app = await start(store, { now: () => new Date(now), recoveryTimeoutMs: 60_000 });
    // The timeout counts from the first share, not from the start.
    now += 3_600_000;
    const first = await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    now += 59_000;
    expect((await get(app, "/v1/status")).json.recovery.received).toBe(1);
    now += 2_000;
    const expired = (await get(app, "/v1/status")).json.recovery;
    expect(expired).toEqual({ threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(expired.nonce).not.toBe(first.json.recovery.nonce);
    const next = await postJson(app, "/v1/recover", await shareOf(doc, owners[1]!));
    expect(next.json).toMatchObject({ state: "recovery-required", recovery: { received: 1 } });
  });

  it("attack: nobody but a current seed-share owner, signing this attempt of this Coordinator, can reset; nothing changes", async () => {
    const { store, doc } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    expectCode(await call(app, "/v1/recover", del(await resetBody(owners[0]!, name, "00".repeat(16)))), 409, "NO_RECOVERY_ATTEMPT");
    const first = await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    const nonce = first.json.recovery.nonce as string;
    const progress = (await get(app, "/v1/status")).json.recovery;
    expect(progress).toEqual({ threshold: 2, received: 1, nonce });

    expectCode(await call(app, "/v1/recover", { method: "DELETE" }), 415, "UNSUPPORTED_MEDIA_TYPE");
    expectCode(await call(app, "/v1/recover", del({})), 400, "INVALID_REQUEST");
    const valid = await resetBody(owners[1]!, name, nonce);
    const unauthorized = [403, "RESET_UNAUTHORIZED"] as const;
    const attacks: [string, unknown, readonly [number, string]][] = [
      ["a key that is no seed-share owner", await resetBody(owners[3]!, name, nonce), unauthorized],
      ["an owner's signature over another attempt", await resetBody(owners[1]!, name, "ab".repeat(16)), unauthorized],
      ["an owner's signature for another Coordinator", await resetBody(owners[1]!, "other", nonce), unauthorized],
      ["an owner's signature under another owner's key", { ...valid, ownerPublicKey: owners[2]!.publicHex }, unauthorized],
      ["a truncated signature (not base64)", { ...valid, signature: valid.signature.slice(0, 40) + "==" }, [400, "INVALID_REQUEST"]],
      ["a signature cut to a valid base64 prefix", { ...valid, signature: valid.signature.slice(0, 40) }, unauthorized],
    ];
    for (const [what, body, [status, code]] of attacks) {
      const answer = await call(app, "/v1/recover", del(body));
      expect({ what, status: answer.status, code: answer.json?.error?.code }).toEqual({ what, status, code });
      expect((await get(app, "/v1/status")).json.recovery).toEqual(progress);
    }
    // A flood of anonymous resets does not stall the recovery: the second owner completes it.
    const flood = await Promise.all(Array.from({ length: 50 }, () => call(app, "/v1/recover", del({ ...valid, signature: toBase64(new Uint8Array(384)) }))));
    expect(new Set(flood.map((a) => `${a.status} ${a.json?.error?.code}`))).toEqual(new Set(["403 RESET_UNAUTHORIZED"]));
    expect((await get(app, "/v1/status")).json.recovery).toEqual(progress);
    const done = await postJson(app, "/v1/recover", await shareOf(doc, owners[2]!));
    expect(done.json.state, done.text).toBe("ready");
  });

  it("reset and recover outside recovery are NOT_IN_RECOVERY", async () => {
    const store = createStore(memoryDriver());
    const app = await start(store);
    expectCode(await call(app, "/v1/recover", del(await resetBody(owners[0]!, name, "00".repeat(16)))), 409, "NOT_IN_RECOVERY");
  });
});

describe("3 of 5", () => {
  it("two shares leave it in recovery; any third completes it", async () => {
    const { store, doc, history } = await deploy(owners, 3);
    const app = await start(store);
    for (const [i, o] of [owners[4]!, owners[1]!].entries()) {
      const r = await postJson(app, "/v1/recover", await shareOf(doc, o));
      expect(r.json).toMatchObject({ state: "recovery-required", recovery: { threshold: 3, received: i + 1 } });
    }
    expectCode(await postJson(app, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: { type: "insecure-simulated", policyHash: web.hash } }), 409, "RECOVERY_REQUIRED");
    const done = await postJson(app, "/v1/recover", await shareOf(doc, owners[2]!));
    expect(done.json).toMatchObject({ state: "ready", recovery: { threshold: 3, received: 3 } });
    expect((await get(app, "/v1/manifests")).text).toBe(history);
  });
});

describe("manifest validation", () => {
  it.each([
    [0, "Threshold 0"],
    [4, "more than the owners"],
    [1.5, "not an integer"],
  ])("refuses Threshold %s (%s) with INVALID_MANIFEST", async (threshold) => {
    const app = await start(createStore(memoryDriver()));
    const m = manifest(owners.slice(0, 3), threshold);
    expectCode(await postJson(app, "/v1/manifest", firstSetBody(m, [web.bytes])), 400, "INVALID_MANIFEST");
  });
});

describe("owner rotation", () => {
  it("attack: a workload owner alone cannot change the seed-share owners or the threshold; fewer than t valid approvals change nothing", async () => {
    const { store, doc, transition, ref } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    await postJson(app, "/v1/recover", await shareOf(doc, owners[1]!));
    const history = (await get(app, "/v1/manifests")).text;
    const status = (await get(app, "/v1/status")).text;
    const mallory = owners[3]!; // the workload owner's own RSA key
    const withMallory = manifest([...owners.slice(0, 3), mallory], 2);
    const lowered = manifest(owners.slice(0, 3), 1);
    const reordered = manifest([owners[1]!, owners[0]!, owners[2]!], 2);
    const other = manifest([...owners.slice(0, 3), owners[4]!], 2);
    const otherRoot = { name, rootCA: "11".repeat(32) };
    const a0 = await approvalOf(owners[0]!, ref, withMallory, transition);
    const attempts: [string, Uint8Array, { ownerPublicKey: string; signature: string }[] | undefined][] = [
      ["adds the workload owner's key, no approvals", withMallory, undefined],
      ["lowers the threshold, no approvals", lowered, []],
      ["reorders the owners (their shares change), no approvals", reordered, []],
      ["one approval of two needed", withMallory, [a0]],
      ["the same approval twice", withMallory, [a0, a0]],
      ["one owner and one stranger (the new key itself)", withMallory, [a0, await approvalOf(mallory, ref, withMallory, transition)]],
      ["approvals of another manifest", withMallory, [a0, await approvalOf(owners[1]!, ref, other, transition)]],
      ["approvals for another Coordinator", withMallory, [a0, await approvalOf(owners[1]!, otherRoot, withMallory, transition)]],
      ["approvals for another name", withMallory, [a0, await approvalOf(owners[1]!, { ...ref, name: "other" }, withMallory, transition)]],
      ["an owner's signature under another owner's key", withMallory, [a0, { ...a0, ownerPublicKey: owners[1]!.publicHex }]],
    ];
    for (const [what, next, approvals] of attempts) {
      const answer = await postJson(app, "/v1/manifest", await updateBody(next, [web.bytes], transition, workload, ref, approvals));
      expect({ what, status: answer.status, code: answer.json?.error?.code }).toEqual({ what, status: 403, code: "REKEY_NOT_APPROVED" });
      expect((await get(app, "/v1/manifests")).text).toBe(history);
      expect((await get(app, "/v1/status")).text).toBe(status);
    }
    const restarted = await start(store);
    const old = await postJson(restarted, "/v1/recover", await shareOf(doc, owners[0]!));
    expect(old.status, old.text).toBe(200);

    const approved = [a0, await approvalOf(owners[2]!, ref, withMallory, transition)];
    const update = await postJson(app, "/v1/manifest", await updateBody(withMallory, [web.bytes], transition, workload, ref, approved));
    expect(update.status, update.text).toBe(200);
    expect((update.json.seedShares as SeedShareDocument).shares).toHaveLength(4);
  });

  it("attack: an update signed for another Coordinator, or for another root CA, is refused", async () => {
    const { store, doc, transition, ref } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    await postJson(app, "/v1/recover", await shareOf(doc, owners[1]!));
    const history = (await get(app, "/v1/manifests")).text;
    const p2 = await policy("policy of web, v2\n");
    const next = manifest(owners.slice(0, 3), 2, p2);
    for (const other of [{ ...ref, name: "staging" }, { name, rootCA: "22".repeat(32) }]) {
      const answer = await postJson(app, "/v1/manifest", await updateBody(next, [p2.bytes], transition, workload, other));
      expectCode(answer, 403, "UNAUTHORIZED_UPDATE");
      expect((await get(app, "/v1/manifests")).text).toBe(history);
    }
    const ok = await postJson(app, "/v1/manifest", await updateBody(next, [p2.bytes], transition, workload, ref));
    expect(ok.status, ok.text).toBe(200);
  });

  it("an update that replaces an owner and changes t: new shares; old ones stop working; the CAs stay", async () => {
    const { store, doc: oldDoc, transition, ref } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    await postJson(app, "/v1/recover", await shareOf(oldDoc, owners[0]!));
    await postJson(app, "/v1/recover", await shareOf(oldDoc, owners[1]!));
    const before = JSON.parse((await get(app, "/v1/manifests")).text);

    // owners 1, 2 stay; owner 0 is replaced by owner 3; threshold 2 → 3 (of 3)
    const next = manifest([owners[3]!, owners[1]!, owners[2]!], 3);
    const approvals = await Promise.all([owners[2]!, owners[0]!].map((o) => approvalOf(o, ref, next, transition)));
    const update = await postJson(app, "/v1/manifest", await updateBody(next, [web.bytes], transition, workload, ref, approvals));
    expect(update.status, update.text).toBe(200);
    const newDoc = update.json.seedShares as SeedShareDocument;
    expect(newDoc.threshold).toBe(3);
    expect(newDoc.salt).not.toBe(oldDoc.salt);
    expect(update.json.rootCA).toBe(before.rootCA);

    // an update that keeps owners and threshold hands out no new shares
    const p2 = await policy("policy of web, v2\n");
    const same = manifest([owners[3]!, owners[1]!, owners[2]!], 3, p2);
    const keep = await postJson(app, "/v1/manifest", await updateBody(same, [p2.bytes], update.json.transition, workload, ref));
    expect(keep.status, keep.text).toBe(200);
    expect(keep.json.seedShares).toBeUndefined();
    const finalHistory = (await get(app, "/v1/manifests")).text;

    const restarted = await start(store);
    expect((await get(restarted, "/v1/status")).json.recovery).toMatchObject({ threshold: 3, received: 0 });
    // the removed owner's old share, and old shares of owners who stayed, are refused
    expectCode(await postJson(restarted, "/v1/recover", await shareOf(oldDoc, owners[0]!)), 403, "SALT_MISMATCH");
    expectCode(await postJson(restarted, "/v1/recover", await shareOf(oldDoc, owners[1]!)), 403, "SALT_MISMATCH");
    const old = await shareOf(oldDoc, owners[0]!);
    expectCode(await postJson(restarted, "/v1/recover", { share: old.share, salt: newDoc.salt }), 403, "SHARE_INVALID");
    expect((await get(restarted, "/v1/status")).json.recovery.received).toBe(0);

    for (const o of [owners[3]!, owners[1]!]) {
      expect((await postJson(restarted, "/v1/recover", await shareOf(newDoc, o))).json.state).toBe("recovery-required");
    }
    const done = await postJson(restarted, "/v1/recover", await shareOf(newDoc, owners[2]!));
    expect(done.json.state, done.text).toBe("ready");
    expect((await get(restarted, "/v1/manifests")).text).toBe(finalHistory);
    expect(JSON.parse(finalHistory).rootCA).toBe(before.rootCA);
  });

  it("going from 2-of-3 back to 1-of-1 gives the single owner the whole recovery seed", async () => {
    const { store, doc, transition, ref } = await deploy(owners.slice(0, 3), 2);
    const app = await start(store);
    await postJson(app, "/v1/recover", await shareOf(doc, owners[0]!));
    await postJson(app, "/v1/recover", await shareOf(doc, owners[2]!));
    const next = manifest([owners[4]!]);
    const approvals = await Promise.all([owners[0]!, owners[1]!].map((o) => approvalOf(o, ref, next, transition)));
    const update = await postJson(app, "/v1/manifest", await updateBody(next, [web.bytes], transition, workload, ref, approvals));
    expect(update.status, update.text).toBe(200);
    const history = (await get(app, "/v1/manifests")).text;
    const restarted = await start(store);
    const done = await postJson(restarted, "/v1/recover", await shareOf(update.json.seedShares, owners[4]!));
    expect(done.json.state, done.text).toBe("ready");
    expect((await get(restarted, "/v1/manifests")).text).toBe(history);
  });
});
