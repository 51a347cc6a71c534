// The CLI's one error type and the mapping from every failure (client, key, verification, file) to one line and an exit code.
import { ClientError, isPlainHttpAnswer } from "../../src/client/client.js";
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

/** What to do about a Coordinator error code (never a restatement of the error: the message says what happened). */
const serverHints: Record<string, string> = {
  UNREACHABLE: "check --coordinator (or CONTRAST_COORDINATOR) and that the Coordinator is running",
  REQUEST_TIMEOUT:
    "something accepted the connection but did not answer: check the Coordinator's log and /healthz, and --coordinator; raise --timeout if it is only slow",
  BAD_RESPONSE: "check that --coordinator is a Contrast Coordinator's base URL, e.g. http://127.0.0.1:1313",
  NOT_FOUND: "check that --coordinator is the Coordinator's base URL (e.g. http://127.0.0.1:1313, without /v1) and that the Coordinator is as new as this CLI",
  METHOD_NOT_ALLOWED: "the Coordinator and this CLI are of different versions: use matching ones",
  INVALID_REQUEST: "the Coordinator and this CLI disagree about the API: use matching versions",
  INVALID_JSON: "the Coordinator and this CLI disagree about the API: use matching versions",
  UNSUPPORTED_MEDIA_TYPE: "the Coordinator and this CLI disagree about the API: use matching versions",
  PAYLOAD_TOO_LARGE: "a manifest with its policies may be at most 32 MiB: make the policies smaller",
  HOST_NOT_ALLOWED: "use a host name in --coordinator that the Coordinator's --allowed-hosts lists",
  INTERNAL: "look at the Coordinator's log (JSON lines on its stdout) and report the error",
  CONFIG_INVALID: "fix the Worker's configuration (its log names the setting; see docs/edge.md)",
  BUSY: "try again in a few seconds",
  EVIDENCE_UNAVAILABLE: "the Coordinator serves no evidence of its own: start it with --evidence tsm in a confidential VM",
  EVIDENCE_FAILED: "the Coordinator's TEE could not make evidence: check its log, then try again",
  NOT_INITIALIZED: "the workload owner runs contrast set first",
  RECOVERY_REQUIRED: "each seed-share owner runs contrast recover (contrast status shows how many shares it has)",
  STALE: "the store moved under this Coordinator: a seed-share owner runs contrast recover to reload its state",
  STALE_BASE: "someone else updated the manifest first and nothing was changed: run contrast verify to see the new history, then contrast set again",
  STATE_CORRUPT: "the Coordinator's store was changed or damaged; do not trust it: restore the store from a backup and recover",
  STORE_UNAVAILABLE: "check the store (its disk, or the Kubernetes API) and the Coordinator's log, then try again",
  UNAUTHORIZED_UPDATE: "sign with a workload-owner key listed in the current manifest (workload-owner.pem)",
  UPDATES_DISABLED:
    "this manifest can never change: to run other workloads, set up a new Coordinator (a fresh store) with a manifest that names a workload owner",
  SEED_MISMATCH: "use the seed-shares.json and seed-share owner key of this Coordinator",
  INVALID_REFERENCE_VALUES: "pass a manifest, or JSON with its Policies and ReferenceValues, as --coordinator-reference-values",
  COORDINATOR_POLICY_MISSING: "list the Coordinator's policy with Role \"coordinator\" in the manifest, or pass --coordinator-reference-values FILE",
  SHARE_NOT_SEALED: "this Coordinator serves evidence and takes only shares sealed to its attested key: use a contrast CLI as new as the Coordinator",
  SEALED_SHARE_INVALID: "the sealed share does not open with this Coordinator's key (it restarted meanwhile, or something changed the request): run contrast recover again",
  ATTEMPT_CHANGED: "another owner reset the recovery or it expired meanwhile: run contrast recover again",
  PEERS_READY:
    "a ready peer replica exists, and this replica recovers from it by itself within seconds (contrast status): wait; only if no peer can serve it, contrast recover --force, which can split the replicas into two histories",
  ROLLBACK_DETECTED:
    "the store holds an older head than a ready peer replica: restore the newest head in the store (this replica then recovers from the peer by itself); do not recover it with --force",
  SALT_MISMATCH: "use the newest seed-shares.json of this Coordinator",
  SHARE_INVALID: "the share is corrupted: restore seed-shares.json from your backup and run contrast seedshare check",
  SHARE_REPEATED: "this share was already submitted: the other seed-share owners must run contrast recover",
  NOT_IN_RECOVERY: "nothing to do: contrast status shows its state",
  REKEY_NOT_APPROVED:
    "changing the seed-share owners or the threshold needs t current owners' approvals: each runs contrast seedshare approve on a copy of the workspace and hands back the file for approvals/",
  RESET_UNAUTHORIZED: "only a seed-share owner of this Coordinator can reset its recovery: pass your own key with --seedshare-owner-key",
  NO_RECOVERY_ATTEMPT: "no share has been received in the current attempt, so there is nothing to reset",
  INVALID_MANIFEST: "fix manifest.json (or run contrast generate)",
  POLICY_MISSING: "put every policy the manifest references into policies/ (or run contrast generate)",
  POLICY_NOT_REFERENCED: "send only the policies the manifest references (contrast set does)",
  ATTESTATION_UNSUPPORTED:
    "the Coordinator has no validator for this evidence: it must run with --attestation sev-snp or tdx for such evidence, or insecure-simulated for --attestation insecure-simulated (development only)",
  ATTESTATION_FAILED: "the evidence must show the platform and policy the manifest's ReferenceValues and Policies describe",
  ATTESTATION_REQUIRED:
    "the Coordinator wants evidence bound to one of its nonces: get one with contrast mesh-cert --nonce, have the workload's TEE make evidence for it and the key, then pass --evidence FILE --key FILE",
  NONCE_INVALID:
    "the evidence's nonce is not one this Coordinator issued (or it restarted since): get a new one with contrast mesh-cert --nonce and make the evidence again",
  NONCE_EXPIRED: "a nonce is good for 5 minutes: get a new one with contrast mesh-cert --nonce and present evidence for it within 5 minutes",
  NONCE_REPLAYED: "a nonce is good for one request: get a new one with contrast mesh-cert --nonce and make the evidence again",
  POLICY_NOT_IN_MANIFEST:
    "pass a policy file the current manifest lists (contrast verify writes them to verify/policies/), or add this one: put it in policies/, contrast generate, contrast set",
};

