// TDX reference values in Contrast's shape (internal/manifest TDXReferenceValues) and the check of a verified quote against a list of them.
//
// Semantics, as Contrast's Manifest.TDXValidateOpts and tdx.Validator apply them:
//   MrTd, MrSeam, Rtmrs[0..3]   exact match (48 bytes each, hex);
//   Xfam                        exact match of the 8 bytes except the CET bits 11 and 12
//                               (QEMU enables CET where the host CPU has it);
//   TD attributes               not a field: exactly SEPT_VE_DISABLE (bit 28) set, as Kata/QEMU configure
//                               it (a DEBUG TD, bit 0, is refused with its own code);
//   MinTCBEvaluationDataNumber  the collateral's tcbEvaluationDataNumber must be at least this; it
//                               needs collateral: without it the check is reported "not-checked";
//   AllowedPIIDs                if non-empty, the PCK's PlatformInstanceID must be listed;
//   MemoryIntegrity             the PCK's SGX type must be 2 (scalable with integrity);
//   SMTDisabled                 the PCK's configuration must say SMT is disabled;
//   StaticPlatform              the PCK's configuration must say the platform is not dynamic;
//   Platform, CPUs              informative, not checked (as in Contrast).
// Evidence passes if it satisfies any one entry. MRCONFIGID's first 32 bytes are the policy hash
// (VerifiedTdxQuote.policyHash); its last 16 bytes must be zero.
import { z } from "zod";
import { fromHex } from "../../encoding.js";
import { AttestationError } from "../errors.js";
import type { AttestationErrorCode } from "../errors.js";
import { sgxTypeScalableWithIntegrity } from "./pck.js";
import type { VerifiedTdxQuote } from "./verify.js";

const hex = (bytes: number) =>
  z
    .string()
    .regex(new RegExp(`^[0-9a-fA-F]{${2 * bytes}}$`), `must be ${bytes} bytes of hex`)
    .transform((s) => s.toLowerCase());

/** One entry of `ReferenceValues.tdx`, with Contrast's field names. */
export const tdxReferenceValuesSchema = z.lazy(() =>
  z
    .object({
      Platform: z.string().optional(),
      MinTCBEvaluationDataNumber: z.number().int().min(0).optional(),
      MrTd: hex(48),
      MrSeam: hex(48),
      Rtmrs: z.tuple([hex(48), hex(48), hex(48), hex(48)]),
      Xfam: hex(8),
      AllowedPIIDs: z.array(hex(16)).nullable().optional(),
      MemoryIntegrity: z.boolean().optional(),
      SMTDisabled: z.boolean().optional(),
      StaticPlatform: z.boolean().optional(),
      CPUs: z.number().int().min(0).optional(),
    })
    .strict(),
);

/** `ReferenceValues.tdx`: a list; evidence must satisfy one entry. */
export const tdxReferenceValuesListSchema = z.lazy(() => z.array(tdxReferenceValuesSchema));

/** One parsed TDX reference-values entry. */
export type TdxReferenceValues = z.infer<typeof tdxReferenceValuesSchema>;

/** TD attributes Contrast requires: only SEPT_VE_DISABLE (bit 28), little-endian. */
export const expectedTdAttributes = "0000001000000000";

/** XFAM bits CET_U (11) and CET_S (12), ignored in the comparison as Contrast does. */
const xfamCetMask = (1n << 11n) | (1n << 12n);

/** The result of a successful check. */
export interface TdxReferenceValuesMatch {
  /** Index of the entry the evidence satisfies. */
  index: number;
  entry: TdxReferenceValues;
  /** Whether the entry's TCB minimum was checked against evaluated collateral. */
  tcb: "checked" | "not-checked";
}

/** Options of checkReferenceValues. */
export interface TdxReferenceCheckOptions {
  /** If given, the policy hash (MRCONFIGID[0:32], hex) must be one of these. */
  policyHashes?: Iterable<string>;
  /** Refuse (TDX_TCB_NOT_CHECKED) instead of reporting "not-checked" when an entry's TCB minimum cannot be checked. */
  requireTcb?: boolean;
}

