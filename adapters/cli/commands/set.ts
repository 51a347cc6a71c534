// `contrast set`: sends manifest.json and its policies (an update signed over a verified base, a rekey with the owners' approvals), then verifies the result before it remembers or keeps anything; after a lost answer it finds out what became of the set.
import { isSeedShareOwner } from "../../../src/crypto/owner-keys.js";
import { ClientError } from "../../../src/client/client.js";
import type { CoordinatorClient, RekeyApproval, SetManifestRequest, SetManifestResponse, StatusResponse } from "../../../src/client/client.js";
import { KeyError, loadSeedShareOwnerKey, loadWorkloadOwnerKey } from "../../../src/client/keys.js";
import { checkMemory } from "../../../src/client/rollback.js";
import type { Memory, Observed } from "../../../src/client/rollback.js";
import { ShareCheckError, openOwnShare, parseSeedShareDocument, seedSharesProblem, storedSeedSharesProblem } from "../../../src/client/seedshares.js";
import { approvalProblem, isRekey, nextTransition, signedUpdate } from "../../../src/client/update.js";
import type { ApprovalTarget } from "../../../src/client/update.js";
import { certificateDerOf, verifyHistory } from "../../../src/client/verify.js";
import type { VerifiedHistory } from "../../../src/client/verify.js";
import type { SeedShareDocument } from "../../../src/crypto/seedshares.js";
import { sha256 } from "../../../src/crypto/provider.js";
import { CoordinatorError } from "../../../src/errors.js";
import { bytesEqual, fromUtf8, toBase64, toHex } from "../../../src/encoding.js";
import { zeroHash } from "../../../src/history/transition.js";
import { hasWorkloadOwners, isWorkloadOwner, readManifest } from "../../../src/manifest/manifest.js";
import type { Manifest } from "../../../src/manifest/manifest.js";
import { CliError, toCliError } from "../errors.js";
import { clientOf, patiently, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { answerLost, answerMayBeLost, clearPendingSet, pendingWhat, readPendingSet, writePendingSet } from "../pending.js";
import type { PendingSet } from "../pending.js";
import { readSeedShares } from "../shares.js";
import { fetchVerified, pinnedRoot, stateDeleted } from "../trust.js";
import { attest, coordinatorReference, heldStateOf, reportAttested, skippingAttestation } from "../attest.js";
import { Workspace, files, readInput, secretMode, unverifiedSeedShares } from "../workspace.js";
import { ownerDigest, rekeyChange } from "./approve.js";
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
        `${manifestPath} references policy ${hash} (workload ${entry.WorkloadSecretID ?? entry.SANs[0] ?? hash}), but no file in ${ws.show(ws.path(files.policies))}/ has that hash`,
        "put the policy file there, or run contrast generate to rewrite the manifest from policies/",
      );
    }
    policies.push(file.bytes);
  }
  const keyFlag = stringFlag(ctx.flags, "workload-owner-key");
  const client = clientOf(ctx);

  // Only a Coordinator that does not answer yet is waited for: one that needs recovery takes no
  // manifest until its seed-share owners act, and waiting does not change that.
  const status = await patiently(ctx, client.baseUrl, () => client.status());
  // A set this workspace sent to this Coordinator and never got an answer to.
  const record = await readPendingSet(ws);
  const lost = record !== null && record.name === status.name ? record : null;
  if (status.state === "recovery-required" || status.state === "stale") return afterRestart(ctx, ws, client, status, lost);

  if (status.state === "uninitialized") {
    // The manifest goes only to an attested Coordinator that holds no state yet.
    if (!skippingAttestation(ctx, client.baseUrl)) {
      const reference = await coordinatorReference(ctx, ws);
      reportAttested(ctx, await attest(ctx, client, reference, { name: status.name, state: null }), reference);
    }
    await firstSet(ctx, ws, client, status, manifestBytes, doc.manifest, policies);
    return;
  }

  // Ready: everything below builds on a history that verifies against the pinned root and the rollback memory.
  const { history, memory: before, pinned } = await fetchVerified(ctx, ws, client);
  const finished = lost === null ? null : await finishLostSet(ctx, ws, client, history, before, pinned, lost);
  if (bytesEqual(history.manifests[history.manifests.length - 1]!, manifestBytes)) {
    await unchanged(ctx, ws, client, history, before, finished);
    return;
  }

  // An update: signed over the verified base.
  const keyPath = keyFlag ?? ws.path(files.workloadOwnerKey);
  const owner = await loadWorkloadOwnerKey(
    await readInput(keyPath, "an update is signed with the workload owner's key (workload-owner.pem or --workload-owner-key)"),
    ws.show(keyPath),
  );
  const current = history.parsedManifests[history.parsedManifests.length - 1]!;
  if (!hasWorkloadOwners(current)) {
    throw new CliError("UPDATES_DISABLED", `the Coordinator's manifest (generation ${history.generation}) names no workload owner, so it cannot be updated`, "nothing was changed");
  }
  if (!(await isWorkloadOwner(current, owner.spki))) {
    throw new CliError(
      "UNAUTHORIZED_UPDATE",
      `${ws.show(keyPath)} (sha256 ${owner.digest}) is not a workload owner of the Coordinator's manifest (generation ${history.generation})`,
      "sign with a key listed in its WorkloadOwnerKeyDigests; nothing was changed",
    );
  }
  const identity = { name: history.name, rootCA: history.rootCA.hash };
  const rekey = isRekey(current, doc.manifest);
  const newTransition = await nextTransition(manifestBytes, history.latestTransition);
  let approvals: RekeyApproval[] = [];
  if (rekey) {
    approvals = await collectApprovals(ws, current, doc.manifest, {
      ...identity,
      previousTransition: history.latestTransition,
      transition: newTransition,
      manifest: toHex(await sha256(manifestBytes)),
      owners: current.SeedshareOwnerPubKeys,
    });
  }
  const { body } = await signedUpdate({ manifest: manifestBytes, policies, previousTransition: history.latestTransition, owner, coordinator: identity, approvals });
  const sending: PendingSet = {
    ...(await pendingRecord(status.name, client, manifestBytes, doc.manifest, history.latestTransition, newTransition, history.generation + 1)),
    kind: "update",
    rekey,
  };
  let result: SetManifestResponse;
  try {
    result = await send(ws, client, body, sending);
  } catch (err) {
    if (err instanceof ClientError && err.code === "STALE_BASE") {
      throw new CliError(
        "STALE_BASE",
        `someone else updated the manifest first: this update builds on generation ${history.generation} (${history.latestTransition}), which is no longer the latest`,
        "nothing was changed; run contrast verify to see the new history, then contrast set again",
      );
    }
    if (err instanceof ClientError && err.code === "REKEY_NOT_APPROVED") {
      throw new CliError(
        err.code,
        `the Coordinator refused the change of the seed-share owners or the threshold: it did not count ${approvals.length === 0 ? "any approval" : `the ${approvals.length} approval${approvals.length === 1 ? "" : "s"} sent`} as enough [${err.status} ${err.code}]`,
        `it needs ${current.Threshold ?? 1} valid approvals by current seed-share owners of this very update (contrast seedshare approve on a copy of this workspace); nothing was changed`,
      );
    }
    throw err;
  }

  // The answer is not trusted: new shares go to a file of their own, never over seed-shares.json, until the history shows them.
  const pending = result.seedShares !== undefined && rekey ? unverifiedSeedShares(newTransition) : null;
  if (pending !== null) await ws.write(pending, JSON.stringify(result.seedShares, null, 2) + "\n", secretMode);
  // An answer came: the record of the set has done its job (the new shares, if any, are on disk).
  await clearPendingSet(ws);
  const kept = pending === null ? "" : `; the seed shares it answered with are kept in ${pending}`;
  const after = await verifyAfterSet(ctx, ws, client, {
    what: "the update",
    pinned: history.rootCA.der,
    generation: history.generation + 1,
    transition: newTransition,
    answer: result,
    kept,
  });
  const memory = nextMemory(before, after, kept);

  let sharesWritten = false;
  if (rekey) {
    if (result.seedShares === undefined) {
      await ws.saveMemory(memory);
      throw new CliError(
        "BAD_RESPONSE",
        `the Coordinator changed the seed-share owners (generation ${after.generation}) but answered with no seed shares`,
        "the old shares no longer work: run contrast set again, which fetches the new ones the Coordinator stored and checks them against its verified head",
      );
    }
    const problem = seedSharesProblem(result.seedShares, after.head, doc.manifest.SeedshareOwnerPubKeys);
    if (problem !== null) {
      await ws.saveMemory(memory);
      throw new CliError(
        "SEED_SHARES_INVALID",
        `the update is in the Coordinator's verified history (generation ${after.generation}), but the seed shares it answered with are not the ones its signed head commits to: ${problem}`,
        `do not hand out ${pending}; seed-shares.json was not changed; run contrast set again, which fetches the document the Coordinator stored and checks it against its verified head`,
      );
    }
    if (await ws.has(files.seedShares)) await ws.write(files.previousSeedShares, await ws.read(files.seedShares, ""), secretMode);
    await ws.rename(pending!, files.seedShares);
    sharesWritten = true;
  }
  if (!(await ws.has(files.rootCA))) await ws.write(files.rootCA, after.rootCA.pem);
  await ws.write(files.meshCA, after.meshCA.pem);
  await ws.saveMemory(memory);

  const shares = sharesWritten ? result.seedShares! : null;
  ctx.out.result({
    coordinator: client.baseUrl,
    name: after.name,
    generation: after.generation,
    transition: after.latestTransition,
    seedSharesWritten: sharesWritten,
    threshold: shares?.threshold ?? null,
    approvals: rekey ? approvals.length : null,
  });
  ctx.out.line(`updated the manifest of Coordinator ${after.name}: generation ${after.generation}, transition ${after.latestTransition} (verified)`);
  if (shares !== null) {
    ctx.out.line(`approved by ${approvals.length} of the ${current.SeedshareOwnerPubKeys.length} previous seed-share owners`);
    ctx.out.line(
      `wrote ${ws.show(ws.path(files.seedShares))}: the seed-share owners or the threshold changed, so there are new shares for ${sharesSummary(shares.shares.length, shares.threshold)}; ` +
        `the old shares no longer work (the old file is ${files.previousSeedShares})`,
    );
    ctx.out.line(`give every seed-share owner a copy of the new ${files.seedShares}`);
  }
  ctx.out.line(`wrote ${ws.show(ws.path(files.meshCA))} (a new mesh CA for this manifest)`);
}

