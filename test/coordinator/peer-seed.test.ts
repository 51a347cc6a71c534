// Recovery from a peer replica in process: the protocol end to end (a recovering Coordinator gets the root seed from a ready one and serves the same history), every refusal of POST /v1/peers/seed changing nothing and serving nothing, the requester refusing what it cannot trust, and the freshness rule against a rolled-back head.
import "reflect-metadata";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { coordinatorReportData, simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import type { EvidenceSource, HeldState } from "../../src/attestation/coordinator-evidence.js";
import { parseAttestationRoots, validatorsFor } from "../../src/attestation/modes.js";
import type { AttestationRoots } from "../../src/attestation/modes.js";
import { createSimulatedAmd } from "../../src/attestation/snp/simulated.js";
import { parseSavedTee, savedTeeEvidenceSource } from "../../src/attestation/test-tee.js";
import type { SavedTee } from "../../src/attestation/test-tee.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { PeerRecovery } from "../../src/coordinator/peer-recovery.js";
import type { PeerFetch } from "../../src/coordinator/peer-recovery.js";
import { peerSeedInfo, PeerSeedServer, rootSeedMaterial } from "../../src/coordinator/peer-seed.js";
import { staticPeers } from "../../src/coordinator/peers.js";
import { sealShare } from "../../src/coordinator/sealed-share.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { sealTo } from "../../src/crypto/hpke.js";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromBase64, fromHex, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { headKey } from "../../src/history/head.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import { createTestTee, teeFiles, testMeasurement, testReferenceValues } from "../attestation/make-evidence.js";
import { policy, post, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const name = "peered";
const peerUrl = "http://peer.test";
const otherMeasurement = "6b".repeat(48);

let dir: string;
let tee: SavedTee;
let roots: AttestationRoots;
let owner: Awaited<ReturnType<typeof seedShareOwner>>;
let workload: Awaited<ReturnType<typeof workloadOwner>>;
let web: Awaited<ReturnType<typeof policy>>;
let coordinatorPolicy: Awaited<ReturnType<typeof policy>>;
/** An AMD hierarchy nobody pinned: evidence signed by it is not attested. */
let unpinned: EvidenceSource;

/** A manifest with a web policy, the Coordinator's policy (Role "coordinator") and the test TEE's reference values. */
function manifest(extra: Record<string, unknown> = {}): Uint8Array {
  return utf8(
    JSON.stringify({
      Policies: {
        [web.hash]: { SANs: ["web"], WorkloadSecretID: "web" },
        [coordinatorPolicy.hash]: { SANs: ["coordinator"], Role: "coordinator" },
        ...extra,
      },
      ReferenceValues: { snp: testReferenceValues(dir).snp },
      WorkloadOwnerKeyDigests: [workload.digest],
      SeedshareOwnerPubKeys: [owner.publicHex],
    }),
  );
}

/** The test TEE's evidence source: the genuine Coordinator's measurement and policy, unless told otherwise. */
function teeSource(opts: { measurement?: string; hostData?: string } = {}): EvidenceSource {
  return savedTeeEvidenceSource(tee, {
    measurement: fromHex(opts.measurement ?? testMeasurement.snp),
    hostData: fromHex(opts.hostData ?? coordinatorPolicy.hash),
  });
}

async function request(app: Hono, method: "GET" | "POST", path: string, body?: unknown): Promise<{ status: number; body: Json; text: string }> {
  const res = await app.request(path, body === undefined ? { method } : { ...post(body), method });
  const text = await res.text();
  let parsed: Json = undefined;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, text };
}

/** A ready Coordinator P on a fresh memory store, serving seeds to peers, and what its first set answered. */
async function readyPeer(): Promise<{ store: Store; p: Coordinator; app: Hono; doc: SeedShareDocument; rootCA: string; transition: string }> {
  const store = createStore(memoryDriver());
  const p = await Coordinator.start({ store, name, validators: validatorsFor([]) });
  const app = createApp({ coordinator: p, selfAttestation: await SelfAttestation.create(teeSource()), peers: { server: new PeerSeedServer(p, { roots }) } });
  const set = await request(app, "POST", "/v1/manifest", { manifest: toBase64(manifest()), policies: [toBase64(web.bytes), toBase64(coordinatorPolicy.bytes)] });
  expect(set.status, set.text).toBe(200);
  return { store, p, app, doc: set.body.seedShares, rootCA: set.body.rootCA, transition: set.body.transition };
}

/** A Coordinator R that needs recovery on `store`, its own evidence source and a PeerRecovery over `fetch`. */
async function requester(store: Store, fetch: PeerFetch, source: EvidenceSource | null = teeSource()): Promise<{ r: Coordinator; self: SelfAttestation; recovery: PeerRecovery }> {
  const r = await Coordinator.start({ store, name, validators: validatorsFor([]) });
  expect(r.currentState).toBe("recovery-required");
  const self = await SelfAttestation.create(source);
  return { r, self, recovery: new PeerRecovery({ coordinator: r, store, directory: staticPeers([peerUrl]), self, roots, fetch }) };
}

/** Routes the requester's requests to an in-process app. */
const toApp =
  (app: Hono): PeerFetch =>
  async (url, init) =>
    app.request(url, init);

/** What must not change on a refusal: status, the history's exact bytes, and the stored head. */
async function snapshot(app: Hono, store: Store): Promise<unknown> {
  const head = await store.get(headKey(name));
  return { status: (await request(app, "GET", "/v1/status")).text, history: (await request(app, "GET", "/v1/manifests")).text, head: head === null ? null : toHex(head) };
}

/** Evidence as a requester would make it for P's nonce: REPORT_DATA over the nonce, `key`, `boundName` and `held` (null: none). */
async function evidenceFor(source: EvidenceSource, nonce: string, key: Uint8Array, boundName = name, held: HeldState | null = null): Promise<unknown> {
  return source.evidence(await coordinatorReportData({ nonce: fromHex(nonce), hpkePublicKey: key, name: boundName, state: held }));
}

async function nonceOf(app: Hono): Promise<string> {
  const challenge = await request(app, "POST", "/v1/peers/seed", {});
  expect(challenge.status, challenge.text).toBe(401);
  expect(challenge.body.error.code).toBe("ATTESTATION_REQUIRED");
  return challenge.body.nonce as string;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "peer-seed-"));
  const [made, o, w, webPolicy, coordinator, amd] = await Promise.all([
    createTestTee(dir),
    seedShareOwner(),
    workloadOwner(),
    policy("policy of web\n"),
    policy("package coordinator\n"),
    createSimulatedAmd({ product: "Milan", asvk: false }),
  ]);
  void made;
  tee = parseSavedTee(readFileSync(join(dir, teeFiles.secrets), "utf8"), "tee.json");
  roots = parseAttestationRoots(readFileSync(join(dir, teeFiles.roots), "utf8"));
  owner = o;
  workload = w;
  web = webPolicy;
  coordinatorPolicy = coordinator;
  unpinned = simulatedEvidenceSource({ amd, measurement: fromHex(testMeasurement.snp), hostData: fromHex(coordinator.hash) });
}, 180_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("recovery from a ready peer", () => {
  it("a recovery-required Coordinator gets the root seed from a ready peer after mutual attestation and serves the same history", async () => {
    const { store, p, app } = await readyPeer();
    const seen: string[] = [];
    const { r, recovery } = await requester(store, async (url, init) => {
      seen.push(`${init.method} ${new URL(url).pathname}`);
      return app.request(url, init);
    });
    const outcome = await recovery.round();
    expect(outcome).toMatchObject({ kind: "recovered", peer: peerUrl, generation: 1 });
    expect(seen).toEqual(["GET /v1/attestation", "POST /v1/peers/seed", "POST /v1/peers/seed"]);
    expect(r.status()).toMatchObject({ state: "ready", generation: 1, latestTransition: p.status().latestTransition });
    expect(r.status().refusedHead).toBeUndefined();
    expect(await r.history()).toEqual(await p.history());
    expect(r.attestedState().held).toEqual(p.attestedState().held);
    // Once ready, another round does nothing.
    expect(await recovery.round()).toEqual({ kind: "not-needed" });
  });

  it("the sealed seed's HPKE info is the label, the name and the peer's nonce", () => {
    const nonce = new Uint8Array(32).fill(7);
    const info = peerSeedInfo("ab", nonce);
    expect(toHex(info)).toBe(toHex(utf8("contrast-coordinator/peer-seed/v1")) + "00" + "0002" + toHex(utf8("ab")) + "07".repeat(32));
  });
});

