// The seed-share owner's files: reading seed-shares.json, picking the owner key, and opening this owner's share with one-line errors.
import { loadSeedShareOwnerKey } from "../../src/client/keys.js";
import { ShareCheckError, openOwnShare, parseSeedShareDocument } from "../../src/client/seedshares.js";
import type { OwnShare } from "../../src/client/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromUtf8 } from "../../src/encoding.js";
import { CliError, usageError } from "./errors.js";
import { listFlag } from "./context.js";
import type { Context } from "./context.js";
import { files, readInput } from "./workspace.js";
import type { Workspace } from "./workspace.js";

/** Reads and checks the workspace's seed-shares.json. */
export async function readSeedShares(ws: Workspace): Promise<SeedShareDocument> {
  const path = ws.show(ws.path(files.seedShares));
  const bytes = await ws.read(
    files.seedShares,
    "it was written by the first contrast set (and by every set that changed the seed-share owners); get it from the workload owner or your backup",
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
 * against its commitment. `after` ends every hint (e.g. "nothing was sent").
 */
export async function openShare(ws: Workspace, doc: SeedShareDocument, keyPath: string, after: string): Promise<OwnShare & { keyShown: string }> {
  const keyShown = ws.show(keyPath);
  const key = await loadSeedShareOwnerKey(
    fromUtf8(await readInput(keyPath, "a seed-share owner's private key is needed (seedshare-owner.pem or --seedshare-owner-key FILE)")),
    keyShown,
  );
  const tail = after === "" ? "" : `; ${after}`;
  const docShown = ws.show(ws.path(files.seedShares));
  try {
    return { ...(await openOwnShare(doc, key)), keyShown };
  } catch (err) {
    if (!(err instanceof ShareCheckError)) throw err;
    switch (err.code) {
      case "NOT_A_SEEDSHARE_OWNER":
        throw new CliError(
          err.code,
          `${keyShown} is not one of the ${doc.shares.length} seed-share owner${doc.shares.length === 1 ? "" : "s"} in ${files.seedShares}`,
          `use the private key whose public key the manifest lists in SeedshareOwnerPubKeys, and the newest ${files.seedShares}${tail}`,
        );
      case "SHARE_UNDECRYPTABLE":
        throw new CliError(
          err.code,
          `share ${err.index} in ${docShown} does not decrypt with ${keyShown}`,
          `the file is damaged or was not made for this key: restore it from your backup${tail}`,
        );
      case "SHARE_INVALID":
        throw new CliError(
          err.code,
          `share ${err.index} in ${docShown} decrypts with ${keyShown} but does not match its commitment: the share or the file is corrupted`,
          `restore ${files.seedShares} from your backup or get it again from the workload owner${tail}`,
        );
      default:
        throw new CliError(err.code, err.message);
    }
  }
}