/**
 * Reads approvals/ and keeps the approvals that count for this rekey (checked offline as the
 * Coordinator checks them, one per owner); with fewer than the current threshold it stops before
 * anything is sent, saying how many more are needed and from whom.
 */
async function collectApprovals(ws: Workspace, current: Manifest, next: Manifest, target: ApprovalTarget): Promise<RekeyApproval[]> {
  const threshold = current.Threshold ?? 1;
  const byOwner = new Map<string, RekeyApproval>();
  const ignored: string[] = [];
  for (const name of await ws.list(files.approvals)) {
    if (!name.endsWith(".json")) continue;
    const path = `${files.approvals}/${name}`;
    let json: unknown;
    try {
      json = JSON.parse(fromUtf8(await ws.read(path, "")));
    } catch (err) {
      if (err instanceof CliError) throw err;
      ignored.push(`${path}: not JSON`);
      continue;
    }
    const problem = await approvalProblem(json, target);
    if (problem !== null) {
      ignored.push(`${path}: ${problem}`);
      continue;
    }
    const a = json as { ownerPublicKey: string; signature: string };
    if (!byOwner.has(a.ownerPublicKey)) byOwner.set(a.ownerPublicKey, { ownerPublicKey: a.ownerPublicKey, signature: a.signature });
  }
  // In the order of the current manifest, at most 32 (the Coordinator's limit).
  const approvals = current.SeedshareOwnerPubKeys.filter((k) => byOwner.has(k)).map((k) => byOwner.get(k)!).slice(0, 32);
  if (approvals.length >= threshold) return approvals;

  const change = await rekeyChange(current, next);
  const what = [
    change.removed.length > 0 ? `${change.removed.length} removed` : "",
    change.added.length > 0 ? `${change.added.length} added` : "",
    change.threshold.from !== change.threshold.to ? `threshold ${change.threshold.from} → ${change.threshold.to}` : "",
  ].filter((s) => s !== "").join(", ") || "new order";
  const missing = threshold - approvals.length;
  const who = await Promise.all(current.SeedshareOwnerPubKeys.filter((k) => !byOwner.has(k)).map(async (k) => `sha256 ${await ownerDigest(k)}`));
  const have = approvals.length === 0 ? "no valid approval" : `${approvals.length} valid approval${approvals.length === 1 ? "" : "s"}`;
  throw new CliError(
    "REKEY_NOT_APPROVED",
    `this update changes the seed-share owners (${what}), so it needs the approval of ${threshold} of the ${current.SeedshareOwnerPubKeys.length} current seed-share owners, ` +
      `but ${files.approvals}/ holds ${have}${ignored.length === 0 ? "" : ` (ignored: ${ignored.join("; ")})`}`,
    `${missing} more needed, from any of: ${who.join(", ")}; each runs contrast seedshare approve --seedshare-owner-key THEIR-KEY on a copy of this workspace and hands back ` +
      `the file it writes (${files.approvals}/<sha256 of their key>.json) to put into ${files.approvals}/ here; nothing was sent`,
  );
}

