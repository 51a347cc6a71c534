// G4 tampering tests: every kind of stored object changed, deleted or swapped is refused naming its key: at recovery what recovery reads (the head, its index, the CA objects, the active state), the older history when served and by the audit.
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fsDriver, fsPathOf } from "../../adapters/node/fs-driver.js";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { sha256 } from "../../src/crypto/provider.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromUtf8, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import {
  firstSetBody,
  manifestBytes,
  policy,
  post,
  recoverBody,
  seedShareOwner,
  updateBody,
  workloadKey,
  workloadOwner,
} from "../helpers.js";

const name = "alpha";
const otherName = "beta";
const headKey = `heads:${name}`;
const validators = new Map([["insecure-simulated", simulatedValidator]]);
const storeKinds = ["policies", "manifests", "transitions", "certificates", "keys", "seedshares", "histories", "heads"] as const;

interface Doc {
  bytes: Uint8Array;
  hash: string;
}

interface HeadObjects {
  rootCA: string;
  transactionSigner: string;
  meshCA: string;
  intermediateCA: string;
  meshCAKey: string;
  history: string;
}

/** A store holding two generations of Coordinator `alpha` (and, in memory, a Coordinator `beta`), with what the tests compare against. */
interface Baseline {
  store: Store;
  /** GET /v1/manifests of the Coordinator that made the state, before any restart. */
  text: string;
  recover: { share: string; salt: string };
  p1: Doc; // only in the first manifest
  p2: Doc; // in both manifests
  p3: Doc; // only in the second manifest
  m1: Doc;
  m2: Doc;
  t1: string;
  t2: string;
  head1: Uint8Array;
  head2: Uint8Array;
  objects1: HeadObjects;
  objects2: HeadObjects;
  /** The head of Coordinator `beta` on the same store (memory baseline only). */
  otherHead: Uint8Array | null;
}

interface Answer {
  status: number;
  text: string;
  json: Record<string, unknown>;
}

interface ErrorJson {
  code: string;
  message: string;
  key?: string;
}

async function call(app: Hono, method: "GET" | "POST", path: string, body?: unknown): Promise<Answer> {
  const res = await app.request(path, method === "POST" ? post(body) : { method });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON: keep {}
  }
  return { status: res.status, text, json };
}

function errorOf(a: Answer): ErrorJson {
  const error = a.json.error as ErrorJson | undefined;
  if (error === undefined) throw new Error(`expected an error answer, got ${a.status} ${a.text.slice(0, 200)}`);
  return error;
}

async function stateOf(app: Hono): Promise<string> {
  return (await call(app, "GET", "/v1/status")).json.state as string;
}

async function start(store: Store, coordinatorName = name): Promise<{ coordinator: Coordinator; app: Hono }> {
  const coordinator = await Coordinator.start({ store, name: coordinatorName, validators });
  return { coordinator, app: createApp({ coordinator }) };
}

async function doc(bytes: Uint8Array): Promise<Doc> {
  return { bytes, hash: toHex(await sha256(bytes)) };
}

async function copyStore(from: Store): Promise<Store> {
  const to = createStore(memoryDriver());
  for (const kind of storeKinds) {
    for (const key of await from.keys(kind)) await to.put(key, (await from.get(key))!);
  }
  return to;
}

function headObjects(head: Uint8Array): HeadObjects {
  return (JSON.parse(fromUtf8(head)) as { objects: HeadObjects }).objects;
}

/** The same bytes with one byte changed (the middle one, XOR 1). */
function flipByte(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes);
  const i = Math.floor(out.length / 2);
  out[i] = out[i]! ^ 0x01;
  return out;
}

const HEX = "0123456789abcdef";
const DIGITS = "0123456789";
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** The head with one character of a field's value replaced by the next one of `alphabet` (so the JSON stays well-formed). */
function changeHeadField(head: Uint8Array, field: string, alphabet: string, offset: number): Uint8Array {
  const text = fromUtf8(head);
  const match = new RegExp(`"${field}": "?`).exec(text);
  if (match === null) throw new Error(`no field ${field} in the head`);
  const at = match.index + match[0].length + offset;
  const c = text[at]!;
  const i = alphabet.indexOf(c);
  if (i < 0) throw new Error(`character ${c} of ${field} is not in the alphabet`);
  const changed = text.slice(0, at) + alphabet[(i + 1) % alphabet.length]! + text.slice(at + 1);
  expect(changed.length).toBe(text.length);
  return utf8(changed);
}

