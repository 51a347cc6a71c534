// `contrast recover`: decrypts and checks this owner's seed share, attests the Coordinator and sends the share sealed to its attested key (never in clear over plain http unless asked), prints the progress, and verifies the history once the Coordinator is ready; `--reset` signs the discarding of an unfinished attempt; `--force` recovers even while a ready peer replica exists.
import { webcrypto } from "node:crypto";
import { ClientError } from "../../../src/client/client.js";
import type { CoordinatorClient, RecoverResponse, StatusResponse } from "../../../src/client/client.js";
import { loadSeedShareOwnerKey } from "../../../src/client/keys.js";
import { checkMemory } from "../../../src/client/rollback.js";
import { recoveryResetStatement, signAsSeedShareOwner } from "../../../src/coordinator/statements.js";
import type { SeedShareDocument } from "../../../src/crypto/seedshares.js";
import { sha256 } from "../../../src/crypto/provider.js";
import { fromBase64, fromHex, toBase64, toHex } from "../../../src/encoding.js";
import { sealShare } from "../../../src/coordinator/sealed-share.js";
import { attest, coordinatorReference, reportAttested, skippingAttestation } from "../attest.js";
import { CliError, usageError } from "../errors.js";
import { clientOf, coordinatorUrl, listFlag, patiently } from "../context.js";
import type { Context } from "../context.js";
import { readPendingSet, pendingWhat } from "../pending.js";
import { fetchSeedShares, openShare, ownerKeyPath, readSeedShares } from "../shares.js";
import { fetchVerified, pinnedRoot, stateDeleted } from "../trust.js";
import { Workspace, files, readInput } from "../workspace.js";

/** A share the Coordinator refused, as one line that says what the code means and what to do. */
function refused(err: ClientError, index: number, doc: SeedShareDocument, status: StatusResponse): CliError {
  const tag = `[${err.status} ${err.code}]`;
  const kept = status.recovery !== null && status.recovery.received > 0 ? "; the shares already received stay counted" : "";
  switch (err.code) {
    case "SALT_MISMATCH": {
      const needs = status.recovery !== null && status.recovery.threshold !== doc.threshold
        ? ` (this ${files.seedShares} is a ${doc.threshold}-of-${doc.shares.length} one, but the Coordinator needs ${status.recovery.threshold} shares)`
        : "";
      return new CliError(
        err.code,
        `the Coordinator refused share ${index}: it belongs to another deployment, or to seed-share owners that a manifest update replaced${needs} ${tag}`,
        `use the newest ${files.seedShares} of this Coordinator (the workload owner's contrast set writes a new one when the owners change), ` +
          `or move yours aside and run contrast recover again: without ${files.seedShares} it fetches the current document from the Coordinator and checks your share${kept}`,
      );
    }
    case "SHARE_INVALID":
      return new CliError(
        err.code,
        `the Coordinator refused share ${index}: it matches none of the Coordinator's share commitments, so it is corrupted ${tag}`,
        `restore ${files.seedShares} from your backup and run contrast seedshare check${kept}`,
      );
    case "SHARE_REPEATED": {
      const missing = status.recovery === null ? null : Math.max(status.recovery.threshold - status.recovery.received, 0);
      const who = missing === null ? "the other seed-share owners" : `${missing} more seed-share owner${missing === 1 ? "" : "s"}`;
      return new CliError(
        err.code,
        `the Coordinator refused share ${index}: it was already submitted in this recovery attempt${status.recovery?.nonce ? ` (${status.recovery.nonce})` : ""} ${tag}`,
        `it still counts: ${who} must run contrast recover with their own key`,
      );
    }
    case "SEED_MISMATCH":
      return new CliError(
        err.code,
        `the Coordinator refused the seed of share ${index}: it is the wrong seed, not the one this Coordinator's state was made with ${tag}`,
        `use the ${files.seedShares} and seed-share owner key of this Coordinator`,
      );
    default:
      return new CliError(err.code, `the Coordinator refused share ${index}: ${err.message} ${tag}`);
  }
}

const shareCodes = new Set(["SALT_MISMATCH", "SHARE_INVALID", "SHARE_REPEATED", "SEED_MISMATCH"]);

