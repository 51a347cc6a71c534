// SEV-SNP reference values in Contrast's shape (internal/manifest SNPReferenceValues), and the check of a verified report against them.
import { z } from "zod";
import { bytesEqual, fromHex } from "../../encoding.js";
import { AttestationError } from "../errors.js";
import type { AttestationErrorCode } from "../errors.js";
import type { SnpTcb } from "./report.js";
import type { SnpVerifiedReport } from "./verify.js";

const svn = () => z.number().int().min(0).max(255);
const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-fA-F]{${2 * bytes}}$`), `${bytes} bytes in hex`);
const flag = () => z.boolean().optional();

/** Contrast's `SNPTCB`: the minimum SVN of each TCB component; all four are required. */
export const snpMinimumTcbSchema = z.lazy(() =>
  z
    .object({
      BootloaderVersion: svn(),
      TEEVersion: svn(),
      SNPVersion: svn(),
      MicrocodeVersion: svn(),
    })
    .strict(),
);

/** go-sev-guest's `abi.SnpPolicy` as Contrast's manifest writes it (absent booleans are false, as Go decodes them). */
export const snpGuestPolicySchema = z.lazy(() =>
  z
    .object({
      ABIMinor: svn().optional(),
      ABIMajor: svn().optional(),
      SMT: flag(),
      MigrateMA: flag(),
      Debug: flag(),
      SingleSocket: flag(),
      CXLAllowed: flag(),
      MemAES256XTS: flag(),
      RAPLDis: flag(),
      CipherTextHidingDRAM: flag(),
      PageSwapDisable: flag(),
    })
    .strict(),
);

/** go-sev-guest's `abi.SnpPlatformInfo` as Contrast's manifest writes it. */
export const snpPlatformInfoSchema = z.lazy(() =>
  z
    .object({
      SMTEnabled: flag(),
      TSMEEnabled: flag(),
      ECCEnabled: flag(),
      RAPLDisabled: flag(),
      CiphertextHidingDRAMEnabled: flag(),
      AliasCheckComplete: flag(),
    })
    .strict(),
);

/**
 * One entry of `ReferenceValues.snp`, with Contrast's field names and its `Validate()` rules:
 * all four MinimumTCB components, a 48-byte TrustedMeasurement, 64-byte AllowedChipIDs, and a
 * GuestPolicy with ABIMajor 0, ABIMinor 0 or 31, SMT true and MigrateMA, Debug, SingleSocket,
 * CXLAllowed, MemAES256XTS, RAPLDis and CipherTextHidingDRAM false. ProductName is Milan or Genoa as
 * in Contrast, or Turin. (Contrast's iterative APEIP measurement is not supported.)
 */
export const snpReferenceValuesSchema = z.lazy(() =>
  z
    .object({
      Platform: z.string().optional(),
      ProductName: z.enum(["Milan", "Genoa", "Turin"]),
      TrustedMeasurement: hex(48),
      MinimumTCB: snpMinimumTcbSchema,
      GuestPolicy: snpGuestPolicySchema,
      PlatformInfo: snpPlatformInfoSchema.optional(),
      MinimumMitigationVector: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
      AllowedChipIDs: z.array(hex(64)).nullable().optional(),
      /** Informative only: the measurement already covers the vCPU count. */
      CPUs: z.number().int().min(0).optional(),
    })
    .strict()
    .superRefine((v, ctx) => {
      const p = v.GuestPolicy;
      const notPermitted = (field: string): void => {
        ctx.addIssue({ code: "custom", path: ["GuestPolicy", field], message: "modifying this field is not permitted" });
      };
      if ((p.ABIMajor ?? 0) !== 0) notPermitted("ABIMajor");
      if ((p.ABIMinor ?? 0) !== 0 && p.ABIMinor !== 31) notPermitted("ABIMinor");
      if (p.SMT !== true) notPermitted("SMT");
      for (const field of ["MigrateMA", "Debug", "SingleSocket", "CXLAllowed", "MemAES256XTS", "RAPLDis", "CipherTextHidingDRAM"] as const) {
        if (p[field] === true) notPermitted(field);
      }
    }),
);

/** One SNP reference-values entry. */
export type SnpReferenceValues = z.infer<typeof snpReferenceValuesSchema>;

/** Parses `ReferenceValues.snp` (a list); refuses anything else with SNP_REFERENCE_VALUES_INVALID. */
export function parseSnpReferenceValues(input: unknown): SnpReferenceValues[] {
  const parsed = z.array(snpReferenceValuesSchema).safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttestationError(
      "SNP_REFERENCE_VALUES_INVALID",
      `invalid SNP reference values at ${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data;
}

