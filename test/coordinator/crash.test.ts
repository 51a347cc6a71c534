// G3/G4 crash-consistency tests: a store failing at every write of a set (or every read of a recover) leaves exactly the old state or the new one.
import type { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { sha256 } from "../../src/crypto/provider.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromHex, toBase64, toHex } from "../../src/encoding.js";
import { transitionHash, zeroHash } from "../../src/history/transition.js";
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
import { failingStore } from "./failing-store.js";
import type { FailingStore, FailMode } from "./failing-store.js";

const name = "alpha";
const headKey = `heads:${name}`;
const validators = new Map([["insecure-simulated", simulatedValidator]]);
const storeKinds = ["policies", "manifests", "transitions", "certificates", "keys", "histories", "heads"] as const;

interface Answer {
  status: number;
  text: string;
  json: Record<string, unknown>;
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

function codeOf(a: Answer): string | undefined {
  return (a.json.error as { code?: string } | undefined)?.code;
}

async function start(store: Store): Promise<{ coordinator: Coordinator; app: Hono }> {
  const coordinator = await Coordinator.start({ store, name, validators });
  return { coordinator, app: createApp({ coordinator }) };
}

async function copyStore(from: Store): Promise<Store> {
  const to = createStore(memoryDriver());
  for (const kind of storeKinds) {
    for (const key of await from.keys(kind)) await to.put(key, (await from.get(key))!);
  }
  return to;
}

/** Lets operations still in flight from a failed request (parallel reads) settle before the counters are reset. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5));
}

// Owner keys, policies and manifests: made once for the file (RSA generation is slow).
const [seedOwner, owner, workload] = await Promise.all([seedShareOwner(), workloadOwner(), workloadKey()]);
const [p1, p2, p3] = await Promise.all([policy("policy of web\n"), policy("policy of db\n"), policy("policy of cache\n")]);
const common = { workloadOwners: [owner.digest], seedShareOwners: [seedOwner.publicHex] };
const m1 = manifestBytes({ ...common, policies: [{ ...p1, name: "web" }, { ...p2, name: "db" }] });
const m2 = manifestBytes({ ...common, policies: [{ ...p2, name: "db" }, { ...p3, name: "cache" }] });
const t1 = toHex(await transitionHash(await sha256(m1), zeroHash));
const t2 = toHex(await transitionHash(await sha256(m2), fromHex(t1)));
const firstBody = firstSetBody(m1, [p1.bytes, p2.bytes]);

async function recoverWith(seedShares: unknown): Promise<{ share: string; salt: string }> {
  return recoverBody(seedShares as SeedShareDocument, seedOwner.keys.privateKey);
}

/** A mesh certificate for a workload running `policyHash`. */
function meshRequest(policyHash: string): unknown {
  return { publicKey: workload.spki, evidence: { type: "insecure-simulated", policyHash } };
}

// The state after the first set (generation 1), which every update and recover test starts from.
const gen1 = await (async () => {
  const store = createStore(memoryDriver());
  const { app } = await start(store);
  const set = await call(app, "POST", "/v1/manifest", firstBody);
  if (set.status !== 200) throw new Error(`first set failed: ${set.text}`);
  const history = await call(app, "GET", "/v1/manifests");
  return { store, text: history.text, recover: await recoverWith(set.json.seedShares) };
})();
const gen1History = JSON.parse(gen1.text) as { name: string; rootCA: string };
const update = await updateBody(m2, [p2.bytes, p3.bytes], t1, owner, gen1History);

/** A Coordinator on a failing copy of the generation-1 state, recovered (with nothing armed). */
async function readyOnGen1(): Promise<{ inner: Store; fstore: FailingStore; app: Hono }> {
  const inner = await copyStore(gen1.store);
  const fstore = failingStore(inner);
  const { app } = await start(fstore);
  const r = await call(app, "POST", "/v1/recover", gen1.recover);
  if (r.status !== 200) throw new Error(`recovery failed: ${r.text}`);
  fstore.disarm();
  return { inner, fstore, app };
}

// Dry runs: how many writes a first set and an update perform, and how many reads a recover does.
const firstSetOps = await (async () => {
  const fstore = failingStore(createStore(memoryDriver()));
  const { app } = await start(fstore);
  fstore.disarm();
  const set = await call(app, "POST", "/v1/manifest", firstBody);
  if (set.status !== 200) throw new Error(`first set failed: ${set.text}`);
  return [...fstore.ops];
})();
const updateOps = await (async () => {
  const { fstore, app } = await readyOnGen1();
  const set = await call(app, "POST", "/v1/manifest", update);
  if (set.status !== 200) throw new Error(`update failed: ${set.text}`);
  return [...fstore.ops];
})();
const recoverOps = await (async () => {
  const fstore = failingStore(await copyStore(gen1.store));
  const { app } = await start(fstore);
  fstore.disarm();
  const r = await call(app, "POST", "/v1/recover", gen1.recover);
  if (r.status !== 200) throw new Error(`recovery failed: ${r.text}`);
  return [...fstore.ops];
})();

const firstSetWrites = firstSetOps.filter((o) => o.write).length;
const updateWrites = updateOps.filter((o) => o.write).length;
const firstSetReads = firstSetOps.filter((o) => !o.write).length;
const updateReads = updateOps.filter((o) => !o.write).length;
const recoverReads = recoverOps.filter((o) => !o.write).length;

/** Rows [k, mode] for every write of a set in both modes, then k = last + 1 (nothing fails). */
function writeRows(writes: number): [number, FailMode | "none"][] {
  const rows: [number, FailMode | "none"][] = [];
  for (const mode of ["before", "after"] as const) for (let k = 1; k <= writes; k++) rows.push([k, mode]);
  rows.push([writes + 1, "none"]);
  return rows;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** What the generation-2 history must hold, whatever mesh CA the update made. */
function expectGeneration2(history: Answer): void {
  expect(history.status, history.text).toBe(200);
  expect(history.json.generation).toBe(2);
  expect(history.json.latestTransition).toBe(t2);
  expect(history.json.transitions).toEqual([t1, t2]);
  expect(history.json.manifests).toEqual([toBase64(m1), toBase64(m2)]);
  expect(history.json.policies).toEqual(
    Object.fromEntries([p1, p2, p3].sort((a, b) => (a.hash < b.hash ? -1 : 1)).map((p) => [p.hash, toBase64(p.bytes)])),
  );
  const old = JSON.parse(gen1.text) as Record<string, unknown>;
  expect(history.json.rootCA).toBe(old.rootCA);
  expect(history.json.transactionSigner).toBe(old.transactionSigner);
  expect(history.json.meshCA).not.toBe(old.meshCA);
}

describe("the writes of a set", () => {
  it.each([
    ["first set", () => firstSetOps, 2],
    ["update", () => updateOps, 1],
  ] as const)("%s: every object first, the head last and only by compare-and-swap", (_what, ops, newPolicies) => {
    const writes = ops().filter((o) => o.write);
    expect(writes.length).toBeGreaterThan(1);
    const last = writes[writes.length - 1]!;
    expect(last).toMatchObject({ op: "compareAndSwap", key: headKey });
    for (const w of writes.slice(0, -1)) {
      expect(w.op).toBe("put");
      expect(w.key.startsWith("heads:")).toBe(false);
    }
    expect(writes.filter((w) => w.key.startsWith("policies:"))).toHaveLength(newPolicies);
    expect(writes.filter((w) => w.key.startsWith("manifests:"))).toHaveLength(1);
    expect(writes.filter((w) => w.key.startsWith("transitions:"))).toHaveLength(1);
    expect(writes.filter((w) => w.key.startsWith("keys:"))).toHaveLength(1);
  });

  it("recover writes nothing", () => {
    expect(recoverOps.filter((o) => o.write)).toEqual([]);
    expect(recoverReads).toBeGreaterThan(1);
  });
});

describe(`a first set whose k-th of ${firstSetWrites} writes fails`, () => {
  it.each(writeRows(firstSetWrites))("k=%i (%s): the restarted state is exactly none or the new one", async (k, mode) => {
    const inner = createStore(memoryDriver());
    const fstore = failingStore(inner);
    const { app } = await start(fstore);
    if (mode === "none") fstore.armWrite(k);
    else fstore.armWrite(k, mode);
    const set = await call(app, "POST", "/v1/manifest", firstBody);
    // The head reached the store before the error: the Coordinator reads it back and the set stands,
    // so the seed shares still reach the caller.
    const headWritten = mode === "after" && k === firstSetWrites;

    if (mode === "none" || headWritten) {
      expect(set.status, set.text).toBe(200);
      expect(set.json.seedShares).toBeDefined();
      const served = await call(app, "GET", "/v1/manifests");
      const restarted = await start(inner);
      expect((await call(restarted.app, "POST", "/v1/recover", await recoverWith(set.json.seedShares))).status).toBe(200);
      expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe(served.text);
      return;
    }

    expect(set.status, set.text).toBe(503);
    expect(codeOf(set)).toBe("STORE_UNAVAILABLE");
    expect(fstore.ops.filter((o) => o.failed)).toHaveLength(1);

    // the Coordinator that saw the failure is unchanged
    const status = await call(app, "GET", "/v1/status");
    expect(status.json).toMatchObject({ state: "uninitialized", generation: null, latestTransition: null });
    expect(codeOf(await call(app, "POST", "/v1/mesh/certificate", meshRequest(p1.hash)))).toBe("NOT_INITIALIZED");

    // restart on what the store really holds
    const restarted = await start(inner);
    expect(restarted.coordinator.currentState).toBe("uninitialized");

    // a retry once the store works again succeeds
    fstore.disarm();
    const retry = await call(app, "POST", "/v1/manifest", firstBody);
    expect(retry.status, retry.text).toBe(200);
    expect(retry.json.generation).toBe(1);
    const served = await call(app, "GET", "/v1/manifests");
    const again = await start(inner);
    expect((await call(again.app, "POST", "/v1/recover", await recoverWith(retry.json.seedShares))).status).toBe(200);
    expect((await call(again.app, "GET", "/v1/manifests")).text).toBe(served.text);
  });
});

describe(`an update whose k-th of ${updateWrites} writes fails`, () => {
  it.each(writeRows(updateWrites))("k=%i (%s): the restarted state is exactly the old or the new one", async (k, mode) => {
    const { inner, fstore, app } = await readyOnGen1();
    const before = await call(app, "GET", "/v1/manifests");
    expect(before.text).toBe(gen1.text);
    const statusBefore = (await call(app, "GET", "/v1/status")).text;
    const certBefore = await call(app, "POST", "/v1/mesh/certificate", meshRequest(p1.hash));
    expect(certBefore.status).toBe(200);

    if (mode === "none") fstore.armWrite(k);
    else fstore.armWrite(k, mode);
    const set = await call(app, "POST", "/v1/manifest", update);
    // The head reached the store before the error: the Coordinator reads it back and the update stands.
    const headWritten = mode === "after" && k === updateWrites;

    if (mode === "none" || headWritten) {
      expect(set.status, set.text).toBe(200);
      const served = await call(app, "GET", "/v1/manifests");
      expectGeneration2(served);
      const restarted = await start(inner);
      expect((await call(restarted.app, "POST", "/v1/recover", gen1.recover)).status).toBe(200);
      expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe(served.text);
      return;
    }

    expect(set.status, set.text).toBe(503);
    expect(codeOf(set)).toBe("STORE_UNAVAILABLE");
    expect(fstore.ops.filter((o) => o.failed)).toHaveLength(1);

    // the Coordinator that saw the failure keeps serving its old state
    expect((await call(app, "GET", "/v1/status")).text).toBe(statusBefore);
    expect((await call(app, "GET", "/v1/manifests")).text).toBe(gen1.text);
    const cert = await call(app, "POST", "/v1/mesh/certificate", meshRequest(p1.hash));
    expect(cert.status, cert.text).toBe(200);
    expect(cert.json.meshCA).toBe(certBefore.json.meshCA);
    expect(cert.json.rootCA).toBe(certBefore.json.rootCA);
    expect(codeOf(await call(app, "POST", "/v1/mesh/certificate", meshRequest(p3.hash)))).toBe("POLICY_NOT_IN_MANIFEST");

    // restart on what the store really holds: exactly the old state
    const restarted = await start(inner);
    expect(restarted.coordinator.currentState).toBe("recovery-required");
    const recovered = await call(restarted.app, "POST", "/v1/recover", gen1.recover);
    expect(recovered.status, recovered.text).toBe(200);
    expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe(gen1.text);

    // a retry of the same update once the store works again succeeds
    fstore.disarm();
    const retry = await call(app, "POST", "/v1/manifest", update);
    expect(retry.status, retry.text).toBe(200);
    const served = await call(app, "GET", "/v1/manifests");
    expectGeneration2(served);
    const again = await start(inner);
    expect((await call(again.app, "POST", "/v1/recover", gen1.recover)).status).toBe(200);
    expect((await call(again.app, "GET", "/v1/manifests")).text).toBe(served.text);
  });
});

describe.each([
  ["a first set", () => firstSetReads, "first"],
  ["an update", () => updateReads, "update"],
] as const)("%s whose k-th read fails", (_what, reads, which) => {
  it.each(range(reads()))("k=%i: STORE_UNAVAILABLE, nothing changes, a retry succeeds", async (k) => {
    let inner: Store;
    let fstore: FailingStore;
    let app: Hono;
    if (which === "first") {
      inner = createStore(memoryDriver());
      fstore = failingStore(inner);
      ({ app } = await start(fstore));
    } else {
      ({ inner, fstore, app } = await readyOnGen1());
    }
    const statusBefore = (await call(app, "GET", "/v1/status")).text;
    fstore.armRead(k);
    const set = await call(app, "POST", "/v1/manifest", which === "first" ? firstBody : update);
    expect(set.status, set.text).toBe(503);
    expect(codeOf(set)).toBe("STORE_UNAVAILABLE");
    expect((await call(app, "GET", "/v1/status")).text).toBe(statusBefore);
    const restarted = await start(inner);
    if (which === "first") {
      expect(restarted.coordinator.currentState).toBe("uninitialized");
    } else {
      expect((await call(restarted.app, "POST", "/v1/recover", gen1.recover)).status).toBe(200);
      expect((await call(restarted.app, "GET", "/v1/manifests")).text).toBe(gen1.text);
    }
    await settle();
    fstore.disarm();
    const retry = await call(app, "POST", "/v1/manifest", which === "first" ? firstBody : update);
    expect(retry.status, retry.text).toBe(200);
    expect(retry.json.generation).toBe(which === "first" ? 1 : 2);
  });
});

describe(`a recover whose k-th of ${recoverReads} reads fails`, () => {
  it.each(range(recoverReads))("k=%i: STORE_UNAVAILABLE, still recovery-required, a retry succeeds", async (k) => {
    const inner = await copyStore(gen1.store);
    const fstore = failingStore(inner);
    const { app } = await start(fstore);
    fstore.armRead(k);
    const r = await call(app, "POST", "/v1/recover", gen1.recover);
    expect(r.status, r.text).toBe(503);
    expect(codeOf(r)).toBe("STORE_UNAVAILABLE");
    expect(fstore.ops.filter((o) => o.failed)).toHaveLength(1);
    expect((await call(app, "GET", "/v1/status")).json.state).toBe("recovery-required");
    const history = await call(app, "GET", "/v1/manifests");
    expect(history.status).toBe(409);
    expect(codeOf(history)).toBe("RECOVERY_REQUIRED");
    expect(codeOf(await call(app, "POST", "/v1/mesh/certificate", meshRequest(p1.hash)))).toBe("RECOVERY_REQUIRED");

    await settle();
    expect(fstore.writes).toBe(0);
    fstore.disarm();
    const retry = await call(app, "POST", "/v1/recover", gen1.recover);
    expect(retry.status, retry.text).toBe(200);
    expect((await call(app, "GET", "/v1/manifests")).text).toBe(gen1.text);
    expect(fstore.writes).toBe(0);
  });
});