/**
 * After a set: the answer must name the transition and generation this set makes, and the history,
 * fetched again and verified offline against `pinned`, must have exactly that transition as its newest,
 * and the attested Coordinator must hold it. Anything else fails loudly, before anything is remembered.
 */
async function verifyAfterSet(
  ctx: Context,
  ws: Workspace,
  client: CoordinatorClient,
  opts: { what: string; pinned: Uint8Array; generation: number; transition: string; answer: SetManifestResponse; kept: string },
): Promise<VerifiedHistory> {
  const fail = (reason: string): CliError =>
    new CliError(
      "SET_UNVERIFIED",
      `${opts.what} was sent, but its result does not verify: ${reason}`,
      `do not trust this Coordinator: ${files.memory} was not changed${opts.kept}; run contrast verify to look at its history`,
    );
  const { answer } = opts;
  if (answer.generation !== opts.generation || answer.transition !== opts.transition) {
    throw fail(
      `the Coordinator answered generation ${answer.generation}, transition ${answer.transition}, but this set makes generation ${opts.generation}, transition ${opts.transition}`,
    );
  }
  let after: VerifiedHistory;
  try {
    const served = await patiently(ctx, client.baseUrl, () => client.history(), ["RECOVERY_REQUIRED", "STALE"]);
    after = await verifyHistory(served, { pinnedRootCA: opts.pinned });
  } catch (err) {
    throw fail(toCliError(err).message.replace(/^verification failed: /, ""));
  }
  if (after.generation !== opts.generation || after.latestTransition !== opts.transition) {
    throw fail(
      `the Coordinator's verified history is at generation ${after.generation} (${after.latestTransition}), not at this set's generation ${opts.generation} (${opts.transition})`,
    );
  }
  let answeredRoot: Uint8Array;
  try {
    answeredRoot = certificateDerOf(answer.rootCA);
  } catch (err) {
    throw fail(`the answer's root CA is not one PEM certificate (${(err as Error).message})`);
  }
  if (toHex(await sha256(answeredRoot)) !== after.rootCA.hash) throw fail("the Coordinator answered with another root CA than its history shows");
  // The attested Coordinator must hold exactly this history: its evidence binds the new transition and CAs.
  if (!skippingAttestation(ctx, client.baseUrl)) {
    const reference = await coordinatorReference(ctx, ws, { history: after, pinned: true });
    try {
      await attest(ctx, client, reference, { name: after.name, state: heldStateOf(after) });
    } catch (err) {
      throw fail(toCliError(err).message);
    }
  }
  return after;
}

