// `contrast seedshare check`: an owner confirms offline that their share in seed-shares.json decrypts with their key and matches its commitment (a workspace without the file fetches it from the Coordinator first).
import { seedShareOwnerSpki } from "../../../src/crypto/owner-keys.js";
import { KeyError, checkSeedShareOwnerPublicKey } from "../../../src/client/keys.js";
import { sha256 } from "../../../src/crypto/provider.js";
import type { SeedShareDocument } from "../../../src/crypto/seedshares.js";
import { toHex } from "../../../src/encoding.js";
import { minSeedShareOwnerBits } from "../../../src/manifest/manifest.js";
import { CliError } from "../errors.js";
import { clientOf } from "../context.js";
import type { Context } from "../context.js";
import { fetchSeedShares, openShare, ownerKeyPath, readSeedShares } from "../shares.js";
import { Workspace, files } from "../workspace.js";

/**
 * Refuses a document with a share for a weak owner key (public exponent other than 65537, or
 * fewer bits than the minimum): such a share is as good as public, so the threshold is not what it says.
 */
async function checkOwnerKeys(ws: Workspace, doc: SeedShareDocument, source?: string): Promise<void> {
  const docShown = source ?? ws.show(ws.path(files.seedShares));
  const hint = "anyone who reads the file may read that share: replace that owner's key (contrast generate --seedshare-owner-key, then contrast set)";
  for (const entry of doc.shares) {
    const what = `the owner key of share ${entry.index} in ${docShown}`;
    let bits: number;
    try {
      bits = await checkSeedShareOwnerPublicKey(seedShareOwnerSpki(entry.ownerPublicKey), what);
    } catch (err) {
      if (err instanceof KeyError) throw new CliError(err.code === "KEY_WEAK" ? "KEY_WEAK" : "FILE_INVALID", err.message, hint);
      throw err;
    }
    if (bits < minSeedShareOwnerBits) {
      throw new CliError("KEY_WEAK", `${what} is an RSA key of ${bits} bits; at least ${minSeedShareOwnerBits} are needed`, hint);
    }
  }
}

/**
 * Runs `contrast seedshare check`: needs no Coordinator, unless the workspace has no
 * seed-shares.json and a Coordinator is given: then it fetches the document first (checked, and
 * verified against the pinned history when the Coordinator is ready) and writes it.
 */
export async function seedshareCheck(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const keyPath = ownerKeyPath(ctx, ws, "seedshare check");
  let opened;
  if (!(await ws.has(files.seedShares)) && ctx.coordinator !== undefined && ctx.coordinator !== "") {
    opened = await fetchSeedShares(ctx, ws, clientOf(ctx), keyPath, "", (doc, source) => checkOwnerKeys(ws, doc, source));
  } else {
    const doc = await readSeedShares(ws);
    await checkOwnerKeys(ws, doc);
    opened = { doc, ...(await openShare(ws, doc, keyPath, "")) };
  }
  const { doc, entry, share, keyShown } = opened;
  share.fill(0);
  const n = doc.shares.length;
  const owner = toHex(await sha256(seedShareOwnerSpki(entry.ownerPublicKey)));
  ctx.out.result({
    ok: true,
    coordinator: doc.coordinator,
    index: entry.index,
    shares: n,
    threshold: doc.threshold,
    salt: doc.salt,
    commitment: entry.commitment,
    ownerKeyDigest: owner,
  });
  ctx.out.line(`OK: share ${entry.index} of ${n} in ${ws.show(ws.path(files.seedShares))} decrypts with ${keyShown} and matches its commitment`);
  ctx.out.line(`  coordinator        ${doc.coordinator}`);
  ctx.out.line(
    `  threshold          ${doc.threshold === 1 ? `1: this share alone recovers the Coordinator` : `${doc.threshold} of ${n}: any ${doc.threshold} of the ${n} owners together recover the Coordinator`}`,
  );
  ctx.out.line(`  owner key          sha256 ${owner}`);
  ctx.out.line(`  salt               ${doc.salt}`);
}
