// Verifies a Coordinator's own evidence (the answer of `GET /v1/attestation`) against its reference values and policy hashes, for the CLI and for peer replicas.
//
// What a genuine answer proves, checked in this order (the first failure throws CoordinatorError
// ATTESTATION_FAILED with a `reason`):
//   1. the answer's shape: format contrast-coordinator-evidence/v1, name, held state (all three
//      hashes or none, consistent with `state`), a 65-byte HPKE key, SEV-SNP or TDX evidence
//      (COORDINATOR_EVIDENCE_INVALID);
//   2. the platform evidence: signature and certificate chain to the pinned roots (AMD's ARKs and
//      Intel's SGX root by default), with the platform verifier's code (SNP_*, TDX_*);
//   3. REPORT_DATA == coordinatorReportData({ nonce, hpkePublicKey, name, state }) recomputed from
//      the caller's nonce and the answer's fields (COORDINATOR_REPORT_DATA_MISMATCH: stale or
//      replayed evidence, or a swapped key, name or state);
//   4. the platform reference values, as for workloads (SNP_MEASUREMENT_MISMATCH, TDX_MRTD_MISMATCH, ...);
//   5. HOST_DATA (SEV-SNP) or MRCONFIGID[0:32] (TDX) is the hash of a policy with Role "coordinator"
//      (COORDINATOR_POLICY_MISMATCH).
import { z } from "zod";
import { bytesEqual, fromBase64, fromUtf8, toHex } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { referenceValuesSchema } from "../manifest/manifest.js";
import type { ReferenceValues } from "../manifest/manifest.js";
import { coordinatorEvidenceFormat, coordinatorNonceLength, coordinatorReportData } from "./coordinator-evidence.js";
import type { HeldState } from "./coordinator-evidence.js";
import { AttestationError } from "./errors.js";
import type { AttestationRoots } from "./modes.js";
import { amdTrustAnchors } from "./snp/amd-roots.js";
import { checkReferenceValues as checkSnpReferenceValues } from "./snp/reference-values.js";
import { snpEvidenceSchema } from "./snp/validator.js";
import { verifySnpReport } from "./snp/verify.js";
import type { SnpEvidence } from "./snp/verify.js";
import { checkReferenceValues as checkTdxReferenceValues } from "./tdx/reference-values.js";
import { tdxEvidenceSchema } from "./tdx/validator.js";
import { verifyTdxQuote } from "./tdx/verify.js";

/** What the genuine Coordinator must be: its policy hashes (manifest entries with Role "coordinator") and the platform reference values. */
export interface CoordinatorReference {
  /** Lower-case hex SHA-256; HOST_DATA (SEV-SNP) / MRCONFIGID[0:32] (TDX) must be one of them. */
  policyHashes: string[];
  /** The manifest's ReferenceValues shape `{snp?: [...], tdx?: [...]}`. */
  referenceValues: ReferenceValues;
  /** Where they came from, for messages ("manifest.json", "--coordinator-reference-values ref.json", ...). */
  source: string;
}

/** The Coordinator's role in a manifest's policy entry (Contrast's `Role`). */
export const coordinatorRole = "coordinator";

/**
 * A reference-values file: a whole manifest, or any JSON object with Contrast's `Policies` and
 * `ReferenceValues`; other fields, and the policy entries' other fields, are ignored.
 */
const referenceFileSchema = z.lazy(() =>
  z.looseObject({
    Policies: z.record(z.string().regex(/^[0-9a-fA-F]{64}$/, "a hex SHA-256 digest"), z.looseObject({ Role: z.string().optional() })),
    ReferenceValues: referenceValuesSchema.optional(),
  }),
);

function invalidReference(source: string, message: string): CoordinatorError {
  return new CoordinatorError("INVALID_REFERENCE_VALUES", `${source}: ${message}`);
}

