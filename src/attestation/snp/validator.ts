// The AMD SEV-SNP validator: evidence bound to the key to certify and a fresh nonce, verified against pinned roots and the manifest's reference values.
import { z } from "zod";
import { expectedReportData } from "../report-data.js";
import { evidenceBytes, parseEvidence, verifying } from "../validator.js";
import type { AttestationContext, AttestationResult, AttestationValidator } from "../validator.js";
import { amdTrustAnchors } from "./amd-roots.js";
import type { SnpTrustAnchor } from "./certificates.js";
import { verifySnpAttestation } from "./verify.js";
import type { SnpEvidence, SnpVerifiedReport } from "./verify.js";
import type { SnpTcb } from "./report.js";
import { booleanClaim, bytesClaim, integerClaim, snpClaimsArc } from "../claims.js";
import type { Claim } from "../claims.js";

/** The evidence type of SEV-SNP workloads. */
export const snpEvidenceType = "amd-sev-snp";

const b64 = (max: number) => z.string().max(max).regex(/^[A-Za-z0-9+/]*={0,2}$/, "standard base64");

/** The request's SEV-SNP evidence: the report, the certificates (or the extended report's table), and the nonce it binds. */
export const snpEvidenceSchema = z.lazy(() =>
  z
    .object({
      type: z.literal(snpEvidenceType),
      nonce: z.string().max(128),
      report: b64(2048).describe("the 1184-byte attestation report, base64"),
      certificates: z
        .object({ vcek: b64(8192), vlek: b64(8192), ask: b64(8192), asvk: b64(8192), ark: b64(8192) })
        .partial()
        .strict()
        .optional()
        .describe("DER certificates, base64: the VCEK or VLEK, and optionally the ASK/ASVK and ARK"),
      certTable: b64(32 * 1024).optional().describe("the extended report's certificate table, base64"),
    })
    .strict(),
);

/** The report's claims under Contrast's SEV-SNP arc (1.3.9901.2.1.n, n as Contrast numbers them). */
export function snpClaims(verified: SnpVerifiedReport): Claim[] {
  const r = verified.report;
  const p = verified.policy;
  const arc = (n: number) => `${snpClaimsArc}.${n}`;
  const tcb = (first: number, t: SnpTcb) => [
    integerClaim(arc(first), t.bootloader),
    integerClaim(arc(first + 1), t.snp),
    integerClaim(arc(first + 2), t.tee),
    integerClaim(arc(first + 3), t.microcode),
  ];
  return [
    integerClaim(arc(1), r.version),
    integerClaim(arc(2), r.guestSvn),
    integerClaim(arc(3), p.abiMajor),
    integerClaim(arc(4), p.abiMinor),
    booleanClaim(arc(5), p.debug),
    booleanClaim(arc(6), p.migrateMa),
    booleanClaim(arc(7), p.smt),
    booleanClaim(arc(8), p.singleSocket),
    bytesClaim(arc(9), r.familyId),
    bytesClaim(arc(10), r.imageId),
    integerClaim(arc(11), r.vmpl),
    ...tcb(12, verified.tcb.current),
    bytesClaim(arc(21), r.reportData),
    bytesClaim(arc(22), r.measurement),
    bytesClaim(arc(23), r.hostData),
    bytesClaim(arc(24), r.idKeyDigest),
    bytesClaim(arc(25), r.authorKeyDigest),
    bytesClaim(arc(26), r.reportId),
    bytesClaim(arc(27), r.reportIdMa),
    ...tcb(28, verified.tcb.reported),
    bytesClaim(arc(32), r.chipId),
    ...tcb(33, verified.tcb.committed),
    ...tcb(43, verified.tcb.launch),
  ];
}

/**
 * A SEV-SNP validator over the given roots (AMD's pinned ARKs by default). REPORT_DATA must be
 * SHA-512(SPKI ‖ nonce), the report must satisfy one `ReferenceValues.snp` entry, and HOST_DATA is
 * the policy hash.
 */
export function snpValidator(trustAnchors: readonly SnpTrustAnchor[] = amdTrustAnchors()): AttestationValidator {
  return {
    type: snpEvidenceType,
    insecure: false,
    async validate(evidence: unknown, context: AttestationContext): Promise<AttestationResult> {
      const e = parseEvidence(snpEvidenceSchema, evidence, "SEV-SNP");
      const nonce = await context.consumeNonce(e.nonce);
      const input: SnpEvidence = { report: evidenceBytes(e.report, "report") };
      if (e.certificates !== undefined) {
        input.certificates = Object.fromEntries(Object.entries(e.certificates).map(([k, v]) => [k, evidenceBytes(v, `certificates.${k}`)]));
      }
      if (e.certTable !== undefined) input.certTable = evidenceBytes(e.certTable, "certTable");
      const { verified } = await verifying(async () =>
        verifySnpAttestation(input, {
          trustAnchors,
          now: context.now,
          referenceValues: context.referenceValues?.snp ?? [],
          reportData: await expectedReportData(context.publicKey, nonce),
        }),
      );
      return { policyHash: verified.hostDataHex, claims: snpClaims(verified) };
    },
  };
}