function refuse(code: AttestationErrorCode, message: string): AttestationError {
  return new AttestationError(code, message);
}

function tcbText(t: { bootloader: number; tee: number; snp: number; microcode: number }): string {
  return `bl ${t.bootloader}, tee ${t.tee}, snp ${t.snp}, ucode ${t.microcode}`;
}

function minText(min: SnpReferenceValues["MinimumTCB"]): string {
  return tcbText({ bootloader: min.BootloaderVersion, tee: min.TEEVersion, snp: min.SNPVersion, microcode: min.MicrocodeVersion });
}

function meetsMinimum(tcb: SnpTcb, min: SnpReferenceValues["MinimumTCB"]): boolean {
  return (
    tcb.bootloader >= min.BootloaderVersion &&
    tcb.tee >= min.TEEVersion &&
    tcb.snp >= min.SNPVersion &&
    tcb.microcode >= min.MicrocodeVersion
  );
}

/**
 * Checks a verified report against one entry, in this order, each with its own code:
 * ProductName (SNP_PRODUCT_NOT_ALLOWED), TrustedMeasurement (SNP_MEASUREMENT_MISMATCH), VMPL 0 as
 * Contrast demands (SNP_VMPL_MISMATCH), guest policy: debug, always refused (SNP_DEBUG_ENABLED), the other bits
 * with go-sev-guest's semantics (SNP_POLICY_MISMATCH), MinimumTCB per component against REPORTED_TCB
 * (SNP_TCB_TOO_LOW) and LAUNCH_TCB (SNP_LAUNCH_TCB_TOO_LOW), PlatformInfo (SNP_PLATFORM_INFO_MISMATCH),
 * AllowedChipIDs if any (SNP_CHIP_ID_NOT_ALLOWED), and MinimumMitigationVector as bits both vectors
 * must carry (SNP_MITIGATION_VECTOR_TOO_LOW; reports before v5 carry none).
 */