/**
 * `contrast recover --reset`: discards the shares of an unfinished recovery attempt. Only a seed-share
 * owner may: the request carries their signature over this Coordinator's name and the attempt's nonce,
 * so it resets that attempt and no other. It sends no secret, so plain http is allowed.
 */
async function resetRecovery(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const given = listFlag(ctx.flags, "seedshare-owner-key");
  if (given.length === 0 && !(await ws.has(files.seedShareOwnerKey))) {
    throw usageError(
      `--reset must be signed by a seed-share owner, but no key was given and ${ws.show(ws.path(files.seedShareOwnerKey))} does not exist`,
      "pass --seedshare-owner-key FILE with your RSA private key",
    );
  }
  const keyPath = ownerKeyPath(ctx, ws, "recover --reset");
  const keyShown = ws.show(keyPath);
  const key = await loadSeedShareOwnerKey(await readInput(keyPath, "a reset is signed with a seed-share owner's private key (seedshare-owner.pem or --seedshare-owner-key FILE)"), keyShown);
  const client = clientOf(ctx);
  const status = await patiently(ctx, client.baseUrl, () => client.status());
  if (status.state === "ready" || status.state === "uninitialized") {
    throw new CliError("NOT_IN_RECOVERY", `the Coordinator ${status.name} is ${status.state} and needs no recovery, so there is nothing to reset`, "nothing was sent");
  }
  const nonce = status.recovery?.nonce ?? null;
  if (nonce === null || status.recovery?.received === 0) {
    throw new CliError(
      "NO_RECOVERY_ATTEMPT",
      `the Coordinator ${status.name} has received no share yet (0 of ${status.recovery?.threshold ?? "?"}), so there is nothing to reset`,
      "nothing was sent; each seed-share owner runs contrast recover",
    );
  }
  const signature = await signAsSeedShareOwner(key.signingKey, recoveryResetStatement(status.name, nonce));
  let answer: RecoverResponse;
  try {
    answer = await client.resetRecovery({ ownerPublicKey: toHex(key.spki), signature: toBase64(signature) });
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    const tag = `[${err.status} ${err.code}]`;
    switch (err.code) {
      case "NOT_IN_RECOVERY":
        throw new CliError(err.code, `the Coordinator needs no recovery (any more), so there is nothing to reset ${tag}`);
      case "NO_RECOVERY_ATTEMPT":
        throw new CliError(err.code, `the recovery attempt ${nonce} is over (its shares expired or were discarded) and no new one has begun: nothing to reset ${tag}`, "each seed-share owner runs contrast recover");
      case "RESET_UNAUTHORIZED":
        throw new CliError(
          err.code,
          `the Coordinator refused the reset signed by ${keyShown} (sha256 ${toHex(await sha256(key.spki))}): it is not a seed-share owner of this Coordinator's manifest, or attempt ${nonce} was replaced meanwhile ${tag}`,
          "sign with your own seed-share owner key (as listed in SeedshareOwnerPubKeys); run contrast status and try again if the attempt changed",
        );
      default:
        throw err;
    }
  }
  ctx.out.result({ coordinator: client.baseUrl, name: status.name, attempt: nonce, state: answer.state, recovery: answer.recovery });
  ctx.out.line(
    `discarded the shares of the unfinished recovery (attempt ${nonce}): received 0 of ${answer.recovery.threshold}; every seed-share owner runs contrast recover again`,
  );
}

/**
 * Without attestation the share would travel in clear inside the request, or sealed to a key nothing
 * vouches for; over plain http anyone on the way reads it or poses as the Coordinator (with threshold
 * 1 it is the root seed). So with attestation skipped, refuse http unless --insecure-http says the
 * network is trusted. Checked before anything is read or sent.
 */
function refusePlainHttp(ctx: Context): void {
  const url = coordinatorUrl(ctx);
  if (url.protocol === "http:" && ctx.flags["insecure-http"] !== true) {
    throw usageError(
      `refusing to send a seed share to ${url.href.replace(/\/+$/, "")} over plain http without attestation: anyone on the network path can pose as the Coordinator and take the share (with threshold 1 it is the whole root seed)`,
      "leave out --insecure-skip-attestation so the share is sealed to the attested Coordinator, use an https:// URL (with --ca FILE for a private CA), or pass --insecure-http if this network is trusted; nothing was sent",
    );
  }
}

