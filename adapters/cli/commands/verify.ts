// `contrast verify`: fetches the history, checks it offline, writes verify/, and compares the newest manifest with manifest.json.
import { join } from "node:path";
import { bytesEqual, toHex } from "../../../src/encoding.js";
import { sha256 } from "../../../src/crypto/provider.js";
import type { VerifiedHistory } from "../../../src/client/verify.js";
import { CliError } from "../errors.js";
import { clientOf } from "../context.js";
import type { Context } from "../context.js";
import { fetchVerified } from "../trust.js";
import { Workspace, files, publicMode, writeFileAtomic } from "../workspace.js";
import * as fsp from "node:fs/promises";

/** Writes the verified history into verify/: manifests, policies, CA certificates and the latest transition. */
export async function writeVerifyDir(ws: Workspace, history: VerifiedHistory): Promise<void> {
  await ws.replaceDir(files.verify, async (dir) => {
    for (const [i, bytes] of history.manifests.entries()) {
      await writeFileAtomic(join(dir, `manifest.${i + 1}.json`), bytes, publicMode);
    }
    await fsp.mkdir(join(dir, "policies"), { mode: 0o755 });
    for (const [hash, bytes] of [...history.policies].sort(([a], [b]) => (a < b ? -1 : 1))) {
      await writeFileAtomic(join(dir, "policies", hash), bytes, publicMode);
    }
    await writeFileAtomic(join(dir, files.rootCA), history.rootCA.pem, publicMode);
    await writeFileAtomic(join(dir, files.meshCA), history.meshCA.pem, publicMode);
    await writeFileAtomic(join(dir, "latest-transition"), history.latestTransition + "\n", publicMode);
  });
}

/** Runs `contrast verify`. */
export async function verify(ctx: Context): Promise<void> {
  const ws = await Workspace.open(ctx.workspace);
  const expected = await ws.read(files.manifest, "verify compares the Coordinator's newest manifest with the workspace's manifest.json: put the one you expect there");
  const client = clientOf(ctx);
  const { history, memory, previous, pinned } = await fetchVerified(ctx, ws, client);
  await writeVerifyDir(ws, history);
  await ws.saveMemory(memory);

  const newest = history.manifests[history.manifests.length - 1]!;
  const matches = bytesEqual(newest, expected);
  ctx.out.result({
    coordinator: client.baseUrl,
    name: history.name,
    generation: history.generation,
    latestTransition: history.latestTransition,
    rootCA: history.rootCA.hash,
    meshCA: history.meshCA.hash,
    manifests: history.manifests.length,
    policies: history.policies.size,
    rootPinned: pinned,
    newestManifestMatches: matches,
    verifyDir: ws.path(files.verify),
  });
  if (!matches) {
    throw new CliError(
      "MANIFEST_MISMATCH",
      `the history verifies, but the Coordinator's newest manifest (generation ${history.generation}, sha256 ${toHex(await sha256(newest))}) ` +
        `is not ${ws.show(ws.path(files.manifest))} (sha256 ${toHex(await sha256(expected))})`,
      `compare with ${ws.show(ws.path(files.verify))}/manifest.${history.generation}.json; run contrast set if yours should be active`,
    );
  }
  const seen = previous === null ? "first verification in this workspace" : previous.generation === history.generation ? "as seen before" : `newer than generation ${previous.generation} seen before, and built on it`;
  ctx.out.line(`verified Coordinator ${history.name} at ${client.baseUrl}`);
  ctx.out.line(`  generation         ${history.generation} (${seen})`);
  ctx.out.line(`  latest transition  ${history.latestTransition}`);
  ctx.out.line(`  root CA            sha256 ${history.rootCA.hash}${pinned ? ` (matches ${files.rootCA})` : ""}`);
  ctx.out.line(`  mesh CA            sha256 ${history.meshCA.hash}`);
  ctx.out.line(`  history            ${history.manifests.length} manifest${history.manifests.length === 1 ? "" : "s"}, ${history.policies.size} polic${history.policies.size === 1 ? "y" : "ies"}; the newest is ${files.manifest}`);
  ctx.out.line(`wrote ${ws.show(ws.path(files.verify))}/`);
}