describe("POST /v1/peers/seed refuses, serves nothing and changes nothing", () => {
  let store: Store;
  let app: Hono;
  let key: Uint8Array;
  beforeAll(async () => {
    ({ store, app } = await readyPeer());
    key = (await SelfAttestation.create(null)).hpke.publicKey;
  });

  /** Sends one request with evidence that must be refused with `status`/`code` (and `reason`), and checks that nothing changed and nothing was served. */
  async function refused(body: unknown, status: number, code: string, reason?: string): Promise<void> {
    const before = await snapshot(app, store);
    const answer = await request(app, "POST", "/v1/peers/seed", body);
    expect({ status: answer.status, code: answer.body?.error?.code, ...(reason === undefined ? {} : { reason: answer.body?.error?.reason }) }, answer.text).toEqual({
      status,
      code,
      ...(reason === undefined ? {} : { reason }),
    });
    expect(answer.text).not.toMatch(/ciphertext|"enc"/);
    expect(await snapshot(app, store)).toEqual(before);
  }

  const body = async (nonce: string, source: EvidenceSource, opts: { key?: Uint8Array; boundKey?: Uint8Array; boundName?: string; held?: HeldState | null } = {}) => ({
    nonce,
    hpkePublicKey: toBase64(opts.key ?? key),
    evidence: await evidenceFor(source, nonce, opts.boundKey ?? opts.key ?? key, opts.boundName ?? name, opts.held ?? null),
  });

  it("a requester whose evidence does not chain to the pinned roots (unattested)", async () => {
    await refused(await body(await nonceOf(app), unpinned), 403, "ATTESTATION_FAILED");
  });

  it("a requester without evidence, or with part of the request", async () => {
    const nonce = await nonceOf(app);
    await refused({ nonce, hpkePublicKey: toBase64(key) }, 400, "INVALID_REQUEST");
    await refused({ nonce, evidence: { type: "amd-sev-snp" } }, 400, "INVALID_REQUEST");
  });

  it("evidence of another measurement", async () => {
    await refused(await body(await nonceOf(app), teeSource({ measurement: otherMeasurement })), 403, "ATTESTATION_FAILED", "SNP_MEASUREMENT_MISMATCH");
  });

  it("evidence for another Coordinator name", async () => {
    await refused(await body(await nonceOf(app), teeSource(), { boundName: "other" }), 403, "ATTESTATION_FAILED", "COORDINATOR_REPORT_DATA_MISMATCH");
  });

  it("evidence of a Coordinator that holds a state (a ready one's answer relayed)", async () => {
    const held = { latestTransition: "11".repeat(32), rootCA: "22".repeat(32), meshCA: "33".repeat(32) };
    await refused(await body(await nonceOf(app), teeSource(), { held }), 403, "ATTESTATION_FAILED", "COORDINATOR_REPORT_DATA_MISMATCH");
  });

  it("genuine evidence relayed with another HPKE key (a man in the middle's)", async () => {
    const other = (await SelfAttestation.create(null)).hpke.publicKey;
    await refused(await body(await nonceOf(app), teeSource(), { key: other, boundKey: key }), 403, "ATTESTATION_FAILED", "COORDINATOR_REPORT_DATA_MISMATCH");
  });

  it("evidence of an attested workload that is not a Coordinator (another policy of the manifest)", async () => {
    await refused(await body(await nonceOf(app), teeSource({ hostData: web.hash })), 403, "ATTESTATION_FAILED", "COORDINATOR_POLICY_MISMATCH");
  });

  it("nonces: not issued here, a workload's, replayed after success, spent by a refusal", async () => {
    await refused(await body("00".repeat(32), teeSource()), 403, "NONCE_INVALID");
    const workloadChallenge = await request(app, "POST", "/v1/mesh/certificate", { publicKey: toBase64(key) });
    expect(workloadChallenge.status).toBe(401);
    await refused(await body(workloadChallenge.body.nonce as string, teeSource()), 403, "NONCE_INVALID");

    const nonce = await nonceOf(app);
    const good = await body(nonce, teeSource());
    const served = await request(app, "POST", "/v1/peers/seed", good);
    expect(served.status, served.text).toBe(200);
    await refused(good, 403, "NONCE_REPLAYED");

    const spent = await nonceOf(app);
    await refused(await body(spent, teeSource({ measurement: otherMeasurement })), 403, "ATTESTATION_FAILED", "SNP_MEASUREMENT_MISMATCH");
    await refused(await body(spent, teeSource()), 403, "NONCE_REPLAYED");
  });

  it("a peer that is not ready serves no nonce and no seed", async () => {
    const recovering = await Coordinator.start({ store, name, validators: validatorsFor([]) });
    const notReady = createApp({ coordinator: recovering, peers: { server: new PeerSeedServer(recovering, { roots }) } });
    const answer = await request(notReady, "POST", "/v1/peers/seed", {});
    expect({ status: answer.status, code: answer.body.error.code }).toEqual({ status: 409, code: "RECOVERY_REQUIRED" });
    // Even with a nonce the ready peer issued and genuine evidence.
    const withEvidence = await request(notReady, "POST", "/v1/peers/seed", await body(await nonceOf(app), teeSource()));
    expect({ status: withEvidence.status, code: withEvidence.body.error.code }).toEqual({ status: 409, code: "RECOVERY_REQUIRED" });
    expect(recovering.currentState).toBe("recovery-required");

    const empty = await Coordinator.start({ store: createStore(memoryDriver()), name, validators: validatorsFor([]) });
    const uninitialized = createApp({ coordinator: empty, peers: { server: new PeerSeedServer(empty, { roots }) } });
    const none = await request(uninitialized, "POST", "/v1/peers/seed", {});
    expect({ status: none.status, code: none.body.error.code }).toEqual({ status: 409, code: "NOT_INITIALIZED" });

    // A Coordinator that serves no peers (the Worker) does not know the route's work.
    const plain = createApp({ coordinator: empty });
    expect((await request(plain, "POST", "/v1/peers/seed", {})).status).toBe(404);
  });
});