/**
 * The HPKE key to seal the share to: the attested key of the Coordinator's evidence, checked against
 * the reference values (name included). With attestation skipped, the key of unverified evidence if
 * the Coordinator offers any (a passive observer still learns nothing), else null: the share goes in
 * clear, as to a Coordinator without evidence.
 */
async function sealingKey(ctx: Context, ws: Workspace, client: CoordinatorClient, name: string, skip: boolean): Promise<Uint8Array | null> {
  if (!skip) {
    const reference = await coordinatorReference(ctx, ws);
    const attested = await attest(ctx, client, reference, { name });
    reportAttested(ctx, attested, reference);
    return attested.hpkePublicKey;
  }
  try {
    const answer = (await patiently(ctx, client.baseUrl, () => client.attestation(toHex(webcrypto.getRandomValues(new Uint8Array(32)))))) as { hpkePublicKey?: unknown };
    return typeof answer.hpkePublicKey === "string" ? fromBase64(answer.hpkePublicKey) : null;
  } catch (err) {
    if (err instanceof ClientError && (err.code === "EVIDENCE_UNAVAILABLE" || err.code === "NOT_FOUND")) return null;
    throw err;
  }
}

/** How often a sealed share is sealed again for a new attempt (another owner's reset or an expiry in between). */
const sealAttempts = 3;

/**
 * Sends the share once per attempt nonce: sealed to `key` for the Coordinator's current attempt, or in
 * clear if `key` is null. ATTEMPT_CHANGED (the attempt moved between the status and the send) re-reads
 * the status and seals again; nothing was kept by the Coordinator then.
 */
async function sendShare(ctx: Context, client: CoordinatorClient, share: Uint8Array, salt: string, key: Uint8Array | null, status: StatusResponse): Promise<RecoverResponse> {
  const force = ctx.flags["force"] === true ? { force: true as const } : {};
  if (key === null) return client.recover({ share: toBase64(share), salt, ...force });
  let current = status;
  for (let n = 1; ; n++) {
    const attempt = current.recovery?.nonce ?? null;
    if (attempt === null) {
      throw new CliError("BAD_RESPONSE", `the Coordinator ${current.name} is ${current.state} but names no recovery attempt to seal the share for`, "nothing was sent; check that the Coordinator and this CLI are of the same version");
    }
    const sealedShare = await sealShare(key, share, { name: current.name, attempt, salt: fromHex(salt) });
    try {
      return await client.recover({ salt, sealedShare, ...force });
    } catch (err) {
      if (!(err instanceof ClientError && err.code === "ATTEMPT_CHANGED") || n >= sealAttempts) throw err;
      current = await patiently(ctx, client.baseUrl, () => client.status());
    }
  }
}

/** What `--force` risks, said whenever it is used or refused for want of it. */
export const forceRisk =
  "recovering with the owners' shares while a ready peer replica exists can split the replicas: this replica loads whatever head the store holds " +
  "(an older one, if the store was rolled back) and may then write a history the peers do not share";

/** A recovery refused because this replica saw a ready peer (it recovers from that peer by itself). */
function peersReady(err: ClientError, name: string): CliError {
  return new CliError(
    err.code,
    `the Coordinator ${name} refused the share: ${err.message} [${err.status} ${err.code}]`,
    `wait a few seconds and run contrast status: it recovers from its peer without the owners. If its status shows refusedHead, fix the store first. ` +
      `Only if no peer can serve it, run contrast recover --force; ${forceRisk}; nothing was kept`,
  );
}

