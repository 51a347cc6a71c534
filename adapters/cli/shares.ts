// The seed-share owner's files: reading seed-shares.json (or fetching it from the Coordinator when the workspace has none), picking the owner key, and opening this owner's share with one-line errors.
import { ClientError } from "../../src/client/client.js";
import type { CoordinatorClient, StatusResponse } from "../../src/client/client.js";
import { loadSeedShareOwnerKey } from "../../src/client/keys.js";
import { ShareCheckError, openOwnShare, parseSeedShareDocument, storedSeedSharesProblem } from "../../src/client/seedshares.js";
import type { OwnShare } from "../../src/client/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromUtf8 } from "../../src/encoding.js";
import { CliError, usageError } from "./errors.js";
import { listFlag, patiently } from "./context.js";
import type { Context } from "./context.js";
import { fetchVerified, pinnedRoot, stateDeleted } from "./trust.js";
import { files, readInput, secretMode } from "./workspace.js";
import type { Workspace } from "./workspace.js";

/** Reads and checks the workspace's seed-shares.json. */
export async function readSeedShares(ws: Workspace): Promise<SeedShareDocument> {
  const path = ws.show(ws.path(files.seedShares));
  const bytes = await ws.read(
    files.seedShares,
    "it was written by the first contrast set (and by every set that changed the seed-share owners); get it from the workload owner or your backup, " +
      "or give the Coordinator's URL (-c URL or CONTRAST_COORDINATOR): then contrast seedshare check and contrast recover fetch it from the Coordinator",
  );
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    json = undefined;
  }
  try {
    return parseSeedShareDocument(json);
  } catch (err) {
    if (!(err instanceof ShareCheckError)) throw err;
    throw new CliError("FILE_INVALID", `${path} is not a seed-share document (${err.message})`, "restore it from your backup");
  }
}

/** The seed-share owner's private key file: --seedshare-owner-key (given once) or the workspace's seedshare-owner.pem. */
export function ownerKeyPath(ctx: Context, ws: Workspace, command: string): string {
  const given = listFlag(ctx.flags, "seedshare-owner-key");
  if (given.length > 1) {
    throw usageError(
      `${command} takes --seedshare-owner-key once`,
      "each seed-share owner runs it with their own key",
    );
  }
  return given[0] ?? ws.path(files.seedShareOwnerKey);
}

/**
 * Loads the owner's private key, finds its share in the document, decrypts it and checks it
 * against its commitment. `after` ends every hint (e.g. "nothing was sent"); `source` names the
 * document in messages (default: the workspace's seed-shares.json).
 */
export async function openShare(
  ws: Workspace,
  doc: SeedShareDocument,
  keyPath: string,
  after: string,
  source?: string,
): Promise<OwnShare & { keyShown: string }> {
  const keyShown = ws.show(keyPath);
  const key = await loadSeedShareOwnerKey(
    await readInput(keyPath, "a seed-share owner's private key is needed (seedshare-owner.pem or --seedshare-owner-key FILE)"),
    keyShown,
  );
  const tail = after === "" ? "" : `; ${after}`;
  const docShown = source ?? ws.show(ws.path(files.seedShares));
  try {
    return { ...(await openOwnShare(doc, key)), keyShown };
  } catch (err) {
    if (!(err instanceof ShareCheckError)) throw err;
    switch (err.code) {
      case "NOT_A_SEEDSHARE_OWNER":
        throw new CliError(
          err.code,
          `${keyShown} is not one of the ${doc.shares.length} seed-share owner${doc.shares.length === 1 ? "" : "s"} in ${source ?? files.seedShares}`,
          `use the private key whose public key the manifest lists in SeedshareOwnerPubKeys, and the newest ${files.seedShares}${tail}`,
        );
      case "SHARE_UNDECRYPTABLE":
        throw new CliError(
          err.code,
          `share ${err.index} in ${docShown} does not decrypt with ${keyShown}`,
          `${source === undefined ? "the file is damaged or was not made for this key: restore it from your backup" : "it is damaged or was not made for this key"}${tail}`,
        );
      case "SHARE_INVALID":
        throw new CliError(
          err.code,
          `share ${err.index} in ${docShown} decrypts with ${keyShown} but does not match its commitment: the share or the file is corrupted`,
          `${source === undefined ? `restore ${files.seedShares} from your backup or get it again from the workload owner` : "it was changed on the way or in the store"}${tail}`,
        );
      default:
        throw new CliError(err.code, err.message);
    }
  }
}

