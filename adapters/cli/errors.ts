// The CLI's one error type and the mapping from every failure (client, key, verification, file) to one line and an exit code.
import { ClientError } from "../../src/client/client.js";
import { KeyError } from "../../src/client/keys.js";
import { RetryTimeout, formatDuration } from "../../src/client/retry.js";
import { RollbackError } from "../../src/client/rollback.js";
import { VerificationError } from "../../src/client/verify.js";

/** Exit statuses: 0 success, 1 any failure, 2 a usage mistake (unknown flag, missing argument). */
export const exitCodes = { ok: 0, failure: 1, usage: 2 } as const;

/** A failure the user can act on: a stable code, what went wrong, and what to do. */
export class CliError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly exitCode: number;

  constructor(code: string, message: string, hint = "", exitCode: number = exitCodes.failure) {
    super(message);
    this.name = "CliError";
    this.code = code;
    this.hint = hint;
    this.exitCode = exitCode;
  }
}

/** A usage mistake (exit 2). */
export function usageError(message: string, hint = "see contrast --help"): CliError {
  return new CliError("USAGE", message, hint, exitCodes.usage);
}

/** What to do about a Coordinator error code. */
const serverHints: Record<string, string> = {
  UNREACHABLE: "check --coordinator (or CONTRAST_COORDINATOR) and that the Coordinator is running",
  REQUEST_TIMEOUT: "check that the Coordinator is healthy, then try again",
  BAD_RESPONSE: "check that --coordinator points at a Contrast Coordinator",
  NOT_INITIALIZED: "no manifest has been set: run contrast set first",
  RECOVERY_REQUIRED: "run contrast recover with a seed-share owner key",
  STALE: "the store moved under this Coordinator: run contrast recover to reload its state",
  STALE_BASE: "someone else updated the manifest first and nothing was changed: run contrast verify to see the new history, then contrast set again",
  STATE_CORRUPT: "the Coordinator's store was changed or damaged; do not trust it: restore the store from a backup and recover",
  STORE_UNAVAILABLE: "the Coordinator cannot reach its store; try again later",
  UNAUTHORIZED_UPDATE: "sign with a workload-owner key listed in the current manifest (workload-owner.pem)",
  UPDATES_DISABLED: "the current manifest names no workload owner, so it can never be updated",
  SEED_MISMATCH: "use the seed-shares.json and seed-share owner key of this Coordinator",
  SALT_MISMATCH: "use the newest seed-shares.json of this Coordinator",
  SHARE_INVALID: "the share is corrupted: restore seed-shares.json from your backup and run contrast seedshare check",
  SHARE_REPEATED: "this share was already submitted: the other seed-share owners must run contrast recover",
  NOT_IN_RECOVERY: "the Coordinator needs no recovery",
  INVALID_MANIFEST: "fix manifest.json (or run contrast generate)",
  POLICY_MISSING: "put every policy the manifest references into policies/",
  ATTESTATION_UNSUPPORTED: "start the Coordinator with the attestation validator this evidence needs",
  ATTESTATION_FAILED: "the evidence was refused",
  POLICY_NOT_IN_MANIFEST: "this policy is not in the Coordinator's current manifest",
};

/** Hints for offline verification failures. */
const verifyHints: Record<string, string> = {
  ROOT_CA_MISMATCH:
    "do not trust this Coordinator: check --coordinator; if its state was deliberately replaced, use a fresh workspace",
  CERTIFICATE_INVALID: "do not trust this Coordinator: its certificates do not chain as they must",
  HEAD_INVALID: "do not trust this Coordinator: its signed head does not verify",
  HISTORY_INVALID: "do not trust this Coordinator: its history was tampered with",
  ROLLBACK: "do not trust this Coordinator: restore its store to the newest state, then run contrast recover",
  FORK: "do not trust this Coordinator: restore its store to the newest state, then run contrast recover",
};

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

/** Turns any failure into a CliError (unknown errors become INTERNAL). */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof RetryTimeout) {
    const last = toCliError(err.last);
    return new CliError(last.code, `gave up after ${formatDuration(err.elapsedMs)}: ${last.message}`, last.hint || "raise --timeout to wait longer");
  }
  if (err instanceof ClientError) {
    const key = err.key === undefined ? "" : ` (store key ${err.key})`;
    const status = err.status === null ? "" : ` [${err.status} ${err.code}]`;
    return new CliError(err.code, `${err.message}${key}${err.status === null ? "" : status}`, serverHints[err.code] ?? "");
  }
  if (err instanceof KeyError) return new CliError(err.code, err.message, "key files are PEM as openssl writes them");
  if (err instanceof VerificationError || err instanceof RollbackError) {
    return new CliError(err.code, `verification failed: ${err.message}`, verifyHints[err.code] ?? "");
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CliError("INTERNAL", `internal error: ${message}`, "please report this (set CONTRAST_DEBUG=1 for a stack trace)");
}

/** The single stderr line of a failure. */
export function errorLine(err: CliError): string {
  const hint = err.hint === "" ? "" : `; ${err.hint}`;
  return oneLine(`contrast: error: ${err.message}${hint}`);
}
