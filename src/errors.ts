// Domain errors with stable codes, and the one mapping from code to HTTP status.

/** Every error code the Coordinator can answer with; clients switch on these, never on messages. */
export const errorStatus = {
  INVALID_REQUEST: 400,
  ATTESTATION_REQUIRED: 401,
  INVALID_JSON: 400,
  INVALID_MANIFEST: 400,
  POLICY_MISSING: 400,
  POLICY_NOT_REFERENCED: 400,
  ATTESTATION_UNSUPPORTED: 400,
  INVALID_REFERENCE_VALUES: 400,
  COORDINATOR_POLICY_MISSING: 400,
  SEALED_SHARE_INVALID: 400,
  SHARE_NOT_SEALED: 400,
  UNAUTHORIZED_UPDATE: 403,
  UPDATES_DISABLED: 403,
  ATTESTATION_FAILED: 403,
  NONCE_INVALID: 403,
  NONCE_EXPIRED: 403,
  NONCE_REPLAYED: 403,
  POLICY_NOT_IN_MANIFEST: 403,
  SEED_MISMATCH: 403,
  SALT_MISMATCH: 403,
  SHARE_INVALID: 403,
  REKEY_NOT_APPROVED: 403,
  RESET_UNAUTHORIZED: 403,
  NOT_FOUND: 404,
  EVIDENCE_UNAVAILABLE: 404,
  METHOD_NOT_ALLOWED: 405,
  HOST_NOT_ALLOWED: 421,
  STALE_BASE: 409,
  NOT_INITIALIZED: 409,
  RECOVERY_REQUIRED: 409,
  NOT_IN_RECOVERY: 409,
  STALE: 409,
  SHARE_REPEATED: 409,
  NO_RECOVERY_ATTEMPT: 409,
  ATTEMPT_CHANGED: 409,
  PEERS_READY: 409,
  ROLLBACK_DETECTED: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
  CONFIG_INVALID: 500,
  STATE_CORRUPT: 502,
  STORE_UNAVAILABLE: 503,
  BUSY: 503,
  EVIDENCE_FAILED: 503,
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof errorStatus;

/** The one error type the core throws on purpose; its code decides the HTTP status. */
export class CoordinatorError extends Error {
  readonly code: ErrorCode;
  /** The store key an integrity error is about, if any. */
  readonly key: string | undefined;
  /** A finer, equally stable reason, e.g. the attestation verifier's code behind ATTESTATION_FAILED. */
  readonly reason: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; key?: string; reason?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CoordinatorError";
    this.code = code;
    this.key = options?.key;
    this.reason = options?.reason;
  }

  /** The HTTP status for this error. */
  get status(): number {
    return errorStatus[this.code];
  }
}

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; key?: string; reason?: string };
}

/** Turns an error into its response body. */
export function errorBody(err: CoordinatorError): ErrorBody {
  const error: ErrorBody["error"] = { code: err.code, message: err.message };
  if (err.key !== undefined) error.key = err.key;
  if (err.reason !== undefined) error.reason = err.reason;
  return { error };
}
