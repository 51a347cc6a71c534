// SEV-SNP reference values in Contrast's shape: the schema, each field's refusal with its own code, any-entry semantics, and the REPORT_DATA binding.
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { toHex } from "../../src/encoding.js";
import { amdTrustAnchors } from "../../src/attestation/snp/amd-roots.js";
import {
  checkReferenceValues,
  checkReferenceValuesEntry,
  parseSnpReferenceValues,
  snpReferenceValuesSchema,
} from "../../src/attestation/snp/reference-values.js";
import type { SnpReferenceValues } from "../../src/attestation/snp/reference-values.js";
import { createSimulatedAmd, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import type { SimulatedAmd, SimulatedEndorsement, SimulatedReportFields } from "../../src/attestation/snp/simulated.js";
import { expectedReportData } from "../../src/attestation/report-data.js";
import { verifySnpAttestation, verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpVerifiedReport } from "../../src/attestation/snp/verify.js";
import { expected, validTime, vectorEvidence } from "./snp-fixtures.js";

const now = new Date("2026-06-01T12:00:00Z");
let sim: SimulatedAmd;
let vcek: SimulatedEndorsement;

beforeAll(async () => {
  sim = await createSimulatedAmd({ product: "Milan", now, asvk: false });
  vcek = await sim.issueEndorsement("vcek", { tcb: simulatedTcb });
}, 180_000);

const measurement = new Uint8Array(48).fill(0xab);

/** A v5 report with SMT allowed and enabled, ECC on and the alias check done, and two mitigation bits. */
async function report(fields: SimulatedReportFields = {}): Promise<SnpVerifiedReport> {
  const evidence = await sim.attest(
    { version: 5, measurement, platformInfo: 0x25n, launchMitigationVector: 0b101n, currentMitigationVector: 0b111n, ...fields },
    vcek,
  );
  return verifySnpReport(evidence, { trustAnchors: [sim.anchor], now });
}

/** Reference values the default report meets, in Contrast's JSON shape. */
function values(overrides: Partial<SnpReferenceValues> = {}): SnpReferenceValues {
  return {
    ProductName: "Milan",
    TrustedMeasurement: toHex(measurement),
    MinimumTCB: { BootloaderVersion: 4, TEEVersion: 0, SNPVersion: 24, MicrocodeVersion: 219 },
    GuestPolicy: { ABIMinor: 0, ABIMajor: 0, SMT: true, MigrateMA: false, Debug: false, SingleSocket: false },
    PlatformInfo: { SMTEnabled: true, ECCEnabled: true, AliasCheckComplete: true },
    MinimumMitigationVector: 0b101,
    AllowedChipIDs: [],
    ...overrides,
  };
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

describe("checkReferenceValues", () => {
  let base: SnpVerifiedReport;
  beforeAll(async () => {
    base = await report();
  });

  it("a report that meets every field passes, as the first entry", () => {
    expect(checkReferenceValues(base, [values()])).toBe(0);
  });

  it("another product is refused", () => {
    expect(code(() => checkReferenceValuesEntry(base, values({ ProductName: "Genoa" })))).toBe("SNP_PRODUCT_NOT_ALLOWED");
  });

  it("another measurement is refused; the hex may be upper case", () => {
    expect(code(() => checkReferenceValuesEntry(base, values({ TrustedMeasurement: "ab".repeat(47) + "ac" })))).toBe("SNP_MEASUREMENT_MISMATCH");
    expect(code(() => checkReferenceValuesEntry(base, values({ TrustedMeasurement: "AB".repeat(48) })))).toBe("accepted");
  });

  it("a report requested above VMPL 0 is refused", async () => {
    expect(code(() => checkReferenceValuesEntry(base, values()))).toBe("accepted");
    const vmpl1 = await report({ vmpl: 1 });
    expect(code(() => checkReferenceValuesEntry(vmpl1, values()))).toBe("SNP_VMPL_MISMATCH");
  });

  it("a guest policy that allows debugging is refused", async () => {
    const debug = await report({ policy: 0x30000n | (1n << 19n) });
    expect(code(() => checkReferenceValuesEntry(debug, values()))).toBe("SNP_DEBUG_ENABLED");
    // Even values that slipped past the schema with Debug allowed do not let a debuggable guest in.
    expect(code(() => checkReferenceValuesEntry(debug, values({ GuestPolicy: { SMT: true, Debug: true } })))).toBe("SNP_DEBUG_ENABLED");
  });

  it.each([
    ["a migration agent", { policy: 0x30000n | (1n << 18n) }, {}],
    ["CXL", { policy: 0x30000n | (1n << 21n) }, {}],
    ["SMT where the values forbid it", {}, { SMT: false }],
    ["an ABI below the required one", {}, { ABIMinor: 31 }],
    ["no single-socket restriction where required", {}, { SingleSocket: true }],
    ["no AES-256-XTS where required", {}, { MemAES256XTS: true }],
    ["RAPL where it must be disabled", {}, { RAPLDis: true }],
    ["no ciphertext hiding where required", {}, { CipherTextHidingDRAM: true }],
    ["page swap where it must be disabled", {}, { PageSwapDisable: true }],
  ] as const)("a guest policy with %s is refused", async (_, fields, policy) => {
    const r = Object.keys(fields).length > 0 ? await report(fields) : base;
    expect(code(() => checkReferenceValuesEntry(r, values({ GuestPolicy: { ...values().GuestPolicy, ...policy } })))).toBe("SNP_POLICY_MISMATCH");
  });

  it("a guest policy that demands more than required passes (single socket, AES-256-XTS, RAPL off, ABI 0.31)", async () => {
    const strict = await report({ policy: 0x30000n | (1n << 20n) | (1n << 22n) | (1n << 23n) | 31n });
    expect(code(() => checkReferenceValuesEntry(strict, values({ GuestPolicy: { SMT: true, ABIMinor: 31, SingleSocket: true } })))).toBe("accepted");
  });

  it.each(["BootloaderVersion", "TEEVersion", "SNPVersion", "MicrocodeVersion"] as const)("a REPORTED_TCB below the minimum %s is refused", (part) => {
    const min = { ...values().MinimumTCB, [part]: values().MinimumTCB[part] + 1 };
    expect(code(() => checkReferenceValuesEntry(base, values({ MinimumTCB: min })))).toBe("SNP_TCB_TOO_LOW");
  });

  it("a LAUNCH_TCB below the minimum is refused even when REPORTED_TCB meets it", async () => {
    const launchedLow = await report({ launchTcb: { ...simulatedTcb, microcode: 200 } });
    expect(code(() => checkReferenceValuesEntry(launchedLow, values()))).toBe("SNP_LAUNCH_TCB_TOO_LOW");
  });

  it.each([
    ["SMT enabled where not allowed", 0x25n, { ECCEnabled: true }],
    ["TSME enabled where not allowed", 0x27n, { SMTEnabled: true }],
    ["no ECC where required", 0x21n, { SMTEnabled: true, ECCEnabled: true }],
    ["RAPL not disabled where required", 0x25n, { SMTEnabled: true, RAPLDisabled: true }],
    ["no ciphertext hiding where required", 0x25n, { SMTEnabled: true, CiphertextHidingDRAMEnabled: true }],
    ["no alias check where required", 0x05n, { SMTEnabled: true, AliasCheckComplete: true }],
  ] as const)("platform info with %s is refused", async (_, platformInfo, allowed) => {
    const r = platformInfo === 0x25n ? base : await report({ platformInfo });
    expect(code(() => checkReferenceValuesEntry(r, values({ PlatformInfo: allowed })))).toBe("SNP_PLATFORM_INFO_MISMATCH");
  });

  it("absent PlatformInfo is Go's zero value: SMT and TSME must be off", () => {
    const withoutPlatformInfo = values();
    delete withoutPlatformInfo.PlatformInfo;
    expect(code(() => checkReferenceValuesEntry(base, withoutPlatformInfo))).toBe("SNP_PLATFORM_INFO_MISMATCH");
  });

  it("CHIP_ID must be among AllowedChipIDs if there are any", () => {
    const chip = toHex(base.report.chipId);
    expect(code(() => checkReferenceValuesEntry(base, values({ AllowedChipIDs: ["00".repeat(64)] })))).toBe("SNP_CHIP_ID_NOT_ALLOWED");
    expect(code(() => checkReferenceValuesEntry(base, values({ AllowedChipIDs: ["00".repeat(64), chip.toUpperCase()] })))).toBe("accepted");
    expect(code(() => checkReferenceValuesEntry(base, values({ AllowedChipIDs: null })))).toBe("accepted");
  });

  it("the minimum mitigation vector's bits must be in both the launch and the current vector", async () => {
    expect(code(() => checkReferenceValuesEntry(base, values({ MinimumMitigationVector: 0b101 })))).toBe("accepted");
    expect(code(() => checkReferenceValuesEntry(base, values({ MinimumMitigationVector: 0b010 })))).toBe("SNP_MITIGATION_VECTOR_TOO_LOW");
    expect(code(() => checkReferenceValuesEntry(base, values({ MinimumMitigationVector: 0b1000 })))).toBe("SNP_MITIGATION_VECTOR_TOO_LOW");
    const v3 = await report({ version: 3 });
    expect(code(() => checkReferenceValuesEntry(v3, values({ MinimumMitigationVector: 1 })))).toBe("SNP_MITIGATION_VECTOR_TOO_LOW");
    expect(code(() => checkReferenceValuesEntry(v3, values({ MinimumMitigationVector: 0 })))).toBe("accepted");
  });

  it("evidence passes if it meets any one entry; otherwise the first refusal for its product is given", () => {
    const wrongMeasurement = values({ TrustedMeasurement: "00".repeat(48) });
    const wrongTcb = values({ MinimumTCB: { ...values().MinimumTCB, SNPVersion: 99 } });
    const genoa = values({ ProductName: "Genoa" });
    expect(checkReferenceValues(base, [genoa, wrongMeasurement, values()])).toBe(2);
    expect(code(() => checkReferenceValues(base, [genoa, wrongTcb, wrongMeasurement]))).toBe("SNP_TCB_TOO_LOW");
    expect(code(() => checkReferenceValues(base, [genoa]))).toBe("SNP_PRODUCT_NOT_ALLOWED");
    expect(code(() => checkReferenceValues(base, []))).toBe("SNP_NO_REFERENCE_VALUES");
  });
});

describe("real vectors against reference values made from their own fields", () => {
  function ownValues(name: string): SnpReferenceValues {
    const v = expected.vectors[`snp/${name}`]!;
    const tcb = v.fields.reported_tcb as { bl: number; tee: number; snp: number; ucode: number };
    return {
      ProductName: v.product === "genoa" ? "Genoa" : "Milan",
      TrustedMeasurement: v.fields.measurement as string,
      MinimumTCB: { BootloaderVersion: tcb.bl, TEEVersion: tcb.tee, SNPVersion: tcb.snp, MicrocodeVersion: tcb.ucode },
      GuestPolicy: { SMT: true, ABIMinor: 0 },
      PlatformInfo: { SMTEnabled: true, TSMEEnabled: true },
    };
  }
  async function verified(name: string): Promise<SnpVerifiedReport> {
    return verifySnpReport(vectorEvidence(name), { trustAnchors: amdTrustAnchors(), now: validTime(name) });
  }

  it.each(["milan-v2-virtee", "milan-v2-trustee", "milan-v3-ms", "genoa-v3-ms", "azure-milan-v2-hcl"])("%s meets its own values", async (name) => {
    expect(checkReferenceValues(await verified(name), [ownValues(name)])).toBe(0);
  });

  it("milan-v2-gsg allows debugging and is refused", async () => {
    const v = await verified("milan-v2-gsg");
    expect(code(() => checkReferenceValues(v, [ownValues("milan-v2-gsg")]))).toBe("SNP_DEBUG_ENABLED");
  });

  it("milan-v3-vlek-trustee was requested at VMPL 1 and is refused", async () => {
    const v = await verified("milan-v3-vlek-trustee");
    expect(code(() => checkReferenceValues(v, [ownValues("milan-v3-vlek-trustee")]))).toBe("SNP_VMPL_MISMATCH");
  });
});

describe("the reference-values schema (Contrast's shape and Validate rules)", () => {
  const contrastJson = {
    Platform: "Metal-QEMU-SNP",
    ProductName: "Genoa",
    TrustedMeasurement: "AB".repeat(48),
    MinimumTCB: { BootloaderVersion: 7, TEEVersion: 0, SNPVersion: 14, MicrocodeVersion: 72 },
    GuestPolicy: {
      ABIMinor: 0,
      ABIMajor: 0,
      SMT: true,
      MigrateMA: false,
      Debug: false,
      SingleSocket: false,
      CXLAllowed: false,
      MemAES256XTS: false,
      RAPLDis: false,
      CipherTextHidingDRAM: false,
      PageSwapDisable: false,
    },
    PlatformInfo: {
      SMTEnabled: true,
      TSMEEnabled: false,
      ECCEnabled: false,
      RAPLDisabled: false,
      CiphertextHidingDRAMEnabled: false,
      AliasCheckComplete: false,
    },
    MinimumMitigationVector: 0,
    AllowedChipIDs: null,
    CPUs: 2,
  };

  it("parses a list as Contrast's manifest writes it (Go's null slices included), unchanged", () => {
    const parsed = parseSnpReferenceValues([contrastJson, { ...contrastJson, ProductName: "Milan", AllowedChipIDs: ["01".repeat(64)] }]);
    expect(parsed[0]).toEqual(contrastJson);
    expect(parsed).toHaveLength(2);
  });

  it.each([
    ["a missing MinimumTCB component", { MinimumTCB: { BootloaderVersion: 1, TEEVersion: 0, SNPVersion: 8 } }],
    ["an SVN above 255", { MinimumTCB: { ...contrastJson.MinimumTCB, MicrocodeVersion: 256 } }],
    ["a short measurement", { TrustedMeasurement: "ab".repeat(47) }],
    ["a non-hex measurement", { TrustedMeasurement: "zz".repeat(48) }],
    ["a short chip ID", { AllowedChipIDs: ["ab".repeat(32)] }],
    ["an unknown product", { ProductName: "Naples" }],
    ["Debug allowed", { GuestPolicy: { ...contrastJson.GuestPolicy, Debug: true } }],
    ["SMT not set", { GuestPolicy: { ...contrastJson.GuestPolicy, SMT: false } }],
    ["MigrateMA allowed", { GuestPolicy: { ...contrastJson.GuestPolicy, MigrateMA: true } }],
    ["ABIMajor 1", { GuestPolicy: { ...contrastJson.GuestPolicy, ABIMajor: 1 } }],
    ["ABIMinor 5", { GuestPolicy: { ...contrastJson.GuestPolicy, ABIMinor: 5 } }],
    ["an unknown field", { APEIP: "00000000" }],
    ["an unknown policy field", { GuestPolicy: { ...contrastJson.GuestPolicy, Whatever: true } }],
    ["a negative mitigation vector", { MinimumMitigationVector: -1 }],
    ["no guest policy", { GuestPolicy: undefined }],
  ])("refuses %s", (_, change) => {
    expect(code(() => parseSnpReferenceValues([{ ...contrastJson, ...change }]))).toBe("SNP_REFERENCE_VALUES_INVALID");
  });

  it("accepts ABIMinor 31 (AKS) and refuses a non-list", () => {
    expect(code(() => parseSnpReferenceValues([{ ...contrastJson, GuestPolicy: { ...contrastJson.GuestPolicy, ABIMinor: 31 } }]))).toBe("accepted");
    expect(code(() => parseSnpReferenceValues(contrastJson))).toBe("SNP_REFERENCE_VALUES_INVALID");
  });

  it("every well-formed entry parses to itself", () => {
    const hex = (n: number) => fc.uint8Array({ minLength: n, maxLength: n }).map(toHex);
    const svn = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(
        fc.record({
          ProductName: fc.constantFrom("Milan" as const, "Genoa" as const, "Turin" as const),
          TrustedMeasurement: hex(48),
          MinimumTCB: fc.record({ BootloaderVersion: svn, TEEVersion: svn, SNPVersion: svn, MicrocodeVersion: svn }),
          GuestPolicy: fc.record({ SMT: fc.constant(true as const), ABIMinor: fc.constantFrom(0, 31), PageSwapDisable: fc.boolean() }),
          AllowedChipIDs: fc.array(hex(64), { maxLength: 3 }),
          MinimumMitigationVector: fc.integer({ min: 0, max: 2 ** 20 }),
        }),
        (entry) => {
          expect(snpReferenceValuesSchema.parse(entry)).toEqual(entry);
        },
      ),
      { numRuns: 100, seed: 0xc0 },
    );
  });
});

describe("REPORT_DATA binding", () => {
  it("expectedReportData is SHA-512(SPKI DER ‖ nonce), as Contrast's reportdata.Construct", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 64 }), async (spki, nonce) => {
        const ours = await expectedReportData(spki, nonce);
        const reference = createHash("sha512").update(spki).update(nonce).digest();
        expect(toHex(ours)).toBe(reference.toString("hex"));
      }),
      { numRuns: 50, seed: 0x512 },
    );
  });

  it("verifySnpAttestation accepts a report bound to the key and nonce, and refuses one bound to another nonce or key", async () => {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const nonce = new Uint8Array(32).fill(7);
    const reportData = await expectedReportData(spki, nonce);
    const evidence = await sim.attest(
      {
        version: 5,
        measurement,
        platformInfo: 0x25n,
        launchMitigationVector: 0b101n,
        currentMitigationVector: 0b111n,
        reportData,
        hostData: new Uint8Array(32).fill(0x42),
      },
      vcek,
    );
    const options = { trustAnchors: [sim.anchor], now, referenceValues: [values({ ProductName: "Genoa" }), values()] };
    const ok = await verifySnpAttestation(evidence, { ...options, reportData });
    expect(ok.referenceValuesIndex).toBe(1);
    expect(ok.verified.hostDataHex).toBe("42".repeat(32));
    const otherNonce = await expectedReportData(spki, new Uint8Array(32).fill(8));
    await expect(verifySnpAttestation(evidence, { ...options, reportData: otherNonce })).rejects.toMatchObject({ code: "SNP_REPORT_DATA_MISMATCH" });
    const otherKey = await expectedReportData(spki.map((b, i) => (i === spki.length - 1 ? b ^ 1 : b)), nonce);
    await expect(verifySnpAttestation(evidence, { ...options, reportData: otherKey })).rejects.toMatchObject({ code: "SNP_REPORT_DATA_MISMATCH" });
    const higherTee = [values({ MinimumTCB: { ...values().MinimumTCB, TEEVersion: 1 } })];
    await expect(verifySnpAttestation(evidence, { ...options, reportData, referenceValues: higherTee })).rejects.toMatchObject({
      code: "SNP_TCB_TOO_LOW",
    });
  });
});
