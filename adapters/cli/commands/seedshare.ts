// `contrast seedshare check`: an owner confirms offline that their share in seed-shares.json decrypts with their key and matches its commitment.
import { sha256 } from "../../../src/crypto/provider.js";
import { fromHex, toHex } from "../../../src/encoding.js";
import type { Context } from "../context.js";
import { openShare, ownerKeyPath, readSeedShares } from "../shares.js";
import { Workspace, files } from "../workspace.js";

/** Runs `contrast seedshare check`: needs no Coordinator. */
export async function seedshareCheck(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const keyPath = ownerKeyPath(ctx, ws, "seedshare check");
  const doc = await readSeedShares(ws);
  const { entry, share, keyShown } = await openShare(ws, doc, keyPath, "");
  share.fill(0);
  const n = doc.shares.length;
  const owner = toHex(await sha256(fromHex(entry.ownerPublicKey)));
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