/** Runs `contrast recover`. */
export async function recover(ctx: Context): Promise<void> {
  if (ctx.flags["reset"] === true) return resetRecovery(ctx);
  if (ctx.flags["force"] === true) process.stderr.write(`contrast: warning: --force: ${forceRisk}\n`);
  const client = clientOf(ctx);
  const skip = skippingAttestation(ctx, client.baseUrl);
  if (skip) refusePlainHttp(ctx);
  const ws = await Workspace.open(ctx.workspace);
  const keyPath = ownerKeyPath(ctx, ws, "recover");
  // The share is opened and checked against its commitment before anything is sent. A workspace
  // without seed-shares.json (e.g. after a set whose answer was lost) fetches it first.
  let opened;
  if (await ws.has(files.seedShares)) {
    const doc = await readSeedShares(ws);
    opened = { doc, ...(await openShare(ws, doc, keyPath, "nothing was sent")), status: null };
  } else {
    opened = await fetchSeedShares(ctx, ws, client, keyPath, "nothing was sent");
  }
  const { doc, entry, share } = opened;

  const memory = await ws.memory();
  // Recovery must not wait for readiness: only for the Coordinator to answer at all.
  const status = opened.status ?? (await patiently(ctx, client.baseUrl, () => client.status()));
  if (status.name !== doc.coordinator) {
    throw new CliError(
      "WRONG_COORDINATOR",
      `${files.seedShares} belongs to Coordinator ${doc.coordinator}, but ${client.baseUrl} is Coordinator ${status.name}`,
      "check --coordinator; nothing was sent",
    );
  }
  if (status.generation !== null && status.latestTransition !== null) {
    checkMemory(memory, { name: status.name, generation: status.generation, latestTransition: status.latestTransition });
  }
  if (status.state === "uninitialized") {
    if (memory !== null || (await pinnedRoot(ws)) !== undefined) throw stateDeleted(memory);
    throw new CliError("NOT_IN_RECOVERY", "the Coordinator has no state, so there is nothing to recover", "run contrast set to set it up");
  }

  let result: RecoverResponse | null = null;
  if (status.state !== "ready") {
    // Sent once, never resent: a share the Coordinator received before a lost answer would come back as SHARE_REPEATED.
    try {
      const key = await sealingKey(ctx, ws, client, doc.coordinator, skip);
      result = await sendShare(ctx, client, share, doc.salt, key, status);
    } catch (err) {
      // Someone else finished the recovery meanwhile: verify below as if it had been ours.
      if (err instanceof ClientError && err.code === "NOT_IN_RECOVERY") result = null;
      else if (err instanceof ClientError && shareCodes.has(err.code)) throw refused(err, entry.index, doc, status);
      else if (err instanceof ClientError && err.code === "PEERS_READY") throw peersReady(err, status.name);
      else throw err;
    } finally {
      share.fill(0);
    }
    if (result !== null && result.state !== "ready") {
      const p = result.recovery;
      const missing = Math.max(p.threshold - p.received, 0);
      ctx.out.result({ coordinator: client.baseUrl, name: status.name, index: entry.index, state: result.state, recovery: p });
      ctx.out.line(`share ${entry.index} accepted: received ${p.received} of ${p.threshold} shares (attempt ${p.nonce ?? "-"})`);
      ctx.out.line(
        `the Coordinator ${status.name} stays ${result.state} until ${missing} more seed-share owner${missing === 1 ? "" : "s"} run${missing === 1 ? "s" : ""} contrast recover`,
      );
      return;
    }
  }

  // Ready: the recovered history must verify and must not be older than what this workspace has seen.
  const { history, memory: next } = await fetchVerified(ctx, ws, client);
  await ws.saveMemory(next);
  ctx.out.result({
    coordinator: client.baseUrl,
    name: history.name,
    index: entry.index,
    state: "ready",
    recovered: result !== null,
    generation: history.generation,
    latestTransition: history.latestTransition,
    recovery: result?.recovery ?? null,
  });
  ctx.out.line(
    result !== null
      ? `recovered Coordinator ${history.name}: ready at generation ${history.generation}, transition ${history.latestTransition}` +
          (result.recovery.threshold > 1 ? ` (share ${entry.index} completed ${result.recovery.received} of ${result.recovery.threshold})` : "")
      : `Coordinator ${history.name} is already ready (generation ${history.generation}); nothing to recover`,
  );
  ctx.out.line(`its history verifies (root CA sha256 ${history.rootCA.hash}); run contrast verify to write verify/`);
  const pending = await readPendingSet(ws);
  if (pending !== null && pending.name === history.name) {
    ctx.out.line(
      `this workspace sent a ${pendingWhat(pending)} whose answer was lost (generation ${pending.generation}): run contrast set again to finish it (or to send it again if it did not land)`,
    );
  }
}