/** Makes two generations of `alpha` (and one of `beta` when `withOther`) on `store`. */
async function buildBaseline(
  store: Store,
  owners: { seed: Awaited<ReturnType<typeof seedShareOwner>>; workload: Awaited<ReturnType<typeof workloadOwner>> },
  withOther: boolean,
): Promise<Baseline> {
  const [p1, p2, p3] = await Promise.all([policy("policy of web\n"), policy("policy of db\n"), policy("policy of cache\n")]);
  const common = { workloadOwners: [owners.workload.digest], seedShareOwners: [owners.seed.publicHex] };
  const m1 = await doc(manifestBytes({ ...common, policies: [{ ...p1, name: "web" }, { ...p2, name: "db" }] }));
  const m2 = await doc(manifestBytes({ ...common, policies: [{ ...p2, name: "db" }, { ...p3, name: "cache" }] }));

  const { app } = await start(store);
  const first = await call(app, "POST", "/v1/manifest", firstSetBody(m1.bytes, [p1.bytes, p2.bytes]));
  expect(first.status, first.text).toBe(200);
  const t1 = first.json.transition as string;
  const head1 = (await store.get(headKey))!;
  const second = await call(app, "POST", "/v1/manifest", await updateBody(m2.bytes, [p2.bytes, p3.bytes], t1, owners.workload, { name, rootCA: first.json.rootCA as string }));
  expect(second.status, second.text).toBe(200);
  const t2 = second.json.transition as string;
  const head2 = (await store.get(headKey))!;
  const history = await call(app, "GET", "/v1/manifests");
  expect(history.status, history.text).toBe(200);
  expect(history.json.generation).toBe(2);

  let otherHead: Uint8Array | null = null;
  if (withOther) {
    const other = await start(store, otherName);
    const set = await call(other.app, "POST", "/v1/manifest", firstSetBody(m1.bytes, [p1.bytes, p2.bytes]));
    expect(set.status, set.text).toBe(200);
    otherHead = (await store.get(`heads:${otherName}`))!;
  }

  return {
    store,
    text: history.text,
    recover: await recoverBody(first.json.seedShares as SeedShareDocument, owners.seed.keys.privateKey),
    p1,
    p2,
    p3,
    m1,
    m2,
    t1,
    t2,
    head1,
    head2,
    objects1: headObjects(head1),
    objects2: headObjects(head2),
    otherHead,
  };
}

/** Asserts that a Coordinator in recovery serves nothing that comes from the store. */
async function expectNothingAdopted(app: Hono): Promise<void> {
  expect(await stateOf(app)).toBe("recovery-required");
  const history = await call(app, "GET", "/v1/manifests");
  expect(history.status).toBe(409);
  expect(errorOf(history).code).toBe("RECOVERY_REQUIRED");
  expect((await call(app, "GET", "/readyz")).status).toBe(503);
  const cert = await call(app, "POST", "/v1/mesh/certificate", {
    publicKey: workloadSpki,
    evidence: { type: "insecure-simulated", policyHash: mem.p2.hash },
  });
  expect(cert.status).toBe(409);
  expect(errorOf(cert).code).toBe("RECOVERY_REQUIRED");
}

/** Recovery must be refused with STATE_CORRUPT naming exactly `key`. */
async function expectCorrupt(app: Hono, b: Baseline, key: string): Promise<void> {
  const r = await call(app, "POST", "/v1/recover", b.recover);
  expect(r.status, r.text).toBe(502);
  const error = errorOf(r);
  expect(error.code).toBe("STATE_CORRUPT");
  expect(error.key).toBe(key);
  expect(error.message).toContain(key);
  await expectNothingAdopted(app);
}

/** Recovery must succeed and serve the history byte for byte as before. */
async function expectRecovered(app: Hono, b: Baseline): Promise<void> {
  const r = await call(app, "POST", "/v1/recover", b.recover);
  expect(r.status, r.text).toBe(200);
  expect(await stateOf(app)).toBe("ready");
  const history = await call(app, "GET", "/v1/manifests");
  expect(history.status, history.text).toBe(200);
  expect(history.text).toBe(b.text);
}