/** What to do when nothing answered, by the system's reason (the generic UNREACHABLE hint otherwise). */
const unreachableHints: Record<string, string> = {
  ECONNREFUSED: "nothing listens there: check the host and port in --coordinator (or CONTRAST_COORDINATOR) and that the Coordinator is running",
  ENOTFOUND: "the host name does not resolve: check its spelling in --coordinator (or CONTRAST_COORDINATOR)",
  UND_ERR_SOCKET: "the connection was closed without an answer: check --coordinator (https:// if the Coordinator serves TLS) and the Coordinator's log",
  DEPTH_ZERO_SELF_SIGNED_CERT: "its TLS certificate is not trusted: pass --ca FILE with the CA that issued it",
  SELF_SIGNED_CERT_IN_CHAIN: "its TLS certificate is not trusted: pass --ca FILE with the CA that issued it",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "its TLS certificate is not trusted: pass --ca FILE with the CA that issued it",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "its TLS certificate is not trusted: pass --ca FILE with the CA that issued it",
  CERT_HAS_EXPIRED: "its TLS certificate has expired: the Coordinator's operator must renew it",
  ERR_TLS_CERT_ALTNAME_INVALID: "its TLS certificate is for another name: use the host name the certificate names in --coordinator",
};

/** The hint for a client error: by the system reason of an unreachable Coordinator, else by the code. */
function clientHint(err: ClientError): string {
  if (err.code === "UNREACHABLE") {
    if (isPlainHttpAnswer(err.cause)) return "over http://, contrast recover also needs --insecure-http (the share then travels in clear)";
    if (err.systemCode !== undefined && unreachableHints[err.systemCode] !== undefined) return unreachableHints[err.systemCode]!;
  }
  return serverHints[err.code] ?? "";
}

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
    return new CliError(err.code, `${err.message}${key}${err.status === null ? "" : status}`, clientHint(err));
  }
  if (err instanceof KeyError) {
    const hint =
      err.code === "KEY_WEAK"
        ? "use an RSA key with public exponent 65537 (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096)"
        : "key files are PEM or DER as openssl writes them";
    return new CliError(err.code, err.message, hint);
  }
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
