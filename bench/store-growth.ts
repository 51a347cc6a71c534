// Store growth: the size of an fs store after N manifest updates, before and after collecting what no head needs (`node --import tsx bench/store-growth.ts 1000`).
import "reflect-metadata";
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { fsDriver } from "../adapters/node/fs-driver.js";
import { createApp } from "../src/app.js";
import { simulatedValidator } from "../src/attestation/validator.js";
import { Coordinator } from "../src/coordinator/coordinator.js";
import { createStore } from "../src/storage/store.js";
import { firstSetBody, manifestBytes, policy, post, seedShareOwner, updateBody, workloadOwner } from "../test/helpers.js";

/** What a directory tree holds: bytes of its files, bytes allocated on disk, and how many files and directories. */
export interface TreeSize {
  bytes: number;
  /** Bytes the filesystem allocated (st_blocks × 512): what `du` counts. */
  allocated: number;
  files: number;
  directories: number;
}

/** The size of a store after `updates` updates (a first set, then `updates` signed updates). */
export interface StoreGrowth {
  updates: number;
  /** The store as the updates left it. */
  bytes: number;
  allocated: number;
  files: number;
  /** Files per store kind (directory), trash included. */
  filesByKind: Record<string, number>;
  /** Version files of the head (the current version, plus any unfinished write). */
  headVersionFiles: number;
  /** Bytes of the current head (the layout before the version chain kept one such file per update). */
  headBytes: number;
  /** The store after collecting, as it would run an hour and two hours later (objects no head needs deleted). */
  collected: TreeSize & { deleted: number };
  /** Milliseconds for the updates (in-process, no HTTP), and for both collections. */
  updateMs: number;
  collectMs: number;
}

const hour = 3600_000;

async function treeSize(dir: string, byKind?: Record<string, number>, root = dir): Promise<TreeSize> {
  const total: TreeSize = { bytes: 0, allocated: 0, files: 0, directories: 0 };
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const st = await lstat(path);
    total.allocated += st.blocks * 512;
    if (entry.isDirectory()) {
      const sub = await treeSize(path, byKind, root);
      total.bytes += sub.bytes;
      total.allocated += sub.allocated;
      total.files += sub.files;
      total.directories += sub.directories + 1;
    } else {
      total.bytes += st.size;
      total.files++;
      if (byKind !== undefined) {
        const kind = relative(root, path).split(/[/\\]/)[0]!;
        byKind[kind] = (byKind[kind] ?? 0) + 1;
      }
    }
  }
  return total;
}

/**
 * Runs a Coordinator in-process on a new fs store in a temp directory, sets a first manifest and
 * makes `updates` updates (each a new manifest with a policy of its own), then measures the store,
 * collects as an hour and two hours later would (src/coordinator/collect.ts) and measures again.
 * The temp directory is deleted afterwards.
 */
export async function measureStoreGrowth(updates: number): Promise<StoreGrowth> {
  const base = await mkdtemp(join(tmpdir(), "coordinator-store-growth-"));
  try {
    const name = "coordinator";
    const store = createStore(fsDriver({ base }));
    const coordinator = await Coordinator.start({ store, name, validators: new Map([["insecure-simulated", simulatedValidator]]), collect: false });
    const app = createApp({ coordinator });
    const [owner, shareOwner] = await Promise.all([workloadOwner(), seedShareOwner()]);
    const revision = async (i: number) => {
      const p = await policy(`store growth policy, revision ${i}\n`);
      const manifest = manifestBytes({ policies: [{ hash: p.hash, name: "bench" }], workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] });
      return { manifest, policies: [p.bytes] };
    };
    const send = async (body: unknown): Promise<{ transition: string; rootCA: string }> => {
      const res = await app.request("/v1/manifest", post(body));
      const text = await res.text();
      if (res.status !== 200) throw new Error(`set failed: ${res.status} ${text}`);
      return JSON.parse(text) as { transition: string; rootCA: string };
    };

    const started = performance.now();
    const first = await revision(0);
    const set = await send(firstSetBody(first.manifest, first.policies));
    const ref = { name, rootCA: set.rootCA };
    let latest = set.transition;
    for (let i = 1; i <= updates; i++) {
      const rev = await revision(i);
      latest = (await send(await updateBody(rev.manifest, rev.policies, latest, owner, ref))).transition;
    }
    const updateMs = performance.now() - started;

    const filesByKind: Record<string, number> = {};
    const grown = await treeSize(base, filesByKind);
    const chain = join(base, "heads", `${name}@v`, "chain");
    const versionFiles = await readdir(chain);
    const headVersionFiles = versionFiles.length;
    const headBytes = (await lstat(join(chain, versionFiles.sort().at(-1)!))).size;

    const collecting = performance.now();
    let deleted = 0;
    for (const later of [2 * hour, 4 * hour]) {
      const outcome = await coordinator.collect({ graceMs: hour, now: Date.now() + later });
      if (outcome.kind !== "collected") throw new Error(`collection did not run: ${JSON.stringify(outcome)}`);
      deleted += outcome.report.purged;
    }
    const collectMs = performance.now() - collecting;
    const collected = { ...(await treeSize(base)), deleted };
    return { updates, bytes: grown.bytes, allocated: grown.allocated, files: grown.files, filesByKind, headVersionFiles, headBytes, collected, updateMs, collectMs };
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(2)} MiB`;

/** The report lines of one measurement. */
export function storeGrowthLines(g: StoreGrowth): string[] {
  return [
    `store growth: fs store after a first set and ${g.updates} updates (${(g.updateMs / 1000).toFixed(1)} s in-process)`,
    `  as written: ${mib(g.bytes)} in ${g.files} files (${mib(g.allocated)} on disk); head version files: ${g.headVersionFiles} ` +
      `(${g.headBytes} bytes; the layout before kept ${g.updates + 2})`,
    `  files by kind: ${Object.entries(g.filesByKind)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`,
    `  after collection (as an hour and two hours later): ${mib(g.collected.bytes)} in ${g.collected.files} files (${mib(g.collected.allocated)} on disk); ` +
      `${g.collected.deleted} objects no head needs deleted (${(g.collectMs / 1000).toFixed(1)} s)`,
  ];
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const updates = Number(process.argv[2] ?? "1000");
  if (!Number.isInteger(updates) || updates < 0) throw new Error("usage: node --import tsx bench/store-growth.ts [updates]");
  for (const line of storeGrowthLines(await measureStoreGrowth(updates))) console.log(line);
}
