// Following the head in process, where the instants matter: a certificate begun under a manifest that another Coordinator superseded is never handed out once the follower has read the new head, and a newer head that cannot be loaded yet stops issuance.
import "reflect-metadata";
import type { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import type { AttestationValidator, Validators } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore, StoreError } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { call, makeOwners, manifestOf, namedPolicy, postJson } from "../api/fixture.js";
import type { NamedPolicy, Owners } from "../api/fixture.js";
import { firstSetBody, recoverBody, updateBody, workloadKey } from "../helpers.js";

const name = "test-coordinator";

/** A store whose reads of anything but the head can be held (to widen the window between reading a head and loading it) or failed. */
function heldStore(inner: Store): Store & { hold(): void; release(): void; failing: boolean } {
  let release: (() => void) | null = null;
  let held: Promise<void> | null = null;
  const store = {
    failing: false,
    hold() {
      held = new Promise((resolve) => (release = resolve));
    },
    release() {
      release?.();
      held = null;
    },
    async get(key: string) {
      if (!key.startsWith("heads:")) {
        if (held !== null) await held;
        if (store.failing) throw new StoreError("UNAVAILABLE", `injected failure: get ${key}`);
      }
      return inner.get(key);
    },
    put: (key: string, value: Uint8Array) => inner.put(key, value),
    getVersioned: (key: string) => inner.getVersioned(key),
    compareAndSwap: (key: string, value: Uint8Array, expected: string | null) => inner.compareAndSwap(key, value, expected),
    keys: (kind: string) => inner.keys(kind),
    remove: (key: string) => inner.remove(key),
  };
  return store;
}