describe("the requester trusts nothing it cannot verify", () => {
  it("a peer whose evidence does not verify (another measurement) gets no evidence of the requester and sends no seed", async () => {
    const { store, p } = await readyPeer();
    const impostor = createApp({ coordinator: p, selfAttestation: await SelfAttestation.create(teeSource({ measurement: otherMeasurement })), peers: { server: new PeerSeedServer(p, { roots }) } });
    const seen: string[] = [];
    const { r, recovery } = await requester(store, async (url, init) => {
      seen.push(`${init.method} ${new URL(url).pathname}`);
      return impostor.request(url, init);
    });
    const before = r.status();
    const outcome = await recovery.round();
    expect(outcome).toMatchObject({ kind: "no-ready-peer", failures: [{ peer: peerUrl, code: "ATTESTATION_FAILED", reason: "SNP_MEASUREMENT_MISMATCH" }] });
    expect(seen).toEqual(["GET /v1/attestation"]);
    expect(r.status()).toEqual(before);
    expect(recovery.readyPeer()).toBeNull();
  });

  it("a sealed seed changed on the way does not open; the requester stays recovery-required", async () => {
    const { store, app } = await readyPeer();
    const { r, recovery } = await requester(store, async (url, init) => {
      const res = await app.request(url, init);
      if (!url.endsWith("/v1/peers/seed") || res.status !== 200) return res;
      const answer = (await res.json()) as Json;
      const ciphertext = fromBase64(answer.ciphertext as string);
      ciphertext[0]! ^= 1;
      return new Response(JSON.stringify({ ...answer, ciphertext: toBase64(ciphertext) }), { status: 200, headers: { "content-type": "application/json" } });
    });
    const before = r.status();
    expect(await recovery.round()).toMatchObject({ kind: "failed", failures: [{ peer: peerUrl, code: "SEALED_SEED_INVALID" }] });
    expect(r.status()).toEqual(before);
  });

  it("a seed someone else sealed to the requester's key does not verify the stored head; nothing is adopted", async () => {
    const { store, app } = await readyPeer();
    let nonce = "";
    const { r, self, recovery } = await requester(store, async (url, init) => {
      const res = await app.request(url, init);
      if (!url.endsWith("/v1/peers/seed")) return res;
      if (res.status === 401) {
        nonce = ((await res.clone().json()) as Json).nonce as string;
        return res;
      }
      // A man in the middle answers with a seed of its own, sealed to the requester's key (HPKE base mode lets anyone seal).
      const forged = await sealTo(self.hpke.publicKey, crypto.getRandomValues(new Uint8Array(96)), peerSeedInfo(name, fromHex(nonce)));
      const body = JSON.stringify({ enc: toBase64(forged.enc), ciphertext: toBase64(forged.ciphertext), latestTransition: "00".repeat(32), generation: 1 });
      return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
    });
    const outcome = await recovery.round();
    expect(outcome).toMatchObject({ kind: "failed", failures: [{ peer: peerUrl, code: "STATE_CORRUPT" }] });
    expect(r.status()).toMatchObject({ state: "recovery-required", generation: null, refusedHead: { code: "STATE_CORRUPT" } });
  });

  it("a store replaced with another deployment's state, and that deployment's seed sealed by a man in the middle: the seed does not derive the root CA the peer attested", async () => {
    const genuine = await readyPeer();
    const other = await readyPeer();
    const otherSeed = rootSeedMaterial(other.p.readyState());
    let nonce = "";
    // R reads the other deployment's store, attests the genuine peer, and receives the other seed.
    const { r, self, recovery } = await requester(other.store, async (url, init) => {
      const res = await genuine.app.request(url, init);
      if (!url.endsWith("/v1/peers/seed")) return res;
      if (res.status === 401) {
        nonce = ((await res.clone().json()) as Json).nonce as string;
        return res;
      }
      const forged = await sealTo(self.hpke.publicKey, otherSeed, peerSeedInfo(name, fromHex(nonce)));
      const body = JSON.stringify({ enc: toBase64(forged.enc), ciphertext: toBase64(forged.ciphertext), latestTransition: "00".repeat(32), generation: 1 });
      return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
    });
    const outcome = await recovery.round();
    expect(outcome).toMatchObject({ kind: "failed", failures: [{ peer: peerUrl, code: "ATTESTATION_FAILED", reason: "PEER_SEED_MISMATCH" }] });
    expect(r.status()).toMatchObject({ state: "recovery-required", generation: null, refusedHead: { code: "ATTESTATION_FAILED" } });
  });

  it("without an evidence source the requester asks for nothing", async () => {
    const { store, app } = await readyPeer();
    const seen: string[] = [];
    const { r, recovery } = await requester(
      store,
      async (url, init) => {
        seen.push(`${init.method} ${new URL(url).pathname}`);
        return app.request(url, init);
      },
      null,
    );
    expect(await recovery.round()).toEqual({ kind: "no-evidence", peer: peerUrl });
    expect(seen).toEqual(["GET /v1/attestation"]);
    expect(r.currentState).toBe("recovery-required");
  });
});

