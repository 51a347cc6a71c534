// Checking the Coordinator's own evidence before the CLI sends or trusts anything: where the reference values come from, a fresh nonce, and what the evidence must bind.
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { ClientError } from "../../src/client/client.js";
import type { CoordinatorClient } from "../../src/client/client.js";
import type { VerifiedHistory } from "../../src/client/verify.js";
import { coordinatorReferenceFrom, coordinatorReferenceOrNull, verifyCoordinatorEvidence } from "../../src/attestation/coordinator-verify.js";
import type { CoordinatorReference, VerifiedCoordinator } from "../../src/attestation/coordinator-verify.js";
import type { HeldState } from "../../src/attestation/coordinator-evidence.js";
import { parseAttestationRoots } from "../../src/attestation/modes.js";
import type { AttestationRoots } from "../../src/attestation/modes.js";
import { CoordinatorError } from "../../src/errors.js";
import { toHex } from "../../src/encoding.js";
import { CliError } from "./errors.js";
import { patiently, stringFlag } from "./context.js";
import type { Context } from "./context.js";
import { files } from "./workspace.js";
import type { Workspace } from "./workspace.js";

/** The environment variable that, set to 1 or true, does what --insecure-skip-attestation does. */
export const skipAttestationEnv = "CONTRAST_INSECURE_SKIP_ATTESTATION";

/** The warning a command prints once when it skips attestation: what the user gives up. */
export function skipWarning(url: string): string {
  return (
    `contrast: warning: attestation skipped (--insecure-skip-attestation or ${skipAttestationEnv}): ` +
    `nothing proves that ${url} is the genuine Coordinator; whoever answers there is trusted with manifests and seed shares\n`
  );
}

const warned = new Set<string>();

/** True if attestation is skipped for this command; prints the warning once per Coordinator URL. */
export function skippingAttestation(ctx: Context, url: string): boolean {
  const env = process.env[skipAttestationEnv];
  const skip = ctx.flags["insecure-skip-attestation"] === true || env === "1" || env === "true";
  if (skip && !warned.has(url)) {
    warned.add(url);
    process.stderr.write(skipWarning(url));
  }
  return skip;
}

function readFlagFile(flag: string, path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(code === "ENOENT" ? "FILE_MISSING" : "FILE_UNREADABLE", `--${flag} ${path}: ${code === "ENOENT" ? "does not exist" : (err as Error).message}`);
  }
}

/** The roots of --attestation-roots FILE (pinned instead of AMD's and Intel's), or undefined. */
function pinnedRoots(ctx: Context): AttestationRoots | undefined {
  const path = stringFlag(ctx.flags, "attestation-roots");
  if (path === undefined) return undefined;
  try {
    return parseAttestationRoots(new TextDecoder().decode(readFlagFile("attestation-roots", path)));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError("FILE_INVALID", `--attestation-roots ${path}: ${(err as Error).message}`, "pass a PEM file of the roots to pin (a test TEE's ARK or Intel root)");
  }
}

/**
 * The Coordinator's reference values, from the first of: --coordinator-reference-values FILE; the
 * newest manifest of a history verified against this workspace's pinned root CA (the current
 * manifest); the workspace's manifest.json (the manifest being set, or the one expected).
 */
export async function coordinatorReference(ctx: Context, ws: Workspace, verified?: { history: VerifiedHistory; pinned: boolean }): Promise<CoordinatorReference> {
  const path = stringFlag(ctx.flags, "coordinator-reference-values");
  if (path !== undefined) {
    try {
      return coordinatorReferenceFrom(readFlagFile("coordinator-reference-values", path), `--coordinator-reference-values ${path}`);
    } catch (err) {
      if (err instanceof CoordinatorError) throw new CliError(err.code, err.message, "pass a manifest, or JSON with Policies (one with Role \"coordinator\") and ReferenceValues");
      throw err;
    }
  }
  const candidates: { bytes: Uint8Array; source: string }[] = [];
  if (verified?.pinned === true) {
    const h = verified.history;
    candidates.push({ bytes: h.manifests[h.manifests.length - 1]!, source: `the Coordinator's current manifest (generation ${h.generation}, verified under ${files.rootCA})` });
  }
  if (await ws.has(files.manifest)) candidates.push({ bytes: await ws.read(files.manifest, ""), source: ws.show(ws.path(files.manifest)) });
  for (const c of candidates) {
    let reference: CoordinatorReference | null;
    try {
      reference = coordinatorReferenceOrNull(c.bytes, c.source);
    } catch (err) {
      if (err instanceof CoordinatorError) throw new CliError(err.code, err.message, "fix it, or pass --coordinator-reference-values FILE");
      throw err;
    }
    if (reference !== null) return reference;
  }
  throw new CliError(
    "COORDINATOR_REFERENCE_MISSING",
    `there are no reference values to check the Coordinator against: ${candidates.length === 0 ? `this workspace has no ${files.manifest}` : `no policy with Role "coordinator" in ${candidates.map((c) => c.source).join(" or ")}`}`,
    `pass --coordinator-reference-values FILE (the manifest, or JSON with its Policies and ReferenceValues); nothing was sent`,
  );
}

