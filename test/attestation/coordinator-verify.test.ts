// The client's check of a Coordinator's own evidence: genuine answers of a real Coordinator pass, and each attack (another measurement, a workload's policy, a swapped key, name or state, a replayed nonce, an unpinned root, garbage) is refused with its reason; and reading the reference values.
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { coordinatorReportData, simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import type { CoordinatorEvidence, HeldState, SimulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { coordinatorReferenceFrom, coordinatorReferenceOrNull, verifyCoordinatorEvidence } from "../../src/attestation/coordinator-verify.js";
import type { CoordinatorReference } from "../../src/attestation/coordinator-verify.js";
import { parseAttestationRoots } from "../../src/attestation/modes.js";
import type { AttestationRoots } from "../../src/attestation/modes.js";
import { createSimulatedAmd, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import type { SimulatedAmd, SimulatedEndorsement, SimulatedReportFields } from "../../src/attestation/snp/simulated.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import type { SimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { ClientError, CoordinatorClient } from "../../src/client/client.js";
import { certificateDerOf } from "../../src/client/verify.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import type { AttestationAnswer } from "../../src/coordinator/self-attestation.js";
import { sha256 } from "../../src/crypto/provider.js";
import { fromBase64, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { CoordinatorError } from "../../src/errors.js";
import { coordinatorName, fixture, makeOwners } from "../api/fixture.js";
import type { Fixture, Owners } from "../api/fixture.js";
import { manifestBytes } from "../helpers.js";

/** The simulated source's MEASUREMENT and HOST_DATA are all zeros: the genuine Coordinator's measurement and policy hash here. */
const coordinatorMeasurement = "00".repeat(48);
const coordinatorPolicy = "00".repeat(32);
/** A workload's policy in the same manifest: attested evidence of it must not pass as the Coordinator. */
const workloadPolicy = "3c".repeat(32);

const snpValues = {
  ProductName: "Milan" as const,
  TrustedMeasurement: coordinatorMeasurement,
  MinimumTCB: { BootloaderVersion: 4, TEEVersion: 0, SNPVersion: 24, MicrocodeVersion: 219 },
  GuestPolicy: { ABIMinor: 0, ABIMajor: 0, SMT: true, Debug: false },
};
/** The simulated TDX platform's default TD report fields. */
const tdxValues = {
  MrTd: "7d".repeat(48),
  MrSeam: "5e".repeat(48),
  Rtmrs: ["a0".repeat(48), "a1".repeat(48), "00".repeat(48), "00".repeat(48)] as [string, string, string, string],
  Xfam: "e742060000000000",
};
/** A second measurement the reference values also allow (a previous release, say). */
const olderMeasurement = "7b".repeat(48);

let owners: Owners;
let amd: SimulatedAmd;
let vcek: SimulatedEndorsement;
let tdx: SimulatedTdxPlatform;
let otherTdx: SimulatedTdxPlatform;
let source: SimulatedEvidenceSource;
let self: SelfAttestation;
let roots: AttestationRoots;
let reference: CoordinatorReference;
const fixtures: { uninitialized?: Fixture; ready?: Fixture } = {};

/** The manifest the workload owner sets: a workload and the Coordinator's own policy, and both platforms' reference values. */
function manifestWithCoordinator(): Uint8Array {
  const base = JSON.parse(
    new TextDecoder().decode(manifestBytes({ policies: [{ hash: workloadPolicy, name: "web" }], workloadOwners: [owners.workload.digest], seedShareOwners: [owners.seed.publicHex] })),
  ) as Record<string, unknown> & { Policies: Record<string, unknown> };
  base.Policies[coordinatorPolicy] = { SANs: ["coordinator"], WorkloadSecretID: "coordinator", Role: "coordinator" };
  base.ReferenceValues = { snp: [snpValues, { ...snpValues, TrustedMeasurement: olderMeasurement }], tdx: [tdxValues] };
  return utf8(JSON.stringify(base, null, 2));
}

beforeAll(async () => {
  [owners, amd, tdx, otherTdx] = await Promise.all([
    makeOwners(),
    createSimulatedAmd({ product: "Milan", asvk: false }),
    createSimulatedTdxPlatform(),
    createSimulatedTdxPlatform(),
  ]);
  vcek = await amd.issueEndorsement("vcek", { tcb: simulatedTcb });
  source = simulatedEvidenceSource({ amd });
  self = await SelfAttestation.create(source);
  // Pinned as the CLI pins them: one PEM bundle (--attestation-roots) with the test TEEs' ARK, ASK and TDX root.
  const pem = (der: Uint8Array) => x509.PemConverter.encode(der.slice().buffer, "CERTIFICATE");
  roots = parseAttestationRoots([pem(amd.ark.certificate), pem(amd.ask.certificate), tdx.rootPem].join("\n"));
  reference = coordinatorReferenceFrom(manifestWithCoordinator(), "manifest.json");
  fixtures.uninitialized = await fixture("uninitialized", owners);
  fixtures.ready = await fixture("ready", owners);
}, 180_000);

const nonceOf = (fill: number) => new Uint8Array(32).fill(fill);

/** A client of the fixture's Coordinator with this test's evidence source. */
function clientOf(f: Fixture, attestation: SelfAttestation | null = self): CoordinatorClient {
  const app = createApp({ coordinator: f.coordinator, ...(attestation === null ? {} : { selfAttestation: attestation }) });
  return new CoordinatorClient({ baseUrl: "http://coordinator.test", fetch: (input, init) => Promise.resolve(app.fetch(new Request(input, init))) });
}

/** A genuine answer of the fixture's Coordinator for `nonce`, over its HTTP API. */
async function genuine(f: Fixture, nonce: Uint8Array): Promise<AttestationAnswer> {
  return (await clientOf(f).attestation(toHex(nonce))) as AttestationAnswer;
}

/** An answer made as SelfAttestation.make makes it, but with chosen report fields (an impostor or another VM on the same platform). */
async function made(o: { nonce: Uint8Array; name?: string; held?: HeldState | null; key?: Uint8Array; fields?: SimulatedReportFields }): Promise<AttestationAnswer> {
  const key = o.key ?? self.hpke.publicKey;
  const name = o.name ?? coordinatorName;
  const held = o.held ?? null;
  const reportData = await coordinatorReportData({ nonce: o.nonce, hpkePublicKey: key, name, state: held });
  const e = await amd.attest({ ...o.fields, reportData }, vcek);
  const certificates: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.certificates ?? {})) if (v instanceof Uint8Array) certificates[k] = toBase64(v);
  return answerWith({ type: "amd-sev-snp", report: toBase64(e.report), certificates }, name, held, key);
}

/** A TDX answer from a test TEE, MRCONFIGID = policy ‖ 16 zero bytes. */
async function madeTdx(o: { nonce: Uint8Array; policy?: string; body?: Record<string, string>; platform?: SimulatedTdxPlatform }): Promise<AttestationAnswer> {
  const reportData = await coordinatorReportData({ nonce: o.nonce, hpkePublicKey: self.hpke.publicKey, name: coordinatorName, state: null });
  const quote = await (o.platform ?? tdx).quote({ reportData, body: { mrconfigid: (o.policy ?? coordinatorPolicy) + "00".repeat(16), ...o.body } });
  return answerWith({ type: "intel-tdx", quote: toBase64(quote) }, coordinatorName, null, self.hpke.publicKey);
}

function answerWith(evidence: CoordinatorEvidence, name: string, held: HeldState | null, key: Uint8Array): AttestationAnswer {
  return {
    format: "contrast-coordinator-evidence/v1",
    name,
    state: held === null ? "uninitialized" : "ready",
    latestTransition: held?.latestTransition ?? null,
    rootCA: held?.rootCA ?? null,
    meshCA: held?.meshCA ?? null,
    hpkePublicKey: toBase64(key),
    evidence,
  };
}

interface Refusal {
  code: string;
  reason: string | undefined;
  message: string;
}

/** "accepted", or the refusal's code, reason and message. */
async function outcome(answer: unknown, nonce: Uint8Array, opts: { ref?: CoordinatorReference; roots?: AttestationRoots | null } = {}): Promise<"accepted" | Refusal> {
  try {
    await verifyCoordinatorEvidence(answer, {
      nonce,
      reference: opts.ref ?? reference,
      ...(opts.roots === null ? {} : { roots: opts.roots ?? roots }),
      now: new Date(),
    });
    return "accepted";
  } catch (err) {
    if (!(err instanceof CoordinatorError)) throw err;
    return { code: err.code, reason: err.reason, message: err.message };
  }
}

async function reasonOf(answer: unknown, nonce: Uint8Array, opts: { ref?: CoordinatorReference; roots?: AttestationRoots | null } = {}): Promise<string> {
  const r = await outcome(answer, nonce, opts);
  if (r === "accepted") return r;
  expect(r.code).toBe("ATTESTATION_FAILED");
  return r.reason ?? "(no reason)";
}

describe("verifyCoordinatorEvidence: genuine evidence", () => {
  it("an uninitialized Coordinator's answer passes and binds no state", async () => {
    const nonce = nonceOf(1);
    const answer = await genuine(fixtures.uninitialized!, nonce);
    const v = await verifyCoordinatorEvidence(answer, { nonce, reference, roots, now: new Date() });
    expect(v).toEqual({ name: coordinatorName, state: null, hpkePublicKey: self.hpke.publicKey, platform: "amd-sev-snp", policyHash: coordinatorPolicy });
  });

  it("a ready Coordinator's answer passes and binds the state it holds (its transition, root CA and mesh CA)", async () => {
    const f = fixtures.ready!;
    const nonce = nonceOf(2);
    const answer = await genuine(f, nonce);
    const history = await clientOf(f).history();
    const v = await verifyCoordinatorEvidence(answer, { nonce, reference, roots, now: new Date() });
    expect(v.state).toEqual({
      latestTransition: f.transition,
      rootCA: toHex(await sha256(certificateDerOf(history.rootCA))),
      meshCA: toHex(await sha256(certificateDerOf(history.meshCA))),
    });
    expect(v).toMatchObject({ name: coordinatorName, platform: "amd-sev-snp", policyHash: coordinatorPolicy });
    expect(toHex(v.hpkePublicKey)).toBe(toHex(self.hpke.publicKey));
  });

  it("a TDX Coordinator's answer passes (the test TEE's root pinned)", async () => {
    const nonce = nonceOf(3);
    const v = await verifyCoordinatorEvidence(await madeTdx({ nonce }), { nonce, reference, roots, now: new Date() });
    expect(v).toMatchObject({ name: coordinatorName, state: null, platform: "intel-tdx", policyHash: coordinatorPolicy });
  });

  it("a Coordinator with an older measurement the reference values still list passes", async () => {
    const nonce = nonceOf(4);
    expect(await outcome(await made({ nonce, fields: { measurement: new Uint8Array(48).fill(0x7b) } }), nonce)).toBe("accepted");
  });

  it("the client's attestation() fails with EVIDENCE_UNAVAILABLE at a Coordinator without an evidence source", async () => {
    const err = await clientOf(fixtures.uninitialized!, null)
      .attestation(toHex(nonceOf(5)))
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe("EVIDENCE_UNAVAILABLE");
  });
});

describe("verifyCoordinatorEvidence: attacks", () => {
  it("an impostor with another measurement is refused with the SNP verifier's reason, and the message shows found and expected", async () => {
    const nonce = nonceOf(10);
    const r = await outcome(await made({ nonce, fields: { measurement: new Uint8Array(48).fill(0x5a) } }), nonce);
    expect(r).not.toBe("accepted");
    const refusal = r as Refusal;
    expect([refusal.code, refusal.reason]).toEqual(["ATTESTATION_FAILED", "SNP_MEASUREMENT_MISMATCH"]);
    expect(refusal.message).toContain("5a".repeat(48));
    expect(refusal.message).toContain(coordinatorMeasurement);
    expect(refusal.message).toContain(olderMeasurement);
  });

  it("an attested workload (HOST_DATA: a policy without Role coordinator) is refused: COORDINATOR_POLICY_MISMATCH", async () => {
    const nonce = nonceOf(11);
    const r = (await outcome(await made({ nonce, fields: { hostData: new Uint8Array(32).fill(0x3c) } }), nonce)) as Refusal;
    expect(r.reason).toBe("COORDINATOR_POLICY_MISMATCH");
    expect(r.message).toContain(`HOST_DATA ${workloadPolicy}`);
    expect(r.message).toContain(coordinatorPolicy);
    // On TDX, MRCONFIGID carries it.
    expect(await reasonOf(await madeTdx({ nonce, policy: workloadPolicy }), nonce)).toBe("COORDINATOR_POLICY_MISMATCH");
  });

  it("a genuine answer with its HPKE key, name, latest transition, root CA or mesh CA swapped is refused: COORDINATOR_REPORT_DATA_MISMATCH", async () => {
    const nonce = nonceOf(12);
    const answer = await genuine(fixtures.ready!, nonce);
    expect(await outcome(answer, nonce)).toBe("accepted");
    const attacker = (await SelfAttestation.create(source)).hpke.publicKey;
    const tampered: unknown[] = [
      { ...answer, hpkePublicKey: toBase64(attacker) },
      { ...answer, name: "other-coordinator" },
      { ...answer, latestTransition: "ab".repeat(32) },
      { ...answer, rootCA: "cd".repeat(32) },
      { ...answer, meshCA: "ef".repeat(32) },
      // A state claimed that is not held: the ready evidence shown as uninitialized.
      { ...answer, state: "uninitialized", latestTransition: null, rootCA: null, meshCA: null },
    ];
    for (const t of tampered) expect(await reasonOf(t, nonce)).toBe("COORDINATOR_REPORT_DATA_MISMATCH");
    // And an uninitialized Coordinator's evidence dressed up with a held state.
    const fresh = await genuine(fixtures.uninitialized!, nonce);
    const dressed = { ...fresh, state: "ready", latestTransition: answer.latestTransition, rootCA: answer.rootCA, meshCA: answer.meshCA };
    expect(await reasonOf(dressed, nonce)).toBe("COORDINATOR_REPORT_DATA_MISMATCH");
  });

  it("evidence made for another nonce (stale or replayed) is refused: COORDINATOR_REPORT_DATA_MISMATCH, found and expected shown", async () => {
    const old = await genuine(fixtures.ready!, nonceOf(13));
    const r = (await outcome(old, nonceOf(14))) as Refusal;
    expect(r.reason).toBe("COORDINATOR_REPORT_DATA_MISMATCH");
    const report = fromBase64((old.evidence as { report: string }).report);
    expect(r.message).toContain(toHex(report.subarray(0x50, 0x90)));
    const held = { latestTransition: old.latestTransition!, rootCA: old.rootCA!, meshCA: old.meshCA! };
    const expected = await coordinatorReportData({ nonce: nonceOf(14), hpkePublicKey: fromBase64(old.hpkePublicKey), name: old.name, state: held });
    expect(r.message).toContain(toHex(expected));
    expect(await reasonOf(await madeTdx({ nonce: nonceOf(13) }), nonceOf(14))).toBe("COORDINATOR_REPORT_DATA_MISMATCH");
  });

  it("evidence that does not chain to the pinned roots is refused with the verifier's chain code", async () => {
    const nonce = nonceOf(15);
    const answer = await genuine(fixtures.uninitialized!, nonce);
    // AMD's own ARKs pinned (no --attestation-roots), or a bundle with only a TDX root: the test TEE's ARK is not AMD's.
    expect(await reasonOf(answer, nonce, { roots: null })).toBe("SNP_ARK_NOT_PINNED");
    expect(await reasonOf(answer, nonce, { roots: { snp: [], tdx: tdx.rootPem } })).toBe("SNP_ARK_NOT_PINNED");
    // A quote from another TEE than the pinned one, and the test TEE's quote against Intel's root.
    expect(await reasonOf(await madeTdx({ nonce, platform: otherTdx }), nonce)).toBe("TDX_ROOT_NOT_PINNED");
    expect(await reasonOf(await madeTdx({ nonce }), nonce, { roots: null })).toBe("TDX_ROOT_NOT_PINNED");
  });

  it("a debuggable guest, a TCB below the minimum, or a TD with another MRTD are refused with the verifiers' reasons", async () => {
    const nonce = nonceOf(16);
    expect(await reasonOf(await made({ nonce, fields: { policy: 0x30000n | (1n << 19n) } }), nonce)).toBe("SNP_DEBUG_ENABLED");
    const higher = { ...snpValues, MinimumTCB: { ...snpValues.MinimumTCB, SNPVersion: 25 } };
    const r = (await outcome(await made({ nonce }), nonce, { ref: { ...reference, referenceValues: { snp: [higher] } } })) as Refusal;
    expect(r.reason).toBe("SNP_TCB_TOO_LOW");
    expect(r.message).toContain("snp 24");
    expect(r.message).toContain("snp 25");
    const t = (await outcome(await madeTdx({ nonce, body: { mrtd: "01".repeat(48) } }), nonce)) as Refusal;
    expect(t.reason).toBe("TDX_MRTD_MISMATCH");
    expect(t.message).toContain("01".repeat(48));
    expect(t.message).toContain(tdxValues.MrTd);
  });

  it("evidence of a platform the reference values do not list is refused", async () => {
    const nonce = nonceOf(17);
    const snpOnly = { ...reference, referenceValues: { snp: [snpValues] } };
    const tdxOnly = { ...reference, referenceValues: { tdx: [tdxValues] } };
    expect(await reasonOf(await madeTdx({ nonce }), nonce, { ref: snpOnly })).toBe("TDX_NO_REFERENCE_VALUES");
    expect(await reasonOf(await made({ nonce }), nonce, { ref: tdxOnly })).toBe("SNP_NO_REFERENCE_VALUES");
  });

  it("garbage answers are refused: COORDINATOR_EVIDENCE_INVALID", async () => {
    const nonce = nonceOf(18);
    const g = await genuine(fixtures.uninitialized!, nonce);
    const ready = await genuine(fixtures.ready!, nonce);
    const evidence = { ...g.evidence } as Record<string, unknown>;
    const garbage: [string, unknown][] = [
      ["null", null],
      ["a number", 42],
      ["a string", "evidence"],
      ["an array", [g]],
      ["an empty object", {}],
      ["another format", { ...g, format: "contrast-coordinator-evidence/v2" }],
      ["no format", { ...g, format: undefined }],
      ["no evidence", { ...g, evidence: undefined }],
      ["simulated workload evidence", { ...g, evidence: { type: "insecure-simulated", policyHash: coordinatorPolicy } }],
      ["an unknown evidence type", { ...g, evidence: { ...evidence, type: "arm-cca" } }],
      ["a report that is not base64", { ...g, evidence: { ...evidence, report: "not base64!" } }],
      ["a report in non-canonical base64", { ...g, evidence: { ...evidence, report: "abc" } }],
      ["a certificate that is not base64", { ...g, evidence: { ...evidence, certificates: { vcek: "abc" } } }],
      ["an unknown evidence field", { ...g, evidence: { ...evidence, nonce: toHex(nonce) } }],
      ["a TDX quote that is not base64", { ...g, evidence: { type: "intel-tdx", quote: "%%%" } }],
      ["a 33-byte HPKE key", { ...g, hpkePublicKey: toBase64(new Uint8Array(33).fill(2)) }],
      ["a compressed HPKE key", { ...g, hpkePublicKey: toBase64(new Uint8Array(65).fill(3)) }],
      ["an HPKE key that is not base64", { ...g, hpkePublicKey: "key" }],
      ["an empty name", { ...g, name: "" }],
      ["a name that is not a string", { ...g, name: 7 }],
      ["an unknown state", { ...g, state: "sleeping" }],
      ["state ready with no state bound", { ...g, state: "ready" }],
      ["state stale with no state bound", { ...g, state: "stale" }],
      ["state uninitialized with a state bound", { ...ready, state: "uninitialized" }],
      ["half a held state", { ...g, state: "ready", latestTransition: ready.latestTransition }],
      ["an upper-case root CA hash", { ...ready, rootCA: ready.rootCA!.toUpperCase() }],
    ];
    for (const [what, answer] of garbage) {
      const r = await outcome(answer, nonce);
      expect(r === "accepted" ? "accepted" : [r.code, r.reason], what).toEqual(["ATTESTATION_FAILED", "COORDINATOR_EVIDENCE_INVALID"]);
    }
    // Well-formed base64 that is no report: the SNP verifier's own reason.
    expect(await reasonOf({ ...g, evidence: { ...evidence, report: toBase64(new Uint8Array(100)) } }, nonce)).toBe("SNP_REPORT_MALFORMED");
  });
});

describe("coordinatorReferenceFrom", () => {
  it("reads a whole manifest: only the policies with Role coordinator, and the reference values", () => {
    const r = coordinatorReferenceFrom(manifestWithCoordinator(), "manifest.json");
    expect(r.policyHashes).toEqual([coordinatorPolicy]);
    expect(r.source).toBe("manifest.json");
    expect(r.referenceValues.snp?.map((v) => v.TrustedMeasurement)).toEqual([coordinatorMeasurement, olderMeasurement]);
    expect(r.referenceValues.tdx?.map((v) => v.MrTd)).toEqual([tdxValues.MrTd]);
    expect(coordinatorReferenceOrNull(manifestWithCoordinator(), "manifest.json")).toEqual(r);
  });

  it("reads a trimmed file with just Policies and ReferenceValues, ignoring other fields", () => {
    const policy = "AB".repeat(32);
    const file = { Policies: { [policy]: { Role: "coordinator" }, [workloadPolicy]: {} }, ReferenceValues: { tdx: [tdxValues] }, Comment: "release 1.2" };
    const r = coordinatorReferenceFrom(utf8(JSON.stringify(file)), "ref.json");
    expect(r).toEqual({ policyHashes: ["ab".repeat(32)], referenceValues: { tdx: [tdxValues] }, source: "ref.json" });
    // Several coordinator policies (two releases) are all allowed.
    const two = { Policies: { [policy]: { Role: "coordinator" }, [coordinatorPolicy]: { Role: "coordinator" } }, ReferenceValues: {} };
    expect(coordinatorReferenceFrom(utf8(JSON.stringify(two)), "ref.json").policyHashes).toEqual([coordinatorPolicy, "ab".repeat(32)]);
  });

  it("without a policy with Role coordinator: COORDINATOR_POLICY_MISSING, or null from coordinatorReferenceOrNull", () => {
    const plain = manifestBytes({ policies: [{ hash: workloadPolicy, name: "web" }], workloadOwners: [], seedShareOwners: ["00"] });
    const code = (run: () => unknown) => {
      try {
        run();
        return "returned";
      } catch (err) {
        return err instanceof CoordinatorError ? err.code : String(err);
      }
    };
    expect(code(() => coordinatorReferenceFrom(plain, "manifest.json"))).toBe("COORDINATOR_POLICY_MISSING");
    expect(coordinatorReferenceOrNull(plain, "manifest.json")).toBeNull();
    const emptyRole = utf8(JSON.stringify({ Policies: { [workloadPolicy]: { Role: "" } }, ReferenceValues: {} }));
    expect(code(() => coordinatorReferenceFrom(emptyRole, "ref.json"))).toBe("COORDINATOR_POLICY_MISSING");
  });

  it("bad JSON or a bad shape: INVALID_REFERENCE_VALUES, from both functions", () => {
    const bad: [string, Uint8Array][] = [
      ["not JSON", utf8("{ Policies: ")],
      ["not UTF-8", new Uint8Array([0x7b, 0xff, 0x7d])],
      ["an array", utf8("[]")],
      ["null", utf8("null")],
      ["no Policies", utf8(JSON.stringify({ ReferenceValues: {} }))],
      ["a policy key that is no hash", utf8(JSON.stringify({ Policies: { coordinator: { Role: "coordinator" } }, ReferenceValues: {} }))],
      ["a Role that is not a string", utf8(JSON.stringify({ Policies: { [coordinatorPolicy]: { Role: 1 } }, ReferenceValues: {} }))],
      ["a short measurement", utf8(JSON.stringify({ Policies: { [coordinatorPolicy]: { Role: "coordinator" } }, ReferenceValues: { snp: [{ ...snpValues, TrustedMeasurement: "00" }] } }))],
      ["an unknown platform", utf8(JSON.stringify({ Policies: { [coordinatorPolicy]: { Role: "coordinator" } }, ReferenceValues: { cca: [] } }))],
    ];
    for (const [what, bytes] of bad) {
      for (const read of [coordinatorReferenceFrom, coordinatorReferenceOrNull]) {
        let code = "returned";
        try {
          read(bytes, "ref.json");
        } catch (err) {
          code = err instanceof CoordinatorError ? err.code : String(err);
        }
        expect(code, what).toBe("INVALID_REFERENCE_VALUES");
      }
    }
  });

  it("a file without ReferenceValues reads, and then admits no evidence", async () => {
    const r = coordinatorReferenceFrom(utf8(JSON.stringify({ Policies: { [coordinatorPolicy]: { Role: "coordinator" } } })), "ref.json");
    expect(r.referenceValues).toEqual({});
    const nonce = nonceOf(20);
    expect(await reasonOf(await genuine(fixtures.uninitialized!, nonce), nonce, { ref: r })).toBe("SNP_NO_REFERENCE_VALUES");
  });
});
