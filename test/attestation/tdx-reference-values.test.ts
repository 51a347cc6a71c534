// TDX reference values in Contrast's shape: the schema, and each field's check with its own code; evidence passes on any one entry.
import { beforeAll, describe, expect, it } from "vitest";
import { checkReferenceValues, tdxReferenceValuesSchema } from "../../src/attestation/tdx/reference-values.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import type { SimulatedQuoteOptions, SimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import type { VerifiedTdxQuote } from "../../src/attestation/tdx/verify.js";
import { expectCode, vector, vectorTime } from "./tdx-helpers.js";

const now = new Date("2026-01-15T12:00:00Z");
let tee: SimulatedTdxPlatform;

beforeAll(async () => {
  tee = await createSimulatedTdxPlatform({ now });
});

/** Reference values that exactly describe a verified quote, as Contrast's manifest carries them (every field present). */
function valuesOf(v: VerifiedTdxQuote): Record<string, unknown> {
  return {
    Platform: "Metal-QEMU-TDX",
    MinTCBEvaluationDataNumber: 0,
    MrTd: v.fields.mrtd,
    MrSeam: v.fields.mrseam,
    Rtmrs: [v.fields.rtmr0, v.fields.rtmr1, v.fields.rtmr2, v.fields.rtmr3],
    Xfam: v.fields.xfam,
    AllowedPIIDs: null,
    MemoryIntegrity: false,
    SMTDisabled: false,
    StaticPlatform: false,
    CPUs: 0,
  };
}

async function simulated(options: SimulatedQuoteOptions = {}, platform = tee): Promise<VerifiedTdxQuote> {
  return verifyTdxQuote(await platform.quote(options), { now, trustedRoot: platform.rootPem });
}

describe("the TDX reference values schema", () => {
  it("accepts Contrast's shape, with every field or only the required ones", async () => {
    const v = await simulated();
    expect(tdxReferenceValuesSchema.safeParse(valuesOf(v)).success).toBe(true);
    const { MrTd, MrSeam, Rtmrs, Xfam } = valuesOf(v);
    expect(tdxReferenceValuesSchema.safeParse({ MrTd, MrSeam, Rtmrs, Xfam }).success).toBe(true);
  });

  it.each([
    ["an unknown field", { Foo: 1 }],
    ["a short MrTd", { MrTd: "00" }],
    ["three RTMRs", { Rtmrs: ["00".repeat(48), "00".repeat(48), "00".repeat(48)] }],
    ["a non-hex Xfam", { Xfam: "zz".repeat(8) }],
    ["a PIID of the wrong size", { AllowedPIIDs: ["00"] }],
    ["a negative evaluation data number", { MinTCBEvaluationDataNumber: -1 }],
  ])("refuses %s with TDX_REFERENCE_VALUES_INVALID", async (_, change) => {
    const v = await simulated();
    await expectCode(() => checkReferenceValues(v, [{ ...valuesOf(v), ...change }]), "TDX_REFERENCE_VALUES_INVALID");
  });

  it("MrSeam is required (Contrast treats it as a value to fill in)", async () => {
    const values = valuesOf(await simulated());
    delete values.MrSeam;
    expect(tdxReferenceValuesSchema.safeParse(values).success).toBe(false);
  });

  it("an empty list is TDX_NO_REFERENCE_VALUES", async () => {
    await expectCode(async () => checkReferenceValues(await simulated(), []), "TDX_NO_REFERENCE_VALUES");
  });
});