export function checkReferenceValuesEntry(verified: SnpVerifiedReport, values: SnpReferenceValues): void {
  const report = verified.report;
  if (values.ProductName !== verified.product) {
    throw refuse("SNP_PRODUCT_NOT_ALLOWED", `the report is from ${verified.product}, the reference values are for ${values.ProductName}`);
  }
  if (!bytesEqual(report.measurement, fromHex(values.TrustedMeasurement))) {
    throw refuse(
      "SNP_MEASUREMENT_MISMATCH",
      `MEASUREMENT ${verified.measurementHex} is not the TrustedMeasurement ${values.TrustedMeasurement.toLowerCase()}`,
    );
  }
  if (report.vmpl !== 0) throw refuse("SNP_VMPL_MISMATCH", `the report was requested at VMPL ${report.vmpl}, not 0`);

  const want = values.GuestPolicy;
  const got = verified.policy;
  // A debuggable guest is never accepted, whatever the values say (Contrast's schema forbids Debug anyway).
  if (got.debug) throw refuse("SNP_DEBUG_ENABLED", "the guest policy allows debugging (its DEBUG bit is 1, expected 0)");
  const wantAbi = (want.ABIMajor ?? 0) * 256 + (want.ABIMinor ?? 0);
  const policyFailures: string[] = [];
  if (wantAbi > got.abiMajor * 256 + got.abiMinor) policyFailures.push("ABI version below the required one");
  if (got.migrateMa && want.MigrateMA !== true) policyFailures.push("migration agent allowed");
  if (got.smt && want.SMT !== true) policyFailures.push("SMT allowed");
  if (want.SingleSocket === true && !got.singleSocket) policyFailures.push("single socket not required");
  if (got.cxlAllowed && want.CXLAllowed !== true) policyFailures.push("CXL allowed");
  if (want.MemAES256XTS === true && !got.memAes256Xts) policyFailures.push("AES-256-XTS not required");
  if (want.RAPLDis === true && !got.raplDis) policyFailures.push("RAPL not disabled");
  if (want.CipherTextHidingDRAM === true && !got.ciphertextHidingDram) policyFailures.push("ciphertext hiding not required");
  if (want.PageSwapDisable === true && !got.pageSwapDisable) policyFailures.push("page swap not disabled");
  if (policyFailures.length > 0) throw refuse("SNP_POLICY_MISMATCH", `guest policy: ${policyFailures.join(", ")}`);

  const min = values.MinimumTCB;
  if (!meetsMinimum(verified.tcb.reported, min)) {
    throw refuse("SNP_TCB_TOO_LOW", `REPORTED_TCB (${tcbText(verified.tcb.reported)}) is below the MinimumTCB (${minText(min)}) in a component`);
  }
  if (!meetsMinimum(verified.tcb.launch, min)) {
    throw refuse("SNP_LAUNCH_TCB_TOO_LOW", `LAUNCH_TCB (${tcbText(verified.tcb.launch)}) is below the MinimumTCB (${minText(min)}) in a component`);
  }

  const info = verified.platformInfo;
  const allowed = values.PlatformInfo ?? {};
  const infoFailures: string[] = [];
  if (info.smtEnabled && allowed.SMTEnabled !== true) infoFailures.push("SMT enabled");
  if (info.tsmeEnabled && allowed.TSMEEnabled !== true) infoFailures.push("TSME enabled");
  if (allowed.ECCEnabled === true && !info.eccEnabled) infoFailures.push("ECC not enabled");
  if (allowed.RAPLDisabled === true && !info.raplDisabled) infoFailures.push("RAPL not disabled");
  if (allowed.CiphertextHidingDRAMEnabled === true && !info.ciphertextHidingDramEnabled) infoFailures.push("ciphertext hiding not enabled");
  if (allowed.AliasCheckComplete === true && !info.aliasCheckComplete) infoFailures.push("alias check not complete");
  if (infoFailures.length > 0) throw refuse("SNP_PLATFORM_INFO_MISMATCH", `platform info: ${infoFailures.join(", ")}`);

  const chipIds = values.AllowedChipIDs ?? [];
  if (chipIds.length > 0 && !chipIds.some((id) => bytesEqual(fromHex(id), report.chipId))) {
    throw refuse("SNP_CHIP_ID_NOT_ALLOWED", "CHIP_ID is not among the allowed chip IDs");
  }

  const minVector = BigInt(values.MinimumMitigationVector ?? 0);
  if (minVector !== 0n) {
    const launch = report.launchMitigationVector ?? 0n;
    const current = report.currentMitigationVector ?? 0n;
    if ((launch & minVector) !== minVector || (current & minVector) !== minVector) {
      throw refuse("SNP_MITIGATION_VECTOR_TOO_LOW", "a required mitigation is missing from the launch or current mitigation vector");
    }
  }
}

/**
 * Checks a verified report against the reference values; it passes if it satisfies any one entry
 * and the index of the first such entry is returned. If none does, the refusal of the first entry
 * for the report's product is thrown (SNP_PRODUCT_NOT_ALLOWED if no entry names that product;
 * SNP_NO_REFERENCE_VALUES for an empty list).
 */
export function checkReferenceValues(verified: SnpVerifiedReport, values: readonly SnpReferenceValues[]): number {
  if (values.length === 0) throw refuse("SNP_NO_REFERENCE_VALUES", "the manifest has no SNP reference values");
  let first: AttestationError | null = null;
  let firstForProduct: AttestationError | null = null;
  for (const [index, entry] of values.entries()) {
    try {
      checkReferenceValuesEntry(verified, entry);
      return index;
    } catch (err) {
      if (!(err instanceof AttestationError)) throw err;
      first ??= err;
      if (entry.ProductName === verified.product) firstForProduct ??= err;
    }
  }
  throw firstForProduct ?? first!;
}