describe("freshness: a head older than a ready peer's is refused", () => {
  it("a rolled-back head is refused (ROLLBACK_DETECTED, shown in the status); owners are refused PEERS_READY unless they force; the restored head is adopted", async () => {
    const { store, p, app, doc, rootCA, transition } = await readyPeer();
    const head1 = (await store.get(headKey(name)))!;
    const db = await policy("policy of db\n");
    const body = await updateBody(manifest({ [db.hash]: { SANs: ["db"], WorkloadSecretID: "db" } }), [web.bytes, coordinatorPolicy.bytes, db.bytes], transition, workload, { name, rootCA });
    const updated = await request(app, "POST", "/v1/manifest", body);
    expect(updated.status, updated.text).toBe(200);
    const head2 = (await store.get(headKey(name)))!;
    expect(p.status().generation).toBe(2);

    // Someone with access to the store puts the older, once valid head back. P keeps generation 2 in memory.
    await store.put(headKey(name), head1);
    const { r, self, recovery } = await requester(store, toApp(app));
    const rApp = createApp({ coordinator: r, selfAttestation: self, peers: { readyPeer: () => recovery.readyPeer() } });
    const outcome = await recovery.round();
    expect(outcome).toMatchObject({ kind: "refused", peer: peerUrl, code: "ROLLBACK_DETECTED" });
    const status = (await request(rApp, "GET", "/v1/status")).body;
    expect(status).toMatchObject({ state: "recovery-required", generation: null, refusedHead: { code: "ROLLBACK_DETECTED" } });
    expect(status.refusedHead.message).toMatch(/older head than a peer/);
    expect(await recovery.round()).toMatchObject({ kind: "refused", code: "ROLLBACK_DETECTED" });
    expect(toHex((await store.get(headKey(name)))!)).toBe(toHex(head1));

    // The owners' share is refused while the ready peer is seen, and nothing is kept.
    const share = await decryptSeedShare(doc.shares[0]!.encryptedShare, owner.keys.privateKey);
    const sealed = async () => ({ salt: doc.salt, sealedShare: await sealShare(self.hpke.publicKey, share, { name, attempt: r.status().recovery!.nonce, salt: doc.salt }) });
    const before = (await request(rApp, "GET", "/v1/status")).text;
    const refusedRecover = await request(rApp, "POST", "/v1/recover", await sealed());
    expect({ status: refusedRecover.status, code: refusedRecover.body.error.code }).toEqual({ status: 409, code: "PEERS_READY" });
    expect((await request(rApp, "GET", "/v1/status")).text).toBe(before);

    // The store's newest head restored: the next round adopts it.
    await store.put(headKey(name), head2);
    expect(await recovery.round()).toMatchObject({ kind: "recovered", generation: 2 });
    expect(r.status().refusedHead).toBeUndefined();
    expect(await r.history()).toEqual(await p.history());

    // Forced, the owners recover a replica onto the rolled-back head: what --force risks (a split).
    await store.put(headKey(name), head1);
    const { r: r2, self: self2, recovery: recovery2 } = await requester(store, toApp(app));
    const r2App = createApp({ coordinator: r2, selfAttestation: self2, peers: { readyPeer: () => recovery2.readyPeer() } });
    expect(await recovery2.round()).toMatchObject({ kind: "refused", code: "ROLLBACK_DETECTED" });
    const forcedBody = { salt: doc.salt, sealedShare: await sealShare(self2.hpke.publicKey, share, { name, attempt: r2.status().recovery!.nonce, salt: doc.salt }) };
    expect((await request(r2App, "POST", "/v1/recover", forcedBody)).body.error.code).toBe("PEERS_READY");
    const forced = await request(r2App, "POST", "/v1/recover", { ...forcedBody, force: true });
    expect(forced.status, forced.text).toBe(200);
    expect(r2.status()).toMatchObject({ state: "ready", generation: 1 });
    expect(p.status().generation).toBe(2);
  });
});
