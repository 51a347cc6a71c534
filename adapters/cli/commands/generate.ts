// `contrast generate`: creates the owner keys if missing and (re)writes manifest.json from policies/ and the owner keys.
import type { Dirent } from "node:fs";
import * as fsp from "node:fs/promises";
import { extname, join } from "node:path";
import { fromUtf8, toHex } from "../../../src/encoding.js";
import {
  generateSeedShareOwnerKey,
  generateWorkloadOwnerKey,
  loadSeedShareOwnerKey,
  loadSeedShareOwnerPublicKey,
  loadWorkloadOwnerKey,
  loadWorkloadOwnerPublicKey,
  pem,
} from "../../../src/client/keys.js";
import { sha256 } from "../../../src/crypto/provider.js";
import { minSeedShareOwnerBits, parseManifest } from "../../../src/manifest/manifest.js";
import type { Manifest } from "../../../src/manifest/manifest.js";
import { isValidSan } from "../../../src/manifest/san.js";
import { CliError, usageError } from "../errors.js";
import { listFlag, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { Workspace, files, readInput, secretMode } from "../workspace.js";

/** The default size of a generated seed-share owner key. */
export const defaultSeedShareOwnerBits = 4096;

/** One policy file: the workload name (file name without extension), its bytes and hash. */
export interface PolicyFile {
  name: string;
  file: string;
  bytes: Uint8Array;
  hash: string;
}

/** Reads every file in the workspace's policies/ (hidden files skipped), hashing each. */
export async function readPolicies(ws: Workspace, opts: { required: boolean }): Promise<PolicyFile[]> {
  const dir = ws.path(files.policies);
  let entries: Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" && !opts.required) return [];
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CliError("FILE_MISSING", `${ws.show(dir)}/ does not exist`, "create it with one file per workload policy");
    }
    throw new CliError("FILE_UNREADABLE", `cannot read ${ws.show(dir)}/: ${(err as Error).message}`, "check its permissions");
  }
  const out: PolicyFile[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith(".")) continue;
    const file = join(dir, entry.name);
    if (!entry.isFile()) {
      throw new CliError("POLICY_INVALID", `${ws.show(file)} is not a regular file`, "policies/ holds one file per workload policy");
    }
    const bytes = await readInput(file, "");
    const name = entry.name.slice(0, entry.name.length - extname(entry.name).length);
    out.push({ name, file, bytes, hash: toHex(await sha256(bytes)) });
  }
  return out;
}

/** Loads the workspace key, or generates and writes it (PKCS#8 PEM, mode 0600) if it does not exist. */
async function ensureKey<T>(
  ws: Workspace,
  name: string,
  generate: () => Promise<Uint8Array>,
  load: (text: string, what: string) => Promise<T>,
): Promise<{ key: T; created: boolean }> {
  const path = ws.path(name);
  if (await ws.has(name)) return { key: await load(fromUtf8(await ws.read(name, "")), ws.show(path)), created: false };
  const text = pem(await generate(), "PRIVATE KEY");
  await ws.write(name, text, secretMode);
  return { key: await load(text, ws.show(path)), created: true };
}