/** The memory after a verified set: checked against what the workspace remembered, moving forward only. */
function nextMemory(previous: Memory | null, after: VerifiedHistory, kept: string): Memory {
  const observed: Observed = {
    name: after.name,
    rootCA: after.rootCA.hash,
    generation: after.generation,
    latestTransition: after.latestTransition,
    transitions: after.transitions,
  };
  try {
    return checkMemory(previous, observed)!;
  } catch (err) {
    const e = toCliError(err);
    throw new CliError(e.code, `${e.message}${kept}`, e.hint);
  }
}

async function firstSet(
  ctx: Context,
  ws: Workspace,
  client: CoordinatorClient,
  status: StatusResponse,
  manifest: Uint8Array,
  parsed: Manifest,
  policies: Uint8Array[],
): Promise<void> {
  // A workspace that already set up a Coordinator must not silently start a new one: its state may have been deleted.
  const remembered = await ws.memory();
  const pinned = await pinnedRoot(ws);
  if (remembered !== null || pinned !== undefined) throw stateDeleted(remembered);
  if (await ws.has(files.seedShares)) {
    throw new CliError(
      "SEED_SHARES_EXIST",
      `the Coordinator is uninitialized, but ${ws.show(ws.path(files.seedShares))} already exists and would be overwritten`,
      "move it away if it belongs to no Coordinator any more, or use a fresh workspace",
    );
  }
  const transition = await nextTransition(manifest, toHex(zeroHash));
  const record: PendingSet = { ...(await pendingRecord(status.name, client, manifest, parsed, toHex(zeroHash), transition, 1)), kind: "first", rekey: true };
  let result: SetManifestResponse;
  try {
    result = await send(ws, client, { manifest: toBase64(manifest), policies: policies.map(toBase64) }, record);
  } catch (err) {
    if (err instanceof ClientError && err.code === "STALE_BASE") {
      throw new CliError("STALE_BASE", "someone else set the first manifest at the same time", "nothing was changed; run contrast verify, then contrast set to update");
    }
    throw err;
  }
  if (result.seedShares === undefined) {
    // The record stays: the next set fetches the document the Coordinator stored with its head.
    throw new CliError(
      "BAD_RESPONSE",
      "the Coordinator accepted the first manifest but answered with no seed shares",
      `run contrast set again: it fetches the seed shares the Coordinator stored and checks them against its verified head; nothing was pinned`,
    );
  }
  // The seed shares first: without them nobody could recover this Coordinator if it restarted now.
  const shares: SeedShareDocument = result.seedShares;
  await ws.write(files.seedShares, JSON.stringify(shares, null, 2) + "\n", secretMode);
  await clearPendingSet(ws);
  const kept = `; ${files.seedShares} was written anyway (it may be the only copy of the seed shares), but no root CA was pinned`;
  let answeredRoot: Uint8Array;
  try {
    answeredRoot = certificateDerOf(result.rootCA);
  } catch (err) {
    throw new CliError("SET_UNVERIFIED", `the first set was sent, but the answer's root CA is not one PEM certificate (${(err as Error).message})`, `do not trust this Coordinator${kept}`);
  }
  // Trust on first use: the root CA of the answer, which the history must be signed under.
  const after = await verifyAfterSet(ctx, ws, client, { what: "the first set", pinned: answeredRoot, generation: 1, transition, answer: result, kept });
  const problem = seedSharesProblem(shares, after.head, parsed.SeedshareOwnerPubKeys);
  if (problem !== null) {
    throw new CliError(
      "SEED_SHARES_INVALID",
      `the first set is in the Coordinator's verified history, but the seed shares it answered with are not the ones its signed head commits to: ${problem}`,
      `do not trust this Coordinator and do not hand out ${files.seedShares}; ${files.memory} was not written`,
    );
  }
  await ws.write(files.rootCA, after.rootCA.pem);
  await ws.write(files.meshCA, after.meshCA.pem);
  await ws.saveMemory(nextMemory(null, after, ""));

  ctx.out.result({ coordinator: client.baseUrl, name: status.name, generation: after.generation, transition: after.latestTransition, rootCA: after.rootCA.hash, seedSharesWritten: true, threshold: shares.threshold });
  ctx.out.line(`set the first manifest of Coordinator ${after.name}: generation ${after.generation}, transition ${after.latestTransition} (verified)`);
  if (shares.threshold === 1 && shares.shares.length === 1) {
    ctx.out.line(`wrote ${ws.show(ws.path(files.seedShares))} (keep it safe: with a seed-share owner key it recovers the Coordinator)`);
  } else {
    ctx.out.line(
      `wrote ${ws.show(ws.path(files.seedShares))}: ${sharesSummary(shares.shares.length, shares.threshold)}; give every seed-share owner a copy and keep a backup`,
    );
  }
  ctx.out.line(`wrote ${ws.show(ws.path(files.rootCA))}, ${ws.show(ws.path(files.meshCA))}`);
}