let owners: Parameters<typeof buildBaseline>[1];
let mem: Baseline;
let workloadSpki: string;
const tempDirs: string[] = [];

beforeAll(async () => {
  const [seed, workload, key] = await Promise.all([seedShareOwner(), workloadOwner(), workloadKey()]);
  owners = { seed, workload };
  workloadSpki = key.spki;
  mem = await buildBaseline(createStore(memoryDriver()), owners, true);
});

afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("the baseline", () => {
  it("recovers after a restart to byte-identical history (G1), so every refusal below is caused by the tampering", async () => {
    const { app } = await start(await copyStore(mem.store));
    expect(await stateOf(app)).toBe("recovery-required");
    await expectRecovered(app, mem);
  });
});

/** One stored object to tamper with, and another valid object of the same kind to swap in. */
interface Target {
  what: string;
  key: (b: Baseline) => string;
  other: (b: Baseline) => Promise<Uint8Array>;
}

const getKey = (b: Baseline, key: string): Promise<Uint8Array> => b.store.get(key).then((v) => v!);
const certKey = (field: keyof HeadObjects) => (b: Baseline) => `certificates:${b.objects2[field]}`;

/**
 * The objects of the history older than the active state: recovery does not read them (the signed
 * head's index vouches for their hashes), so tampering with them is found when they are served and by
 * the background re-verification, never at recovery.
 */
const indexedTargets: Target[] = [
  { what: "policy only in the old manifest", key: (b) => `policies:${b.p1.hash}`, other: async (b) => b.p3.bytes },
  { what: "old manifest", key: (b) => `manifests:${b.m1.hash}`, other: async (b) => b.m2.bytes },
  { what: "first transition", key: (b) => `transitions:${b.t1}`, other: (b) => getKey(b, `transitions:${b.t2}`) },
];

/** The objects recovery reads: the head's index, the CA objects and the active state (latest manifest, its policies, its transition). */
const targets: Target[] = [
  {
    what: "history index",
    key: (b) => `histories:${b.objects2.history}`,
    // the index of the first generation: valid, written by the same Coordinator, but for another head
    other: (b) => getKey(b, `histories:${b.objects1.history}`),
  },
  { what: "policy shared by both manifests", key: (b) => `policies:${b.p2.hash}`, other: async (b) => b.p1.bytes },
  { what: "policy only in the latest manifest", key: (b) => `policies:${b.p3.hash}`, other: async (b) => b.p2.bytes },
  { what: "latest manifest", key: (b) => `manifests:${b.m2.hash}`, other: async (b) => b.m1.bytes },
  { what: "latest transition", key: (b) => `transitions:${b.t2}`, other: (b) => getKey(b, `transitions:${b.t1}`) },
  {
    what: "root CA certificate",
    key: certKey("rootCA"),
    other: (b) => getKey(b, `certificates:${b.objects2.transactionSigner}`),
  },
  {
    what: "transaction signer certificate",
    key: certKey("transactionSigner"),
    other: (b) => getKey(b, `certificates:${b.objects2.rootCA}`),
  },
  {
    what: "mesh CA certificate",
    key: certKey("meshCA"),
    other: (b) => getKey(b, `certificates:${b.objects1.meshCA}`),
  },
  {
    what: "intermediate CA certificate",
    key: certKey("intermediateCA"),
    other: (b) => getKey(b, `certificates:${b.objects1.intermediateCA}`),
  },
  {
    what: "sealed mesh CA key",
    key: (b) => `keys:${b.objects2.meshCAKey}`,
    // the sealed key of the first manifest's mesh CA: valid, sealed under the same seed, but for another certificate
    other: (b) => getKey(b, `keys:${b.objects1.meshCAKey}`),
  },
];

type Apply = (s: Store, key: string, other: Uint8Array) => Promise<void>;

/** The three ways to tamper with an immutable object, as [name, apply] rows. */
const operations: [string, Apply][] = [
  ["change one byte of", async (s, key) => s.put(key, flipByte((await s.get(key))!))],
  ["delete", async (s, key) => s.remove(key)],
  [
    "swap in another valid object for",
    async (s, key, other) => {
      const current = (await s.get(key))!;
      expect(toHex(other)).not.toBe(toHex(current));
      await s.put(key, other);
    },
  ],
];

