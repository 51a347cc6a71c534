// In-process handler tests (app.request, memory store): every endpoint in every state, with status codes, error codes and bodies.
import { X509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { limits } from "../../src/api/routes.js";
import { historyResponse, meshCertificateResponse, setManifestResponse, statusResponse } from "../../src/api/schemas.js";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import { sha256 } from "../../src/crypto/provider.js";
import { concat, fromBase64, fromHex, fromUtf8, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { firstSetBody, post, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import {
  call,
  coordinatorName,
  fixture,
  get,
  makeOwners,
  manifestOf,
  namedPolicy,
  postJson,
  snapshot,
  start,
} from "./fixture.js";
import type { Answer, Fixture, FixtureState, NamedPolicy, Owners } from "./fixture.js";

const states: FixtureState[] = ["uninitialized", "ready", "recovery-required", "stale"];

let owners: Owners;
let secondSeedOwner: Awaited<ReturnType<typeof seedShareOwner>>;
let weakSeedOwner: Awaited<ReturnType<typeof seedShareOwner>>;
let stranger: Awaited<ReturnType<typeof workloadOwner>>;

beforeAll(async () => {
  [owners, secondSeedOwner, weakSeedOwner, stranger] = await Promise.all([
    makeOwners(),
    seedShareOwner(),
    seedShareOwner(2048),
    workloadOwner(),
  ]);
});

function randomHex(bytes: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

function expectError(answer: Answer, status: number, code: string): void {
  expect({ status: answer.status, code: answer.json?.error?.code }).toEqual({ status, code });
  expect(typeof answer.json.error.message).toBe("string");
  expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
}

/** Sends a request that must be refused with status and code, and checks that nothing changed. */
async function refused(f: Fixture, path: string, init: RequestInit, status: number, code: string): Promise<Answer> {
  const before = await snapshot(f.app, f.store);
  const answer = await call(f.app, path, init);
  expectError(answer, status, code);
  expect(await snapshot(f.app, f.store)).toEqual(before);
  return answer;
}

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

async function transitionOf(manifest: Uint8Array, previous: string): Promise<string> {
  return toHex(await sha256(concat(await sha256(manifest), fromHex(previous))));
}

const zero = "0".repeat(64);

describe("GET /v1/status", () => {
  it("uninitialized: no generation, no transition, no recovery", async () => {
    const f = await fixture("uninitialized", owners);
    const a = await get(f.app, "/v1/status");
    expect(a.status).toBe(200);
    expect(a.json).toEqual({ state: "uninitialized", name: coordinatorName, generation: null, latestTransition: null, recovery: null });
    statusResponse.parse(a.json);
  });

  it("ready: generation and latest transition, no recovery", async () => {
    const f = await fixture("ready", owners);
    const a = await get(f.app, "/v1/status");
    expect(a.status).toBe(200);
    expect(a.json).toEqual({ state: "ready", name: coordinatorName, generation: 1, latestTransition: f.transition, recovery: null });
    statusResponse.parse(a.json);
  });

  it("recovery-required: recovery progress {threshold, received}, nothing unverified", async () => {
    const f = await fixture("recovery-required", owners);
    const a = await get(f.app, "/v1/status");
    expect(a.status).toBe(200);
    expect(a.json).toEqual({
      state: "recovery-required",
      name: coordinatorName,
      generation: null,
      latestTransition: null,
      recovery: { threshold: 1, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) },
    });
    statusResponse.parse(a.json);
  });

  it("stale: the generation it last knew, and the progress of a recovery that would reload the store", async () => {
    const f = await fixture("stale", owners);
    const a = await get(f.app, "/v1/status");
    expect(a.status).toBe(200);
    expect(a.json).toEqual({
      state: "stale",
      name: coordinatorName,
      generation: 1,
      latestTransition: f.transition,
      recovery: { threshold: 1, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) },
    });
    statusResponse.parse(a.json);
    const peer = await get(f.peer!.app, "/v1/status");
    expect(peer.json).toMatchObject({ state: "ready", generation: 2, latestTransition: f.peer!.transition });
  });
});

describe("POST /v1/manifest: first set", () => {
  it("answers 200 with the seed-share document; every share decrypts to the 64-byte seed", async () => {
    const f = await fixture("uninitialized", owners);
    const manifest = manifestOf(owners, f.policies, { seedShareOwners: [owners.seed.publicHex, secondSeedOwner.publicHex] });
    const a = await postJson(f.app, "/v1/manifest", firstSetBody(manifest, f.policies.map((p) => p.bytes)));
    expect(a.status).toBe(200);
    setManifestResponse.parse(a.json);
    expect(a.json.generation).toBe(1);
    expect(a.json.transition).toBe(await transitionOf(manifest, zero));
    expect(a.json.rootCA).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(a.json.meshCA).toMatch(/^-----BEGIN CERTIFICATE-----\n/);

    const doc = a.json.seedShares;
    expect(Object.keys(doc).sort()).toEqual(["coordinator", "format", "salt", "shares", "threshold"]);
    expect(doc.format).toBe("contrast-seed-shares/v1");
    expect(doc.coordinator).toBe(coordinatorName);
    expect(doc.salt).toMatch(/^[0-9a-f]{64}$/);
    expect(doc.threshold).toBe(1);
    expect(doc.shares).toHaveLength(2);
    expect(doc.shares.map((s: { index: number }) => s.index)).toEqual([1, 2]);
    expect(doc.shares.map((s: { ownerPublicKey: string }) => s.ownerPublicKey)).toEqual([owners.seed.publicHex, secondSeedOwner.publicHex]);
    const first = await decryptSeedShare(doc.shares[0].encryptedShare, owners.seed.keys.privateKey);
    const second = await decryptSeedShare(doc.shares[1].encryptedShare, secondSeedOwner.keys.privateKey);
    expect(first).toHaveLength(64);
    expect(toHex(second)).toBe(toHex(first));
    // A share is for its owner only.
    await expect(decryptSeedShare(doc.shares[0].encryptedShare, secondSeedOwner.keys.privateKey)).rejects.toThrow();

    const status = await get(f.app, "/v1/status");
    expect(status.json).toMatchObject({ state: "ready", generation: 1, latestTransition: a.json.transition });
  });

  it("INVALID_JSON (400) for a body that is not JSON", async () => {
    const f = await fixture("uninitialized", owners);
    for (const body of ["", "{", "not json", "{'manifest': 1}", '{"manifest":"AA==",}']) {
      await refused(f, "/v1/manifest", { method: "POST", body, headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
    }
  });

  it("INVALID_REQUEST (400) for bodies that fail the schema", async () => {
    const f = await fixture("uninitialized", owners);
    const m = toBase64(manifestOf(owners, f.policies));
    const ps = f.policies.map((p) => toBase64(p.bytes));
    const bodies: unknown[] = [
      null,
      [],
      "manifest",
      42,
      {},
      { policies: ps },
      { manifest: m },
      { manifest: 5, policies: ps },
      { manifest: "not base64!", policies: ps },
      { manifest: "QQ", policies: ps },
      { manifest: m, policies: "AA==" },
      { manifest: m, policies: [1] },
      { manifest: m, policies: ps, extra: true },
      { manifest: m, policies: ps, previousTransition: "ABCD" },
      { manifest: m, policies: ps, previousTransition: zero.toUpperCase().replace(/0/g, "A") },
      { manifest: m, policies: ps, signature: { publicKey: "AA==" } },
      { manifest: m, policies: ps, signature: { publicKey: "AA==", value: "AA==", extra: 1 } },
      { manifest: m, policies: ps, signature: "AA==" },
    ];
    for (const body of bodies) await refused(f, "/v1/manifest", post(body), 400, "INVALID_REQUEST");
  });

  it("INVALID_MANIFEST (400): not JSON, not UTF-8, schema, weak or non-RSA key, duplicates, no seed-share owner", async () => {
    const f = await fixture("uninitialized", owners);
    const ps = f.policies.map((p) => p.bytes);
    const json = (o: unknown) => utf8(JSON.stringify(o));
    const valid = JSON.parse(fromUtf8(manifestOf(owners, f.policies))) as Record<string, unknown>;
    const manifests: Uint8Array[] = [
      utf8("not json"),
      new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]),
      json({}),
      json([]),
      json({ ...valid, Extra: 1 }),
      json({ ...valid, Policies: { "not-a-hash": { SANs: [], WorkloadSecretID: "x" } } }),
      json({ ...valid, WorkloadOwnerKeyDigests: ["zz"] }),
      manifestOf(owners, f.policies, { seedShareOwners: [weakSeedOwner.publicHex] }),
      manifestOf(owners, f.policies, { seedShareOwners: [toHex(owners.workload.spki)] }),
      manifestOf(owners, f.policies, { seedShareOwners: ["00ff"] }),
      manifestOf(owners, f.policies, { seedShareOwners: [owners.seed.publicHex, owners.seed.publicHex] }),
      manifestOf(owners, f.policies, { workloadOwners: [owners.workload.digest, owners.workload.digest] }),
      manifestOf(owners, f.policies, { seedShareOwners: [] }),
    ];
    for (const manifest of manifests) {
      await refused(f, "/v1/manifest", post(firstSetBody(manifest, ps)), 400, "INVALID_MANIFEST");
    }
  });

  it("POLICY_MISSING (400) and POLICY_NOT_REFERENCED (400)", async () => {
    const f = await fixture("uninitialized", owners);
    const manifest = manifestOf(owners, f.policies);
    const stray = await namedPolicy("stray");
    await refused(f, "/v1/manifest", post(firstSetBody(manifest, [f.policies[0]!.bytes])), 400, "POLICY_MISSING");
    await refused(f, "/v1/manifest", post(firstSetBody(manifest, [])), 400, "POLICY_MISSING");
    await refused(
      f,
      "/v1/manifest",
      post(firstSetBody(manifest, [...f.policies.map((p) => p.bytes), stray.bytes])),
      400,
      "POLICY_NOT_REFERENCED",
    );
  });

  it("STALE_BASE (409) for a first set that names a previous transition", async () => {
    const f = await fixture("uninitialized", owners);
    const body = { ...firstSetBody(manifestOf(owners, f.policies), f.policies.map((p) => p.bytes)), previousTransition: randomHex(32) };
    await refused(f, "/v1/manifest", post(body), 409, "STALE_BASE");
    await refused(f, "/v1/manifest", post({ ...body, previousTransition: zero }), 409, "STALE_BASE");
  });

  it("a second first-set on a store that another Coordinator initialized meanwhile: STALE (409), then recovery-required", async () => {
    const f = await fixture("uninitialized", owners);
    const { app: other } = await start(f.store);
    const body = firstSetBody(manifestOf(owners, f.policies), f.policies.map((p) => p.bytes));
    expect((await postJson(f.app, "/v1/manifest", body)).status).toBe(200);
    expectError(await postJson(other, "/v1/manifest", body), 409, "STALE");
    expect((await get(other, "/v1/status")).json).toMatchObject({ state: "recovery-required", recovery: { threshold: 1, received: 0 } });
  });
});

describe("POST /v1/manifest: update", () => {
  async function next(f: Fixture): Promise<{ manifest: Uint8Array; policies: NamedPolicy[] }> {
    const policies = [...f.policies, await namedPolicy("cache")];
    return { manifest: manifestOf(owners, policies), policies };
  }

  it("STALE_BASE (409) without previousTransition or with a wrong one", async () => {
    const f = await fixture("ready", owners);
    const n = await next(f);
    const signed = await updateBody(n.manifest, n.policies.map((p) => p.bytes), f.transition!, owners.workload, f.ref!);
    const without = { ...signed };
    delete without.previousTransition;
    await refused(f, "/v1/manifest", post(without), 409, "STALE_BASE");
    await refused(f, "/v1/manifest", post({ ...signed, previousTransition: randomHex(32) }), 409, "STALE_BASE");
    await refused(f, "/v1/manifest", post({ ...signed, previousTransition: zero }), 409, "STALE_BASE");
    // Signed correctly, but over a wrong base.
    const wrongBase = await updateBody(n.manifest, n.policies.map((p) => p.bytes), randomHex(32), owners.workload, f.ref!);
    await refused(f, "/v1/manifest", post(wrongBase), 409, "STALE_BASE");
  });

  it("UNAUTHORIZED_UPDATE (403): unsigned, non-owner, bad signature, signature over another transition", async () => {
    const f = await fixture("ready", owners);
    const n = await next(f);
    const ps = n.policies.map((p) => p.bytes);
    const signed = await updateBody(n.manifest, ps, f.transition!, owners.workload, f.ref!);
    const unsigned = { ...signed };
    delete unsigned.signature;
    const sig = signed.signature as { publicKey: string; value: string };
    const byStranger = await updateBody(n.manifest, ps, f.transition!, stranger, f.ref!);
    const other = manifestOf(owners, f.policies.slice(0, 1));
    const overOther = await updateBody(other, [f.policies[0]!.bytes], f.transition!, owners.workload, f.ref!);
    const bodies: unknown[] = [
      unsigned,
      byStranger,
      // The stranger's signature presented with the owner's key, and vice versa.
      { ...signed, signature: { publicKey: sig.publicKey, value: (byStranger.signature as { value: string }).value } },
      { ...signed, signature: { publicKey: (byStranger.signature as { publicKey: string }).publicKey, value: sig.value } },
      { ...signed, signature: { publicKey: sig.publicKey, value: toBase64(crypto.getRandomValues(new Uint8Array(96))) } },
      { ...signed, signature: { publicKey: sig.publicKey, value: toBase64(new Uint8Array(10)) } },
      { ...signed, signature: { publicKey: sig.publicKey, value: "" } },
      { ...signed, signature: { publicKey: "", value: sig.value } },
      { ...signed, signature: overOther.signature },
    ];
    for (const body of bodies) await refused(f, "/v1/manifest", post(body), 403, "UNAUTHORIZED_UPDATE");
  });

  it("checks an update's signature before it parses the manifest or decodes a policy", async () => {
    const f = await fixture("ready", owners);
    // Neither the manifest nor the policies would pass their own checks: the signature is refused first.
    const garbage = utf8("{ not a manifest");
    const body = await updateBody(garbage, [], f.transition!, stranger, f.ref!);
    const policies = Array.from({ length: 8 }, () => toBase64(crypto.getRandomValues(new Uint8Array(1024))));
    await refused(f, "/v1/manifest", post({ ...body, policies }), 403, "UNAUTHORIZED_UPDATE");
    // Signed by the owner, the same bodies fail on their content.
    const owned = await updateBody(garbage, [], f.transition!, owners.workload, f.ref!);
    await refused(f, "/v1/manifest", post({ ...owned, policies }), 400, "INVALID_MANIFEST");
  });

  it("UPDATES_DISABLED (403) when the manifest names no workload owner", async () => {
    const f = await fixture("ready", owners, { workloadOwners: [] });
    const n = await next(f);
    const body = await updateBody(n.manifest, n.policies.map((p) => p.bytes), f.transition!, owners.workload, f.ref!);
    await refused(f, "/v1/manifest", post(body), 403, "UPDATES_DISABLED");
  });

  it("manifest errors are refused on updates too", async () => {
    const f = await fixture("ready", owners);
    const n = await next(f);
    const weak = manifestOf(owners, n.policies, { seedShareOwners: [weakSeedOwner.publicHex] });
    const ps = n.policies.map((p) => p.bytes);
    await refused(f, "/v1/manifest", post(await updateBody(weak, ps, f.transition!, owners.workload, f.ref!)), 400, "INVALID_MANIFEST");
    await refused(f, "/v1/manifest", post(await updateBody(n.manifest, ps.slice(1), f.transition!, owners.workload, f.ref!)), 400, "POLICY_MISSING");
    const stray = await namedPolicy("stray");
    await refused(
      f,
      "/v1/manifest",
      post(await updateBody(n.manifest, [...ps, stray.bytes], f.transition!, owners.workload, f.ref!)),
      400,
      "POLICY_NOT_REFERENCED",
    );
  });

  it("a valid update: 200, generation 2, no seed shares, same root CA, new mesh CA; replaying it is STALE_BASE", async () => {
    const f = await fixture("ready", owners);
    const before = await get(f.app, "/v1/manifests");
    const n = await next(f);
    const body = await updateBody(n.manifest, n.policies.map((p) => p.bytes), f.transition!, owners.workload, f.ref!);
    const a = await postJson(f.app, "/v1/manifest", body);
    expect(a.status).toBe(200);
    setManifestResponse.parse(a.json);
    expect(Object.keys(a.json).sort()).toEqual(["generation", "meshCA", "rootCA", "transition"]);
    expect(a.json.generation).toBe(2);
    expect(a.json.transition).toBe(await transitionOf(n.manifest, f.transition!));
    expect(a.json.rootCA).toBe(before.json.rootCA);
    expect(a.json.meshCA).not.toBe(before.json.meshCA);
    expect((await get(f.app, "/v1/status")).json).toMatchObject({ state: "ready", generation: 2, latestTransition: a.json.transition });
    await refused(f, "/v1/manifest", post(body), 409, "STALE_BASE");
  });

  it("GET /v1/seedshares serves the stored seed-share document in every state but uninitialized", async () => {
    const u = await fixture("uninitialized", owners);
    expectError(await get(u.app, "/v1/seedshares"), 409, "NOT_INITIALIZED");
    const f = await fixture("ready", owners);
    const ready = await get(f.app, "/v1/seedshares");
    expect(ready.status, ready.text).toBe(200);
    expect(ready.json).toEqual({ seedShares: f.seedShares, verified: true });
    const restarted = await start(f.store);
    expect(restarted.coordinator.currentState).toBe("recovery-required");
    expect((await get(restarted.app, "/v1/seedshares")).json).toEqual({ seedShares: f.seedShares, verified: false });
    // The document is stored under its hash, before the head that names it.
    const keys = await f.store.storage.getKeys();
    expect(keys.filter((k) => k.startsWith("seedshares:"))).toHaveLength(1);
  });

  it("setting the manifest that is already current: 200 unchanged, nothing written, the same mesh CA; still only for a workload owner", async () => {
    const f = await fixture("ready", owners);
    const n = await next(f);
    const first = await postJson(f.app, "/v1/manifest", await updateBody(n.manifest, n.policies.map((p) => p.bytes), f.transition!, owners.workload, f.ref!));
    expect(first.status, first.text).toBe(200);
    const before = await snapshot(f.app, f.store);
    const again = await postJson(f.app, "/v1/manifest", await updateBody(n.manifest, n.policies.map((p) => p.bytes), first.json.transition, owners.workload, f.ref!));
    expect(again.status, again.text).toBe(200);
    setManifestResponse.parse(again.json);
    expect(again.json).toEqual({ transition: first.json.transition, generation: 2, rootCA: first.json.rootCA, meshCA: first.json.meshCA, unchanged: true });
    expect(await snapshot(f.app, f.store)).toEqual(before);
    const byStranger = await updateBody(n.manifest, n.policies.map((p) => p.bytes), first.json.transition, stranger, f.ref!);
    await refused(f, "/v1/manifest", post(byStranger), 403, "UNAUTHORIZED_UPDATE");
  });

  it("RECOVERY_REQUIRED (409) in recovery-required, for a first set and for an update", async () => {
    const f = await fixture("recovery-required", owners);
    const n = await next(f);
    await refused(f, "/v1/manifest", post(firstSetBody(f.manifest!, f.policies.map((p) => p.bytes))), 409, "RECOVERY_REQUIRED");
    const update = await updateBody(n.manifest, n.policies.map((p) => p.bytes), f.transition!, owners.workload, f.ref!);
    await refused(f, "/v1/manifest", post(update), 409, "RECOVERY_REQUIRED");
  });

  it("STALE (409) in stale, even with an update over the store's latest transition", async () => {
    const f = await fixture("stale", owners);
    const n = await next(f);
    const ps = n.policies.map((p) => p.bytes);
    await refused(f, "/v1/manifest", post(await updateBody(n.manifest, ps, f.transition!, owners.workload, f.ref!)), 409, "STALE");
    await refused(f, "/v1/manifest", post(await updateBody(n.manifest, ps, f.peer!.transition, owners.workload, f.ref!)), 409, "STALE");
    await refused(f, "/v1/manifest", post(firstSetBody(f.manifest!, f.policies.map((p) => p.bytes))), 409, "STALE");
  });

  it("PAYLOAD_TOO_LARGE (413) over limits.manifest, read or announced", async () => {
    const f = await fixture("ready", owners);
    const huge = `{"manifest":"${"A".repeat(limits.manifest)}","policies":[]}`;
    await refused(f, "/v1/manifest", { method: "POST", body: huge, headers: { "content-type": "application/json" } }, 413, "PAYLOAD_TOO_LARGE");
    await refused(
      f,
      "/v1/manifest",
      { method: "POST", body: "{}", headers: { "content-type": "application/json", "content-length": String(limits.manifest + 1) } },
      413,
      "PAYLOAD_TOO_LARGE",
    );
    // Under the body limit but over the schema's field limit: INVALID_REQUEST.
    const big = { manifest: "A".repeat(4 * 1024 * 1024 + 4), policies: [] };
    await refused(f, "/v1/manifest", post(big), 400, "INVALID_REQUEST");
  });
});

describe("POST /v1/manifest: concurrent requests", () => {
  it("two concurrent first sets: one 200, the other STALE_BASE (409)", async () => {
    const f = await fixture("uninitialized", owners);
    const body = firstSetBody(manifestOf(owners, f.policies), f.policies.map((p) => p.bytes));
    const answers = await Promise.all([postJson(f.app, "/v1/manifest", body), postJson(f.app, "/v1/manifest", body)]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
    expectError(answers.find((a) => a.status === 409)!, 409, "STALE_BASE");
    expect((await get(f.app, "/v1/status")).json).toMatchObject({ state: "ready", generation: 1 });
  });

  it("two concurrent updates on the same base: one 200, the other STALE_BASE (409)", async () => {
    const f = await fixture("ready", owners);
    const a = await namedPolicy("a");
    const b = await namedPolicy("b");
    const bodies = await Promise.all(
      [a, b].map((p) => updateBody(manifestOf(owners, [p]), [p.bytes], f.transition!, owners.workload, f.ref!)),
    );
    const answers = await Promise.all(bodies.map((body) => postJson(f.app, "/v1/manifest", body)));
    expect(answers.map((x) => x.status).sort()).toEqual([200, 409]);
    expectError(answers.find((x) => x.status === 409)!, 409, "STALE_BASE");
    const winner = answers.find((x) => x.status === 200)!;
    expect((await get(f.app, "/v1/status")).json).toMatchObject({ generation: 2, latestTransition: winner.json.transition });
    expect((await get(f.app, "/v1/manifests")).json.transitions).toEqual([f.transition, winner.json.transition]);
  });
});

describe("GET /v1/manifests", () => {
  it("NOT_INITIALIZED, RECOVERY_REQUIRED and STALE (409) outside ready", async () => {
    const expected: Record<string, string> = {
      uninitialized: "NOT_INITIALIZED",
      "recovery-required": "RECOVERY_REQUIRED",
      stale: "STALE",
    };
    for (const state of ["uninitialized", "recovery-required", "stale"] as const) {
      const f = await fixture(state, owners);
      expectError(await get(f.app, "/v1/manifests"), 409, expected[state]!);
    }
  });

  it("ready: exact bytes oldest first, policies by hash, the transition chain and the signed head", async () => {
    const f = await fixture("ready", owners);
    const first = await get(f.app, "/v1/manifests");
    const cache = await namedPolicy("cache", "cache policy\n\u00e9\u0000 exact bytes");
    const policies2 = [...f.policies, cache];
    const m2 = manifestOf(owners, policies2);
    const u2 = await postJson(f.app, "/v1/manifest", await updateBody(m2, policies2.map((p) => p.bytes), f.transition!, owners.workload, f.ref!));
    expect(u2.status).toBe(200);
    const policies3 = [cache];
    // Exact bytes: a manifest with unusual whitespace must come back as sent.
    const m3 = utf8(`  ${fromUtf8(manifestOf(owners, policies3)).replace(/\n/g, "\r\n")}\t\n`);
    const u3 = await postJson(f.app, "/v1/manifest", await updateBody(m3, [cache.bytes], u2.json.transition, owners.workload, f.ref!));
    expect(u3.status).toBe(200);

    const a = await get(f.app, "/v1/manifests");
    expect(a.status).toBe(200);
    historyResponse.parse(a.json);
    const h = a.json;
    expect(h.name).toBe(coordinatorName);
    expect(h.generation).toBe(3);
    expect(h.manifests).toEqual([toBase64(f.manifest!), toBase64(m2), toBase64(m3)]);
    const expectedPolicies = Object.fromEntries(
      [...f.policies, cache].map((p) => [p.hash, toBase64(p.bytes)] as const).sort(([x], [y]) => (x < y ? -1 : 1)),
    );
    expect(h.policies).toEqual(expectedPolicies);
    expect(Object.keys(h.policies)).toEqual(Object.keys(expectedPolicies));

    let previous = zero;
    const chain: string[] = [];
    for (const m of h.manifests as string[]) {
      previous = toHex(await sha256(concat(await sha256(fromBase64(m)), fromHex(previous))));
      chain.push(previous);
    }
    expect(h.transitions).toEqual(chain);
    expect(h.transitions).toEqual([f.transition, u2.json.transition, u3.json.transition]);
    expect(h.latestTransition).toBe(chain[2]);

    const head = JSON.parse(fromUtf8(fromBase64(h.head)));
    expect(head).toMatchObject({ name: coordinatorName, generation: 3, latestTransition: chain[2] });
    expect(typeof head.signature).toBe("string");

    expect(h.rootCA).toBe(first.json.rootCA);
    expect(h.transactionSigner).toBe(first.json.transactionSigner);
    expect(h.meshCA).toBe(u3.json.meshCA);
    for (const pem of [h.rootCA, h.meshCA, h.intermediateCA, h.transactionSigner]) expect(pemBlocks(pem)).toHaveLength(1);
    const intermediate = new x509.X509Certificate(h.intermediateCA);
    const meshCA = new x509.X509Certificate(h.meshCA);
    const root = new x509.X509Certificate(h.rootCA);
    expect(toHex(new Uint8Array(intermediate.publicKey.rawData))).toBe(toHex(new Uint8Array(meshCA.publicKey.rawData)));
    expect(await intermediate.verify({ publicKey: root.publicKey, signatureOnly: true })).toBe(true);
    expect(await new x509.X509Certificate(h.transactionSigner).verify({ publicKey: root.publicKey, signatureOnly: true })).toBe(true);

    // Reading twice gives the same text.
    expect((await get(f.app, "/v1/manifests")).text).toBe(a.text);
  });
});

describe("POST /v1/recover", () => {
  it("in recovery-required: refusals change nothing, then the right seed makes it ready with byte-identical history", async () => {
    const f = await fixture("recovery-required", owners);
    const right = f.recover!;
    const seed = fromBase64(right.share);
    expect(seed).toHaveLength(64);
    const wrongSeed = toBase64(crypto.getRandomValues(new Uint8Array(64)));
    const cases: [unknown, number, string][] = [
      [{ share: wrongSeed, salt: right.salt }, 403, "SEED_MISMATCH"],
      [{ share: toBase64(seed.slice(0, 32)), salt: right.salt }, 403, "SEED_MISMATCH"],
      [{ share: right.share, salt: randomHex(32) }, 403, "SALT_MISMATCH"],
      [{ share: right.share, salt: right.salt.slice(0, 62) }, 400, "INVALID_REQUEST"],
      [{ share: right.share, salt: right.salt + "00" }, 400, "INVALID_REQUEST"],
      [{ share: right.share, salt: right.salt.toUpperCase() }, 400, "INVALID_REQUEST"],
      [{ share: "not base64!", salt: right.salt }, 400, "INVALID_REQUEST"],
      [{ share: right.share.replace(/=+$/, ""), salt: right.salt }, 400, "INVALID_REQUEST"],
      [{ share: right.share }, 400, "INVALID_REQUEST"],
      [{ salt: right.salt }, 400, "INVALID_REQUEST"],
      [{ ...right, extra: 1 }, 400, "INVALID_REQUEST"],
      [{ share: 5, salt: right.salt }, 400, "INVALID_REQUEST"],
      [[right.share, right.salt], 400, "INVALID_REQUEST"],
      [{ share: toBase64(seed.slice(0, 31)), salt: right.salt }, 400, "INVALID_REQUEST"],
      [{ share: toBase64(seed.slice(0, 16)), salt: right.salt }, 400, "INVALID_REQUEST"],
      [{ share: "", salt: right.salt }, 400, "INVALID_REQUEST"],
    ];
    for (const [body, status, code] of cases) await refused(f, "/v1/recover", post(body), status, code);
    await refused(f, "/v1/recover", { method: "POST", body: "{", headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
    await refused(f, "/v1/recover", post({ share: right.share, salt: right.salt, pad: "A".repeat(limits.small) }), 413, "PAYLOAD_TOO_LARGE");
    expect((await get(f.app, "/v1/status")).json.state).toBe("recovery-required");

    const restarted = await postJson(f.app, "/v1/recover", right);
    expect(restarted.status).toBe(200);
    expect(restarted.json).toEqual({ state: "ready", recovery: { threshold: 1, received: 1, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) } });
    expect((await get(f.app, "/v1/status")).json).toEqual({
      state: "ready",
      name: coordinatorName,
      generation: 1,
      latestTransition: f.transition,
      recovery: null,
    });
    const after = await get(f.app, "/v1/manifests");
    expect(after.status).toBe(200);
    expect(after.json.manifests).toEqual([toBase64(f.manifest!)]);
    expectError(await postJson(f.app, "/v1/recover", right), 409, "NOT_IN_RECOVERY");
  });

  it("G1: the history after restart and recovery is byte-identical to the one before", async () => {
    const ready = await fixture("ready", owners);
    // Three generations, sharing and dropping policies.
    let transition = ready.transition!;
    for (const policies of [[...ready.policies, await namedPolicy("cache")], [await namedPolicy("cache")]]) {
      const m = manifestOf(owners, policies);
      const u = await postJson(ready.app, "/v1/manifest", await updateBody(m, policies.map((p) => p.bytes), transition, owners.workload, ready.ref!));
      expect(u.status).toBe(200);
      transition = u.json.transition;
    }
    const before = await get(ready.app, "/v1/manifests");
    const statusBefore = await get(ready.app, "/v1/status");
    expect(before.json.generation).toBe(3);
    const { app } = await start(ready.store);
    expect((await postJson(app, "/v1/recover", ready.recover)).status).toBe(200);
    expect((await get(app, "/v1/manifests")).text).toBe(before.text);
    expect((await get(app, "/v1/status")).text).toBe(statusBefore.text);
  });

  it("NOT_IN_RECOVERY (409) when uninitialized or ready", async () => {
    const u = await fixture("uninitialized", owners);
    await refused(u, "/v1/recover", post({ share: toBase64(new Uint8Array(64)), salt: randomHex(32) }), 409, "NOT_IN_RECOVERY");
    const r = await fixture("ready", owners);
    await refused(r, "/v1/recover", post(r.recover), 409, "NOT_IN_RECOVERY");
    await refused(r, "/v1/recover", post({ share: toBase64(new Uint8Array(64)), salt: randomHex(32) }), 409, "NOT_IN_RECOVERY");
  });

  it("out of stale: a wrong seed changes nothing, the right one reloads the newer state from the store", async () => {
    const f = await fixture("stale", owners);
    await refused(f, "/v1/recover", post({ share: toBase64(new Uint8Array(64)), salt: f.recover!.salt }), 403, "SEED_MISMATCH");
    await refused(f, "/v1/recover", post({ share: f.recover!.share, salt: randomHex(32) }), 403, "SALT_MISMATCH");
    const a = await postJson(f.app, "/v1/recover", f.recover);
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({ state: "ready", recovery: { threshold: 1, received: 1 } });
    expect((await get(f.app, "/v1/status")).text).toBe((await get(f.peer!.app, "/v1/status")).text);
    expect((await get(f.app, "/v1/status")).json).toMatchObject({ state: "ready", generation: 2, latestTransition: f.peer!.transition });
    expect((await get(f.app, "/v1/manifests")).text).toBe((await get(f.peer!.app, "/v1/manifests")).text);
    // And it can build on the newer state again.
    const policies = f.policies.slice(1);
    const m = manifestOf(owners, policies);
    const u = await postJson(f.app, "/v1/manifest", await updateBody(m, policies.map((p) => p.bytes), f.peer!.transition, owners.workload, f.ref!));
    expect(u.status).toBe(200);
    expect(u.json.generation).toBe(3);
  });
});

describe("POST /v1/mesh/certificate", () => {
  function evidence(hash: string): Record<string, unknown> {
    return { type: "insecure-simulated", policyHash: hash };
  }

  it("issues leaf + intermediate with the manifest entry's SANs and a 64-byte workload secret", async () => {
    const f = await fixture("ready", owners);
    const history = await get(f.app, "/v1/manifests");
    const web = f.policies[0]!;
    const db = f.policies[1]!;
    for (const curve of ["P-256", "P-384"] as const) {
      const key = await workloadKey(curve);
      const before = await snapshot(f.app, f.store);
      const a = await postJson(f.app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: evidence(web.hash) });
      expect(a.status).toBe(200);
      meshCertificateResponse.parse(a.json);
      expect(await snapshot(f.app, f.store)).toEqual(before);
      expect(a.json.policyHash).toBe(web.hash);
      expect(a.json.workloadSecretID).toBe("web");
      expect(a.json.meshCA).toBe(history.json.meshCA);
      expect(a.json.rootCA).toBe(history.json.rootCA);
      // The workload secret is HKDF output as long as the seed: 64 bytes, 128 hex digits.
      expect(a.json.workloadSecret).toMatch(/^[0-9a-f]{128}$/);
      const blocks = pemBlocks(a.json.certChain);
      expect(blocks).toHaveLength(2);
      expect(blocks[1]).toBe(history.json.intermediateCA);
      const leaf = new x509.X509Certificate(blocks[0]!);
      const intermediate = new x509.X509Certificate(blocks[1]!);
      expect(toBase64(new Uint8Array(leaf.publicKey.rawData))).toBe(key.spki);
      expect(leaf.issuer).toBe(intermediate.subject);
      expect(await leaf.verify({ publicKey: intermediate.publicKey, signatureOnly: true })).toBe(true);
      const sans = leaf.getExtension(x509.SubjectAlternativeNameExtension);
      expect(sans).not.toBeNull();
      expect(sans!.names.items.map((n) => [n.type, n.value])).toEqual([
        ["dns", "web"],
        ["dns", "web.default.svc"],
      ]);
    }
    const one = await postJson(f.app, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: evidence(web.hash) });
    const two = await postJson(f.app, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: evidence(web.hash) });
    const other = await postJson(f.app, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: evidence(db.hash) });
    expect(one.json.workloadSecret).toBe(two.json.workloadSecret);
    expect(other.json.workloadSecretID).toBe("db");
    expect(other.json.workloadSecret).not.toBe(one.json.workloadSecret);
  });

  it("a P-256 key in compressed SPKI form gets a certificate for the same key", async () => {
    const f = await fixture("ready", owners);
    const key = await workloadKey("P-256");
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key.keys.publicKey));
    const compressed = concat(Uint8Array.of(2 + (raw[64]! & 1)), raw.subarray(1, 33));
    const spki = concat(fromHex("3039301306072a8648ce3d020106082a8648ce3d030107032200"), compressed);
    const a = await postJson(f.app, "/v1/mesh/certificate", { publicKey: toBase64(spki), evidence: evidence(f.policies[0]!.hash) });
    expect(a.status, a.text).toBe(200);
    const leaf = new x509.X509Certificate(pemBlocks(a.json.certChain)[0]!);
    expect(toBase64(new Uint8Array(leaf.publicKey.rawData))).toBe(key.spki);
  });

  it("the workload secret survives restart and recovery", async () => {
    const f = await fixture("ready", owners);
    const web = f.policies[0]!;
    const key = await workloadKey();
    const before = await postJson(f.app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: evidence(web.hash) });
    const { app } = await start(f.store);
    expect((await postJson(app, "/v1/recover", f.recover)).status).toBe(200);
    const after = await postJson(app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: evidence(web.hash) });
    expect(after.status).toBe(200);
    expect(after.json.workloadSecret).toBe(before.json.workloadSecret);
    expect(after.json.meshCA).toBe(before.json.meshCA);
    expect(pemBlocks(after.json.certChain)[1]).toBe(pemBlocks(before.json.certChain)[1]);
  });

  it("POLICY_NOT_IN_MANIFEST (403), ATTESTATION_UNSUPPORTED (400), ATTESTATION_FAILED (403), INVALID_REQUEST (400)", async () => {
    const f = await fixture("ready", owners);
    const web = f.policies[0]!;
    const key = (await workloadKey()).spki;
    const rsaSpki = toBase64(fromHex(owners.seed.publicHex));
    const ed = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const edSpki = toBase64(new Uint8Array(await crypto.subtle.exportKey("spki", ed.publicKey)));
    const p521 = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-521" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const p521Spki = toBase64(new Uint8Array(await crypto.subtle.exportKey("spki", p521.publicKey)));
    const cases: [unknown, number, string][] = [
      [{ publicKey: key, evidence: evidence(randomHex(32)) }, 403, "POLICY_NOT_IN_MANIFEST"],
      [{ publicKey: key, evidence: { type: "snp", report: "AA==" } }, 400, "ATTESTATION_UNSUPPORTED"],
      [{ publicKey: key, evidence: {} }, 400, "ATTESTATION_UNSUPPORTED"],
      [{ publicKey: key, evidence: { type: 5 } }, 400, "ATTESTATION_UNSUPPORTED"],
      [{ publicKey: key, evidence: { type: "__proto__" } }, 400, "ATTESTATION_UNSUPPORTED"],
      [{ publicKey: key, evidence: { type: "insecure-simulated" } }, 403, "ATTESTATION_FAILED"],
      [{ publicKey: key, evidence: { type: "insecure-simulated", policyHash: "xyz" } }, 403, "ATTESTATION_FAILED"],
      [{ publicKey: key, evidence: { type: "insecure-simulated", policyHash: web.hash.toUpperCase() } }, 403, "ATTESTATION_FAILED"],
      [{ publicKey: key, evidence: { ...evidence(web.hash), extra: 1 } }, 403, "ATTESTATION_FAILED"],
      [{ publicKey: "AAAA", evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: "", evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: rsaSpki, evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: edSpki, evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: p521Spki, evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: "not base64", evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: key }, 401, "ATTESTATION_REQUIRED"],
      [{ evidence: evidence(web.hash) }, 400, "INVALID_REQUEST"],
      [{ publicKey: key, evidence: [] }, 400, "INVALID_REQUEST"],
      [{ publicKey: key, evidence: "insecure-simulated" }, 400, "INVALID_REQUEST"],
      [{ publicKey: key, evidence: evidence(web.hash), extra: 1 }, 400, "INVALID_REQUEST"],
    ];
    for (const [body, status, code] of cases) await refused(f, "/v1/mesh/certificate", post(body), status, code);
    await refused(f, "/v1/mesh/certificate", { method: "POST", body: "nope", headers: { "content-type": "application/json" } }, 400, "INVALID_JSON");
    for (const type of [undefined, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const headers: Record<string, string> = type === undefined ? {} : { "content-type": type };
      const body = JSON.stringify({ publicKey: key, evidence: evidence(web.hash) });
      await refused(f, "/v1/mesh/certificate", { method: "POST", body, headers }, 415, "UNSUPPORTED_MEDIA_TYPE");
      await refused(f, "/v1/manifest", { method: "POST", body, headers }, 415, "UNSUPPORTED_MEDIA_TYPE");
      await refused(f, "/v1/recover", { method: "POST", body, headers }, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    const charset = await f.app.request("/v1/mesh/certificate", {
      method: "POST",
      body: JSON.stringify({ publicKey: key, evidence: evidence(web.hash) }),
      headers: { "content-type": "Application/JSON; charset=utf-8" },
    });
    expect(charset.status).toBe(200);
    await refused(
      f,
      "/v1/mesh/certificate",
      { method: "POST", body: JSON.stringify({ publicKey: key, evidence: { pad: "A".repeat(limits.small) } }) },
      413,
      "PAYLOAD_TOO_LARGE",
    );
  });

  it("ATTESTATION_UNSUPPORTED (400) on a Coordinator with no validator enabled", async () => {
    const f = await fixture("ready", owners, { validators: new Map() });
    const key = (await workloadKey()).spki;
    await refused(f, "/v1/mesh/certificate", post({ publicKey: key, evidence: evidence(f.policies[0]!.hash) }), 400, "ATTESTATION_UNSUPPORTED");
  });

  it("NOT_INITIALIZED, RECOVERY_REQUIRED, STALE (409) outside ready", async () => {
    const key = (await workloadKey()).spki;
    const expected = { uninitialized: "NOT_INITIALIZED", "recovery-required": "RECOVERY_REQUIRED", stale: "STALE" } as const;
    for (const state of ["uninitialized", "recovery-required", "stale"] as const) {
      const f = await fixture(state, owners);
      const hash = f.policies[0]!.hash;
      await refused(f, "/v1/mesh/certificate", post({ publicKey: key, evidence: evidence(hash) }), 409, expected[state]);
    }
  });
});

describe("manifest SANs: what the set accepts, the mesh certificate carries exactly", () => {
  async function setWithSans(sans: string[]): Promise<{ f: Fixture; set: Answer; hash: string }> {
    const f = await fixture("uninitialized", owners);
    const p = f.policies[0]!;
    const manifest = utf8(
      JSON.stringify({
        Policies: { [p.hash]: { SANs: sans, WorkloadSecretID: "web" } },
        WorkloadOwnerKeyDigests: [owners.workload.digest],
        SeedshareOwnerPubKeys: [owners.seed.publicHex],
      }),
    );
    return { f, set: await postJson(f.app, "/v1/manifest", firstSetBody(manifest, [p.bytes])), hash: p.hash };
  }

  // isIpSan calls these IP addresses, but they are not; @peculiar/x509 cannot encode them.
  for (const san of [":", "1:2:3", "a:b", "1.2.3.4:5", "fffff::1", "1::2::3", "1:2:3:4:5:6:7:8:9"]) {
    it(`refuses SAN ${JSON.stringify(san)} at the set (INVALID_MANIFEST), instead of failing every mesh certificate later`, async () => {
      const { f, set, hash } = await setWithSans(["web", san]);
      if (set.status === 200) {
        // Accepted: then the certificate must at least be issuable.
        const cert = await postJson(f.app, "/v1/mesh/certificate", {
          publicKey: (await workloadKey()).spki,
          evidence: { type: "insecure-simulated", policyHash: hash },
        });
        expect(cert.status, `set accepted ${JSON.stringify(san)}, then the mesh certificate answered ${cert.text}`).toBe(200);
      }
      expectError(set, 400, "INVALID_MANIFEST");
    });
  }

  it("an entry without SANs gets a certificate named by its policy hash and no SAN extension", async () => {
    const { f, set, hash } = await setWithSans([]);
    expect(set.status, set.text).toBe(200);
    const cert = await postJson(f.app, "/v1/mesh/certificate", {
      publicKey: (await workloadKey()).spki,
      evidence: { type: "insecure-simulated", policyHash: hash },
    });
    expect(cert.status, cert.text).toBe(200);
    const leaf = new X509Certificate(pemBlocks(cert.json.certChain)[0]!);
    expect(leaf.subject).toBe(`CN=${hash}`);
    expect(leaf.subjectAltName).toBeUndefined();
  });

  const valid: [string, string][] = [
    ["web", "DNS:web"],
    ["*.web.default.svc", "DNS:*.web.default.svc"],
    ["1.2.3.4", "IP Address:1.2.3.4"],
    ["::1", "IP Address:0:0:0:0:0:0:0:1"],
    ["fe80::1", "IP Address:FE80:0:0:0:0:0:0:1"],
    ["2001:db8::8:800:200c:417a", "IP Address:2001:DB8:0:0:8:800:200C:417A"],
    // IPv4-mapped IPv6 in dotted form: ::ffff:1.2.3.4 is 0:0:0:0:0:ffff:0102:0304.
    ["::ffff:1.2.3.4", "IP Address:0:0:0:0:0:FFFF:102:304"],
  ];
  for (const [san, rendered] of valid) {
    it(`SAN ${JSON.stringify(san)} reaches the leaf as ${rendered}`, async () => {
      const { f, set, hash } = await setWithSans([san]);
      expect(set.status, set.text).toBe(200);
      const cert = await postJson(f.app, "/v1/mesh/certificate", {
        publicKey: (await workloadKey()).spki,
        evidence: { type: "insecure-simulated", policyHash: hash },
      });
      expect(cert.status, cert.text).toBe(200);
      const leaf = new X509Certificate(pemBlocks(cert.json.certChain)[0]!);
      expect(leaf.subjectAltName).toBe(rendered);
    });
  }
});

describe("probes, metrics, OpenAPI and routing", () => {
  it("/healthz 200 always, /readyz 200 only when ready, /metrics shows the state", async () => {
    for (const state of states) {
      const f = await fixture(state, owners);
      const health = await get(f.app, "/healthz");
      expect(health.status).toBe(200);
      const ready = await get(f.app, "/readyz");
      expect(ready.status).toBe(state === "ready" ? 200 : 503);
      expect(ready.json).toEqual({ ready: state === "ready", state });
      const metrics = await get(f.app, "/metrics");
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
      for (const s of states) {
        expect(metrics.text).toContain(`coordinator_state{state="${s}"} ${s === state ? 1 : 0}\n`);
      }
      const generation = state === "ready" || state === "stale" ? 1 : 0;
      expect(metrics.text).toContain(`coordinator_manifest_generation ${generation}\n`);
    }
  });

  it("/metrics counts requests", async () => {
    const f = await fixture("ready", owners);
    await get(f.app, "/nope");
    const metrics = await get(f.app, "/metrics");
    expect(metrics.text).toMatch(/coordinator_http_requests_total\{method="GET",status="404"\} 1\n/);
    expect(metrics.text).toMatch(/coordinator_manifest_sets_total 1\n/);
  });

  it("GET /v1/openapi.json documents every route with its method", async () => {
    const f = await fixture("uninitialized", owners);
    const a = await get(f.app, "/v1/openapi.json");
    expect(a.status).toBe(200);
    expect(a.json.openapi).toMatch(/^3\./);
    const routes: [string, string][] = [
      ["/v1/status", "get"],
      ["/v1/manifest", "post"],
      ["/v1/manifests", "get"],
      ["/v1/recover", "post"],
      ["/v1/mesh/certificate", "post"],
      ["/healthz", "get"],
      ["/readyz", "get"],
      ["/metrics", "get"],
    ];
    for (const [path, method] of routes) {
      expect(a.json.paths[path], path).toBeDefined();
      expect(a.json.paths[path][method], `${method} ${path}`).toBeDefined();
    }
    for (const path of ["/v1/manifest", "/v1/recover", "/v1/mesh/certificate"]) {
      expect(a.json.paths[path].post.requestBody.content["application/json"].schema.type).toBe("object");
    }
  });

  it("NOT_FOUND (404) for unknown paths, METHOD_NOT_ALLOWED (405) for a wrong method", async () => {
    for (const state of ["uninitialized", "ready"] as const) {
      const f = await fixture(state, owners);
      for (const path of ["/", "/v1", "/v1/", "/v2/status", "/v1/status/", "/v1/manifest/x", "/v1/mesh", "/healthz/x", "/%zz", "/v1/st%61tus2"]) {
        expectError(await get(f.app, path), 404, "NOT_FOUND");
        expectError(await call(f.app, path, { method: "POST", body: "{}" }), 404, "NOT_FOUND");
      }
      const wrong: [string, string][] = [
        ["/v1/status", "POST"],
        ["/v1/status", "DELETE"],
        ["/v1/manifest", "GET"],
        ["/v1/manifest", "PUT"],
        ["/v1/manifests", "POST"],
        ["/v1/recover", "GET"],
        ["/v1/recover", "PATCH"],
        ["/v1/mesh/certificate", "GET"],
        ["/healthz", "POST"],
        ["/readyz", "DELETE"],
        ["/metrics", "POST"],
        ["/v1/openapi.json", "POST"],
        ["/v1/manifest", "OPTIONS"],
      ];
      const before = await snapshot(f.app, f.store);
      for (const [path, method] of wrong) {
        expectError(await call(f.app, path, { method }), 405, "METHOD_NOT_ALLOWED");
      }
      expect(await snapshot(f.app, f.store)).toEqual(before);
    }
  });
});
