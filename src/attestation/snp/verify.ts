// The AMD SEV-SNP verifier: a report and its certificates, checked against pinned AMD roots at a given time, give the verified report fields.
//
// Public API (runtime-neutral: WebCrypto and @peculiar ASN.1/X.509 only, no network, clock injected):
//
//   verifySnpReport(evidence, { trustAnchors, now }) → SnpVerifiedReport
//     evidence = { report: 1184 bytes, certificates?: { vcek | vlek, ask | asvk, ark? } (DER or PEM),
//                  certTable?: the extended report's certificate table }
//     trustAnchors = amdTrustAnchors() in production (ARK pinned by SHA-256 per product, plus AMD's
//                  ASK/ASVK so that evidence may bring only its VCEK/VLEK); tests pin a simulated ARK.
//     Checks, in order: report structure (length, version 2/3/5, SIGNATURE_ALGO, reserved bytes,
//     policy and signer-info bits); the chain ARK → ASK → VCEK or ARK → ASVK → VLEK (RSA-PSS
//     SHA-384, MGF1-SHA-384, salt 48, over the exact TBS bytes, ARK pinned, validity at `now`); the
//     report signature (ECDSA P-384/SHA-384 over 0x000..0x29F, r/s little-endian with their upper
//     24 bytes zero); the product (CPUID of v3+ reports against the VCEK/VLEK and the chain);
//     REPORTED_TCB equal to the certificate's TCB (Turin layout on Turin); CHIP_ID equal to the
//     VCEK's hwID (unless masked to zero); the TCBs' own consistency (committed and reported at
//     most current, committed firmware version at most current).
//     It applies no policy: debug, VMPL, measurement, minimum TCB etc. are the reference values' job.
//     It checks no revocation list: the Coordinator never reaches AMD's KDS, and no CRL comes with
//     the evidence (a limitation; Contrast's verifier fetches or caches the KDS CRL).
//   checkReferenceValues(verified, values[]) → index of the first entry the report satisfies
//     (reference-values.ts; Contrast's SNPReferenceValues shape, zod schema `snpReferenceValuesSchema`,
//     parser `parseSnpReferenceValues`); a debuggable guest and a VMPL other than 0 are always refused.
//   expectedReportData(spki, nonce) (../report-data.ts) → SHA-512(SPKI DER ‖ nonce), the 64-byte REPORT_DATA Contrast binds.
//   checkReportData(verified, expected) → throws SNP_REPORT_DATA_MISMATCH.
//   verifySnpAttestation(evidence, { trustAnchors, now, referenceValues, reportData }) → all of the above.
//   `verified.hostDataHex` is HOST_DATA in hex: the policy hash that selects the manifest entry.
//
// Every refusal is an AttestationError (errors.ts) with a stable SNP_* code.
import { bytesEqual, concat, toHex } from "../../encoding.js";
import { subtle } from "../../crypto/provider.js";
import { AttestationError } from "../errors.js";
import { certificatesFromTable, verifySnpChain } from "./certificates.js";
import type { EndorsementExtensions, SnpCertificates, SnpTrustAnchor } from "./certificates.js";
import {
  decodeGuestPolicy,
  decodePlatformInfo,
  decodeTcb,
  encodeTcb,
  parseSnpReport,
  productFromCpuid,
  signedPart,
  tcbAtMost,
} from "./report.js";
import type { SnpGuestPolicy, SnpPlatformInfo, SnpProduct, SnpReport, SnpSigningKey, SnpTcb } from "./report.js";
import { checkReferenceValues } from "./reference-values.js";
import type { SnpReferenceValues } from "./reference-values.js";

/** One piece of SNP evidence: the report and the certificates that come with it. */
export interface SnpEvidence {
  /** The 1184-byte attestation report. */
  report: Uint8Array;
  /** The certificates given in the request (DER or PEM). */
  certificates?: SnpCertificates;
  /** The extended report's certificate table; entries given in `certificates` take precedence. */
  certTable?: Uint8Array;
}