/** Rows of [description, target] for describe.each. */
function rows(list: Target[]): [string, Target][] {
  return list.map((t) => [t.what, t]);
}

describe.each(rows(targets))("tampering with the %s is refused at recovery", (_what, target) => {
  it.each(operations)("%s it: STATE_CORRUPT naming its key, nothing adopted; restored, recovery succeeds", async (_op, apply) => {
    const store = await copyStore(mem.store);
    const key = target.key(mem);
    const original = (await store.get(key))!;
    expect(original, `${key} must be in the store`).not.toBeNull();
    await apply(store, key, await target.other(mem));

    const { app } = await start(store);
    expect(await stateOf(app)).toBe("recovery-required");
    await expectCorrupt(app, mem, key);
    // a second attempt is refused the same way: the failed one left nothing behind
    await expectCorrupt(app, mem, key);

    await store.put(key, original);
    await expectRecovered(app, mem);
  });
});

/** A signed update to a third manifest on top of the baseline (what a write attempt sends). */
async function thirdUpdate(b: Baseline): Promise<unknown> {
  const m3 = manifestBytes({
    workloadOwners: [owners.workload.digest],
    seedShareOwners: [owners.seed.publicHex],
    policies: [{ ...b.p3, name: "cache-v3" }],
  });
  return updateBody(m3, [b.p3.bytes], b.t2, owners.workload, { name, rootCA: (JSON.parse(b.text) as { rootCA: string }).rootCA });
}

/**
 * After a recovery with `key` damaged (which recovery did not read): serving names it (or, for a
 * transition, which is served as the hash the index holds, serves the verified bytes), the audit
 * finds it, /readyz and the status report it and writes are refused, and the store is unchanged.
 * Restored, the next audit clears it and the history is served byte for byte.
 */
async function expectFoundAfterRecovery(b: Baseline, coordinator: Coordinator, app: Hono, key: string, restore: () => Promise<void>): Promise<void> {
  const history = await call(app, "GET", "/v1/manifests");
  if (key.startsWith("transitions:")) {
    expect(history.status, history.text).toBe(200);
    expect(history.text).toBe(b.text);
  } else {
    expect(history.status, history.text).toBe(502);
    expect(errorOf(history)).toMatchObject({ code: "STATE_CORRUPT", key });
    expect(Object.keys(history.json)).toEqual(["error"]);
  }

  const finding = await coordinator.audit();
  expect(finding).toMatchObject({ kind: "damaged", damage: { key } });
  const readyz = await call(app, "GET", "/readyz");
  expect(readyz.status).toBe(503);
  expect(readyz.json).toMatchObject({ damage: { key } });
  expect((await call(app, "GET", "/v1/status")).json).toMatchObject({ state: "ready", generation: 2, damage: { key } });
  const refused = await call(app, "POST", "/v1/manifest", await thirdUpdate(b));
  expect(refused.status, refused.text).toBe(502);
  expect(errorOf(refused)).toMatchObject({ code: "STATE_CORRUPT", key });
  expect(toHex((await b.store.get(headKey))!)).toBe(toHex(b.head2));
  expect((await call(app, "GET", "/v1/status")).json.generation).toBe(2);

  await restore();
  expect(await coordinator.audit()).toEqual({ kind: "ok" });
  expect((await call(app, "GET", "/readyz")).status).toBe(200);
  expect((await call(app, "GET", "/v1/manifests")).text).toBe(b.text);
}

describe.each(rows(indexedTargets))("tampering before a restart with the %s, which only the index vouches for", (_what, target) => {
  it.each(operations)(
    "%s it: recovery does not read it; serving and the audit name it, writes are refused; restored, all is well",
    async (_op, apply) => {
      const store = await copyStore(mem.store);
      const key = target.key(mem);
      const original = (await store.get(key))!;
      await apply(store, key, await target.other(mem));
      const tampered = await store.get(key);

      const { coordinator, app } = await start(store);
      const r = await call(app, "POST", "/v1/recover", mem.recover);
      expect(r.status, r.text).toBe(200);
      // the tampered bytes are never served
      const history = await call(app, "GET", "/v1/manifests");
      if (tampered !== null) expect(history.text).not.toContain(toBase64(tampered));
      await expectFoundAfterRecovery({ ...mem, store }, coordinator, app, key, () => store.put(key, original));
    },
  );
});