describe("checkReferenceValues", () => {
  it("passes a quote that matches, reporting the TCB minimum as not checked without collateral", async () => {
    const v = await simulated();
    const match = checkReferenceValues(v, [{ ...valuesOf(v), MinTCBEvaluationDataNumber: 17 }]);
    expect(match).toMatchObject({ index: 0, tcb: "not-checked" });
  });

  it("hex is compared case-insensitively", async () => {
    const v = await simulated();
    const values = valuesOf(v);
    expect(checkReferenceValues(v, [{ ...values, MrTd: String(values.MrTd).toUpperCase() }]).index).toBe(0);
  });

  it.each([
    ["MrTd", "TDX_MRTD_MISMATCH", { body: { mrtd: "01".repeat(48) } }],
    ["MrSeam", "TDX_MRSEAM_MISMATCH", { body: { mrseam: "01".repeat(48) } }],
    ["Rtmrs[0]", "TDX_RTMR_MISMATCH", { body: { rtmr0: "01".repeat(48) } }],
    ["Rtmrs[1]", "TDX_RTMR_MISMATCH", { body: { rtmr1: "01".repeat(48) } }],
    ["Rtmrs[2]", "TDX_RTMR_MISMATCH", { body: { rtmr2: "01".repeat(48) } }],
    ["Rtmrs[3]", "TDX_RTMR_MISMATCH", { body: { rtmr3: "01".repeat(48) } }],
    ["Xfam", "TDX_XFAM_MISMATCH", { body: { xfam: "e742070000000000" } }],
    ["TD attributes (DEBUG)", "TDX_DEBUG_ENABLED", { body: { td_attributes: "0100001000000000" } }],
    ["TD attributes (no SEPT_VE_DISABLE)", "TDX_TD_ATTRIBUTES_MISMATCH", { body: { td_attributes: "0000000000000000" } }],
    ["TD attributes (another bit)", "TDX_TD_ATTRIBUTES_MISMATCH", { body: { td_attributes: "0000001040000000" } }],
    ["MRCONFIGID tail", "TDX_MRCONFIGID_MISMATCH", { body: { mrconfigid: "00".repeat(47) + "01" } }],
  ] as const)("a different %s is refused with %s", async (_, code, change) => {
    const reference = valuesOf(await simulated());
    const v = await simulated(change as SimulatedQuoteOptions);
    await expectCode(async () => checkReferenceValues(v, [reference]), code);
  });

  it("XFAM differing only in the CET bits (11, 12) passes, as in Contrast", async () => {
    const reference = valuesOf(await simulated());
    const v = await simulated({ body: { xfam: "e75a060000000000" } });
    expect(checkReferenceValues(v, [reference]).index).toBe(0);
  });

  it("the policy hash (MRCONFIGID[0:32]) must be allowed when a list is given", async () => {
    const v = await simulated({ body: { mrconfigid: "ab".repeat(32) + "00".repeat(16) } });
    const values = [valuesOf(v)];
    expect(checkReferenceValues(v, values, { policyHashes: ["AB".repeat(32)] }).index).toBe(0);
    await expectCode(async () => checkReferenceValues(v, values, { policyHashes: ["cd".repeat(32)] }), "TDX_MRCONFIGID_MISMATCH");
  });

  it("AllowedPIIDs, MemoryIntegrity, SMTDisabled and StaticPlatform check the PCK certificate", async () => {
    const v = await simulated();
    const values = valuesOf(v);
    const piid = v.pck.extensions.platformInstanceId!;
    expect(checkReferenceValues(v, [{ ...values, AllowedPIIDs: [piid] }]).index).toBe(0);
    await expectCode(async () => checkReferenceValues(v, [{ ...values, AllowedPIIDs: ["00".repeat(16)] }]), "TDX_PIID_NOT_ALLOWED");
    await expectCode(async () => checkReferenceValues(v, [{ ...values, MemoryIntegrity: true }]), "TDX_MEMORY_INTEGRITY_MISSING");
    await expectCode(async () => checkReferenceValues(v, [{ ...values, SMTDisabled: true }]), "TDX_SMT_ENABLED");
    await expectCode(async () => checkReferenceValues(v, [{ ...values, StaticPlatform: true }]), "TDX_DYNAMIC_PLATFORM");

    const hardened = await createSimulatedTdxPlatform({
      now,
      pck: { sgxType: 2, configuration: { dynamicPlatform: false, cachedKeys: false, smtEnabled: false } },
    });
    const h = await simulated({}, hardened);
    expect(checkReferenceValues(h, [{ ...valuesOf(h), MemoryIntegrity: true, SMTDisabled: true, StaticPlatform: true }]).index).toBe(0);

    const processor = await createSimulatedTdxPlatform({ now, processorCa: true });
    const p = await simulated({}, processor);
    await expectCode(async () => checkReferenceValues(p, [{ ...valuesOf(p), AllowedPIIDs: [piid] }]), "TDX_PIID_NOT_ALLOWED");
    await expectCode(async () => checkReferenceValues(p, [{ ...valuesOf(p), SMTDisabled: true }]), "TDX_SMT_ENABLED");
  });

  it("the TCB minimum: not checked without collateral (or refused if required), checked against evaluated collateral", async () => {
    const quote = await tee.quote();
    const bare = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem });
    const values = { ...valuesOf(bare), MinTCBEvaluationDataNumber: 17 };
    expect(checkReferenceValues(bare, [values]).tcb).toBe("not-checked");
    await expectCode(async () => checkReferenceValues(bare, [values], { requireTcb: true }), "TDX_TCB_NOT_CHECKED");
    expect(checkReferenceValues(bare, [{ ...values, MinTCBEvaluationDataNumber: 0 }], { requireTcb: true }).tcb).toBe("not-checked");

    const collateral = await tee.signCollateral(tee.collateralDocuments({ now }));
    const evaluated = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem, collateral });
    expect(checkReferenceValues(evaluated, [values], { requireTcb: true }).tcb).toBe("checked");
    await expectCode(
      async () => checkReferenceValues(evaluated, [{ ...values, MinTCBEvaluationDataNumber: 18 }]),
      "TDX_TCB_EVALUATION_DATA_NUMBER_TOO_LOW",
    );
  });

  it("passes on any one entry, and names every entry's reason when none matches", async () => {
    const v = await simulated();
    const good = valuesOf(v);
    const bad = { ...good, MrTd: "00".repeat(48) };
    expect(checkReferenceValues(v, [bad, good]).index).toBe(1);
    let error: unknown;
    try {
      checkReferenceValues(v, [bad, { ...good, Xfam: "0000000000000000" }]);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: "TDX_MRTD_MISMATCH" });
    expect(String((error as Error).message)).toContain("TDX_XFAM_MISMATCH");
  });
});

describe("reference values and the real quotes", () => {
  it("the v5 quote satisfies reference values taken from it", async () => {
    const v = await verifyTdxQuote(vector("quote-v5-trustee.dat"), { now: vectorTime });
    expect(checkReferenceValues(v, [valuesOf(v)])).toMatchObject({ index: 0, tcb: "not-checked" });
  });

  it("the v4 quote is a debug TD (TD attributes bit 0) and is refused", async () => {
    const v = await verifyTdxQuote(vector("quote-v4-trustee.dat"), { now: vectorTime });
    expect(v.fields.td_attributes).toBe("0100001000000000");
    await expectCode(async () => checkReferenceValues(v, [valuesOf(v)]), "TDX_DEBUG_ENABLED");
  });
});