/** What the verifier trusts, and when it verifies. */
export interface SnpVerifyOptions {
  /** The pinned roots (amdTrustAnchors() in production). */
  trustAnchors: readonly SnpTrustAnchor[];
  /** The time at which the certificates must be valid. */
  now: Date;
}

/** A report whose signature, chain and consistency have been verified. */
export interface SnpVerifiedReport {
  product: SnpProduct;
  signer: SnpSigningKey;
  report: SnpReport;
  policy: SnpGuestPolicy;
  platformInfo: SnpPlatformInfo;
  tcb: { current: SnpTcb; reported: SnpTcb; committed: SnpTcb; launch: SnpTcb };
  /** The VCEK/VLEK's extensions and validity. */
  endorsement: { extensions: EndorsementExtensions; notBefore: Date; notAfter: Date; sha256: string };
  /** SHA-256 of the pinned ARK the chain ends in. */
  arkSha256: string;
  /** HOST_DATA in hex: in Contrast, the SHA-256 of the workload's runtime policy. */
  hostDataHex: string;
  /** MEASUREMENT in hex. */
  measurementHex: string;
}

function fail(code: ConstructorParameters<typeof AttestationError>[0], message: string): AttestationError {
  return new AttestationError(code, message);
}

/** The signature's r and s (72-byte little-endian, upper 24 bytes zero) as WebCrypto's 96-byte big-endian r ‖ s. */
export function amdSignatureToP1363(signature: { r: Uint8Array; s: Uint8Array }): Uint8Array {
  const part = (v: Uint8Array, name: string): Uint8Array => {
    if (v.length !== 72) throw fail("SNP_SIGNATURE_MALFORMED", `${name} must have 72 bytes`);
    for (let i = 48; i < 72; i++) {
      if (v[i] !== 0) throw fail("SNP_SIGNATURE_MALFORMED", `the upper 24 bytes of ${name} must be zero`);
    }
    return v.slice(0, 48).reverse();
  };
  return concat(part(signature.r, "r"), part(signature.s, "s"));
}

function mergeCertificates(evidence: SnpEvidence, signer: SnpSigningKey): SnpCertificates {
  const fromTable = evidence.certTable === undefined ? {} : certificatesFromTable(evidence.certTable, signer);
  return { ...fromTable, ...(evidence.certificates ?? {}) };
}

function versionAtMost(
  low: SnpReport["committedVersion"],
  high: SnpReport["currentVersion"],
): boolean {
  const lowApi = low.major * 256 + low.minor;
  const highApi = high.major * 256 + high.minor;
  return lowApi <= highApi && low.build <= high.build;
}