/**
 * One-byte changes of the head, each in a different field, each keeping the JSON well-formed. The
 * salt and share commitments are unauthenticated until the signature is checked, but the owner's seed and
 * salt are right: a changed head must be named as such, not blamed on the owner's share.
 */
const headChanges = [
  { field: "signature", alphabet: B64, offset: 40 },
  { field: "latestTransition", alphabet: HEX, offset: 10 },
  { field: "generation", alphabet: DIGITS, offset: 0 },
  { field: "rootCA", alphabet: HEX, offset: 10 },
  { field: "transactionSigner", alphabet: HEX, offset: 10 },
  { field: "meshCA", alphabet: HEX, offset: 10 },
  { field: "intermediateCA", alphabet: HEX, offset: 10 },
  { field: "meshCAKey", alphabet: HEX, offset: 10 },
  { field: "history", alphabet: HEX, offset: 10 },
  { field: "threshold", alphabet: DIGITS, offset: 0 },
  { field: "shares", alphabet: DIGITS, offset: 0 },
  { field: "salt", alphabet: HEX, offset: 10 },
  { field: "commitments", alphabet: HEX, offset: 15 },
  { field: "sealedRootSeed", alphabet: B64, offset: 20 },
  { field: "name", alphabet: LETTERS, offset: 0 },
  { field: "format", alphabet: LETTERS, offset: 0 },
];

