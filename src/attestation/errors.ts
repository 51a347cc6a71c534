// Errors of the attestation verifiers (SEV-SNP, TDX), each with a stable code that tests and validators switch on.

/** Codes of the AMD SEV-SNP verifier. */
export const snpErrorCodes = [
  "SNP_REPORT_MALFORMED",
  "SNP_REPORT_VERSION_UNSUPPORTED",
  "SNP_SIGNATURE_ALGORITHM_UNSUPPORTED",
  "SNP_SIGNATURE_MALFORMED",
  "SNP_SIGNATURE_INVALID",
  "SNP_CERTIFICATE_MALFORMED",
  "SNP_CERTIFICATE_MISSING",
  "SNP_CERTIFICATE_EXPIRED",
  "SNP_CERTIFICATE_NOT_YET_VALID",
  "SNP_CHAIN_INVALID",
  "SNP_ARK_NOT_PINNED",
  "SNP_PRODUCT_UNKNOWN",
  "SNP_PRODUCT_MISMATCH",
  "SNP_SIGNING_KEY_UNSUPPORTED",
  "SNP_TCB_MISMATCH",
  "SNP_TCB_INCONSISTENT",
  "SNP_CHIP_ID_MISMATCH",
  "SNP_VMPL_MISMATCH",
  "SNP_DEBUG_ENABLED",
  "SNP_POLICY_MISMATCH",
  "SNP_MEASUREMENT_MISMATCH",
  "SNP_TCB_TOO_LOW",
  "SNP_LAUNCH_TCB_TOO_LOW",
  "SNP_PRODUCT_NOT_ALLOWED",
  "SNP_PLATFORM_INFO_MISMATCH",
  "SNP_CHIP_ID_NOT_ALLOWED",
  "SNP_MITIGATION_VECTOR_TOO_LOW",
  "SNP_REPORT_DATA_MISMATCH",
  "SNP_HOST_DATA_MISMATCH",
  "SNP_REFERENCE_VALUES_INVALID",
  "SNP_NO_REFERENCE_VALUES",
] as const;

/** Codes of the Intel TDX verifier (src/attestation/tdx/). */
export const tdxErrorCodes = [
  // The quote's structure (quote.ts).
  "TDX_QUOTE_MALFORMED",
  "TDX_QUOTE_VERSION_UNSUPPORTED",
  "TDX_ATTESTATION_KEY_TYPE_UNSUPPORTED",
  "TDX_TEE_TYPE_UNSUPPORTED",
  "TDX_BODY_TYPE_UNSUPPORTED",
  "TDX_CERTIFICATION_DATA_UNSUPPORTED",
  // The PCK certificate chain and the signatures (verify.ts).
  "TDX_CERTIFICATE_MALFORMED",
  "TDX_CERTIFICATE_EXPIRED",
  "TDX_CHAIN_INVALID",
  "TDX_ROOT_NOT_PINNED",
  "TDX_PCK_EXTENSIONS_MALFORMED",
  "TDX_QE_REPORT_SIGNATURE_INVALID",
  "TDX_QE_REPORT_DATA_MISMATCH",
  "TDX_QUOTE_SIGNATURE_INVALID",
  "TDX_QE_VENDOR_ID_MISMATCH",
  "TDX_REPORT_DATA_MISMATCH",
  // Offline collateral (collateral.ts).
  "TDX_COLLATERAL_MALFORMED",
  "TDX_COLLATERAL_SIGNATURE_INVALID",
  "TDX_COLLATERAL_EXPIRED",
  "TDX_COLLATERAL_MISMATCH",
  "TDX_CERTIFICATE_REVOKED",
  "TDX_TCB_LEVEL_NOT_FOUND",
  "TDX_TDX_MODULE_MISMATCH",
  "TDX_QE_IDENTITY_MISMATCH",
  "TDX_TCB_STATUS_NOT_ACCEPTED",
  // Reference values (reference-values.ts).
  "TDX_REFERENCE_VALUES_INVALID",
  "TDX_NO_REFERENCE_VALUES",
  "TDX_MRTD_MISMATCH",
  "TDX_RTMR_MISMATCH",
  "TDX_MRSEAM_MISMATCH",
  "TDX_XFAM_MISMATCH",
  "TDX_DEBUG_ENABLED",
  "TDX_TD_ATTRIBUTES_MISMATCH",
  "TDX_MRCONFIGID_MISMATCH",
  "TDX_TCB_NOT_CHECKED",
  "TDX_TCB_EVALUATION_DATA_NUMBER_TOO_LOW",
  "TDX_PIID_NOT_ALLOWED",
  "TDX_MEMORY_INTEGRITY_MISSING",
  "TDX_SMT_ENABLED",
  "TDX_DYNAMIC_PLATFORM",
] as const;

/** Codes shared by all verifiers. */
export const commonAttestationErrorCodes = ["ATTESTATION_EVIDENCE_INVALID"] as const;

/** A stable attestation error code. */
export type AttestationErrorCode =
  | (typeof snpErrorCodes)[number]
  | (typeof tdxErrorCodes)[number]
  | (typeof commonAttestationErrorCodes)[number];

/** A refused piece of evidence; `code` says which check refused it, the message says why in words. */
export class AttestationError extends Error {
  readonly code: AttestationErrorCode;

  constructor(code: AttestationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AttestationError";
    this.code = code;
  }
}

/** Whether a value is an AttestationError (with the given code, if one is given). */
export function isAttestationError(err: unknown, code?: AttestationErrorCode): err is AttestationError {
  return err instanceof AttestationError && (code === undefined || err.code === code);
}