/** Verifies an SNP report and its chain at `options.now`; see the module comment for the checks and codes. */
export async function verifySnpReport(evidence: SnpEvidence, options: SnpVerifyOptions): Promise<SnpVerifiedReport> {
  if (!(options.now instanceof Date) || Number.isNaN(options.now.getTime())) throw new TypeError("now must be a valid Date");
  const report = parseSnpReport(evidence.report);
  const chain = await verifySnpChain(mergeCertificates(evidence, report.signingKey), report.signingKey, options.trustAnchors, options.now);

  const p1363 = amdSignatureToP1363(report.signature);
  const signatureValid = await subtle()
    .verify({ name: "ECDSA", hash: "SHA-384" }, chain.endorsementKey, p1363 as BufferSource, signedPart(report) as BufferSource)
    .catch(() => false);
  if (!signatureValid) throw fail("SNP_SIGNATURE_INVALID", `the report's signature does not verify with the ${chain.signer.toUpperCase()}`);

  const product = chain.product;
  if (report.cpuid !== null) {
    const fromCpuid = productFromCpuid(report.cpuid);
    if (fromCpuid === null) {
      throw fail(
        "SNP_PRODUCT_UNKNOWN",
        `CPUID family 0x${report.cpuid.family.toString(16)} model 0x${report.cpuid.model.toString(16)} is no known product`,
      );
    }
    if (fromCpuid !== product) {
      throw fail("SNP_PRODUCT_MISMATCH", `the report's CPUID says ${fromCpuid}, its ${chain.signer.toUpperCase()} says ${product}`);
    }
  }

  const ext = chain.extensions;
  const certTcb = encodeTcb(
    {
      fmc: ext.fmcSpl,
      bootloader: ext.blSpl,
      tee: ext.teeSpl,
      snp: ext.snpSpl,
      microcode: ext.ucodeSpl,
      spl4: product === "Turin" ? null : ext.spl4,
      spl5: ext.spl5,
      spl6: ext.spl6,
      spl7: ext.spl7,
    },
    product,
  );
  if (!bytesEqual(certTcb, report.reportedTcb)) {
    throw fail(
      "SNP_TCB_MISMATCH",
      `REPORTED_TCB ${toHex(report.reportedTcb)} is not the ${chain.signer.toUpperCase()}'s TCB ${toHex(certTcb)}`,
    );
  }

  if (chain.signer === "vcek") {
    const chipIdZero = report.chipId.every((b) => b === 0);
    if (!chipIdZero) {
      const hwid = ext.hwid!;
      const expected = concat(hwid, new Uint8Array(64 - hwid.length));
      if (report.maskChipKey || !bytesEqual(report.chipId, expected)) {
        throw fail("SNP_CHIP_ID_MISMATCH", "CHIP_ID is not the VCEK's hwID");
      }
    }
  }

  const tcb = {
    current: decodeTcb(report.currentTcb, product),
    reported: decodeTcb(report.reportedTcb, product),
    committed: decodeTcb(report.committedTcb, product),
    launch: decodeTcb(report.launchTcb, product),
  };
  if (!tcbAtMost(tcb.committed, tcb.current)) throw fail("SNP_TCB_INCONSISTENT", "COMMITTED_TCB is above CURRENT_TCB");
  if (!tcbAtMost(tcb.reported, tcb.current)) throw fail("SNP_TCB_INCONSISTENT", "REPORTED_TCB is above CURRENT_TCB");
  if (!versionAtMost(report.committedVersion, report.currentVersion)) {
    throw fail("SNP_TCB_INCONSISTENT", "the committed firmware version is above the current one");
  }

  return {
    product,
    signer: chain.signer,
    report,
    policy: decodeGuestPolicy(report.policy),
    platformInfo: decodePlatformInfo(report.platformInfo),
    tcb,
    endorsement: {
      extensions: ext,
      notBefore: chain.endorsement.notBefore,
      notAfter: chain.endorsement.notAfter,
      sha256: chain.endorsement.sha256,
    },
    arkSha256: chain.arkSha256,
    hostDataHex: toHex(report.hostData),
    measurementHex: toHex(report.measurement),
  };
}

/** Refuses a report whose REPORT_DATA is not `expected` (64 bytes) with SNP_REPORT_DATA_MISMATCH. */
export function checkReportData(verified: SnpVerifiedReport, expected: Uint8Array): void {
  if (expected.length !== 64 || !bytesEqual(verified.report.reportData, expected)) {
    throw fail("SNP_REPORT_DATA_MISMATCH", "REPORT_DATA does not commit to the expected key and nonce");
  }
}

/** Options of the one-call check a validator makes. */
export interface SnpAttestationOptions extends SnpVerifyOptions {
  /** The manifest's SNP reference values; the evidence must satisfy one entry. */
  referenceValues: readonly SnpReferenceValues[];
  /** The REPORT_DATA the report must carry (expectedReportData(spki, nonce)). */
  reportData: Uint8Array;
}

/** Verifies the evidence, its REPORT_DATA binding and the reference values; returns the report and the entry it satisfied. */
export async function verifySnpAttestation(
  evidence: SnpEvidence,
  options: SnpAttestationOptions,
): Promise<{ verified: SnpVerifiedReport; referenceValuesIndex: number }> {
  const verified = await verifySnpReport(evidence, options);
  checkReportData(verified, options.reportData);
  const referenceValuesIndex = checkReferenceValues(verified, options.referenceValues);
  return { verified, referenceValuesIndex };
}