/** The pending-set record of a set about to be sent (kind and rekey are the caller's). */
async function pendingRecord(
  name: string,
  client: CoordinatorClient,
  manifest: Uint8Array,
  parsed: Manifest,
  previousTransition: string,
  transition: string,
  generation: number,
): Promise<Omit<PendingSet, "kind" | "rekey">> {
  return {
    format: "contrast-pending-set/v1",
    name,
    coordinator: client.baseUrl,
    manifest: toHex(await sha256(manifest)),
    previousTransition,
    transition,
    generation,
    owners: [...parsed.SeedshareOwnerPubKeys],
    threshold: parsed.Threshold ?? 1,
  };
}

/**
 * POST /v1/manifest, never resent. The record is written before: if no answer comes back
 * (ANSWER_LOST) it stays, so that the next `set` finds out whether this set landed. On a refusal
 * (the Coordinator changed nothing) it is removed; on an answer the caller removes it once it has
 * kept what the answer carries.
 */
async function send(ws: Workspace, client: CoordinatorClient, body: SetManifestRequest, record: PendingSet): Promise<SetManifestResponse> {
  await writePendingSet(ws, record);
  try {
    return await client.setManifest(body);
  } catch (err) {
    if (answerMayBeLost(err)) throw answerLost(err as ClientError, record);
    await clearPendingSet(ws);
    throw err;
  }
}

