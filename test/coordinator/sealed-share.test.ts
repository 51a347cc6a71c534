// Sealed seed shares in process: the HPKE info layout, seal/open round trips, every wrong binding refused with its code, and the attempt rules of POST /v1/recover (nothing kept on refusal).
import type { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import type { EvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { openSealedShare, sealShare, shareSealingInfo } from "../../src/coordinator/sealed-share.js";
import type { SealedShare } from "../../src/coordinator/sealed-share.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { HpkeRecipient } from "../../src/crypto/hpke.js";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { CoordinatorError } from "../../src/errors.js";
import { concat, fromBase64, fromHex, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { call, get, postJson, simulated } from "../api/fixture.js";
import type { Answer } from "../api/fixture.js";
import { firstSetBody, manifestBytes, policy, resetBody, seedShareOwner, workloadOwner } from "../helpers.js";

type SeedOwner = Awaited<ReturnType<typeof seedShareOwner>>;

const name = "sealed";
const hex32 = /^[0-9a-f]{32}$/;
let owners: SeedOwner[];
let web: Awaited<ReturnType<typeof policy>>;
let workloadDigest: string;

beforeAll(async () => {
  const [a, b, c, w] = await Promise.all([seedShareOwner(), seedShareOwner(), seedShareOwner(), workloadOwner()]);
  owners = [a, b, c];
  workloadDigest = w.digest;
  web = await policy("policy of web\n");
}, 120_000);

/** An evidence source that is "on" (the recover route only asks whether one is); it is never called here. */
const someSource: EvidenceSource = {
  kind: "test",
  insecure: true,
  evidence: () => Promise.reject(new Error("not called")),
};

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CoordinatorError) return err.code;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("the sealing itself", () => {
  const share = crypto.getRandomValues(new Uint8Array(65));
  const salt = crypto.getRandomValues(new Uint8Array(32));
  const attempt = toHex(crypto.getRandomValues(new Uint8Array(16)));
  let recipient: HpkeRecipient;
  let sealed: SealedShare;
  beforeAll(async () => {
    recipient = await HpkeRecipient.generate();
    sealed = await sealShare(recipient.publicKey, share, { name, attempt, salt });
  });

  it("info is the documented layout: label ‖ 0x00 ‖ u16 name length ‖ name ‖ the attempt's 16 bytes", () => {
    const label = utf8("contrast-coordinator/seed-share/v1");
    const nameBytes = utf8(name);
    const expected = concat(label, new Uint8Array([0, 0, nameBytes.length]), nameBytes, fromHex(attempt));
    expect(toHex(shareSealingInfo(name, attempt))).toBe(toHex(expected));
  });

  it("round trip: the wire form (attempt hex, enc 65 bytes), and the share opens with the salt as hex or bytes", async () => {
    expect(sealed.attempt).toBe(attempt);
    expect(fromBase64(sealed.enc).length).toBe(65);
    expect(fromBase64(sealed.ciphertext).length).toBe(share.length + 16);
    expect(toHex(await openSealedShare(recipient, sealed, { name, salt }))).toBe(toHex(share));
    expect(toHex(await openSealedShare(recipient, sealed, { name, salt: toHex(salt) }))).toBe(toHex(share));
    // Two sealings of one share differ (a fresh encapsulation each time).
    expect((await sealShare(recipient.publicKey, share, { name, attempt, salt })).enc).not.toBe(sealed.enc);
  });

  it("refuses another attempt, name, salt, key, a changed ciphertext or enc: SEALED_SHARE_INVALID", async () => {
    const other = await HpkeRecipient.generate();
    const flipped = fromBase64(sealed.ciphertext);
    flipped[3]! ^= 1;
    const cases: [string, () => Promise<unknown>][] = [
      ["relabelled for another attempt", () => openSealedShare(recipient, { ...sealed, attempt: "00".repeat(16) }, { name, salt })],
      ["another Coordinator name", () => openSealedShare(recipient, sealed, { name: "other", salt })],
      ["another salt", () => openSealedShare(recipient, sealed, { name, salt: new Uint8Array(32) })],
      ["another key", () => openSealedShare(other, sealed, { name, salt })],
      ["a changed ciphertext", () => openSealedShare(recipient, { ...sealed, ciphertext: toBase64(flipped) }, { name, salt })],
      ["a cut enc", () => openSealedShare(recipient, { ...sealed, enc: toBase64(fromBase64(sealed.enc).subarray(0, 33)) }, { name, salt })],
      ["another sender's enc", () => sealShare(recipient.publicKey, share, { name, attempt, salt }).then((s) => openSealedShare(recipient, { ...sealed, enc: s.enc }, { name, salt }))],
    ];
    for (const [what, run] of cases) expect({ what, code: await codeOf(run()) }).toEqual({ what, code: "SEALED_SHARE_INVALID" });
  });

  it("refuses to seal to something that is not a P-256 point, or for a malformed attempt or salt: INVALID_REQUEST", async () => {
    const bad = recipient.publicKey.slice();
    bad[64]! ^= 1; // off the curve
    expect(await codeOf(sealShare(bad, share, { name, attempt, salt }))).toBe("INVALID_REQUEST");
    expect(await codeOf(sealShare(recipient.publicKey, share, { name, attempt: "ab", salt }))).toBe("INVALID_REQUEST");
    expect(await codeOf(sealShare(recipient.publicKey, share, { name, attempt, salt: new Uint8Array(31) }))).toBe("INVALID_REQUEST");
  });
});

describe("POST /v1/recover with sealed shares (2 of 3)", () => {
  function manifest(): Uint8Array {
    return manifestBytes({ policies: [{ hash: web.hash, name: "web" }], workloadOwners: [workloadDigest], seedShareOwners: owners.map((o) => o.publicHex) });
  }

  async function deploy(threshold: number): Promise<{ store: Store; doc: SeedShareDocument; history: string }> {
    const store = createStore(memoryDriver());
    const coordinator = await Coordinator.start({ store, name, validators: simulated() });
    const app = createApp({ coordinator });
    const m = JSON.parse(new TextDecoder().decode(manifest())) as Record<string, unknown>;
    const set = await postJson(app, "/v1/manifest", firstSetBody(utf8(JSON.stringify({ ...m, Threshold: threshold })), [web.bytes]));
    expect(set.status, set.text).toBe(200);
    return { store, doc: set.json.seedShares as SeedShareDocument, history: (await get(app, "/v1/manifests")).text };
  }

  async function restart(store: Store, self: SelfAttestation | null, opts: { now?: () => Date; recoveryTimeoutMs?: number } = {}): Promise<Hono> {
    const coordinator = await Coordinator.start({ store, name, validators: simulated(), ...opts });
    return createApp({ coordinator, ...(self === null ? {} : { selfAttestation: self }) });
  }

  async function shareOf(doc: SeedShareDocument, owner: SeedOwner): Promise<Uint8Array> {
    const entry = doc.shares.find((s) => s.ownerPublicKey === owner.publicHex)!;
    return decryptSeedShare(entry.encryptedShare, owner.keys.privateKey);
  }

  async function sealedBody(doc: SeedShareDocument, owner: SeedOwner, to: Uint8Array, attempt: string, opts: { name?: string; salt?: string } = {}) {
    const sealedShare = await sealShare(to, await shareOf(doc, owner), { name: opts.name ?? name, attempt, salt: opts.salt ?? doc.salt });
    return { salt: doc.salt, sealedShare };
  }

  const recovery = async (app: Hono) => (await get(app, "/v1/status")).json.recovery;

  function expectCode(answer: Answer, status: number, code: string): void {
    expect({ status: answer.status, code: answer.json?.error?.code }).toEqual({ status, code });
  }

  function del(body: unknown): RequestInit {
    return { method: "DELETE", body: JSON.stringify(body), headers: { "content-type": "application/json" } };
  }

  it("with an evidence source: plain shares are refused, sealed ones for this attempt count; every wrong one is refused and changes nothing", async () => {
    const { store, doc, history } = await deploy(2);
    const self = await SelfAttestation.create(someSource);
    const app = await restart(store, self);
    const key = self.hpke.publicKey;

    const start = await recovery(app);
    expect(start).toEqual({ threshold: 2, received: 0, nonce: expect.stringMatching(hex32) });
    const attempt = start.nonce as string;

    // In clear: SHARE_NOT_SEALED, nothing kept.
    expectCode(await postJson(app, "/v1/recover", { salt: doc.salt, share: toBase64(await shareOf(doc, owners[0]!)) }), 400, "SHARE_NOT_SEALED");
    expect(await recovery(app)).toEqual(start);
    // Both forms at once, or neither: not a valid body.
    const alice = await sealedBody(doc, owners[0]!, key, attempt);
    expectCode(await postJson(app, "/v1/recover", { ...alice, share: toBase64(await shareOf(doc, owners[0]!)) }), 400, "INVALID_REQUEST");
    expectCode(await postJson(app, "/v1/recover", { salt: doc.salt }), 400, "INVALID_REQUEST");
    // A reset with no share received has nothing to reset, although the attempt has a nonce.
    expectCode(await call(app, "/v1/recover", del(await resetBody(owners[1]!, name, attempt))), 409, "NO_RECOVERY_ATTEMPT");
    expect(await recovery(app)).toEqual(start);

    const first = await postJson(app, "/v1/recover", alice);
    expect(first.status, first.text).toBe(200);
    const progress = { threshold: 2, received: 1, nonce: attempt };
    expect(first.json).toEqual({ state: "recovery-required", recovery: progress });

    const stranger = await HpkeRecipient.generate();
    const refusals: [string, unknown, number, string][] = [
      ["bob's share sealed for another attempt", await sealedBody(doc, owners[1]!, key, "00".repeat(16)), 409, "ATTEMPT_CHANGED"],
      ["bob's share sealed to another HPKE key", await sealedBody(doc, owners[1]!, stranger.publicKey, attempt), 400, "SEALED_SHARE_INVALID"],
      ["bob's share sealed for another Coordinator name", await sealedBody(doc, owners[1]!, key, attempt, { name: "other" }), 400, "SEALED_SHARE_INVALID"],
      ["bob's share sealed with another salt", await sealedBody(doc, owners[1]!, key, attempt, { salt: "11".repeat(32) }), 400, "SEALED_SHARE_INVALID"],
      ["alice's sealed share relabelled as another attempt", { ...alice, sealedShare: { ...alice.sealedShare, attempt: "ab".repeat(16) } }, 409, "ATTEMPT_CHANGED"],
      ["alice's sealed share again", alice, 409, "SHARE_REPEATED"],
      ["alice's share sealed anew", await sealedBody(doc, owners[0]!, key, attempt), 409, "SHARE_REPEATED"],
      ["bob's share in clear", { salt: doc.salt, share: toBase64(await shareOf(doc, owners[1]!)) }, 400, "SHARE_NOT_SEALED"],
    ];
    for (const [what, body, status, code] of refusals) {
      const answer = await postJson(app, "/v1/recover", body);
      expect({ what, status: answer.status, code: answer.json?.error?.code }).toEqual({ what, status, code });
      expect({ what, recovery: await recovery(app) }).toEqual({ what, recovery: progress });
    }

    const done = await postJson(app, "/v1/recover", await sealedBody(doc, owners[2]!, key, attempt));
    expect(done.status, done.text).toBe(200);
    expect(done.json).toEqual({ state: "ready", recovery: { threshold: 2, received: 2, nonce: attempt } });
    expect((await get(app, "/v1/manifests")).text).toBe(history);
    // Once ready, a recorded sealed share is refused: nothing to recover.
    expectCode(await postJson(app, "/v1/recover", alice), 409, "NOT_IN_RECOVERY");
  });

  it("a reset begins a new attempt: the shares sealed for the old one are refused (ATTEMPT_CHANGED) and nothing is kept", async () => {
    const { store, doc } = await deploy(2);
    const self = await SelfAttestation.create(someSource);
    const app = await restart(store, self);
    const old = (await recovery(app)).nonce as string;
    const alice = await sealedBody(doc, owners[0]!, self.hpke.publicKey, old);
    expect((await postJson(app, "/v1/recover", alice)).json.recovery.received).toBe(1);
    const reset = await call(app, "/v1/recover", del(await resetBody(owners[1]!, name, old)));
    expect(reset.status, reset.text).toBe(200);
    const fresh = reset.json.recovery;
    expect(fresh).toEqual({ threshold: 2, received: 0, nonce: expect.stringMatching(hex32) });
    expect(fresh.nonce).not.toBe(old);

    expectCode(await postJson(app, "/v1/recover", alice), 409, "ATTEMPT_CHANGED");
    expect(await recovery(app)).toEqual(fresh);
    // Sealed again for the new attempt, it counts.
    const again = await postJson(app, "/v1/recover", await sealedBody(doc, owners[0]!, self.hpke.publicKey, fresh.nonce));
    expect(again.json.recovery).toEqual({ threshold: 2, received: 1, nonce: fresh.nonce });
  });

  it("the attempt's timeout counts from its first share; once it expires a new nonce begins and the old sealed shares are refused", async () => {
    const { store, doc } = await deploy(2);
    const self = await SelfAttestation.create(someSource);
    let now = Date.parse("2026-11-28T12:00:00Z");
    const app = await restart(store, self, { now: () => new Date(now), recoveryTimeoutMs: 60_000 });
    const attempt = (await recovery(app)).nonce as string;
    now += 3_600_000; // no share yet: the attempt does not expire
    expect((await recovery(app)).nonce).toBe(attempt);
    const alice = await sealedBody(doc, owners[0]!, self.hpke.publicKey, attempt);
    expect((await postJson(app, "/v1/recover", alice)).json.recovery.received).toBe(1);
    now += 61_000;
    const next = await recovery(app);
    expect(next).toEqual({ threshold: 2, received: 0, nonce: expect.stringMatching(hex32) });
    expect(next.nonce).not.toBe(attempt);
    expectCode(await postJson(app, "/v1/recover", await sealedBody(doc, owners[1]!, self.hpke.publicKey, attempt)), 409, "ATTEMPT_CHANGED");
    expect(await recovery(app)).toEqual(next);
  });

  it("with --evidence none: plain shares as before, and sealed ones to the process's key; without any HPKE key a sealed share cannot open", async () => {
    const { store, doc } = await deploy(1);
    const none = await SelfAttestation.create(null);
    const app = await restart(store, none);
    const attempt = (await recovery(app)).nonce as string;
    const sealed = await sealedBody(doc, owners[0]!, none.hpke.publicKey, attempt);
    expect((await postJson(app, "/v1/recover", sealed)).json.state).toBe("ready");

    const bare = await restart(store, null);
    const nonce = (await recovery(bare)).nonce as string;
    expectCode(await postJson(bare, "/v1/recover", await sealedBody(doc, owners[0]!, none.hpke.publicKey, nonce)), 400, "SEALED_SHARE_INVALID");
    expect(await recovery(bare)).toEqual({ threshold: 1, received: 0, nonce });
    const plain = await postJson(bare, "/v1/recover", { salt: doc.salt, share: toBase64(await shareOf(doc, owners[0]!)) });
    expect(plain.status, plain.text).toBe(200);
    expect(plain.json.state).toBe("ready");
  });
});