function le64(hexBytes: string): bigint {
  return fromHex(hexBytes).reduceRight((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

class Mismatch extends Error {
  constructor(
    readonly code: AttestationErrorCode,
    message: string,
  ) {
    super(message);
  }
}

function checkEntry(verified: VerifiedTdxQuote, entry: TdxReferenceValues, requireTcb: boolean): "checked" | "not-checked" {
  const f = verified.fields;
  const tdAttributes = le64(f.td_attributes);
  if ((tdAttributes & 1n) !== 0n) throw new Mismatch("TDX_DEBUG_ENABLED", "the TD is a debug TD (TD attributes bit 0)");
  if (f.td_attributes !== expectedTdAttributes) {
    throw new Mismatch("TDX_TD_ATTRIBUTES_MISMATCH", `TD attributes ${f.td_attributes} are not ${expectedTdAttributes} (SEPT_VE_DISABLE only)`);
  }
  if (f.mrtd !== entry.MrTd) throw new Mismatch("TDX_MRTD_MISMATCH", `MRTD ${f.mrtd} is not ${entry.MrTd}`);
  if (f.mrseam !== entry.MrSeam) throw new Mismatch("TDX_MRSEAM_MISMATCH", `MRSEAM ${f.mrseam} is not ${entry.MrSeam}`);
  const rtmrs = [f.rtmr0, f.rtmr1, f.rtmr2, f.rtmr3];
  for (let i = 0; i < 4; i++) {
    if (rtmrs[i] !== entry.Rtmrs[i]) throw new Mismatch("TDX_RTMR_MISMATCH", `RTMR${i} ${rtmrs[i]} is not ${entry.Rtmrs[i]}`);
  }
  if ((le64(f.xfam) & ~xfamCetMask) !== (le64(entry.Xfam) & ~xfamCetMask)) {
    throw new Mismatch("TDX_XFAM_MISMATCH", `XFAM ${f.xfam} is not ${entry.Xfam} (CET bits ignored)`);
  }
  const pck = verified.pck.extensions;
  const piids = entry.AllowedPIIDs ?? [];
  if (piids.length > 0 && (pck.platformInstanceId === undefined || !piids.includes(pck.platformInstanceId))) {
    throw new Mismatch("TDX_PIID_NOT_ALLOWED", `PIID ${pck.platformInstanceId ?? "(none)"} is not allowed`);
  }
  if (entry.MemoryIntegrity === true && pck.sgxType !== sgxTypeScalableWithIntegrity) {
    throw new Mismatch("TDX_MEMORY_INTEGRITY_MISSING", `SGX type ${pck.sgxType} is not 2 (scalable with integrity)`);
  }
  if (entry.SMTDisabled === true && pck.configuration?.smtEnabled !== false) {
    throw new Mismatch("TDX_SMT_ENABLED", "the PCK certificate does not say SMT is disabled");
  }
  if (entry.StaticPlatform === true && pck.configuration?.dynamicPlatform !== false) {
    throw new Mismatch("TDX_DYNAMIC_PLATFORM", "the PCK certificate does not say the platform is static");
  }
  const minimum = entry.MinTCBEvaluationDataNumber ?? 0;
  if (verified.tcb === undefined) {
    if (minimum > 0 && requireTcb) {
      throw new Mismatch("TDX_TCB_NOT_CHECKED", `the TCB minimum (evaluation data number ${minimum}) needs collateral, and none was given`);
    }
    return "not-checked";
  }
  if (verified.tcb.tcbEvaluationDataNumber < minimum) {
    throw new Mismatch(
      "TDX_TCB_EVALUATION_DATA_NUMBER_TOO_LOW",
      `TCB evaluation data number ${verified.tcb.tcbEvaluationDataNumber} is below ${minimum}`,
    );
  }
  return "checked";
}

/**
 * Checks a verified quote against `ReferenceValues.tdx` (parsed with tdxReferenceValuesListSchema or
 * raw JSON, which is parsed here). Passes if any one entry is satisfied and returns it. Otherwise
 * throws AttestationError: TDX_NO_REFERENCE_VALUES for an empty list, TDX_REFERENCE_VALUES_INVALID
 * for values not in Contrast's shape, TDX_MRCONFIGID_MISMATCH for a policy hash not allowed or a
 * non-zero MRCONFIGID tail, else the code of the first entry's first mismatch (the message lists every
 * entry's reason). A TCB minimum without evaluated collateral is reported as "not-checked", never
 * as passed.
 */
export function checkReferenceValues(
  verified: VerifiedTdxQuote,
  values: readonly unknown[],
  options: TdxReferenceCheckOptions = {},
): TdxReferenceValuesMatch {
  const parsed = tdxReferenceValuesListSchema.safeParse(values);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttestationError(
      "TDX_REFERENCE_VALUES_INVALID",
      `TDX reference values are invalid at ${issue?.path.join(".") ?? ""}: ${issue?.message ?? ""}`,
    );
  }
  const entries = parsed.data;
  if (entries.length === 0) throw new AttestationError("TDX_NO_REFERENCE_VALUES", "there are no TDX reference values");

  const mrConfigId = verified.fields.mrconfigid;
  if (!/^0{32}$/.test(mrConfigId.slice(64))) {
    throw new AttestationError("TDX_MRCONFIGID_MISMATCH", "MRCONFIGID's last 16 bytes are not zero");
  }
  if (options.policyHashes !== undefined) {
    const allowed = new Set([...options.policyHashes].map((h) => h.toLowerCase()));
    if (!allowed.has(verified.policyHash)) {
      throw new AttestationError("TDX_MRCONFIGID_MISMATCH", `policy hash ${verified.policyHash} (MRCONFIGID) is not allowed`);
    }
  }

  const failures: Mismatch[] = [];
  for (const [index, entry] of entries.entries()) {
    try {
      const tcb = checkEntry(verified, entry, options.requireTcb === true);
      return { index, entry, tcb };
    } catch (err) {
      if (!(err instanceof Mismatch)) throw err;
      failures.push(err);
    }
  }
  const first = failures[0]!;
  const message =
    failures.length === 1
      ? first.message
      : `no TDX reference values entry matches: ${failures.map((f, i) => `[${i}] ${f.code}: ${f.message}`).join("; ")}`;
  throw new AttestationError(first.code, message);
}