describe("tampering with the head", () => {
  it.each(headChanges.map((c) => [c.field, c] as const))(
    "change one byte of its %s: STATE_CORRUPT naming the head; restored, recovery succeeds",
    async (_field, { field, alphabet, offset }) => {
      const store = await copyStore(mem.store);
      await store.put(headKey, changeHeadField(mem.head2, field, alphabet, offset));
      const { app } = await start(store);
      expect(await stateOf(app)).toBe("recovery-required");
      await expectCorrupt(app, mem, headKey);
      await store.put(headKey, mem.head2);
      await expectRecovered(app, mem);
    },
  );

  it("change one byte of its JSON structure: STATE_CORRUPT naming the head; restored, recovery succeeds", async () => {
    const store = await copyStore(mem.store);
    const changed = new Uint8Array(mem.head2);
    expect(changed[0]).toBe("{".charCodeAt(0));
    changed[0] = "[".charCodeAt(0);
    await store.put(headKey, changed);
    const { app } = await start(store);
    expect(await stateOf(app)).toBe("recovery-required");
    await expectCorrupt(app, mem, headKey);
    await store.put(headKey, mem.head2);
    await expectRecovered(app, mem);
  });

  /*
   * The signature covers the head's fields, not its bytes: a head re-formatted without changing a
   * field still verifies. It is a changed object all the same, and GET /v1/manifests hands the head
   * bytes to clients, so serving it would break G1 (byte-identical after recovery) and G4.
   */
  it.each([
    ["a space replaced by a tab", (t: string) => t.replace('"generation": ', '"generation":\t')],
    ["a letter written as a JSON escape", (t: string) => t.replace(`"name": "${name}"`, `"name": "\\u00${name.charCodeAt(0).toString(16)}${name.slice(1)}"`)],
  ])("re-format it without changing a field (%s): STATE_CORRUPT naming the head, never served", async (_how, change) => {
    const store = await copyStore(mem.store);
    const text = fromUtf8(mem.head2);
    const changed = change(text);
    expect(changed).not.toBe(text);
    expect(JSON.parse(changed)).toEqual(JSON.parse(text));
    await store.put(headKey, utf8(changed));
    const { app } = await start(store);
    await expectCorrupt(app, mem, headKey);
    await store.put(headKey, mem.head2);
    await expectRecovered(app, mem);
  });

  it("delete it before a restart: the Coordinator starts uninitialized; restored, it recovers", async () => {
    const store = await copyStore(mem.store);
    await store.remove(headKey);
    const { app } = await start(store);
    expect(await stateOf(app)).toBe("uninitialized");
    const history = await call(app, "GET", "/v1/manifests");
    expect(history.status).toBe(409);
    expect(errorOf(history).code).toBe("NOT_INITIALIZED");
    const recover = await call(app, "POST", "/v1/recover", mem.recover);
    expect(recover.status).toBe(409);
    expect(errorOf(recover).code).toBe("NOT_IN_RECOVERY");

    await store.put(headKey, mem.head2);
    const restarted = await start(store);
    expect(await stateOf(restarted.app)).toBe("recovery-required");
    await expectRecovered(restarted.app, mem);
  });

  it("delete it while the Coordinator waits for recovery: recover answers NOT_IN_RECOVERY and it becomes uninitialized", async () => {
    const store = await copyStore(mem.store);
    const { app } = await start(store);
    expect(await stateOf(app)).toBe("recovery-required");
    await store.remove(headKey);
    const recover = await call(app, "POST", "/v1/recover", mem.recover);
    expect(recover.status).toBe(409);
    expect(errorOf(recover).code).toBe("NOT_IN_RECOVERY");
    expect(await stateOf(app)).toBe("uninitialized");
    expect((await call(app, "GET", "/v1/manifests")).status).toBe(409);

    await store.put(headKey, mem.head2);
    const restarted = await start(store);
    await expectRecovered(restarted.app, mem);
  });

  it("swap in the head of Coordinator beta from the same store: STATE_CORRUPT naming alpha's head; restored, recovery succeeds", async () => {
    const store = await copyStore(mem.store);
    expect(mem.otherHead).not.toBeNull();
    await store.put(headKey, mem.otherHead!);
    const { app } = await start(store);
    expect(await stateOf(app)).toBe("recovery-required");
    await expectCorrupt(app, mem, headKey);
    await store.put(headKey, mem.head2);
    await expectRecovered(app, mem);
  });

  /*
   * ROLLBACK, accepted by design (design §8, G4 last sentence): the head of generation 1 is a
   * once-valid head signed by the same seed, so the Coordinator cannot tell it from the newest one
   * and recovers to generation 1. Clients that remember having seen generation 2 detect it (the
   * generation in GET /v1/manifests and in the signed head went down). This test pins that the
   * Coordinator serves exactly the old generation (never a mix) and that restoring the newest head
   * brings generation 2 back byte for byte.
   */
  it("swap in the head of the previous generation (a rollback): recovery succeeds with generation 1, exactly the old state", async () => {
    const store = await copyStore(mem.store);
    await store.put(headKey, mem.head1);
    const { app } = await start(store);
    const r = await call(app, "POST", "/v1/recover", mem.recover);
    expect(r.status, r.text).toBe(200);
    const status = await call(app, "GET", "/v1/status");
    expect(status.json.generation).toBe(1);
    expect(status.json.latestTransition).toBe(mem.t1);
    const history = await call(app, "GET", "/v1/manifests");
    expect(history.status).toBe(200);
    expect(history.json.generation).toBe(1);
    expect(history.json.latestTransition).toBe(mem.t1);
    expect(history.json.transitions).toEqual([mem.t1]);
    expect(history.json.manifests).toEqual([toBase64(mem.m1.bytes)]);
    expect(Object.keys(history.json.policies as object).sort()).toEqual([mem.p1.hash, mem.p2.hash].sort());
    expect(history.json.head).toBe(toBase64(mem.head1));
    // what a client that saw generation 2 checks: the generation went down
    const seen = JSON.parse(mem.text) as { generation: number; rootCA: string };
    expect(history.json.generation as number).toBeLessThan(seen.generation);
    expect(history.json.rootCA).toBe(seen.rootCA);

    await store.put(headKey, mem.head2);
    const restarted = await start(store);
    await expectRecovered(restarted.app, mem);
  });
});

/** Objects GET /v1/manifests re-reads on every call: the manifests and policies of the whole history. */
const reReadTargets = [...targets, ...indexedTargets].filter((t) => /policy|manifest/.test(t.what));

describe.each(rows(reReadTargets))("tampering with the %s after recovery", (_what, target) => {
  it.each(operations)("%s it: GET /v1/manifests answers STATE_CORRUPT naming its key, never the bytes", async (_op, apply) => {
    const store = await copyStore(mem.store);
    const { app } = await start(store);
    await expectRecovered(app, mem);

    const key = target.key(mem);
    const original = (await store.get(key))!;
    await apply(store, key, await target.other(mem));
    const tampered = await store.get(key);

    for (let i = 0; i < 2; i++) {
      const history = await call(app, "GET", "/v1/manifests");
      expect(history.status, history.text).toBe(502);
      const error = errorOf(history);
      expect(error.code).toBe("STATE_CORRUPT");
      expect(error.key).toBe(key);
      expect(Object.keys(history.json)).toEqual(["error"]);
      if (tampered !== null) expect(history.text).not.toContain(toBase64(tampered));
    }

    await store.put(key, original);
    const again = await call(app, "GET", "/v1/manifests");
    expect(again.status).toBe(200);
    expect(again.text).toBe(mem.text);
  });
});

