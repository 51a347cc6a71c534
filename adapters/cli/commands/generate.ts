// `contrast generate`: creates the owner keys if missing and (re)writes manifest.json from policies/ and the owner keys.
import type { Dirent } from "node:fs";
import * as fsp from "node:fs/promises";
import { extname, join } from "node:path";
import { fromHex, toHex } from "../../../src/encoding.js";
import {
  checkSeedShareOwnerPublicKey,
  generateSeedShareOwnerKey,
  generateWorkloadOwnerKey,
  loadSeedShareOwnerKey,
  loadSeedShareOwnerPublicKey,
  loadWorkloadOwnerKey,
  loadWorkloadOwnerPublicKey,
  pem,
} from "../../../src/client/keys.js";
import type { KeyFileContent, SeedShareOwnerKey } from "../../../src/client/keys.js";
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
  load: (content: KeyFileContent, what: string) => Promise<T>,
): Promise<{ key: T; created: boolean }> {
  const path = ws.path(name);
  if (await ws.has(name)) return { key: await load(await ws.read(name, ""), ws.show(path)), created: false };
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

/** One seed-share owner key given on the command line: the file and its hex DER SPKI. */
interface OwnerKeyFile {
  file: string;
  spki: string;
}

/** Loads the seed-share owner public keys given with a flag; the same key twice is a mistake. */
async function loadShareOwnerFiles(paths: string[], seen: Map<string, string>): Promise<OwnerKeyFile[]> {
  const out: OwnerKeyFile[] = [];
  for (const file of paths) {
    const key = await loadSeedShareOwnerPublicKey(await readInput(file, "pass an existing key file (PEM or DER)"), file);
    if (key.bits < minSeedShareOwnerBits) {
      throw new CliError("KEY_WRONG_TYPE", `${file} is an RSA key of ${key.bits} bits; at least ${minSeedShareOwnerBits} are needed`);
    }
    const spki = toHex(key.spki);
    const earlier = seen.get(spki);
    if (earlier !== undefined) {
      throw usageError(
        earlier === file ? `${file} is given twice as a seed-share owner key` : `${earlier} and ${file} are the same seed-share owner key`,
        "give each seed-share owner's key once",
      );
    }
    seen.set(spki, file);
    out.push({ file, spki });
  }
  return out;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && new Set([...a, ...b]).size === a.length;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The workspace's seedshare-owner.pem, generated (PKCS#8, 0600) if missing; a key below the minimum size or with an exponent other than 65537 is an error. */
async function workspaceShareOwnerKey(ws: Workspace, bits: number): Promise<{ key: SeedShareOwnerKey; created: boolean }> {
  const made = await ensureKey(ws, files.seedShareOwnerKey, () => generateSeedShareOwnerKey(bits), loadSeedShareOwnerKey);
  await checkSeedShareOwnerPublicKey(made.key.spki, ws.show(ws.path(files.seedShareOwnerKey)));
  if (made.key.bits < minSeedShareOwnerBits) {
    throw new CliError(
      "KEY_WRONG_TYPE",
      `${files.seedShareOwnerKey} is an RSA key of ${made.key.bits} bits; at least ${minSeedShareOwnerBits} are needed`,
      "replace it with a larger key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096)",
    );
  }
  return made;
}

/** Runs `contrast generate`. */
export async function generate(ctx: Context): Promise<void> {
  const bitsText = stringFlag(ctx.flags, "seedshare-owner-bits") ?? String(defaultSeedShareOwnerBits);
  const bits = Number(bitsText);
  if (!/^\d+$/.test(bitsText) || bits < minSeedShareOwnerBits || bits > 16384 || bits % 8 !== 0) {
    throw usageError(`--seedshare-owner-bits ${bitsText}: must be a multiple of 8 from ${minSeedShareOwnerBits} to 16384`);
  }
  const thresholdText = stringFlag(ctx.flags, "threshold");
  if (thresholdText !== undefined && !/^[1-9][0-9]{0,2}$/.test(thresholdText)) {
    throw usageError(`--threshold ${thresholdText}: must be a whole number from 1 to the number of seed-share owners`);
  }
  const disableUpdates = ctx.flags["disable-updates"] === true;
  const extraOwners = listFlag(ctx.flags, "add-workload-owner-key");
  const exactShareOwnerFiles = listFlag(ctx.flags, "seedshare-owner-key");
  const extraShareOwnerFiles = listFlag(ctx.flags, "add-seedshare-owner-key");
  if (disableUpdates && extraOwners.length > 0) {
    throw usageError("--disable-updates and --add-workload-owner-key contradict each other", "pass one of them");
  }

  const ws = await Workspace.open(ctx.workspace, { create: true });
  // Every input is checked before anything is written.
  const policies = await readPolicies(ws, { required: true });
  if (policies.length === 0) {
    // A manifest without policies admits no workload: almost certainly a forgotten step, never written silently.
    throw new CliError(
      "NO_POLICIES",
      `${ws.show(ws.path(files.policies))}/ holds no policy file, and a manifest without policies admits no workload`,
      `put one file per workload policy there (e.g. ${ws.show(ws.path(files.policies))}/web.rego), then run contrast generate again; nothing was written`,
    );
  }
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
    addedOwners.push((await loadWorkloadOwnerPublicKey(await readInput(file, "pass an existing key file (PEM or DER)"), file)).digest);
  }
  const seen = new Map<string, string>();
  const exactShareOwners = await loadShareOwnerFiles(exactShareOwnerFiles, seen);
  const extraShareOwners = await loadShareOwnerFiles(extraShareOwnerFiles, seen);

  // The seed-share owners: exactly the --seedshare-owner-key files if any are given; else those of the
  // earlier manifest.json, or (for a new manifest) the workspace's seedshare-owner.pem, made if missing.
  // --add-seedshare-owner-key adds to either.
  const toBeCreated = "";
  let base: string[];
  if (exactShareOwners.length > 0) {
    base = exactShareOwners.map((k) => k.spki);
  } else if (previous !== null) {
    base = previous.SeedshareOwnerPubKeys;
  } else if (await ws.has(files.seedShareOwnerKey)) {
    base = [toHex((await workspaceShareOwnerKey(ws, bits)).key.spki)];
  } else {
    base = [toBeCreated];
  }
  let shareOwners = unique([...base, ...extraShareOwners.map((k) => k.spki)]);
  // The same owners in another order would still hand out new shares: keep the earlier order.
  if (previous !== null && sameSet(shareOwners, previous.SeedshareOwnerPubKeys)) shareOwners = previous.SeedshareOwnerPubKeys;

  // Owners kept from manifest.json are checked as the Coordinator will check them (size, exponent 65537).
  for (const [i, k] of shareOwners.entries()) {
    if (k === toBeCreated || seen.has(k)) continue;
    const what = `${ws.show(ws.path(files.manifest))} (SeedshareOwnerPubKeys[${i}])`;
    const ownerBits = await checkSeedShareOwnerPublicKey(fromHex(k), what);
    if (ownerBits < minSeedShareOwnerBits) {
      throw new CliError("KEY_WRONG_TYPE", `${what} is an RSA key of ${ownerBits} bits; at least ${minSeedShareOwnerBits} are needed`);
    }
  }

  const n = shareOwners.length;
  const previousThreshold = previous?.Threshold ?? 1;
  const threshold = thresholdText !== undefined ? Number(thresholdText) : previousThreshold;
  if (threshold > n) {
    throw usageError(
      thresholdText !== undefined
        ? `--threshold ${threshold}: there ${n === 1 ? "is" : "are"} only ${plural(n, "seed-share owner")}`
        : `${files.manifest} has Threshold ${threshold}, but there would be only ${plural(n, "seed-share owner")}`,
      `pass --threshold N with N from 1 to ${n}`,
    );
  }

  // Every input is valid: now the keys this workspace lacks are made.
  const owner = await ensureKey(ws, files.workloadOwnerKey, generateWorkloadOwnerKey, loadWorkloadOwnerKey);
  let shareOwnerCreated = false;
  if (shareOwners.includes(toBeCreated)) {
    const made = await workspaceShareOwnerKey(ws, bits);
    shareOwnerCreated = made.created;
    shareOwners = shareOwners.map((k) => (k === toBeCreated ? toHex(made.key.spki) : k));
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
    SeedshareOwnerPubKeys: shareOwners,
  };
  // Absent means 1 (each owner alone recovers), as in Contrast's manifest.
  if (threshold > 1) manifest.Threshold = threshold;
  await ws.write(files.manifest, JSON.stringify(manifest, null, 2) + "\n");

  const ownersChanged =
    previous !== null && (previousThreshold !== threshold || !sameOwnersInOrder(previous.SeedshareOwnerPubKeys, shareOwners));
  const removed = previous === null ? 0 : previous.SeedshareOwnerPubKeys.filter((k) => !shareOwners.includes(k)).length;
  const added = previous === null ? 0 : shareOwners.filter((k) => !previous.SeedshareOwnerPubKeys.includes(k)).length;
  const ownerDigests = await Promise.all(shareOwners.map(async (k) => toHex(await sha256(fromHex(k)))));

  const created: string[] = [];
  if (owner.created) created.push(files.workloadOwnerKey);
  if (shareOwnerCreated) created.push(files.seedShareOwnerKey);
  ctx.out.result({
    workspace: ws.dir,
    created,
    manifest: ws.path(files.manifest),
    policies: policies.map((p) => ({ name: p.name, file: p.file, hash: p.hash })),
    workloadOwnerKeyDigests: manifest.WorkloadOwnerKeyDigests,
    seedShareOwners: n,
    seedShareOwnerKeyDigests: ownerDigests,
    threshold,
    seedShareOwnersChanged: ownersChanged,
  });
  for (const f of created) ctx.out.line(`created ${ws.show(ws.path(f))}`);
  const recovery = n === 1 ? "" : threshold === 1 ? " (each alone recovers)" : ` (any ${threshold} of them recover)`;
  ctx.out.line(`wrote ${ws.show(ws.path(files.manifest))}: ${plural(policies.length, "policy", "policies")}, ` +
    `${plural(manifest.WorkloadOwnerKeyDigests.length, "workload owner")}` +
    `${disableUpdates ? " (updates disabled)" : ""}, ${plural(n, "seed-share owner")}${recovery}`);
  for (const p of policies) ctx.out.line(`  ${p.name.padEnd(20)} ${p.hash}`);
  if (n > 1) {
    for (const [i, k] of shareOwners.entries()) {
      const file = seen.get(k);
      ctx.out.line(`  seed-share owner ${String(i + 1).padEnd(3)} sha256 ${ownerDigests[i]}${file === undefined ? "" : `  ${file}`}`);
    }
  }
  if (ownersChanged) {
    const what = [
      removed > 0 ? `${removed} removed` : "",
      added > 0 ? `${added} added` : "",
      previousThreshold !== threshold ? `threshold ${previousThreshold} → ${threshold}` : "",
    ].filter((s) => s !== "").join(", ");
    ctx.out.line(
      `the seed-share owners change (${what || "new order"}): the next contrast set hands out new shares, and the old ones stop working`,
    );
  }
}

function sameOwnersInOrder(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}
