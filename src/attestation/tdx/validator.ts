// The Intel TDX validator: a quote bound to the key to certify and a fresh nonce, verified against the pinned root and the manifest's reference values.
import { z } from "zod";
import { expectedReportData } from "../report-data.js";
import { evidenceBytes, parseEvidence, verifying } from "../validator.js";
import type { AttestationContext, AttestationResult, AttestationValidator } from "../validator.js";
import { checkReferenceValues } from "./reference-values.js";
import { verifyTdxQuote } from "./verify.js";
import type { VerifiedTdxQuote } from "./verify.js";
import { bytesClaim, integerClaim, tdxClaimsArc } from "../claims.js";
import type { Claim } from "../claims.js";

/** The evidence type of TDX workloads. */
export const tdxEvidenceType = "intel-tdx";

/** The request's TDX evidence: the quote (with its PCK chain) and the nonce it binds. */
export const tdxEvidenceSchema = z.lazy(() =>
  z
    .object({
      type: z.literal(tdxEvidenceType),
      nonce: z.string().max(128),
      quote: z.string().max(48 * 1024).regex(/^[A-Za-z0-9+/]*={0,2}$/, "standard base64").describe("the TD quote (v4 or v5), base64"),
    })
    .strict(),
);

/** The quote's TD report claims under Contrast's TDX arc (1.3.9901.2.2.n, n as Contrast numbers them). */
export function tdxClaims(verified: VerifiedTdxQuote): Claim[] {
  const f = verified.fields;
  const arc = (n: number) => `${tdxClaimsArc}.${n}`;
  return [
    integerClaim(arc(1), verified.version),
    bytesClaim(arc(8), f.tee_tcb_svn),
    bytesClaim(arc(9), f.mrseam),
    bytesClaim(arc(10), f.mrsignerseam),
    bytesClaim(arc(11), f.seam_attributes),
    bytesClaim(arc(12), f.td_attributes),
    bytesClaim(arc(13), f.xfam),
    bytesClaim(arc(14), f.mrtd),
    bytesClaim(arc(15), f.mrconfigid),
    bytesClaim(arc(16), f.mrowner),
    bytesClaim(arc(17), f.mrownerconfig),
    bytesClaim(arc(18), f.rtmr0),
    bytesClaim(arc(19), f.rtmr1),
    bytesClaim(arc(20), f.rtmr2),
    bytesClaim(arc(21), f.rtmr3),
    bytesClaim(arc(22), f.report_data),
  ];
}

/**
 * A TDX validator over the given root (Intel's SGX Root CA by default). REPORT_DATA must be
 * SHA-512(SPKI ‖ nonce), the quote must satisfy one `ReferenceValues.tdx` entry, and MRCONFIGID's
 * first 32 bytes are the policy hash. No collateral is given, so the TCB status is not checked.
 */
export function tdxValidator(trustedRoot?: string | Uint8Array): AttestationValidator {
  return {
    type: tdxEvidenceType,
    insecure: false,
    async validate(evidence: unknown, context: AttestationContext): Promise<AttestationResult> {
      const e = parseEvidence(tdxEvidenceSchema, evidence, "TDX");
      const nonce = await context.consumeNonce(e.nonce);
      const verified = await verifying(async () => {
        const quote = await verifyTdxQuote(evidenceBytes(e.quote, "quote"), {
          now: context.now,
          ...(trustedRoot === undefined ? {} : { trustedRoot }),
          expectedReportData: await expectedReportData(context.publicKey, nonce),
        });
        checkReferenceValues(quote, context.referenceValues?.tdx ?? []);
        return quote;
      });
      return { policyHash: verified.policyHash, claims: tdxClaims(verified) };
    },
  };
}