describe("tampering after recovery with objects held in memory", () => {
  const heldTargets: [string, { key: (b: Baseline) => string }][] = [
    ["head", { key: () => headKey }],
    ...rows([...targets, ...indexedTargets].filter((t) => !/policy|manifest/.test(t.what))),
  ];
  it.each(heldTargets)("change one byte of the %s: GET /v1/manifests still serves the verified bytes", async (_what, target) => {
    const store = await copyStore(mem.store);
    const { app } = await start(store);
    await expectRecovered(app, mem);
    const key = target.key(mem);
    await store.put(key, flipByte((await store.get(key))!));
    const history = await call(app, "GET", "/v1/manifests");
    expect(history.status).toBe(200);
    expect(history.text).toBe(mem.text);
  });
});

describe("tampering with real files of the fs driver", () => {
  let fsBase: Baseline;
  let fsDir: string;

  beforeAll(async () => {
    fsDir = await mkdtemp(join(tmpdir(), "coordinator-tamper-"));
    tempDirs.push(fsDir);
    fsBase = await buildBaseline(createStore(fsDriver({ base: fsDir })), owners, false);
  });

  const fsTargets: [string, (b: Baseline) => string][] = [
    ["the history index", (b) => `histories:${b.objects2.history}`],
    ["the latest manifest", (b) => `manifests:${b.m2.hash}`],
    ["the latest transition", (b) => `transitions:${b.t2}`],
    ["the root CA certificate", (b) => `certificates:${b.objects2.rootCA}`],
    ["the sealed mesh CA key", (b) => `keys:${b.objects2.meshCAKey}`],
    ["the head", () => headKey],
  ];

  it.each(fsTargets)("change one byte of the file of %s: STATE_CORRUPT naming its key; restored, recovery succeeds", async (_what, keyOf) => {
    const dir = await mkdtemp(join(tmpdir(), "coordinator-tamper-"));
    tempDirs.push(dir);
    await cp(fsDir, dir, { recursive: true });
    const key = keyOf(fsBase);
    const path = await fsPathOf(dir, key);
    const original = new Uint8Array(await readFile(path));
    const changed =
      key === headKey ? changeHeadField(original, "signature", B64, 40) : flipByte(original);
    await writeFile(path, changed);

    const store = createStore(fsDriver({ base: dir }));
    expect(toHex((await store.get(key))!)).toBe(toHex(changed));
    const { app } = await start(store);
    expect(await stateOf(app)).toBe("recovery-required");
    await expectCorrupt(app, fsBase, key);

    await writeFile(path, original);
    await expectRecovered(app, fsBase);
  });

  const fsIndexedTargets: [string, (b: Baseline) => string][] = [
    ["an old policy", (b) => `policies:${b.p1.hash}`],
    ["the old manifest", (b) => `manifests:${b.m1.hash}`],
    ["the first transition", (b) => `transitions:${b.t1}`],
  ];

  it.each(fsIndexedTargets)(
    "change one byte of the file of %s: recovery succeeds; serving and the audit name it; restored, all is well",
    async (_what, keyOf) => {
      const dir = await mkdtemp(join(tmpdir(), "coordinator-tamper-"));
      tempDirs.push(dir);
      await cp(fsDir, dir, { recursive: true });
      const key = keyOf(fsBase);
      const path = await fsPathOf(dir, key);
      const original = new Uint8Array(await readFile(path));
      await writeFile(path, flipByte(original));

      const store = createStore(fsDriver({ base: dir }));
      const { coordinator, app } = await start(store);
      const r = await call(app, "POST", "/v1/recover", fsBase.recover);
      expect(r.status, r.text).toBe(200);
      await expectFoundAfterRecovery({ ...fsBase, store }, coordinator, app, key, () => writeFile(path, original));
    },
  );
});