/** The previous manifest.json, or null if there is none; a malformed one is an error (it would be lost otherwise). */
async function previousManifest(ws: Workspace): Promise<Manifest | null> {
  if (!(await ws.has(files.manifest))) return null;
  try {
    return parseManifest(await ws.read(files.manifest, ""));
  } catch (err) {
    throw new CliError(
      "MANIFEST_INVALID",
      `${ws.show(ws.path(files.manifest))} is not a valid manifest (${(err as Error).message})`,
      "fix it or delete it, then run contrast generate again",
    );
  }
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

/** Runs `contrast generate`. */
export async function generate(ctx: Context): Promise<void> {
  const bitsText = stringFlag(ctx.flags, "seedshare-owner-bits") ?? String(defaultSeedShareOwnerBits);
  const bits = Number(bitsText);
  if (!/^\d+$/.test(bitsText) || bits < minSeedShareOwnerBits || bits > 16384 || bits % 8 !== 0) {
    throw usageError(`--seedshare-owner-bits ${bitsText}: must be a multiple of 8 from ${minSeedShareOwnerBits} to 16384`);
  }
  const disableUpdates = ctx.flags["disable-updates"] === true;
  const extraOwners = listFlag(ctx.flags, "add-workload-owner-key");
  const extraShareOwners = listFlag(ctx.flags, "add-seedshare-owner-key");
  if (disableUpdates && extraOwners.length > 0) {
    throw usageError("--disable-updates and --add-workload-owner-key contradict each other", "pass one of them");
  }

  const ws = await Workspace.open(ctx.workspace, { create: true });
  // Every input is checked before anything is written.
  const policies = await readPolicies(ws, { required: true });
  const byName = new Map<string, PolicyFile>();
  const byHash = new Map<string, PolicyFile>();
  for (const p of policies) {
    if (!isValidSan(p.name)) {
      throw new CliError(
        "POLICY_INVALID",
        `${ws.show(p.file)}: the workload name ${JSON.stringify(p.name)} (the file name without extension) is not a valid DNS name`,
        "rename the file, e.g. policies/web.rego",
      );
    }
    const sameName = byName.get(p.name);
    if (sameName !== undefined) {
      throw new CliError("POLICY_INVALID", `${ws.show(sameName.file)} and ${ws.show(p.file)} name the same workload ${p.name}`, "rename one of them");
    }
    const sameHash = byHash.get(p.hash);
    if (sameHash !== undefined) {
      throw new CliError("POLICY_INVALID", `${ws.show(sameHash.file)} and ${ws.show(p.file)} are the same policy (sha256 ${p.hash})`, "remove one of them");
    }
    byName.set(p.name, p);
    byHash.set(p.hash, p);
  }
  const previous = await previousManifest(ws);
  const addedOwners: string[] = [];
  for (const file of extraOwners) {
    addedOwners.push((await loadWorkloadOwnerPublicKey(fromUtf8(await readInput(file, "pass an existing PEM file")), file)).digest);
  }
  const addedShareOwners: string[] = [];
  for (const file of extraShareOwners) {
    const key = await loadSeedShareOwnerPublicKey(fromUtf8(await readInput(file, "pass an existing PEM file")), file);
    if (key.bits < minSeedShareOwnerBits) {
      throw new CliError("KEY_WRONG_TYPE", `${file} is an RSA key of ${key.bits} bits; at least ${minSeedShareOwnerBits} are needed`);
    }
    addedShareOwners.push(toHex(key.spki));
  }

  const owner = await ensureKey(ws, files.workloadOwnerKey, generateWorkloadOwnerKey, loadWorkloadOwnerKey);
  const shareOwner = await ensureKey(ws, files.seedShareOwnerKey, () => generateSeedShareOwnerKey(bits), loadSeedShareOwnerKey);
  if (shareOwner.key.bits < minSeedShareOwnerBits) {
    throw new CliError(
      "KEY_WRONG_TYPE",
      `${files.seedShareOwnerKey} is an RSA key of ${shareOwner.key.bits} bits; at least ${minSeedShareOwnerBits} are needed`,
      "replace it with a larger key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096)",
    );
  }

  // Entries keep the SANs of an earlier manifest.json for the same workload name.
  const Policies: Manifest["Policies"] = {};
  for (const p of policies) {
    const earlier = previous === null ? undefined : Object.values(previous.Policies).find((e) => e.WorkloadSecretID === p.name);
    Policies[p.hash] = { SANs: earlier?.SANs ?? [p.name], WorkloadSecretID: p.name };
  }
  const manifest: Manifest = {
    Policies,
    ReferenceValues: previous?.ReferenceValues ?? {},
    WorkloadOwnerKeyDigests: disableUpdates ? [] : unique([...(previous?.WorkloadOwnerKeyDigests ?? []), owner.key.digest, ...addedOwners]),
    SeedshareOwnerPubKeys: unique([...(previous?.SeedshareOwnerPubKeys ?? []), toHex(shareOwner.key.spki), ...addedShareOwners]),
  };
  await ws.write(files.manifest, JSON.stringify(manifest, null, 2) + "\n");

  const created: string[] = [];
  if (owner.created) created.push(files.workloadOwnerKey);
  if (shareOwner.created) created.push(files.seedShareOwnerKey);
  ctx.out.result({
    workspace: ws.dir,
    created,
    manifest: ws.path(files.manifest),
    policies: policies.map((p) => ({ name: p.name, file: p.file, hash: p.hash })),
    workloadOwnerKeyDigests: manifest.WorkloadOwnerKeyDigests,
    seedShareOwners: manifest.SeedshareOwnerPubKeys.length,
  });
  for (const f of created) ctx.out.line(`created ${ws.show(ws.path(f))}`);
  ctx.out.line(`wrote ${ws.show(ws.path(files.manifest))}: ${policies.length} ${policies.length === 1 ? "policy" : "policies"}, ` +
    `${manifest.WorkloadOwnerKeyDigests.length} workload owner${manifest.WorkloadOwnerKeyDigests.length === 1 ? "" : "s"}` +
    `${disableUpdates ? " (updates disabled)" : ""}, ${manifest.SeedshareOwnerPubKeys.length} seed-share owner${manifest.SeedshareOwnerPubKeys.length === 1 ? "" : "s"}`);
  for (const p of policies) ctx.out.line(`  ${p.name.padEnd(20)} ${p.hash}`);
}
