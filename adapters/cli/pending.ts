// The note `set` keeps in the workspace while a manifest it sent has no answer: after a lost answer the next `set` uses it to find out whether that set landed and to fetch the seed shares it made.
import { z } from "zod";
import { ClientError } from "../../src/client/client.js";
import { fromUtf8 } from "../../src/encoding.js";
import { CliError } from "./errors.js";
import { files, secretMode } from "./workspace.js";
import type { Workspace } from "./workspace.js";

/** The format tag of the pending-set record. */
export const pendingSetFormat = "contrast-pending-set/v1";

const hash = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * `.contrast-pending-set.json`: written (fsynced) before `set` sends a manifest, removed as soon as
 * any answer arrives. Its presence means "this workspace sent exactly this set and never learned
 * what became of it".
 */
export const pendingSetSchema = z
  .object({
    format: z.literal(pendingSetFormat),
    /** The Coordinator's name (from its status); a record for another name is ignored. */
    name: z.string(),
    /** The URL it was sent to (for messages only). */
    coordinator: z.string(),
    /** `first`: a first set (the workspace had no root CA, memory or seed shares); `update`: a signed update. */
    kind: z.enum(["first", "update"]),
    /** Hex SHA-256 of the manifest bytes sent. */
    manifest: hash,
    previousTransition: hash,
    /** The transition and generation this set makes, computed locally. */
    transition: hash,
    generation: z.number().int().min(1),
    /** True if it changes the seed-share owners or the threshold (so the Coordinator makes new seed shares); always true for a first set. */
    rekey: z.boolean(),
    /** The seed-share owners (hex DER SPKI, in order) and threshold of the manifest sent: a fetched seed-share document must be for exactly these. */
    owners: z.array(z.string()).min(1),
    threshold: z.number().int().min(1),
    /**
     * The salt of the seed-share document `set` fetched from the Coordinator's stored (not yet
     * verified) head and installed as seed-shares.json after the lost answer: it does that once.
     */
    installedSalt: hash.optional(),
  })
  .strict();

/** A pending-set record. */
export type PendingSet = z.infer<typeof pendingSetSchema>;

/** The workspace's pending-set record, or null if it has none. A damaged one is an error, never ignored. */
export async function readPendingSet(ws: Workspace): Promise<PendingSet | null> {
  if (!(await ws.has(files.pendingSet))) return null;
  const bytes = await ws.read(files.pendingSet, "");
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    json = undefined;
  }
  const parsed = pendingSetSchema.safeParse(json);
  if (!parsed.success) {
    throw new CliError(
      "FILE_INVALID",
      `${ws.show(ws.path(files.pendingSet))} is damaged; it records a set whose answer was lost`,
      "if you know what became of that set, delete the file and run contrast set again",
    );
  }
  return parsed.data;
}

/** Writes the pending-set record (atomically, fsynced) before a set is sent. */
export async function writePendingSet(ws: Workspace, record: PendingSet): Promise<void> {
  await ws.write(files.pendingSet, JSON.stringify(record, null, 2) + "\n", secretMode);
}

/** Removes the pending-set record: the set's outcome is known. */
export function clearPendingSet(ws: Workspace): Promise<void> {
  return ws.remove(files.pendingSet);
}

/**
 * True if a failed POST /v1/manifest may have been applied: no HTTP answer at all (other than a
 * refused connection, which sent nothing), no answer in time, or a server-side failure (5xx).
 * A 4xx answer means the Coordinator refused and changed nothing.
 */
export function answerMayBeLost(err: unknown): boolean {
  if (!(err instanceof ClientError)) return false;
  if (err.code === "UNREACHABLE") return err.systemCode !== "ECONNREFUSED";
  if (err.code === "REQUEST_TIMEOUT") return true;
  return err.status !== null && err.status >= 500;
}

/** What a pending set was, for messages: "first set", "change of the seed-share owners", "update". */
export function pendingWhat(record: PendingSet): string {
  return record.kind === "first" ? "first set" : record.rekey ? "change of the seed-share owners" : "update";
}

/** The error for a set whose answer was lost: the record stays, and the next `set` finds out. */
export function answerLost(err: ClientError, record: PendingSet): CliError {
  const sent = `the ${pendingWhat(record)} (generation ${record.generation}, transition ${record.transition}) was sent`;
  const noAnswer = err.status === null || err.code === "BAD_RESPONSE";
  return new CliError(
    noAnswer ? "ANSWER_LOST" : err.code,
    noAnswer
      ? `${sent}, but no answer came back (${err.message}): it may or may not have landed`
      : `${sent}, and the Coordinator failed while handling it (${err.message}) [${err.status} ${err.code}]: it may or may not have landed`,
    `run contrast set again: it finds out whether it landed (${files.pendingSet} records it), finishes it or sends it again, ` +
      `and if the Coordinator restarted meanwhile it fetches the seed shares and tells you to run contrast recover`,
  );
}
