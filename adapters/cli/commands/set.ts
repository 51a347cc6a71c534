// `contrast set`: sends manifest.json and its policies; the first set keeps the seed shares and CAs, an update is signed over a verified base.
import { ClientError } from "../../../src/client/client.js";
import type { SetManifestResponse, StatusResponse } from "../../../src/client/client.js";
import { loadWorkloadOwnerKey } from "../../../src/client/keys.js";
import { memoryFormat } from "../../../src/client/rollback.js";
import type { Memory } from "../../../src/client/rollback.js";
import { signedUpdate } from "../../../src/client/update.js";
import { certificateDerOf } from "../../../src/client/verify.js";
import { sha256 } from "../../../src/crypto/provider.js";
import { CoordinatorError } from "../../../src/errors.js";
import { bytesEqual, fromUtf8, toBase64, toHex } from "../../../src/encoding.js";
import { readManifest } from "../../../src/manifest/manifest.js";
import { CliError } from "../errors.js";
import { clientOf, patiently, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { fetchVerified, pinnedRoot, stateDeleted } from "../trust.js";
import { Workspace, files, readInput, secretMode } from "../workspace.js";
import { readPolicies } from "./generate.js";

/** "3 owners, any 2 of them recover the Coordinator", for the output. */
function sharesSummary(owners: number, threshold: number): string {
  const who = `${owners} seed-share owner${owners === 1 ? "" : "s"}`;
  if (threshold === 1) return `${who}, each of them alone recovers the Coordinator`;
  return `${who}, any ${threshold} of them together recover the Coordinator`;
}

/** Runs `contrast set`. */
export async function set(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const manifestPath = ws.show(ws.path(files.manifest));
  const manifestBytes = await ws.read(files.manifest, "run contrast generate to write it");
  let doc;
  try {
    doc = await readManifest(manifestBytes);
  } catch (err) {
    if (err instanceof CoordinatorError) {
      throw new CliError("INVALID_MANIFEST", `${manifestPath} is not a valid manifest: ${err.message}`, "fix it, or run contrast generate");
    }
    throw err;
  }
  const available = new Map((await readPolicies(ws, { required: false })).map((p) => [p.hash, p]));
  const policies: Uint8Array[] = [];
  for (const [hash, entry] of Object.entries(doc.manifest.Policies)) {
    const file = available.get(hash);
    if (file === undefined) {
      throw new CliError(
        "POLICY_MISSING",
        `${manifestPath} references policy ${hash} (workload ${entry.WorkloadSecretID}), but no file in ${ws.show(ws.path(files.policies))}/ has that hash`,
        "put the policy file there, or run contrast generate to rewrite the manifest from policies/",
      );
    }
    policies.push(file.bytes);
  }
  const keyFlag = stringFlag(ctx.flags, "workload-owner-key");
  const client = clientOf(ctx);

  // Wait until the Coordinator can take a manifest: uninitialized or ready.
  const status = await patiently(ctx, client.baseUrl, async () => {
    const s = await client.status();
    if (s.state === "recovery-required" || s.state === "stale") {
      throw new ClientError(s.state === "stale" ? "STALE" : "RECOVERY_REQUIRED", `the Coordinator is ${s.state}`, { status: 409 });
    }
    return s;
  }, ["RECOVERY_REQUIRED", "STALE"]);

  if (status.state === "uninitialized") {
    await firstSet(ctx, ws, status, manifestBytes, policies);
    return;
  }

  // An update: sign over a base whose history verifies against the pinned root and the rollback memory.
  const keyPath = keyFlag ?? ws.path(files.workloadOwnerKey);
  const owner = await loadWorkloadOwnerKey(
    fromUtf8(await readInput(keyPath, "an update is signed with the workload owner's key (workload-owner.pem or --workload-owner-key)")),
    ws.show(keyPath),
  );
  const { history, memory } = await fetchVerified(ctx, ws, client);
  const current = history.parsedManifests[history.parsedManifests.length - 1]!;
  if (current.WorkloadOwnerKeyDigests.length === 0) {
    throw new CliError("UPDATES_DISABLED", `the Coordinator's manifest (generation ${history.generation}) names no workload owner, so it cannot be updated`, "nothing was changed");
  }
  if (!current.WorkloadOwnerKeyDigests.includes(owner.digest)) {
    throw new CliError(
      "UNAUTHORIZED_UPDATE",
      `${ws.show(keyPath)} (sha256 ${owner.digest}) is not a workload owner of the Coordinator's manifest (generation ${history.generation})`,
      "sign with a key listed in its WorkloadOwnerKeyDigests; nothing was changed",
    );
  }
  const { body } = await signedUpdate({ manifest: manifestBytes, policies, previousTransition: history.latestTransition, owner });
  let result: SetManifestResponse;
  try {
    result = await client.setManifest(body);
  } catch (err) {
    if (err instanceof ClientError && err.code === "STALE_BASE") {
      throw new CliError(
        "STALE_BASE",
        `someone else updated the manifest first: this update builds on generation ${history.generation} (${history.latestTransition}), which is no longer the latest`,
        "nothing was changed; run contrast verify to see the new history, then contrast set again",
      );
    }
    throw err;
  }
  if (!bytesEqual(certificateDerOf(result.rootCA), history.rootCA.der)) {
    throw new CliError("ROOT_CA_MISMATCH", "the Coordinator answered the update with another root CA than its history shows", "do not trust this Coordinator");
  }
  if (result.seedShares !== undefined) {
    if (await ws.has(files.seedShares)) await ws.write(files.previousSeedShares, await ws.read(files.seedShares, ""), secretMode);
    await ws.write(files.seedShares, JSON.stringify(result.seedShares, null, 2) + "\n", secretMode);
  }
  if (!(await ws.has(files.rootCA))) await ws.write(files.rootCA, result.rootCA);
  await ws.write(files.meshCA, result.meshCA);
  await ws.saveMemory({ ...memory, generation: result.generation, latestTransition: result.transition });

  ctx.out.result({ coordinator: client.baseUrl, name: history.name, generation: result.generation, transition: result.transition, seedSharesWritten: result.seedShares !== undefined, threshold: result.seedShares?.threshold ?? null });
  ctx.out.line(`updated the manifest of Coordinator ${history.name}: generation ${result.generation}, transition ${result.transition}`);
  if (result.seedShares !== undefined) {
    const doc = result.seedShares;
    ctx.out.line(
      `wrote ${ws.show(ws.path(files.seedShares))}: the seed-share owners or the threshold changed, so there are new shares for ${sharesSummary(doc.shares.length, doc.threshold)}; ` +
        `the old shares no longer work (the old file is ${files.previousSeedShares})`,
    );
    ctx.out.line(`give every seed-share owner a copy of the new ${files.seedShares}`);
  }
  ctx.out.line(`wrote ${ws.show(ws.path(files.meshCA))} (a new mesh CA for this manifest)`);
}

async function firstSet(ctx: Context, ws: Workspace, status: StatusResponse, manifest: Uint8Array, policies: Uint8Array[]): Promise<void> {
  // A workspace that already set up a Coordinator must not silently start a new one: its state may have been deleted.
  const memory = await ws.memory();
  const pinned = await pinnedRoot(ws);
  if (memory !== null || pinned !== undefined) throw stateDeleted(memory);
  if (await ws.has(files.seedShares)) {
    throw new CliError(
      "SEED_SHARES_EXIST",
      `the Coordinator is uninitialized, but ${ws.show(ws.path(files.seedShares))} already exists and would be overwritten`,
      "move it away if it belongs to no Coordinator any more, or use a fresh workspace",
    );
  }
  const client = clientOf(ctx);
  let result: SetManifestResponse;
  try {
    result = await client.setManifest({ manifest: toBase64(manifest), policies: policies.map(toBase64) });
  } catch (err) {
    if (err instanceof ClientError && err.code === "STALE_BASE") {
      throw new CliError("STALE_BASE", "someone else set the first manifest at the same time", "nothing was changed; run contrast verify, then contrast set to update");
    }
    throw err;
  }
  if (result.seedShares === undefined) {
    throw new CliError("BAD_RESPONSE", "the Coordinator accepted the first manifest but returned no seed shares", "this Coordinator cannot be recovered after a restart");
  }
  // The seed shares first: without them nobody can ever recover this Coordinator.
  await ws.write(files.seedShares, JSON.stringify(result.seedShares, null, 2) + "\n", secretMode);
  await ws.write(files.rootCA, result.rootCA);
  await ws.write(files.meshCA, result.meshCA);
  const rootHash = toHex(await sha256(certificateDerOf(result.rootCA)));
  const remembered: Memory = { format: memoryFormat, name: status.name, rootCA: rootHash, generation: result.generation, latestTransition: result.transition };
  await ws.saveMemory(remembered);

  ctx.out.result({ coordinator: client.baseUrl, name: status.name, generation: result.generation, transition: result.transition, rootCA: rootHash, seedSharesWritten: true, threshold: result.seedShares.threshold });
  ctx.out.line(`set the first manifest of Coordinator ${status.name}: generation ${result.generation}, transition ${result.transition}`);
  const shares = result.seedShares;
  if (shares.threshold === 1 && shares.shares.length === 1) {
    ctx.out.line(`wrote ${ws.show(ws.path(files.seedShares))} (keep it safe: with a seed-share owner key it recovers the Coordinator)`);
  } else {
    ctx.out.line(
      `wrote ${ws.show(ws.path(files.seedShares))}: ${sharesSummary(shares.shares.length, shares.threshold)}; give every seed-share owner a copy and keep a backup`,
    );
  }
  ctx.out.line(`wrote ${ws.show(ws.path(files.rootCA))}, ${ws.show(ws.path(files.meshCA))}`);
}
