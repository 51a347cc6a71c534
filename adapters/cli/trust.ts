// Fetching the history, checking it offline against the workspace's pinned root CA and rollback memory, and attesting that the Coordinator holds exactly it.
import { ClientError } from "../../src/client/client.js";
import type { CoordinatorClient } from "../../src/client/client.js";
import { checkMemory } from "../../src/client/rollback.js";
import type { Memory } from "../../src/client/rollback.js";
import { certificateDerOf, verifyHistory } from "../../src/client/verify.js";
import type { VerifiedHistory } from "../../src/client/verify.js";
import { fromUtf8 } from "../../src/encoding.js";
import type { VerifiedCoordinator } from "../../src/attestation/coordinator-verify.js";
import { AttestedStateMismatch, attest, coordinatorReference, heldStateOf, reportAttested, skippingAttestation } from "./attest.js";
import { CliError } from "./errors.js";
import { patiently } from "./context.js";
import type { Context } from "./context.js";
import { files } from "./workspace.js";
import type { Workspace } from "./workspace.js";

/** The DER of the workspace's coordinator-root-ca.pem, or undefined if it has none. */
export async function pinnedRoot(ws: Workspace): Promise<Uint8Array | undefined> {
  if (!(await ws.has(files.rootCA))) return undefined;
  const bytes = await ws.read(files.rootCA, "");
  try {
    return certificateDerOf(fromUtf8(bytes));
  } catch (err) {
    throw new CliError(
      "FILE_INVALID",
      `${ws.show(ws.path(files.rootCA))} is not one PEM certificate (${(err as Error).message})`,
      "restore it from your backup; it pins the Coordinator you set up",
    );
  }
}

/** The error for a Coordinator that has no state although this workspace knows it had some. */
export function stateDeleted(memory: Memory | null): CliError {
  const seen = memory === null ? "this workspace set it up" : `this workspace has seen generation ${memory.generation}`;
  return new CliError(
    "STATE_DELETED",
    `the Coordinator has no state, but ${seen}: its store was deleted or replaced`,
    `do not set a new manifest on it; restore the store and run contrast recover (or use a fresh workspace to start over)`,
  );
}

/** How often the history and the evidence are fetched again when a write landed between the two. */
const attestAttempts = 3;

/**
 * GET /v1/manifests (waiting while the Coordinator is unreachable, recovering or stale), verified
 * offline against the pinned root CA and the rollback memory (generation and transition: the
 * remembered transition must be at its generation in the history); then the Coordinator's evidence
 * must prove that the attested Coordinator holds exactly this history (its transition and CAs),
 * unless attestation is skipped. Returns the history and the memory to save (not saved here; on a
 * failure nothing is to be saved).
 */
export async function fetchVerified(
  ctx: Context,
  ws: Workspace,
  client: CoordinatorClient,
): Promise<{ history: VerifiedHistory; memory: Memory; previous: Memory | null; pinned: boolean; attested: VerifiedCoordinator | null }> {
  const skip = skippingAttestation(ctx, client.baseUrl);
  for (let attempt = 1; ; attempt++) {
    const fetched = await fetchHistory(ctx, ws, client);
    if (skip) return { ...fetched, attested: null };
    const reference = await coordinatorReference(ctx, ws, { history: fetched.history, pinned: fetched.pinned });
    try {
      const attested = await attest(ctx, client, reference, { name: fetched.history.name, state: heldStateOf(fetched.history) });
      reportAttested(ctx, attested, reference);
      return { ...fetched, attested };
    } catch (err) {
      // A write between the two requests moves the state: fetch both again.
      if (!(err instanceof AttestedStateMismatch) || attempt >= attestAttempts) throw err;
    }
  }
}

async function fetchHistory(ctx: Context, ws: Workspace, client: CoordinatorClient): Promise<{ history: VerifiedHistory; memory: Memory; previous: Memory | null; pinned: boolean }> {
  const pinned = await pinnedRoot(ws);
  const previous = await ws.memory();
  let served;
  try {
    served = await patiently(ctx, client.baseUrl, () => client.history(), ["RECOVERY_REQUIRED", "STALE"]);
  } catch (err) {
    if (err instanceof ClientError && err.code === "NOT_INITIALIZED" && (previous !== null || pinned !== undefined)) {
      throw stateDeleted(previous);
    }
    throw err;
  }
  const history = await verifyHistory(served, pinned === undefined ? {} : { pinnedRootCA: pinned });
  const memory = checkMemory(previous, {
    name: history.name,
    rootCA: history.rootCA.hash,
    generation: history.generation,
    latestTransition: history.latestTransition,
    // The remembered transition must be at its generation in this verified history, not merely older.
    transitions: history.transitions,
  })!;
  return { history, memory, previous, pinned: pinned !== undefined };
}
