// `contrast seedshare approve`: a current seed-share owner verifies the history, shows what manifest.json changes in the owners and threshold, and signs a rekey approval into approvals/.
import { isSeedShareOwner } from "../../../src/crypto/owner-keys.js";
import * as fsp from "node:fs/promises";
import { loadSeedShareOwnerKey } from "../../../src/client/keys.js";
import { isRekey, makeApproval } from "../../../src/client/update.js";
import { sha256 } from "../../../src/crypto/provider.js";
import { CoordinatorError } from "../../../src/errors.js";
import { fromHex, toHex } from "../../../src/encoding.js";
import { readManifest } from "../../../src/manifest/manifest.js";
import type { Manifest } from "../../../src/manifest/manifest.js";
import { CliError } from "../errors.js";
import { clientOf } from "../context.js";
import type { Context } from "../context.js";
import { ownerKeyPath } from "../shares.js";
import { fetchVerified, pinnedRoot } from "../trust.js";
import { Workspace, files, readInput } from "../workspace.js";

/** The hex SHA-256 of a hex DER SPKI: how the CLI names a seed-share owner's key. */
export async function ownerDigest(spkiHex: string): Promise<string> {
  return toHex(await sha256(fromHex(spkiHex)));
}

/** The approval file of one owner: approvals/<sha256 of the owner's key>.json, so each owner has their own. */
export function approvalFileName(digest: string): string {
  return `${digest}.json`;
}

/** What a rekey changes: owners removed and added (key digests), and the threshold. */
export interface RekeyChange {
  removed: string[];
  added: string[];
  threshold: { from: number; to: number };
  owners: { from: number; to: number };
}

/** Compares the owners and threshold of two manifests. */
export async function rekeyChange(current: Manifest, next: Manifest): Promise<RekeyChange> {
  const from = current.SeedshareOwnerPubKeys;
  const to = next.SeedshareOwnerPubKeys;
  return {
    removed: await Promise.all(from.filter((k) => !to.includes(k)).map(ownerDigest)),
    added: await Promise.all(to.filter((k) => !from.includes(k)).map(ownerDigest)),
    threshold: { from: current.Threshold ?? 1, to: next.Threshold ?? 1 },
    owners: { from: from.length, to: to.length },
  };
}

/** Runs `contrast seedshare approve`. */
export async function seedshareApprove(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const keyPath = ownerKeyPath(ctx, ws, "seedshare approve");
  const manifestPath = ws.show(ws.path(files.manifest));
  const manifestBytes = await ws.read(files.manifest, "approve runs on a copy of the workload owner's workspace: get its manifest.json");
  let next: Manifest;
  try {
    next = (await readManifest(manifestBytes)).manifest;
  } catch (err) {
    if (err instanceof CoordinatorError) throw new CliError("INVALID_MANIFEST", `${manifestPath} is not a valid manifest: ${err.message}`, "nothing was approved");
    throw err;
  }
  if ((await pinnedRoot(ws)) === undefined) {
    throw new CliError(
      "FILE_MISSING",
      `${ws.show(ws.path(files.rootCA))} does not exist: an approval is for one Coordinator, and this workspace does not pin which`,
      "run it on a copy of the workload owner's workspace (manifest.json, policies/, coordinator-root-ca.pem, .contrast-state.json); nothing was approved",
    );
  }
  const keyShown = ws.show(keyPath);
  const key = await loadSeedShareOwnerKey(
    await readInput(keyPath, "an approval is signed with a seed-share owner's private key (seedshare-owner.pem or --seedshare-owner-key FILE)"),
    keyShown,
  );
  const digest = toHex(await sha256(key.spki));

  const client = clientOf(ctx);
  const { history, memory } = await fetchVerified(ctx, ws, client);
  const current = history.parsedManifests[history.parsedManifests.length - 1]!;
  // The approval names the key exactly as the current manifest lists it (SPKI or PKCS#1 hex).
  const ownerHex = current.SeedshareOwnerPubKeys.find((k) => isSeedShareOwner(k, key.spki));
  if (ownerHex === undefined) {
    throw new CliError(
      "NOT_A_SEEDSHARE_OWNER",
      `${keyShown} (sha256 ${digest}) is not a seed-share owner of the Coordinator's current manifest (generation ${history.generation})`,
      "only the current seed-share owners can approve a change of the owners or the threshold; nothing was approved",
    );
  }
  if (!isRekey(current, next)) {
    throw new CliError(
      "REKEY_NOT_NEEDED",
      `${manifestPath} keeps the seed-share owners and the threshold of the current manifest (generation ${history.generation}), so its update needs no approval`,
      "the workload owner runs contrast set alone; nothing was approved",
    );
  }
  const change = await rekeyChange(current, next);
  const approval = await makeApproval({
    coordinator: { name: history.name, rootCA: history.rootCA.hash },
    previousTransition: history.latestTransition,
    manifest: manifestBytes,
    owner: key,
  });
  const file = `${files.approvals}/${approvalFileName(digest)}`;
  try {
    await fsp.mkdir(ws.path(files.approvals), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new CliError("WRITE_FAILED", `cannot create ${ws.show(ws.path(files.approvals))}/: ${(err as Error).message}`, "check the directory's permissions");
  }
  await ws.write(file, JSON.stringify(approval, null, 2) + "\n");
  // The history verified: remember it, as verify would.
  await ws.saveMemory(memory);

  ctx.out.result({
    coordinator: client.baseUrl,
    name: history.name,
    rootCA: history.rootCA.hash,
    generation: history.generation,
    previousTransition: history.latestTransition,
    transition: approval.transition,
    manifest: approval.manifest,
    owner: digest,
    removed: change.removed,
    added: change.added,
    threshold: change.threshold,
    owners: change.owners,
    file: ws.path(file),
  });
  const t = change.threshold;
  ctx.out.line(`approved a change of the seed-share owners of Coordinator ${history.name} (root CA sha256 ${history.rootCA.hash})`);
  ctx.out.line(`  update             generation ${history.generation} → ${history.generation + 1}, manifest sha256 ${approval.manifest}`);
  ctx.out.line(`  new transition     ${approval.transition}`);
  ctx.out.line(`  owners             ${change.owners.from} → ${change.owners.to}`);
  for (const d of change.removed) ctx.out.line(`    removed          sha256 ${d}`);
  for (const d of change.added) ctx.out.line(`    added            sha256 ${d}`);
  if (change.removed.length === 0 && change.added.length === 0 && t.from === t.to) ctx.out.line(`    reordered        (the same owners in another order: every share changes)`);
  ctx.out.line(`  threshold          ${t.from === t.to ? `${t.to} (unchanged)` : `${t.from} → ${t.to}`}`);
  ctx.out.line(`  approved by        sha256 ${digest} (${keyShown})`);
  ctx.out.line(`wrote ${ws.show(ws.path(file))}: hand it to the workload owner, who puts it into approvals/ and runs contrast set`);
}