/** A seed-share document fetched from the Coordinator, this owner's share opened, and the status seen. */
export interface FetchedSeedShares extends OwnShare {
  doc: SeedShareDocument;
  keyShown: string;
  status: StatusResponse;
  /** The generation of the verified history the document was checked against (the Coordinator was ready), else null. */
  verifiedAt: number | null;
}

/**
 * For a workspace without seed-shares.json: fetches the Coordinator's seed-share document
 * (GET /v1/seedshares, served in every state but uninitialized), checks it and writes it as
 * seed-shares.json. Checked first: it names this Coordinator; the workspace's memory, if any, is of
 * this Coordinator; when the Coordinator is ready, the history verifies (pinned root CA, rollback
 * memory) and its signed head commits to exactly this document; `vet` (e.g. the owner keys'
 * strength); and this owner's share decrypts with `keyPath` and matches its commitment. Before
 * recovery the head is unverified, so the owner's own share is what is checked. Does not wait for
 * readiness. `after` ends every hint.
 */
export async function fetchSeedShares(
  ctx: Context,
  ws: Workspace,
  client: CoordinatorClient,
  keyPath: string,
  after: string,
  vet?: (doc: SeedShareDocument, shown: string) => Promise<void>,
): Promise<FetchedSeedShares> {
  const shown = ws.show(ws.path(files.seedShares));
  const tail = after === "" ? "" : `; ${after}`;
  const status = await patiently(ctx, client.baseUrl, () => client.status());
  const memory = await ws.memory();
  const noState = async (): Promise<CliError> =>
    memory !== null || (await pinnedRoot(ws)) !== undefined
      ? stateDeleted(memory)
      : new CliError("NOT_INITIALIZED", `${shown} does not exist, and the Coordinator ${status.name} has no manifest yet, so it has no seed shares`, `the first contrast set writes ${files.seedShares}${tail}`);
  if (status.state === "uninitialized") throw await noState();
  if (memory !== null && memory.name !== status.name) {
    throw new CliError(
      "WRONG_COORDINATOR",
      `${shown} does not exist, and this workspace remembers Coordinator ${memory.name}, but ${client.baseUrl} is Coordinator ${status.name}`,
      `check --coordinator${tail}`,
    );
  }
  let served;
  try {
    served = await patiently(ctx, client.baseUrl, () => client.seedShares());
  } catch (err) {
    if (err instanceof ClientError && err.code === "NOT_INITIALIZED") throw await noState();
    if (err instanceof ClientError && err.code === "NOT_FOUND") {
      throw new CliError(
        "FILE_MISSING",
        `${shown} does not exist, and the Coordinator ${status.name} keeps no seed-share document (its state was written by a version that did not store it) [${err.status} ${err.code}]`,
        `get ${files.seedShares} from the workload owner or your backup${tail}`,
      );
    }
    throw err;
  }
  const source = `the seed-share document Coordinator ${status.name} serves`;
  const invalid = (problem: string): CliError =>
    new CliError("SEED_SHARES_INVALID", `${source} cannot be used: ${problem}`, `${shown} was not written; get it from the workload owner or your backup${tail}`);
  let doc: SeedShareDocument;
  try {
    doc = parseSeedShareDocument(served.seedShares);
  } catch (err) {
    if (err instanceof ShareCheckError) throw invalid(err.message);
    throw err;
  }
  if (doc.coordinator !== status.name) throw invalid(`it names Coordinator ${doc.coordinator}`);
  let verifiedAt: number | null = null;
  if (status.state === "ready") {
    // Ready: the head is verified, so the document must be exactly the one it commits to.
    const { history } = await fetchVerified(ctx, ws, client);
    const owners = history.parsedManifests[history.parsedManifests.length - 1]!.SeedshareOwnerPubKeys;
    const problem = await storedSeedSharesProblem(doc, history.head, owners);
    if (problem !== null) throw invalid(`it is not the one the verified head (generation ${history.generation}) commits to: ${problem}`);
    verifiedAt = history.generation;
  }
  if (vet !== undefined) await vet(doc, source);
  const own = await openShare(ws, doc, keyPath, `${shown} was not written${tail}`, source);
  await ws.write(files.seedShares, JSON.stringify(doc, null, 2) + "\n", secretMode);
  const checked =
    verifiedAt !== null
      ? `the Coordinator is ready, and it is the document its verified head at generation ${verifiedAt} commits to`
      : `the Coordinator is ${status.state}, so its head is not verified yet, but share ${own.entry.index} decrypts with ${own.keyShown} and matches its commitment`;
  ctx.out.line(`${shown} did not exist: fetched the seed-share document from Coordinator ${status.name} (${checked}); wrote ${shown}`);
  return { ...own, doc, status, verifiedAt };
}