function readReference(bytes: Uint8Array, source: string): { reference: CoordinatorReference; policies: number } {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch (err) {
    throw invalidReference(source, `not UTF-8 JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw invalidReference(source, "not a JSON object with Policies and ReferenceValues (a manifest, or a file with just those two fields)");
  }
  const parsed = referenceFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue !== undefined && issue.path.length > 0 ? issue.path.join(".") : "top level";
    throw invalidReference(source, `${where}: ${issue?.message ?? "invalid"}`);
  }
  const policies = Object.entries(parsed.data.Policies);
  const policyHashes = [
    ...new Set(policies.filter(([, entry]) => entry.Role === coordinatorRole).map(([hash]) => hash.toLowerCase())),
  ].sort();
  return { reference: { policyHashes, referenceValues: parsed.data.ReferenceValues ?? {}, source }, policies: policies.length };
}

/**
 * Reads reference values from JSON bytes: a whole manifest, or any JSON object with Contrast's
 * `Policies` (hash → {Role?,...}) and `ReferenceValues`. Only policies with Role "coordinator"
 * count. Throws CoordinatorError INVALID_REFERENCE_VALUES (bad JSON/shape) or
 * COORDINATOR_POLICY_MISSING (no policy with Role "coordinator").
 */
export function coordinatorReferenceFrom(bytes: Uint8Array, source: string): CoordinatorReference {
  const { reference, policies } = readReference(bytes, source);
  if (reference.policyHashes.length === 0) {
    throw new CoordinatorError(
      "COORDINATOR_POLICY_MISSING",
      `${source}: none of its ${policies} policies has Role "${coordinatorRole}", so nothing says which policy the Coordinator runs`,
    );
  }
  return reference;
}

/** Same as coordinatorReferenceFrom, but returns null instead of throwing COORDINATOR_POLICY_MISSING (for picking among sources). */
export function coordinatorReferenceOrNull(bytes: Uint8Array, source: string): CoordinatorReference | null {
  const { reference } = readReference(bytes, source);
  return reference.policyHashes.length === 0 ? null : reference;
}

/** What a verified answer established about the Coordinator. */
export interface VerifiedCoordinator {
  name: string;
  /** The held state the evidence binds; null: it binds none (uninitialized, recovery-required). */
  state: HeldState | null;
  /** The attested HPKE public key (65 bytes). */
  hpkePublicKey: Uint8Array;
  platform: "amd-sev-snp" | "intel-tdx";
  /** The coordinator policy hash the evidence carries (HOST_DATA or MRCONFIGID[0:32]), lower-case hex. */
  policyHash: string;
}

/** The answer of GET /v1/attestation (fields not bound by the evidence are not kept). */
const answerSchema = z.lazy(() => {
  const hex64 = z.string().regex(/^[0-9a-f]{64}$/, "64 lower-case hex characters");
  return z.object({
    format: z.string(),
    name: z.string().min(1).max(1024),
    state: z.enum(["uninitialized", "recovery-required", "ready", "stale"]),
    latestTransition: hex64.nullable(),
    rootCA: hex64.nullable(),
    meshCA: hex64.nullable(),
    hpkePublicKey: z.string().max(1024),
    evidence: z.discriminatedUnion("type", [snpEvidenceSchema.unwrap().omit({ nonce: true }), tdxEvidenceSchema.unwrap().omit({ nonce: true })]),
  });
});

function refused(reason: string, message: string, cause?: unknown): CoordinatorError {
  return new CoordinatorError("ATTESTATION_FAILED", message, {
    reason,
    ...(cause === undefined ? {} : { cause }),
  });
}

function invalidAnswer(message: string): CoordinatorError {
  return refused("COORDINATOR_EVIDENCE_INVALID", `the answer of GET /v1/attestation ${message}`);
}

function decode(value: string, field: string): Uint8Array {
  try {
    return fromBase64(value);
  } catch {
    throw invalidAnswer(`has ${field} that is not base64`);
  }
}

/** The answer, parsed and checked for shape; throws COORDINATOR_EVIDENCE_INVALID. */
function parseAnswer(answer: unknown): z.infer<typeof answerSchema> & { held: HeldState | null; key: Uint8Array } {
  if (answer === null || typeof answer !== "object" || Array.isArray(answer)) {
    throw invalidAnswer("is not a JSON object");
  }
  const format = (answer as { format?: unknown }).format;
  if (format !== coordinatorEvidenceFormat) {
    throw invalidAnswer(`has format ${JSON.stringify(format ?? null)}, expected ${JSON.stringify(coordinatorEvidenceFormat)}`);
  }
  const parsed = answerSchema.safeParse(answer);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue !== undefined && issue.path.length > 0 ? issue.path.join(".") : "top level";
    throw invalidAnswer(`is malformed at ${where}: ${issue?.message ?? "invalid"}`);
  }
  const a = parsed.data;
  const hashes = [a.latestTransition, a.rootCA, a.meshCA];
  let held: HeldState | null;
  if (hashes.every((h) => h === null)) held = null;
  else if (a.latestTransition !== null && a.rootCA !== null && a.meshCA !== null) {
    held = { latestTransition: a.latestTransition, rootCA: a.rootCA, meshCA: a.meshCA };
  } else {
    throw invalidAnswer("has some but not all of latestTransition, rootCA and meshCA");
  }
  const holds = a.state === "ready" || a.state === "stale";
  if (holds !== (held !== null)) {
    throw invalidAnswer(`says state ${a.state} but ${held === null ? "binds no" : "binds a"} held state`);
  }
  const key = decode(a.hpkePublicKey, "an hpkePublicKey");
  if (key.length !== 65 || key[0] !== 0x04) {
    const first = key.length === 0 ? "" : `, first byte 0x${toHex(key.subarray(0, 1))}`;
    throw invalidAnswer(`has an hpkePublicKey of ${key.length} bytes${first}, expected an uncompressed P-256 point (65 bytes, first byte 0x04)`);
  }
  return { ...a, held, key };
}

/** Runs a platform verifier, turning its AttestationError into ATTESTATION_FAILED with the verifier's code as the reason. */
async function platform<T>(run: () => Promise<T> | T, source: string): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (!(err instanceof AttestationError)) throw err;
    if (err.code === "SNP_NO_REFERENCE_VALUES" || err.code === "TDX_NO_REFERENCE_VALUES") {
      const name = err.code === "SNP_NO_REFERENCE_VALUES" ? "SEV-SNP" : "TDX";
      throw refused(err.code, `${err.code}: ${source} has no ${name} reference values, so no ${name} Coordinator can pass`, err);
    }
    throw refused(err.code, `${err.code}: ${err.message}`, err);
  }
}

function checkReportData(found: Uint8Array, expected: Uint8Array, held: HeldState | null, name: string): void {
  if (bytesEqual(found, expected)) return;
  const state = held === null ? "no held state" : `latestTransition ${held.latestTransition}, rootCA ${held.rootCA}, meshCA ${held.meshCA}`;
  throw refused(
    "COORDINATOR_REPORT_DATA_MISMATCH",
    `REPORT_DATA ${toHex(found)} is not the binding of this request's nonce and the answer's HPKE key, name ${JSON.stringify(name)} and ${state} ` +
      `(expected ${toHex(expected)}): the evidence was made for another nonce (stale or replayed) or the answer's key, name or state were changed`,
  );
}

function checkPolicy(found: string, field: string, reference: CoordinatorReference): void {
  if (reference.policyHashes.includes(found)) return;
  throw refused(
    "COORDINATOR_POLICY_MISMATCH",
    `${field} ${found} is not the hash of a policy with Role "${coordinatorRole}" in ${reference.source} ` +
      `(expected one of: ${reference.policyHashes.join(", ") || "none"})`,
  );
}

/**
 * Verifies an answer of `GET /v1/attestation` for `nonce`: the platform evidence against pinned
 * roots (AMD/Intel by default, or `roots`), REPORT_DATA == coordinatorReportData({nonce,
 * hpkePublicKey, name, state}) recomputed from the answer's fields, the reference values, and
 * HOST_DATA/MRCONFIGID ∈ policyHashes. Throws CoordinatorError ATTESTATION_FAILED whose `reason`
 * is COORDINATOR_EVIDENCE_INVALID, COORDINATOR_REPORT_DATA_MISMATCH, COORDINATOR_POLICY_MISMATCH or
 * the platform verifier's code; the message names the value that differs, found and expected.
 */
export async function verifyCoordinatorEvidence(
  answer: unknown,
  expect: { nonce: Uint8Array; reference: CoordinatorReference; roots?: AttestationRoots; now: Date },
): Promise<VerifiedCoordinator> {
  if (expect.nonce.length !== coordinatorNonceLength) throw new RangeError(`the nonce must have ${coordinatorNonceLength} bytes`);
  const { reference } = expect;
  const a = parseAnswer(answer);
  let reportData: Uint8Array;
  try {
    reportData = await coordinatorReportData({ nonce: expect.nonce, hpkePublicKey: a.key, name: a.name, state: a.held });
  } catch (err) {
    throw invalidAnswer(`cannot be bound: ${(err as Error).message}`);
  }
  const base = { name: a.name, state: a.held, hpkePublicKey: a.key };

  if (a.evidence.type === "amd-sev-snp") {
    const e = a.evidence;
    const input: SnpEvidence = { report: decode(e.report, "an evidence.report") };
    if (e.certificates !== undefined) {
      input.certificates = Object.fromEntries(Object.entries(e.certificates).map(([k, v]) => [k, decode(v, `evidence.certificates.${k}`)]));
    }
    if (e.certTable !== undefined) input.certTable = decode(e.certTable, "an evidence.certTable");
    const trustAnchors = expect.roots === undefined || expect.roots.snp.length === 0 ? amdTrustAnchors() : expect.roots.snp;
    const verified = await platform(() => verifySnpReport(input, { trustAnchors, now: expect.now }), reference.source);
    checkReportData(verified.report.reportData, reportData, a.held, a.name);
    const snpValues = reference.referenceValues.snp ?? [];
    await platform(() => {
      try {
        return checkSnpReferenceValues(verified, snpValues);
      } catch (err) {
        // With several entries the verifier names one; say that no entry for the product has this measurement.
        const forProduct = snpValues.filter((v) => v.ProductName === verified.product);
        const anyMatches = forProduct.some((v) => v.TrustedMeasurement.toLowerCase() === verified.measurementHex);
        if (err instanceof AttestationError && err.code === "SNP_MEASUREMENT_MISMATCH" && forProduct.length > 1 && !anyMatches) {
          const expected = [...new Set(forProduct.map((v) => v.TrustedMeasurement.toLowerCase()))].join(", ");
          throw new AttestationError(
            err.code,
            `MEASUREMENT ${verified.measurementHex} is not any reference value's TrustedMeasurement (expected one of: ${expected})`,
          );
        }
        throw err;
      }
    }, reference.source);
    checkPolicy(verified.hostDataHex, "HOST_DATA", reference);
    return { ...base, platform: "amd-sev-snp", policyHash: verified.hostDataHex };
  }

  const quote = decode(a.evidence.quote, "an evidence.quote");
  const trustedRoot = expect.roots?.tdx;
  const verified = await platform(
    () => verifyTdxQuote(quote, { now: expect.now, ...(trustedRoot === undefined ? {} : { trustedRoot }) }),
    reference.source,
  );
  checkReportData(verified.quote.body.reportData, reportData, a.held, a.name);
  await platform(() => checkTdxReferenceValues(verified, reference.referenceValues.tdx ?? []), reference.source);
  checkPolicy(verified.policyHash, "MRCONFIGID[0:32]", reference);
  return { ...base, platform: "intel-tdx", policyHash: verified.policyHash };
}
