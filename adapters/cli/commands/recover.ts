// `contrast recover`: decrypts this owner's seed share, checks the rollback memory, sends it, and verifies the recovered history.
import { ClientError } from "../../../src/client/client.js";
import type { RecoverResponse } from "../../../src/client/client.js";
import { loadSeedShareOwnerKey } from "../../../src/client/keys.js";
import { checkMemory } from "../../../src/client/rollback.js";
import { decryptSeedShare, seedShareDocumentSchema } from "../../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../../src/crypto/seedshares.js";
import { fromUtf8, toBase64, toHex } from "../../../src/encoding.js";
import { CliError } from "../errors.js";
import { clientOf, patiently, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { fetchVerified, pinnedRoot, stateDeleted } from "../trust.js";
import { Workspace, files, readInput } from "../workspace.js";

async function readSeedShares(ws: Workspace): Promise<SeedShareDocument> {
  const path = ws.show(ws.path(files.seedShares));
  const bytes = await ws.read(files.seedShares, "it was written by the first contrast set; restore it from your backup");
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    json = undefined;
  }
  const parsed = seedShareDocumentSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CliError("FILE_INVALID", `${path} is not a seed-share document (${issue?.path.join(".") || "top level"}: ${issue?.message ?? "invalid"})`, "restore it from your backup");
  }
  return parsed.data;
}

/** Runs `contrast recover`. */
export async function recover(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const doc = await readSeedShares(ws);
  const keyPath = stringFlag(ctx.flags, "seedshare-owner-key") ?? ws.path(files.seedShareOwnerKey);
  const key = await loadSeedShareOwnerKey(
    fromUtf8(await readInput(keyPath, "recover needs a seed-share owner's private key (seedshare-owner.pem or --seedshare-owner-key)")),
    ws.show(keyPath),
  );
  const ownerHex = toHex(key.spki);
  const share = doc.shares.find((s) => s.ownerPublicKey === ownerHex);
  if (share === undefined) {
    throw new CliError(
      "NOT_A_SEEDSHARE_OWNER",
      `${ws.show(keyPath)} is not one of the ${doc.shares.length} seed-share owner${doc.shares.length === 1 ? "" : "s"} in ${files.seedShares}`,
      "use the private key whose public key the manifest lists in SeedshareOwnerPubKeys; nothing was sent",
    );
  }
  let secret: Uint8Array;
  try {
    secret = await decryptSeedShare(share.encryptedShare, key.privateKey);
  } catch {
    throw new CliError("SEED_MISMATCH", `share ${share.index} in ${files.seedShares} does not decrypt with ${ws.show(keyPath)}`, "the file is damaged or was not made for this key; nothing was sent");
  }

  const client = clientOf(ctx);
  const memory = await ws.memory();
  // Recovery must not wait for readiness: only for the Coordinator to answer at all.
  const status = await patiently(ctx, client.baseUrl, () => client.status());
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
    try {
      result = await patiently(ctx, client.baseUrl, () => client.recover({ share: toBase64(secret), salt: doc.salt }));
    } catch (err) {
      // Someone else finished the recovery meanwhile: verify below as if it had been ours.
      if (!(err instanceof ClientError && err.code === "NOT_IN_RECOVERY")) throw err;
    }
    if (result !== null && result.state !== "ready") {
      ctx.out.result({ coordinator: client.baseUrl, name: status.name, state: result.state, recovery: result.recovery });
      ctx.out.line(`share ${share.index} accepted: ${result.recovery.received} of ${result.recovery.threshold} shares received; the Coordinator is ${result.state}`);
      return;
    }
  }

  // Ready: the recovered history must verify and must not be older than what this workspace has seen.
  const { history, memory: next } = await fetchVerified(ctx, ws, client);
  await ws.saveMemory(next);
  ctx.out.result({
    coordinator: client.baseUrl,
    name: history.name,
    state: "ready",
    recovered: result !== null,
    generation: history.generation,
    latestTransition: history.latestTransition,
    recovery: result?.recovery ?? null,
  });
  ctx.out.line(
    result !== null
      ? `recovered Coordinator ${history.name}: ready at generation ${history.generation}, transition ${history.latestTransition}`
      : `Coordinator ${history.name} is already ready (generation ${history.generation}); nothing to recover`,
  );
  ctx.out.line(`its history verifies (root CA sha256 ${history.rootCA.hash}); run contrast verify to write verify/`);
}
