// GET /v1/attestation in process: in every state the evidence verifies with the project's own verifier (the simulated source's ARK pinned), REPORT_DATA is the documented layout, and the HPKE key served is the bound one and opens what is sealed to it.
import { Aes128Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../adapters/node/config.js";
import { tsmEvidenceSource } from "../../adapters/node/tsm.js";
import { ConfigError as WorkerConfigError, parseWorkerConfig } from "../../adapters/worker/config.js";
import { createApp } from "../../src/app.js";
import { coordinatorReportData, simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import type { CoordinatorEvidence, SimulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { certTableGuids } from "../../src/attestation/snp/certificates.js";
import { createSimulatedAmd, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import type { SimulatedAmd } from "../../src/attestation/snp/simulated.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpEvidence } from "../../src/attestation/snp/verify.js";
import { certificateDerOf } from "../../src/client/verify.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { sha256 } from "../../src/crypto/provider.js";
import { bytesEqual, concat, fromBase64, fromHex, toHex, utf8 } from "../../src/encoding.js";
import { coordinatorName, fixture, get, makeOwners, snapshot } from "../api/fixture.js";
import type { Fixture, FixtureState, Owners } from "../api/fixture.js";
import { fakeTsm } from "./fake-tsm.js";
import { certTable } from "./snp-fixtures.js";

let owners: Owners;
let amd: SimulatedAmd;
let source: SimulatedEvidenceSource;
let self: SelfAttestation;

beforeAll(async () => {
  [owners, amd] = await Promise.all([makeOwners(), createSimulatedAmd({ product: "Milan", asvk: false })]);
  source = simulatedEvidenceSource({ amd });
  self = await SelfAttestation.create(source);
}, 120_000);

const nonce = (fill: number) => toHex(new Uint8Array(32).fill(fill));

/** The documented layout, written out here on its own (not with the code under test). */
function layout(n: Uint8Array, hpkePublicKey: Uint8Array, name: string, held: { t: string; root: string; mesh: string } | null): Uint8Array {
  const u16 = (len: number) => new Uint8Array([len >> 8, len & 0xff]);
  const nameBytes = new TextEncoder().encode(name);
  return concat(
    new TextEncoder().encode("CONTRAST COORDINATOR EVIDENCE v1"),
    new Uint8Array([0]),
    n,
    u16(hpkePublicKey.length),
    hpkePublicKey,
    u16(nameBytes.length),
    nameBytes,
    held === null ? new Uint8Array([0]) : concat(new Uint8Array([1]), fromHex(held.t), fromHex(held.root), fromHex(held.mesh)),
  );
}

function snpEvidence(evidence: CoordinatorEvidence): SnpEvidence {
  if (evidence.type !== "amd-sev-snp") throw new Error(`expected SEV-SNP evidence, got ${evidence.type}`);
  const out: SnpEvidence = { report: fromBase64(evidence.report) };
  if (evidence.certificates !== undefined) {
    out.certificates = Object.fromEntries(Object.entries(evidence.certificates).map(([k, v]) => [k, fromBase64(v)]));
  }
  if (evidence.certTable !== undefined) out.certTable = fromBase64(evidence.certTable);
  return out;
}

/** What a client checks: the evidence verifies to the pinned ARK, and REPORT_DATA binds every claimed field and its own nonce. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function clientAccepts(answer: any, nonceHex: string): Promise<boolean> {
  const verified = await verifySnpReport(snpEvidence(answer.evidence), { trustAnchors: [amd.anchor], now: new Date() });
  const held = answer.latestTransition === null ? null : { t: answer.latestTransition, root: answer.rootCA, mesh: answer.meshCA };
  const input = layout(fromHex(nonceHex), fromBase64(answer.hpkePublicKey), answer.name, held);
  const expected = new Uint8Array(await crypto.subtle.digest("SHA-512", input as BufferSource));
  return bytesEqual(verified.report.reportData, expected);
}

async function appOf(f: Fixture, attestation: SelfAttestation | null = self) {
  return createApp({ coordinator: f.coordinator, ...(attestation === null ? {} : { selfAttestation: attestation }) });
}

describe("GET /v1/attestation", () => {
  const fixtures = new Map<FixtureState, Fixture>();
  beforeAll(async () => {
    for (const state of ["uninitialized", "ready", "recovery-required", "stale"] as const) fixtures.set(state, await fixture(state, owners));
  }, 120_000);

  it.each(["uninitialized", "recovery-required"] as const)("in state %s: evidence with no state bound verifies", async (state) => {
    const f = fixtures.get(state)!;
    const app = await appOf(f);
    const before = await snapshot(f.app, f.store);
    const a = await get(app, `/v1/attestation?nonce=${nonce(1)}`);
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({
      format: "contrast-coordinator-evidence/v1",
      name: coordinatorName,
      state,
      latestTransition: null,
      rootCA: null,
      meshCA: null,
      hpkePublicKey: Buffer.from(self.hpke.publicKey).toString("base64"),
    });
    const verified = await verifySnpReport(snpEvidence(a.json.evidence), { trustAnchors: [amd.anchor], now: new Date() });
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-512", layout(fromHex(nonce(1)), self.hpke.publicKey, coordinatorName, null) as BufferSource));
    expect(toHex(verified.report.reportData)).toBe(toHex(expected));
    expect(await snapshot(f.app, f.store)).toEqual(before);
  });

  it("in state ready: the latest transition and the SHA-256 of the root and mesh CA certificates are bound", async () => {
    const f = fixtures.get("ready")!;
    const app = await appOf(f);
    const manifests = await get(app, "/v1/manifests");
    const before = await snapshot(f.app, f.store);
    const a = await get(app, `/v1/attestation?nonce=${nonce(2)}`);
    expect(a.status).toBe(200);
    const held = {
      t: f.transition!,
      root: toHex(await sha256(certificateDerOf(manifests.json.rootCA))),
      mesh: toHex(await sha256(certificateDerOf(manifests.json.meshCA))),
    };
    expect(a.json).toMatchObject({ state: "ready", name: coordinatorName, latestTransition: held.t, rootCA: held.root, meshCA: held.mesh });
    const verified = await verifySnpReport(snpEvidence(a.json.evidence), { trustAnchors: [amd.anchor], now: new Date() });
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-512", layout(fromHex(nonce(2)), self.hpke.publicKey, coordinatorName, held) as BufferSource));
    expect(toHex(verified.report.reportData)).toBe(toHex(expected));
    expect(await clientAccepts(a.json, nonce(2))).toBe(true);
    expect(await snapshot(f.app, f.store)).toEqual(before);
  });

  it("in state stale: the state it holds is bound (its transition and mesh CA), not the newer one in the store", async () => {
    const f = fixtures.get("stale")!;
    const a = await get(await appOf(f), `/v1/attestation?nonce=${nonce(2)}`);
    expect(a.status).toBe(200);
    const peer = (await get(f.peer!.app, "/v1/manifests")).json;
    expect(a.json).toMatchObject({ state: "stale", latestTransition: f.transition, rootCA: toHex(await sha256(certificateDerOf(peer.rootCA))) });
    expect(a.json.latestTransition).not.toBe(f.peer!.transition);
    expect(a.json.meshCA).not.toBe(toHex(await sha256(certificateDerOf(peer.meshCA))));
    expect(await clientAccepts(a.json, nonce(2))).toBe(true);
  });

  it("the layout module computes the same REPORT_DATA as the documented layout", async () => {
    const pk = new Uint8Array(65).fill(4);
    const held = { latestTransition: "ab".repeat(32), rootCA: "cd".repeat(32), meshCA: "ef".repeat(32) };
    const ours = await coordinatorReportData({ nonce: fromHex(nonce(3)), hpkePublicKey: pk, name: "c-1", state: held });
    const doc = layout(fromHex(nonce(3)), pk, "c-1", { t: held.latestTransition, root: held.rootCA, mesh: held.meshCA });
    expect(toHex(ours)).toBe(toHex(new Uint8Array(await crypto.subtle.digest("SHA-512", doc as BufferSource))));
  });

  it("an answer with any bound field changed, or for another nonce, is refused by the client check", async () => {
    const f = fixtures.get("ready")!;
    const a = await get(await appOf(f), `/v1/attestation?nonce=${nonce(4)}`);
    expect(await clientAccepts(a.json, nonce(4))).toBe(true);
    const other = (await SelfAttestation.create(source)).hpke.publicKey;
    const tampered = [
      { ...a.json, hpkePublicKey: Buffer.from(other).toString("base64") },
      { ...a.json, name: "other" },
      { ...a.json, latestTransition: "00".repeat(32) },
      { ...a.json, rootCA: "00".repeat(32) },
      { ...a.json, meshCA: "00".repeat(32) },
      { ...a.json, latestTransition: null, rootCA: null, meshCA: null },
    ];
    for (const t of tampered) expect(await clientAccepts(t, nonce(4))).toBe(false);
    expect(await clientAccepts(a.json, nonce(5))).toBe(false);
  });

  it("a message sealed with @hpke/core to the served public key opens with the Coordinator's key, and only with the right info", async () => {
    const a = await get(await appOf(fixtures.get("uninitialized")!), `/v1/attestation?nonce=${nonce(6)}`);
    const suite = new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
    const recipientPublicKey = await suite.kem.deserializePublicKey(fromBase64(a.json.hpkePublicKey));
    const info = utf8("contrast seed share v1");
    const secret = utf8("a seed share");
    const { enc, ct } = await suite.seal({ recipientPublicKey, info }, secret);
    expect(await self.hpke.open(new Uint8Array(enc), new Uint8Array(ct), info)).toEqual(secret);
    await expect(self.hpke.open(new Uint8Array(enc), new Uint8Array(ct), utf8("another purpose"))).rejects.toMatchObject({ code: "INVALID_REQUEST" });
    const stranger = await SelfAttestation.create(null);
    await expect(stranger.hpke.open(new Uint8Array(enc), new Uint8Array(ct), info)).rejects.toMatchObject({ code: "INVALID_REQUEST" });
  });

  it("a missing or malformed nonce is 400 INVALID_REQUEST", async () => {
    const app = await appOf(fixtures.get("ready")!);
    for (const query of ["", "?nonce=", `?nonce=${nonce(1).slice(2)}`, `?nonce=${nonce(1)}00`, `?nonce=${"zz".repeat(32)}`, `?other=${nonce(1)}`]) {
      const a = await get(app, `/v1/attestation${query}`);
      expect(a.status, query).toBe(400);
      expect(a.json.error.code, query).toBe("INVALID_REQUEST");
    }
  });

  it("without an evidence source: 404 EVIDENCE_UNAVAILABLE in every state; POST is 405", async () => {
    for (const f of fixtures.values()) {
      const a = await get(await appOf(f, null), `/v1/attestation?nonce=${nonce(1)}`);
      expect(a.status).toBe(404);
      expect(a.json.error.code).toBe("EVIDENCE_UNAVAILABLE");
      const b = await get(await appOf(f, await SelfAttestation.create(null)), `/v1/attestation?nonce=${nonce(1)}`);
      expect(b.json.error.code).toBe("EVIDENCE_UNAVAILABLE");
    }
    const post = await (await appOf(fixtures.get("ready")!)).request("/v1/attestation", { method: "POST" });
    expect(post.status).toBe(405);
  });

  it("at most 8 evidence requests in flight: the 9th is 503 BUSY with Retry-After, the others complete, and then it serves again", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const slow = await SelfAttestation.create({
      kind: "test",
      insecure: true,
      async evidence(reportData) {
        calls++;
        await gate;
        return source.evidence(reportData);
      },
    });
    const app = await appOf(fixtures.get("ready")!, slow);
    const pending = Array.from({ length: 8 }, (_, i) => get(app, `/v1/attestation?nonce=${nonce(10 + i)}`));
    while (calls < 8) await new Promise((r) => setTimeout(r, 5));
    const busy = await get(app, `/v1/attestation?nonce=${nonce(20)}`);
    expect(busy.status).toBe(503);
    expect(busy.json.error.code).toBe("BUSY");
    expect(busy.headers.get("retry-after")).toBe("2");
    expect(calls).toBe(8);
    release();
    for (const p of await Promise.all(pending)) expect(p.status).toBe(200);
    expect((await get(app, `/v1/attestation?nonce=${nonce(21)}`)).status).toBe(200);
  });

  describe("with the configfs-tsm source over a fake tree whose TEE is the simulated AMD", () => {
    let tree: ReturnType<typeof fakeTsm>;
    afterAll(() => tree?.remove());

    it("the report and the auxblob certificate table verify, and REPORT_DATA binds the state", async () => {
      const vcek = await amd.issueEndorsement("vcek", { tcb: simulatedTcb });
      tree = fakeTsm({
        provider: "sev_guest\n",
        tee: async (inblob) => {
          const e = await amd.attest({ reportData: inblob }, vcek);
          return {
            outblob: e.report,
            auxblob: certTable([
              [certTableGuids.vcek, vcek.certificate],
              [certTableGuids.ask, amd.ask.certificate],
              [certTableGuids.ark, amd.ark.certificate],
            ]),
          };
        },
      });
      const tsm = await SelfAttestation.create(tsmEvidenceSource({ path: tree.dir, fs: tree.fs }));
      const a = await get(await appOf(fixtures.get("ready")!, tsm), `/v1/attestation?nonce=${nonce(7)}`);
      expect(a.status).toBe(200);
      expect(a.json.evidence.certTable).toBeDefined();
      expect(a.json.evidence.certificates).toBeUndefined();
      expect(await clientAccepts(a.json, nonce(7))).toBe(true);
      expect(a.json.hpkePublicKey).toBe(Buffer.from(tsm.hpke.publicKey).toString("base64"));
      expect(tree.left()).toEqual([]);
    });
  });
});

describe("choosing the evidence source", () => {
  it("Node: --evidence none|tsm|simulated (CONTRAST_EVIDENCE, default none) and --tsm-path; anything else is a configuration error", () => {
    expect(parseConfig([], {})).toMatchObject({ evidence: "none", tsmPath: "/sys/kernel/config/tsm/report" });
    expect(parseConfig(["--evidence", "tsm", "--tsm-path", "/tmp/tsm"], {})).toMatchObject({ evidence: "tsm", tsmPath: "/tmp/tsm" });
    expect(parseConfig([], { CONTRAST_EVIDENCE: "simulated", CONTRAST_TSM_PATH: "/x" })).toMatchObject({ evidence: "simulated", tsmPath: "/x" });
    expect(parseConfig(["--evidence", "none"], { CONTRAST_EVIDENCE: "simulated" })).toMatchObject({ evidence: "none" });
    for (const bad of ["insecure-simulated", "sev-snp", ""]) expect(() => parseConfig(["--evidence", bad], {})).toThrow(/^--evidence /);
  });

  it("Worker: EVIDENCE none (default) or simulated; tsm cannot exist there", () => {
    expect(parseWorkerConfig({}).evidence).toBe("none");
    expect(parseWorkerConfig({ EVIDENCE: "simulated" }).evidence).toBe("simulated");
    for (const bad of ["tsm", "insecure-simulated", 1]) expect(() => parseWorkerConfig({ EVIDENCE: bad })).toThrow(WorkerConfigError);
  });
});