/** "recovery-required (it restarted)", with the progress, for the messages of a Coordinator that takes no manifest. */
function stateOf(status: StatusResponse): string {
  const r = status.recovery;
  const progress = r === null ? "" : `, ${r.received} of ${r.threshold} shares received`;
  return status.state === "stale" ? `stale (its store moved under it${progress})` : `recovery-required (it restarted${progress})`;
}

/**
 * The Coordinator needs recovery (or is stale): it takes no manifest, and waiting does not change
 * that, so `set` says at once what to do. If this workspace sent a set whose answer was lost, the
 * stored head's seed-share document shows whether a set that makes new shares (a first set, a change
 * of the owners) landed: then its shares are fetched into seed-shares.json (the old file becomes
 * seed-shares.previous.json), once, and only if they are for exactly the owners and threshold of the
 * manifest sent, so that the owners can recover. Always throws.
 */
async function afterRestart(ctx: Context, ws: Workspace, client: CoordinatorClient, status: StatusResponse, lost: PendingSet | null): Promise<never> {
  const code = status.state === "stale" ? "STALE" : "RECOVERY_REQUIRED";
  const state = `the Coordinator ${status.name} is ${stateOf(status)}`;
  const recover = "each seed-share owner runs contrast recover";
  if (lost === null) {
    throw new CliError(code, `${state}: it takes no manifest until its seed-share owners recover it`, `${recover}, then run contrast set again; nothing was sent`);
  }
  const what = pendingWhat(lost);
  const sent = `the ${what} this workspace sent (generation ${lost.generation}, transition ${lost.transition}) got no answer`;
  const again = `then run contrast set again: it verifies whether the ${what} landed and finishes it, or sends it again`;
  let served: SeedShareDocument | null = null;
  if (lost.rekey) {
    try {
      served = (await patiently(ctx, client.baseUrl, () => client.seedShares())).seedShares;
    } catch (err) {
      if (!(err instanceof ClientError && err.code === "NOT_FOUND")) throw err;
    }
  }
  const local = (await ws.has(files.seedShares)) ? await readSeedShares(ws) : null;
  if (served === null) {
    throw new CliError(code, `${sent}, and ${state}`, `${recover} with the current ${files.seedShares}; ${again}`);
  }
  if (lost.installedSalt === served.salt || (local !== null && local.salt === served.salt)) {
    const landed = lost.installedSalt === served.salt;
    throw new CliError(
      code,
      `${sent}, and ${state}; ` +
        (landed
          ? `its seed shares were fetched into ${files.seedShares} before`
          : `the stored head still has the seed shares of ${files.seedShares}, so the ${what} had not landed before the restart`),
      `${recover} with ${files.seedShares}; ${again}`,
    );
  }
  if (lost.installedSalt !== undefined) {
    throw new CliError(
      "SEED_SHARES_INVALID",
      `${sent}; ${state} and now serves another seed-share document (salt ${served.salt}) than the one fetched into ${files.seedShares} before (salt ${lost.installedSalt})`,
      `${files.seedShares} was not changed; do not trust this Coordinator; ${recover} with ${files.seedShares}`,
    );
  }
  const problem = await notOfLostSet(ws, served, status.name, lost);
  if (problem !== null) {
    throw new CliError(
      "SEED_SHARES_INVALID",
      `${sent}; ${state}, but the seed shares its stored head names are not those of that ${what}: ${problem}`,
      `${files.seedShares} was not changed; someone else may have changed the manifest meanwhile: ${recover} with the newest ${files.seedShares} they have`,
    );
  }
  // The new shares of the set whose answer was lost: without them nobody could recover.
  if (local !== null) await ws.write(files.previousSeedShares, await ws.read(files.seedShares, ""), secretMode);
  await ws.write(files.seedShares, JSON.stringify(served, null, 2) + "\n", secretMode);
  await writePendingSet(ws, { ...lost, installedSalt: served.salt });
  ctx.out.line(`the ${what} this workspace sent landed before the Coordinator restarted, but its answer was lost: fetched its seed shares from Coordinator ${status.name}`);
  ctx.out.line(
    `wrote ${ws.show(ws.path(files.seedShares))}: ${sharesSummary(served.shares.length, served.threshold)}` +
      (local === null ? "" : `; the old one is ${files.previousSeedShares} (its shares no longer work)`),
  );
  throw new CliError(
    code,
    `${state}: it takes no manifest until its seed-share owners recover it`,
    `give every seed-share owner a copy of the new ${files.seedShares}; ${recover}; ${again}`,
  );
}