function heldText(state: HeldState | null): string {
  return state === null ? "no state" : `transition ${state.latestTransition}, root CA sha256 ${state.rootCA}, mesh CA sha256 ${state.meshCA}`;
}

/** What the verified evidence must bind besides the nonce: the name, and the state held (null: none). */
export interface Expected {
  name?: string;
  state?: HeldState | null;
}

/** A mismatch between what the evidence binds and what the CLI saw elsewhere (another request may have changed it meanwhile). */
export class AttestedStateMismatch extends CliError {}

/**
 * Fetches the Coordinator's evidence for a fresh 32-byte nonce and verifies it against `reference`
 * (and the pinned roots of --attestation-roots); checks the name and held state it binds against
 * `expected`. Returns what it proved. Throws CliError: ATTESTATION_UNAVAILABLE (no evidence),
 * ATTESTATION_FAILED (says which value differs), ATTESTATION_MISMATCH.
 */
export async function attest(ctx: Context, client: CoordinatorClient, reference: CoordinatorReference, expected: Expected = {}): Promise<VerifiedCoordinator> {
  const nonce = webcrypto.getRandomValues(new Uint8Array(32));
  let answer: unknown;
  try {
    answer = await patiently(ctx, client.baseUrl, () => client.attestation(toHex(nonce)));
  } catch (err) {
    if (err instanceof ClientError && (err.code === "EVIDENCE_UNAVAILABLE" || err.code === "NOT_FOUND")) {
      throw new CliError(
        "ATTESTATION_UNAVAILABLE",
        `the Coordinator at ${client.baseUrl} offers no evidence of its own [${err.status} ${err.code}], so nothing proves it is the genuine Coordinator`,
        "run it with --evidence tsm in a confidential VM; for development only, pass --insecure-skip-attestation; nothing was sent",
      );
    }
    throw err;
  }
  let verified: VerifiedCoordinator;
  try {
    verified = await verifyCoordinatorEvidence(answer, { nonce, reference, roots: pinnedRoots(ctx), now: new Date() });
  } catch (err) {
    if (err instanceof CoordinatorError) {
      const reason = err.reason ?? err.code;
      throw new CliError(
        "ATTESTATION_FAILED",
        `the Coordinator at ${client.baseUrl} failed attestation against ${reference.source}: ${err.message} [${reason}]`,
        "it may be an impostor, or run other software than the reference values name; nothing was sent",
      );
    }
    throw err;
  }
  const mismatch = (what: string): AttestedStateMismatch =>
    new AttestedStateMismatch("ATTESTATION_MISMATCH", `the Coordinator at ${client.baseUrl} is attested, but its evidence binds ${what}`, "nothing was sent or remembered; run the command again");
  if (expected.name !== undefined && verified.name !== expected.name) throw mismatch(`the name ${verified.name}, not ${expected.name}`);
  if (expected.state !== undefined) {
    const a = verified.state;
    const b = expected.state;
    const same = a === null || b === null ? a === b : a.latestTransition === b.latestTransition && a.rootCA === b.rootCA && a.meshCA === b.meshCA;
    if (!same) throw mismatch(`${heldText(a)}; the CLI saw ${heldText(b)}`);
  }
  return verified;
}

/** The state a verified history shows, in the form the evidence binds it. */
export function heldStateOf(history: VerifiedHistory): HeldState {
  return { latestTransition: history.latestTransition, rootCA: history.rootCA.hash, meshCA: history.meshCA.hash };
}

/** Writes the line that says what was attested. */
export function reportAttested(ctx: Context, verified: VerifiedCoordinator, reference: CoordinatorReference): void {
  ctx.out.line(`attested: ${verified.platform} Coordinator ${verified.name}, policy ${verified.policyHash} (reference values: ${reference.source})`);
}