/** The insecure simulated validator, held at its first call until released (the certificate is then being made). */
function heldValidator(): { validator: AttestationValidator; entered: Promise<void>; release(): void } {
  let entered!: () => void;
  let release!: () => void;
  const enteredP = new Promise<void>((resolve) => (entered = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  let first = true;
  return {
    validator: {
      type: "insecure-simulated",
      insecure: true,
      async validate(evidence, context) {
        if (first) {
          first = false;
          entered();
          await released;
        }
        return simulatedValidator.validate(evidence, context);
      },
    },
    entered: enteredP,
    release,
  };
}

/** Lets every pending callback run (several turns of the event loop); no time passes on purpose. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe("following the head in process", () => {
  let owners: Owners;
  let web: NamedPolicy;
  let db: NamedPolicy;
  beforeAll(async () => {
    owners = await makeOwners();
    [web, db] = await Promise.all([namedPolicy("web"), namedPolicy("db")]);
  });

  /** Writer W (not following) and follower F on one store, both ready on a manifest with web and db; then W removes db. */
  async function twoOnOneStore(validators: Validators = new Map([["insecure-simulated", simulatedValidator]])) {
    const inner = createStore(memoryDriver());
    const store = heldStore(inner);
    const writer = await Coordinator.start({ store: inner, name, validators: new Map([["insecure-simulated", simulatedValidator]]) });
    const w = createApp({ coordinator: writer });
    const set = await postJson(w, "/v1/manifest", firstSetBody(manifestOf(owners, [web, db]), [web.bytes, db.bytes]));
    expect(set.status, set.text).toBe(200);
    const follower = await Coordinator.start({ store, name, validators, follow: true });
    const f = createApp({ coordinator: follower });
    const rec = await postJson(f, "/v1/recover", await recoverBody(set.json.seedShares, owners.seed.keys.privateKey));
    expect(rec.status, rec.text).toBe(200);
    const ref = { name, rootCA: set.json.rootCA as string };
    const removeDb = async () => {
      const update = await postJson(w, "/v1/manifest", await updateBody(manifestOf(owners, [web]), [web.bytes], set.json.transition, owners.workload, ref));
      expect(update.status, update.text).toBe(200);
    };
    return { store, follower, f, w, removeDb };
  }

  const certify = async (app: Hono, policy: NamedPolicy) =>
    postJson(app, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: { type: "insecure-simulated", policyHash: policy.hash } });

  it("a certificate begun under the old manifest is not handed out once the new head was read: it is decided again under the new one", async () => {
    const held = heldValidator();
    const { store, follower, f, removeDb } = await twoOnOneStore(new Map([["insecure-simulated", held.validator]]));
    const request = certify(f, db);
    await held.entered; // the evidence of a db workload is being checked against the old manifest
    await removeDb();
    store.hold(); // the follower reads the new head, then waits while loading the state it pins
    const following = follower.follow();
    await settle();
    held.release(); // the certificate under the old manifest is made now, after the new head was read
    await settle();
    let answered = false;
    void request.then(() => (answered = true));
    await settle();
    expect(answered).toBe(false); // not handed out under the old state
    store.release();
    expect(await following).toMatchObject({ kind: "followed", generation: 2 });
    const answer = await request;
    expect(answer.status, answer.text).toBe(403);
    expect(answer.json.error.code).toBe("POLICY_NOT_IN_MANIFEST");
    expect((await certify(f, web)).status).toBe(200);
  });

  it("a request that arrives while a read head is being loaded waits for it and is decided under the new manifest", async () => {
    const { store, follower, f, removeDb } = await twoOnOneStore();
    expect((await certify(f, db)).status).toBe(200);
    await removeDb();
    store.hold();
    const following = follower.follow();
    await settle();
    const request = certify(f, db);
    let answered = false;
    void request.then(() => (answered = true));
    await settle();
    expect(answered).toBe(false);
    store.release();
    await following;
    expect((await request).json.error.code).toBe("POLICY_NOT_IN_MANIFEST");
  });

  it("a newer head that cannot be loaded (the store fails) stops issuance with STORE_UNAVAILABLE until it is loaded", async () => {
    const { store, follower, f, removeDb } = await twoOnOneStore();
    await removeDb();
    store.failing = true;
    expect(await follower.follow()).toMatchObject({ kind: "unavailable" });
    expect(follower.status()).toMatchObject({ state: "ready", generation: 1 });
    for (const policy of [db, web]) {
      const refused = await certify(f, policy);
      expect(refused.status).toBe(503);
      expect(refused.json.error.code).toBe("STORE_UNAVAILABLE");
    }
    store.failing = false;
    expect((await certify(f, db)).json.error.code).toBe("POLICY_NOT_IN_MANIFEST");
    expect(follower.status()).toMatchObject({ state: "ready", generation: 2 });
  });

  it("the loser of a compare-and-swap answers STALE and follows the winner's head instead of turning stale", async () => {
    const { follower, f, removeDb } = await twoOnOneStore();
    const before = await call(f, "/v1/manifests");
    await removeDb();
    const lost = await postJson(f, "/v1/manifest", await updateBody(manifestOf(owners, [db]), [db.bytes], JSON.parse(before.text).latestTransition, owners.workload, { name, rootCA: JSON.parse(before.text).rootCA }));
    expect(lost.status, lost.text).toBe(409);
    expect(lost.json.error.code).toBe("STALE");
    expect(follower.status()).toMatchObject({ state: "ready", generation: 2 });
  });

  it("with following off, a moved head still makes the Coordinator stale (as before)", async () => {
    const inner = createStore(memoryDriver());
    const validators = new Map([["insecure-simulated", simulatedValidator]]);
    const a = await Coordinator.start({ store: inner, name, validators });
    const set = await postJson(createApp({ coordinator: a }), "/v1/manifest", firstSetBody(manifestOf(owners, [web]), [web.bytes]));
    const b = await Coordinator.start({ store: inner, name, validators });
    const bApp = createApp({ coordinator: b });
    expect((await postJson(bApp, "/v1/recover", await recoverBody(set.json.seedShares, owners.seed.keys.privateKey))).status).toBe(200);
    const ref = { name, rootCA: set.json.rootCA as string };
    expect((await postJson(createApp({ coordinator: a }), "/v1/manifest", await updateBody(manifestOf(owners, [web, db]), [web.bytes, db.bytes], set.json.transition, owners.workload, ref))).status).toBe(200);
    expect(await b.follow()).toEqual({ kind: "unchanged" });
    expect(await b.audit()).toEqual({ kind: "moved" });
    expect(b.status().state).toBe("stale");
  });
});