/**
 * Why a seed-share document served by a Coordinator that is not verified yet cannot be the one the
 * lost set made (null if it can): its name, threshold and owners (in order) must be those of the
 * manifest sent; and if the workspace holds a seed-share owner key that is one of them, its share
 * must decrypt and match its commitment.
 */
async function notOfLostSet(ws: Workspace, doc: SeedShareDocument, name: string, lost: PendingSet): Promise<string | null> {
  try {
    parseSeedShareDocument(doc);
  } catch (err) {
    if (err instanceof ShareCheckError) return err.message;
    throw err;
  }
  if (doc.coordinator !== name) return `it names Coordinator ${doc.coordinator}, not ${name}`;
  if (doc.threshold !== lost.threshold) return `its threshold is ${doc.threshold}, the manifest sent has ${lost.threshold}`;
  if (doc.shares.length !== lost.owners.length) return `it has ${doc.shares.length} shares, the manifest sent names ${lost.owners.length} seed-share owners`;
  for (const [i, share] of doc.shares.entries()) {
    if (share.index !== i + 1 || share.ownerPublicKey !== lost.owners[i]) return `share ${i + 1} is not for seed-share owner ${i + 1} of the manifest sent`;
  }
  if (await ws.has(files.seedShareOwnerKey)) {
    let key;
    try {
      key = await loadSeedShareOwnerKey(await ws.read(files.seedShareOwnerKey, ""), files.seedShareOwnerKey);
    } catch (err) {
      if (err instanceof KeyError) return null;
      throw err;
    }
    if (!doc.shares.some((sh) => isSeedShareOwner(sh.ownerPublicKey, key.spki))) return null;
    try {
      (await openOwnShare(doc, key)).share.fill(0);
    } catch (err) {
      if (err instanceof ShareCheckError) return `the share of ${files.seedShareOwnerKey} in it: ${err.message}`;
      throw err;
    }
  }
  return null;
}

/** What finishing a lost set wrote: the seed-share document, if any. */
interface Finished {
  shares: SeedShareDocument | null;
}

/**
 * The Coordinator is ready and this workspace sent a set whose answer was lost: the verified history
 * shows whether it landed (its transition at its generation). If it did, `set` finishes what the
 * answer would have done: pins the root CA (a first set), makes seed-shares.json the document the
 * verified head commits to (fetched if needed), writes the mesh CA and the memory. If it did not, a
 * lost update is simply sent again; a lost first set means someone else set up this Coordinator.
 */
async function finishLostSet(
  ctx: Context,
  ws: Workspace,
  client: CoordinatorClient,
  history: VerifiedHistory,
  memory: Memory,
  pinned: boolean,
  lost: PendingSet,
): Promise<Finished | null> {
  const what = pendingWhat(lost);
  if (history.transitions[lost.generation - 1] !== lost.transition) {
    await clearPendingSet(ws);
    if (lost.kind === "first") {
      throw new CliError(
        "FIRST_SET_LOST",
        `the first set this workspace sent (transition ${lost.transition}) did not land: Coordinator ${history.name} was set up with another manifest (transition ${history.transitions[0]})`,
        `someone else set it up first; nothing was pinned (${files.pendingSet} was removed); use a fresh workspace to set up a Coordinator of your own`,
      );
    }
    ctx.out.line(`the ${what} this workspace sent before (generation ${lost.generation}) did not land: its answer was lost before anything changed`);
    return null;
  }
  // The seed shares first: a document that is not the verified head's fails here, before anything is written.
  const shares = await ensureSeedShares(ctx, ws, client, history, lost.rekey);
  if (!pinned) await ws.write(files.rootCA, history.rootCA.pem);
  await ws.write(files.meshCA, history.meshCA.pem);
  await ws.saveMemory(memory);
  await clearPendingSet(ws);
  ctx.out.line(
    `the ${what} this workspace sent before landed, but its answer was lost: generation ${lost.generation}, transition ${lost.transition} is in Coordinator ${history.name}'s verified history`,
  );
  if (shares !== null) {
    ctx.out.line(`wrote ${ws.show(ws.path(files.seedShares))} (fetched: the document its verified head commits to): ${sharesSummary(shares.shares.length, shares.threshold)}; give every seed-share owner a copy`);
  }
  ctx.out.line(`wrote ${pinned ? "" : `${ws.show(ws.path(files.rootCA))}, `}${ws.show(ws.path(files.meshCA))}`);
  return { shares };
}

/**
 * Makes seed-shares.json the document the verified head commits to. Kept if it already is; else
 * (if it exists, or `required`) fetched from GET /v1/seedshares and checked against the verified
 * head (salt, threshold, commitments, owners, and the stored document's hash the head names); the
 * old file becomes seed-shares.previous.json. Returns the document written, or null.
 */
async function ensureSeedShares(ctx: Context, ws: Workspace, client: CoordinatorClient, history: VerifiedHistory, required: boolean): Promise<SeedShareDocument | null> {
  const owners = history.parsedManifests[history.parsedManifests.length - 1]!.SeedshareOwnerPubKeys;
  let old: Uint8Array | null = null;
  if (await ws.has(files.seedShares)) {
    old = await ws.read(files.seedShares, "");
    let local: SeedShareDocument | null;
    try {
      local = parseSeedShareDocument(JSON.parse(fromUtf8(old)));
    } catch {
      local = null;
    }
    if (local !== null && seedSharesProblem(local, history.head, owners) === null) return null;
  } else if (!required) {
    return null;
  }
  const served = (await patiently(ctx, client.baseUrl, () => client.seedShares())).seedShares;
  const problem = await storedSeedSharesProblem(served, history.head, owners);
  if (problem !== null) {
    throw new CliError(
      "SEED_SHARES_INVALID",
      `the seed-share document Coordinator ${history.name} serves is not the one its verified head (generation ${history.generation}) commits to: ${problem}`,
      `do not trust this Coordinator; ${files.seedShares} was not changed`,
    );
  }
  if (old !== null) await ws.write(files.previousSeedShares, old, secretMode);
  await ws.write(files.seedShares, JSON.stringify(served, null, 2) + "\n", secretMode);
  return served;
}

/**
 * The manifest is already the Coordinator's current one (its newest in the verified history, byte for
 * byte, so with the same policies): nothing is sent. The workspace is brought up to date with what
 * it verified (root CA if none is pinned, mesh CA, memory, and seed-shares.json if it is not the
 * document the head commits to), and `set` says "unchanged".
 */
async function unchanged(ctx: Context, ws: Workspace, client: CoordinatorClient, history: VerifiedHistory, memory: Memory, finished: Finished | null): Promise<void> {
  const shares = finished?.shares ?? (await ensureSeedShares(ctx, ws, client, history, false));
  if (!(await ws.has(files.rootCA))) await ws.write(files.rootCA, history.rootCA.pem);
  const mesh = (await ws.has(files.meshCA)) ? fromUtf8(await ws.read(files.meshCA, "")) : null;
  if (mesh !== history.meshCA.pem) await ws.write(files.meshCA, history.meshCA.pem);
  await ws.saveMemory(memory);
  ctx.out.result({
    coordinator: client.baseUrl,
    name: history.name,
    generation: history.generation,
    transition: history.latestTransition,
    unchanged: true,
    seedSharesWritten: shares !== null,
    threshold: shares?.threshold ?? null,
  });
  ctx.out.line(
    `unchanged: ${ws.show(ws.path(files.manifest))} is already the current manifest of Coordinator ${history.name} (generation ${history.generation}, transition ${history.latestTransition}, verified); nothing was sent`,
  );
  if (shares !== null && finished === null) {
    ctx.out.line(
      `wrote ${ws.show(ws.path(files.seedShares))}: it was not the document the verified head commits to, so the current one was fetched (the old one is ${files.previousSeedShares}); give every seed-share owner a copy`,
    );
  }
}
