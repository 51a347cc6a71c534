// The Node filesystem driver: exact bytes in files, atomic crash-safe writes, a multi-process compare-and-swap that keeps no old versions, and collection of unreferenced objects.
/*
 * On-disk layout under `base` (a key `kind:name` always has exactly two parts):
 *
 *   <kind>/<name>                  a key only ever written unconditionally (an object): its exact bytes
 *   <kind>/.trash/<name>           an object the collector moved aside; still readable (see Collection)
 *   <kind>/<name>@v/               a key that was ever written conditionally ("versioned")
 *   <kind>/<name>@v/chain/         its version chain (below); created once, already holding a version
 *   <kind>/<name>@v/<seq>          a version of the layout before the chain (read until the chain exists,
 *                                  then deleted); <seq> is a 16-digit zero-padded sequence number
 *   <dir>/.tmp-<pid>-<random>      a temp file or directory being written
 *
 * Key parts may use letters, digits, `_`, `-` and `.` but cannot start with a dot and never contain
 * `@`, so temp files, the trash and `@v` directories can never be mistaken for keys (never listed).
 *
 * Plain writes. Every file is written to a temp file in the same directory and fsynced; the temp file is
 * renamed over `<name>` and the directory fsynced.
 *
 * The version chain of a versioned key holds, at rest, exactly one entry:
 *
 *   chain/<s>                      the current version s: a file with the exact bytes, or an empty
 *                                  directory (a tombstone: the key is absent)
 *   chain/.n-<s+1>-<id>            writer <id>'s next value (a file, or an empty directory), written and
 *                                  fsynced before it claims <s>
 *   chain/<s>.c-<id>               version s after writer <id> claimed it: <id>'s value is committed
 *
 * A write from version s (conditional or not): write `.n-<s+1>-<id>` (id: 64 random bits), fsync the
 * chain; CLAIM: rename `<s>` to `<s>.c-<id>`, fsync; PUBLISH: rename `.n-<s+1>-<id>` to `<s+1>`, fsync;
 * delete `<s>.c-<id>`. The claim is the commit point. A reader takes the highest s among `<s>` and
 * `<s-1>.c-<id>`: a published `<s>` holds the value, a claim points at the pending file that does.
 * A writer that finds a claimed but unpublished version publishes it first (any process may, so a
 * writer killed after its claim never blocks anyone).
 *
 * Why this is a compare-and-swap across processes with no old versions kept, no lost update and no ABA:
 *  1. Each name `<s>` exists during at most one interval, ever. The chain directory is created by one
 *     rename of a directory that already holds its first version, and is never empty afterwards (the
 *     steps above always leave `<s>`, or a claim with its pending value), so no later rename can
 *     replace it. After that, `<s+1>` is only made by publishing the pending file of the one writer
 *     whose claim of `<s>` succeeded; that file has a random name of its own and a rename consumes
 *     it, so it is published at most once. Hence nothing ever re-creates a `<s>` that was claimed.
 *  2. rename(2) looks the source up under the directory lock: of all the processes that rename
 *     `<s>`, exactly one succeeds; every other one gets ENOENT, then or at any later time (by 1).
 *  3. While `<s>` exists, s is current: nobody has claimed it, so no later version exists. A writer
 *     read the bytes of `<s>`, compared their SHA-256 with `ifMatch`, and its claim succeeded, so
 *     `<s>` still existed at the claim, unchanged (versions are immutable): the swap is linearized
 *     at the claim. If the claim fails, someone else's claim of s succeeded first: CONFLICT.
 *  4. A writer that read `<s>` long ago (paused, swapped out) cannot win on that old read, however many
 *     versions came and went (by 1 and 2). Equal bytes coming back under a later version do not
 *     help it either (no ABA); it gets CONFLICT and, like any loser, re-reads.
 *  5. Durability: the pending file and its directory entry are fsynced before the claim, the claim
 *     before the publish, the publish before the claim is deleted, so a crash at any instant leaves a
 *     published version or a claim whose pending file exists. A pending file is deleted only when
 *     its base `<s>` no longer exists and its claim `<s>.c-<id>` does not exist (checked in this
 *     order, so its writer can no longer claim), or by the publish.
 * So a key holds at rest one version file (beside `@v/` and `chain/`), plus one pending file per
 * writer in the middle of a write. The layout before the chain (one `<seq>` per update in `@v/`, never
 * deleted; its compare-and-swap linked `<seq+1>`) is migrated by the first write: the chain is seeded
 * with a hard link of the highest version, then the old versions are deleted. A process running the
 * old code must not share a store with this one.
 *
 * Plain keys becoming versioned: the first conditional write creates `@v/` first, then seeds the
 * chain from `<name>` (hard link) or with a tombstone; once the chain exists, `<name>` is ignored and
 * deleted. An unconditional write of a plain key renames its file, then looks for `@v/`: if a
 * conditional writer made it meanwhile, it re-applies itself to the chain. Readers that lose a race
 * (an entry they listed is gone) retry; every retry loop is bounded, and any failing system call is
 * UNAVAILABLE at once (never retried). Stale temp files (older than 10 minutes) are deleted when their
 * `<kind>/` is listed or their key written.
 *
 * Collection (`collectObjects`, run by src/coordinator/collect.ts): objects older than the grace period
 * that the current head does not reference are moved into `<kind>/.trash/` (their mtime set to the
 * time of the move). A read of a trashed object moves it back, so an object that is still needed
 * (a set in another process that found it already stored, a lagging replica) stays readable. Trashed
 * objects are deleted once they have been in the trash for the grace period and the head, read after
 * that was established, still does not reference them. See collect.ts for why that cannot delete an
 * object a head will need.
 *
 * Tampering (for tests): `fsPathOf(base, key)` names the file holding the current bytes; editing it
 * changes the value in place. Files are created 0600, directories 0700.
 */
import type { Dirent } from "node:fs";
import * as fsp from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import type { TransactionOptions } from "unstorage";
import {
  contentVersion,
  StoreError,
  type CollectReport,
  type CollectRequest,
  type CoordinatorDriver,
} from "../../src/storage/store.js";
import { bytesOf, ifMatchOf } from "../../src/storage/memory.js";

/** Options of the filesystem driver. */
export interface FsDriverOptions {
  /** The directory that holds all keys (created on first write). */
  base: string;
  /**
   * For tests only: called by a conditional write after its comparison succeeded and its pending
   * value was written, right before its claim, so that a test can hold a writer there (a writer
   * that read long ago).
   */
  beforeCommit?: (key: string) => Promise<void>;
}

const VERSIONS_SUFFIX = "@v";
const CHAIN_DIR = "chain";
const TRASH_DIR = ".trash";
const TEMP_PREFIX = ".tmp-";
const DEAD_PREFIX = ".dead-";
const PENDING_PREFIX = ".n-";
const CLAIM_INFIX = ".c-";
/** Temp files older than this are left over from a crash and may be deleted. */
const STALE_TEMP_MS = 10 * 60 * 1000;
/**
 * Retry loops (a reader that lost a race with a writer, a writer that lost a version to another)
 * give up with UNAVAILABLE after this many rounds or this long, whichever comes first. Each round
 * that is retried means another writer made progress, so these are never reached in normal use.
 * No failing system call is retried: any errno other than the EEXIST or ENOENT of a lost race is
 * UNAVAILABLE at once.
 */
const MAX_ATTEMPTS = 1_000;
const MAX_RETRY_MS = 30_000;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

const segmentPattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$/;
const versionPattern = /^\d{16}$/;
const claimPattern = /^(\d{16})\.c-([0-9a-f]{16})$/;
const pendingPattern = /^\.n-(\d{16})-([0-9a-f]{16})$/;
const decoder = new TextDecoder();

interface Paths {
  name: string;
  kindDir: string;
  plain: string;
  versions: string;
  chain: string;
  trashed: string;
}

/**
 * What a key currently holds. `path` is the file with its bytes (null if absent); `entry` is the chain
 * entry of the current version (`pending`: a committed value not yet published), null outside a chain.
 */
interface Current {
  entry: { seq: number; path: string; pending: boolean } | null;
  path: string | null;
  bytes: Uint8Array | null;
}

const GONE = Symbol("gone");

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function segmentOk(s: string): boolean {
  return segmentPattern.test(s);
}

function pathsOf(base: string, key: string): Paths | null {
  const parts = key.split(":");
  if (parts.length !== 2) return null;
  const [kind, name] = parts as [string, string];
  if (!segmentOk(kind) || !segmentOk(name)) return null;
  const kindDir = join(base, kind);
  const versions = join(kindDir, name + VERSIONS_SUFFIX);
  return { name, kindDir, plain: join(kindDir, name), versions, chain: join(versions, CHAIN_DIR), trashed: join(kindDir, TRASH_DIR, name) };
}

function requirePaths(base: string, key: string): Paths {
  const p = pathsOf(base, key);
  if (p === null) throw new StoreError("INVALID_KEY", `the fs driver cannot store key ${JSON.stringify(key)}`);
  return p;
}

function versionName(seq: number): string {
  return String(seq).padStart(16, "0");
}

function pendingName(seq: number, id: string): string {
  return `${PENDING_PREFIX}${versionName(seq)}-${id}`;
}

function claimName(seq: number, id: string): string {
  return `${versionName(seq)}${CLAIM_INFIX}${id}`;
}

function randomId(): string {
  return randomBytes(8).toString("hex");
}

function unavailable(what: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError("UNAVAILABLE", `fs driver: ${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

/** A bound on one retry loop: call it before each round; it throws UNAVAILABLE once the bound is reached. */
function retryBound(what: () => string): () => void {
  const started = Date.now();
  let rounds = 0;
  return () => {
    if (++rounds > MAX_ATTEMPTS || Date.now() - started > MAX_RETRY_MS) {
      throw new StoreError("UNAVAILABLE", `fs driver: ${what()} (gave up after ${rounds - 1} attempts)`);
    }
  };
}

async function guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw unavailable(what, err);
  }
}

/** fsyncs a directory so that entries created, renamed or removed in it are durable. */
async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(dir, "r");
    await fh.sync();
  } catch (err) {
    // Some platforms and filesystems cannot fsync a directory; the rename/link itself is still atomic.
    if (!["EINVAL", "ENOTSUP", "EISDIR", "EPERM", "EBADF"].includes(errno(err) ?? "")) throw err;
  } finally {
    await fh?.close();
  }
}

/** Creates the directory `dir` (parent must exist): true if created, false if it already was a directory. */
async function mkdirOnce(dir: string): Promise<boolean> {
  try {
    await fsp.mkdir(dir, { mode: DIR_MODE });
    return true;
  } catch (err) {
    if (errno(err) !== "EEXIST") throw err;
    // Something is there (perhaps made by a concurrent writer): it must be a directory, or reach one.
    if (!(await fsp.stat(dir)).isDirectory()) {
      throw Object.assign(new Error(`ENOTDIR: ${dir} exists and is not a directory`), { code: "ENOTDIR" });
    }
    return false;
  }
}

/**
 * Creates `dir` (and parents) and makes the new entries durable. Not `mkdir({ recursive: true })`:
 * Node's loops forever, burning a core, where mkdir(2) answers ENOENT although the parent exists
 * (under /proc, through a dangling symlink). Here each level is tried at most twice (before and
 * after its parent), so such a path fails at once with ENOENT, and any other errno propagates.
 */
async function ensureDir(dir: string): Promise<void> {
  let created: boolean;
  try {
    created = await mkdirOnce(dir);
  } catch (err) {
    const parent = dirname(dir);
    if (errno(err) !== "ENOENT" || parent === dir) throw err;
    await ensureDir(parent);
    // The parent exists now: a second ENOENT is final.
    created = await mkdirOnce(dir);
  }
  if (created) await fsyncDir(dirname(dir));
}

async function unlinkQuiet(path: string): Promise<void> {
  try {
    await fsp.unlink(path);
  } catch (err) {
    if (errno(err) !== "ENOENT") throw err;
  }
}

/** Deletes a file or a (small) directory tree if it exists. */
async function removeEntry(path: string): Promise<void> {
  await fsp.rm(path, { recursive: true, force: true });
}

/** Writes `bytes` to the new file `path` (which must not exist) and fsyncs it. */
async function writeNewFile(path: string, bytes: Uint8Array): Promise<void> {
  const fh = await fsp.open(path, "wx", FILE_MODE);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlinkQuiet(path).catch(() => undefined);
    throw err;
  }
  await fh.close();
}

/** Writes `bytes` to a new, fsynced temp file in `dir` and returns its path. */
async function writeTemp(dir: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, `${TEMP_PREFIX}${process.pid}-${randomId()}`);
  await writeNewFile(path, bytes);
  return path;
}

async function readNames(dir: string): Promise<string[] | null> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if (errno(err) === "ENOENT" || errno(err) === "ENOTDIR") return null;
    throw err;
  }
}

/** Sequence numbers of the versions of the layout before the chain, ascending; null if `@v/` does not exist. */
async function listLegacyVersions(dir: string): Promise<number[] | null> {
  const names = await readNames(dir);
  if (names === null) return null;
  return names
    .filter((n) => versionPattern.test(n))
    .map(Number)
    .sort((a, b) => a - b);
}

/** Bytes of a file (or an empty array if `read` is false); null for a tombstone; GONE if missing. */
async function loadFile(path: string, read: boolean): Promise<Uint8Array | null | typeof GONE> {
  try {
    if (read) return new Uint8Array(await fsp.readFile(path));
    const st = await fsp.stat(path);
    return st.isDirectory() ? null : new Uint8Array(0);
  } catch (err) {
    const code = errno(err);
    if (code === "EISDIR") return null;
    if (code === "ENOENT") return GONE;
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.stat(path);
    return true;
  } catch (err) {
    if (errno(err) === "ENOENT") return false;
    throw err;
  }
}

/**
 * The current version in the chain (null if there is no chain yet): the highest of the published
 * versions `<s>` and the claims `<s-1>.c-<id>` (whose value is `.n-<s>-<id>`). A version that is gone
 * by the time it is opened was claimed meanwhile: look again. An entry that opens was current at that
 * instant (a published `<s>` that exists is unclaimed; a pending file that exists is unpublished).
 */
async function readChain(p: Paths, read: boolean): Promise<Current | null> {
  const again = retryBound(() => `${p.chain} kept changing while being read`);
  for (;;) {
    again();
    const names = await readNames(p.chain);
    if (names === null) return null;
    let best: { seq: number; name: string; pending: boolean } | undefined;
    for (const name of names) {
      let candidate: { seq: number; name: string; pending: boolean } | undefined;
      if (versionPattern.test(name)) {
        candidate = { seq: Number(name), name, pending: false };
      } else {
        const claim = claimPattern.exec(name);
        if (claim !== null) {
          const seq = Number(claim[1]) + 1;
          candidate = { seq, name: pendingName(seq, claim[2]!), pending: true };
        }
      }
      // A published version wins over a claim naming the same number (the listing saw both sides of a publish).
      if (candidate !== undefined && (best === undefined || candidate.seq > best.seq || (candidate.seq === best.seq && !candidate.pending))) {
        best = candidate;
      }
    }
    // The chain is never empty: an empty listing only missed entries renamed while it ran.
    if (best === undefined) continue;
    const path = join(p.chain, best.name);
    const got = await loadFile(path, read);
    if (got === GONE) continue;
    const entry = { seq: best.seq, path, pending: best.pending };
    return got === null ? { entry, path: null, bytes: null } : { entry, path, bytes: got };
  }
}

/** Moves a trashed object back into place; false if it is not in the trash. */
async function restoreFromTrash(p: Paths): Promise<boolean> {
  try {
    await fsp.link(p.trashed, p.plain);
  } catch (err) {
    const code = errno(err);
    if (code === "ENOENT") return false;
    if (code !== "EEXIST") throw err;
  }
  await fsyncDir(p.kindDir);
  await unlinkQuiet(p.trashed);
  // Fresh again: the collector leaves it alone for a grace period.
  const now = new Date();
  await fsp.utimes(p.plain, now, now).catch(() => undefined);
  return true;
}

/** Whether the entries of a `@v/` directory hold a chain or versions of the layout before it. */
function versionedIn(names: string[] | null): boolean {
  return names !== null && names.some((n) => n === CHAIN_DIR || versionPattern.test(n));
}

/** The current value of a key (bytes only if `read`), consistent with concurrent writers in any process. */
async function readCurrent(p: Paths, read: boolean): Promise<Current> {
  const again = retryBound(() => `${p.plain} kept changing while being read`);
  for (;;) {
    again();
    const names = await readNames(p.versions);
    if (names?.includes(CHAIN_DIR)) {
      const chained = await readChain(p, read);
      if (chained !== null) return chained;
      continue;
    }
    // No chain (yet): the highest version of the layout before it, else the plain file. Either only
    // counts if the chain still does not exist afterwards (a seed copies it, then deletes it).
    const seq = names
      ?.filter((n) => versionPattern.test(n))
      .map(Number)
      .sort((a, b) => a - b)
      .at(-1);
    if (seq !== undefined) {
      const path = join(p.versions, versionName(seq));
      const got = await loadFile(path, read);
      if (got === GONE || (await exists(p.chain))) continue;
      return got === null ? { entry: null, path: null, bytes: null } : { entry: null, path, bytes: got };
    }
    let got = await loadFile(p.plain, read);
    if (got === GONE && (await restoreFromTrash(p))) got = await loadFile(p.plain, read);
    if (versionedIn(await readNames(p.versions))) continue;
    if (got === GONE || got === null) return { entry: null, path: null, bytes: null };
    return { entry: null, path: p.plain, bytes: got };
  }
}

/**
 * Creates the chain of a key that has none, holding version 1: the current value (a hard link of the
 * highest old-layout version or of the plain file) or a tombstone. The chain directory appears in
 * one rename of a directory that already holds it, so it is never seen empty; if another process
 * seeded first, this one's rename fails and nothing changes.
 */
async function seedChain(p: Paths, current: Current): Promise<void> {
  const dir = join(p.versions, `${TEMP_PREFIX}${process.pid}-${randomId()}`);
  await fsp.mkdir(dir, { mode: DIR_MODE });
  try {
    const first = join(dir, versionName(1));
    if (current.path === null) {
      await fsp.mkdir(first, { mode: DIR_MODE });
    } else {
      try {
        await fsp.link(current.path, first);
      } catch (err) {
        if (errno(err) === "ENOENT") return; // it changed meanwhile: the caller reads again
        throw err;
      }
    }
    await fsyncDir(dir);
    try {
      await fsp.rename(dir, p.chain);
    } catch (err) {
      if (errno(err) === "EEXIST" || errno(err) === "ENOTEMPTY") return; // seeded by another writer
      throw err;
    }
    await fsyncDir(p.versions);
  } finally {
    await removeEntry(dir);
  }
}

/** Publishes a committed pending value as version `seq` (no-op if someone already did). */
async function publish(p: Paths, seq: number, pending: string): Promise<void> {
  try {
    await fsp.rename(pending, join(p.chain, versionName(seq)));
  } catch (err) {
    if (errno(err) !== "ENOENT") throw err;
  }
  await fsyncDir(p.chain);
}

/**
 * Commits `bytes` (null: a tombstone) as the version after the published version `seq`: writes the
 * pending value, claims `<seq>`, publishes. False if another writer claimed `<seq>` first.
 */
async function commit(p: Paths, seq: number, bytes: Uint8Array | null, beforeClaim?: () => Promise<void>): Promise<boolean> {
  const id = randomId();
  const pending = join(p.chain, pendingName(seq + 1, id));
  const claim = join(p.chain, claimName(seq, id));
  if (bytes === null) await fsp.mkdir(pending, { mode: DIR_MODE });
  else await writeNewFile(pending, bytes);
  await fsyncDir(p.chain);
  await beforeClaim?.();
  try {
    await fsp.rename(join(p.chain, versionName(seq)), claim);
  } catch (err) {
    if (errno(err) !== "ENOENT") throw err;
    await removeEntry(pending);
    return false;
  }
  await fsyncDir(p.chain);
  await publish(p, seq + 1, pending);
  await removeEntry(claim);
  return true;
}

/**
 * Deletes what writes leave in a chain: claims whose value is published (after an fsync, so that the
 * publish is durable before its claim goes) and pending values that can never be committed (their
 * base version is gone and they hold no claim: checked in this order).
 */
async function tidyChain(p: Paths): Promise<void> {
  const names = await readNames(p.chain);
  if (names === null) return;
  const obsolete: string[] = [];
  for (const name of names) {
    const claim = claimPattern.exec(name);
    if (claim !== null) {
      if (!(await exists(join(p.chain, pendingName(Number(claim[1]) + 1, claim[2]!))))) obsolete.push(name);
      continue;
    }
    const pending = pendingPattern.exec(name);
    if (pending !== null) {
      const base = Number(pending[1]) - 1;
      if (await exists(join(p.chain, versionName(base)))) continue;
      if (await exists(join(p.chain, claimName(base, pending[2]!)))) continue;
      obsolete.push(name);
    }
  }
  if (obsolete.length === 0) return;
  await fsyncDir(p.chain);
  for (const name of obsolete) await removeEntry(join(p.chain, name));
}

/** Deletes temp files and directories left over from crashes in `dir` (a directory is first moved aside). */
async function sweepTemps(dir: string): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  const now = Date.now();
  await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      try {
        if (entry.name.startsWith(DEAD_PREFIX)) {
          await removeEntry(path);
        } else if (entry.name.startsWith(TEMP_PREFIX)) {
          const st = await fsp.stat(path);
          if (now - st.mtimeMs <= STALE_TEMP_MS) return;
          if (!entry.isDirectory()) return await unlinkQuiet(path);
          // A seed directory: moved aside first, so a seeder that wakes up cannot rename half of it into place.
          const dead = join(dir, `${DEAD_PREFIX}${randomId()}`);
          await fsp.rename(path, dead);
          await removeEntry(dead);
        }
      } catch {
        // Sweeping is best effort: another process may be sweeping the same entries.
      }
    }),
  );
}

/** Housekeeping after a versioned write: the plain file and old-layout versions are obsolete, stale temp files go. */
async function afterVersionedWrite(p: Paths): Promise<void> {
  await unlinkQuiet(p.plain);
  for (const seq of (await listLegacyVersions(p.versions)) ?? []) await removeEntry(join(p.versions, versionName(seq)));
  await sweepTemps(p.versions);
  await tidyChain(p);
}

/**
 * Appends `bytes` (null: a tombstone) as a new version, or compares first if `ifMatch` is given
 * (null: the key must be absent) and throws CONFLICT on a mismatch or a lost claim.
 */
async function writeVersioned(
  p: Paths,
  key: string,
  bytes: Uint8Array | null,
  ifMatch: string | null | undefined,
  beforeCommit?: (key: string) => Promise<void>,
): Promise<void> {
  await ensureDir(p.versions);
  const again = retryBound(() => `too much contention on ${key}`);
  for (;;) {
    again();
    const current = await readCurrent(p, ifMatch !== undefined);
    if (ifMatch !== undefined) {
      const matches =
        ifMatch === null ? current.bytes === null : current.bytes !== null && (await contentVersion(current.bytes)) === ifMatch;
      if (!matches) throw new StoreError("CONFLICT", `${key} has changed`);
    }
    if (current.entry === null) {
      // No chain yet: create it holding the current value, then compare against that.
      await seedChain(p, current);
      continue;
    }
    if (current.entry.pending) {
      // A committed value a writer did not publish (it died, or is just doing so): publish it, then build on it.
      await publish(p, current.entry.seq, current.entry.path);
      continue;
    }
    const hold = ifMatch !== undefined && beforeCommit !== undefined ? () => beforeCommit(key) : undefined;
    if (await commit(p, current.entry.seq, bytes, hold)) break;
    if (ifMatch !== undefined) throw new StoreError("CONFLICT", `${key} has changed`);
  }
  await afterVersionedWrite(p);
}

async function writeUnconditional(p: Paths, key: string, bytes: Uint8Array): Promise<void> {
  if (await exists(p.versions)) return writeVersioned(p, key, bytes, undefined);
  await ensureDir(p.kindDir);
  const temp = await writeTemp(p.kindDir, bytes);
  try {
    await fsp.rename(temp, p.plain);
  } catch (err) {
    await unlinkQuiet(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(p.kindDir);
  // A conditional writer may have turned the key into a versioned one meanwhile: re-apply there.
  if (await exists(p.versions)) await writeVersioned(p, key, bytes, undefined);
}

async function remove(p: Paths, key: string): Promise<void> {
  if (await exists(p.versions)) {
    if ((await readCurrent(p, false)).path === null) return unlinkQuiet(p.plain); // already absent
    return writeVersioned(p, key, null, undefined);
  }
  await unlinkQuiet(p.trashed);
  if (!(await exists(p.plain))) return;
  await unlinkQuiet(p.plain);
  await fsyncDir(p.kindDir);
  // A conditional writer may have seeded from the file we just removed: remove there too.
  if (await exists(p.versions)) await writeVersioned(p, key, null, undefined);
}

async function readDirEntries(dir: string): Promise<Dirent[]> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errno(err) === "ENOENT" || errno(err) === "ENOTDIR") return [];
    throw err;
  }
}

async function keysOfKind(base: string, kind: string): Promise<string[]> {
  const kindDir = join(base, kind);
  const plain = new Set<string>();
  const versioned = new Set<string>();
  const now = Date.now();
  for (const entry of await readDirEntries(kindDir)) {
    const name = entry.name;
    if (name.startsWith(TEMP_PREFIX)) {
      // Sweep temp files left by a crashed writer (best effort; never listed).
      try {
        const st = await fsp.stat(join(kindDir, name));
        if (now - st.mtimeMs > STALE_TEMP_MS) await unlinkQuiet(join(kindDir, name));
      } catch {
        // ignore
      }
    } else if (entry.isFile() && segmentOk(name)) {
      plain.add(name);
    } else if (entry.isDirectory() && name.endsWith(VERSIONS_SUFFIX)) {
      const stem = name.slice(0, -VERSIONS_SUFFIX.length);
      if (segmentOk(stem)) versioned.add(stem);
    }
  }
  const keys: string[] = [];
  for (const name of plain) if (!versioned.has(name)) keys.push(`${kind}:${name}`);
  for (const name of versioned) {
    const p = pathsOf(base, `${kind}:${name}`);
    if (p !== null && (await readCurrent(p, false)).path !== null) keys.push(`${kind}:${name}`);
  }
  return keys;
}

/** One object the collector looks at: where it is and when it was last written, restored or trashed. */
interface Found {
  kind: string;
  name: string;
  mtimeMs: number;
}

/** Plain (object) files in `dir` with their mtimes; temp files, directories and versioned keys are skipped. */
async function objectsIn(dir: string, kind: string): Promise<Found[]> {
  const entries = await readDirEntries(dir);
  const versioned = new Set(entries.filter((e) => e.isDirectory() && e.name.endsWith(VERSIONS_SUFFIX)).map((e) => e.name.slice(0, -VERSIONS_SUFFIX.length)));
  const found: Found[] = [];
  for (const entry of entries) {
    if (!entry.isFile() || !segmentOk(entry.name) || versioned.has(entry.name)) continue;
    try {
      found.push({ kind, name: entry.name, mtimeMs: (await fsp.stat(join(dir, entry.name))).mtimeMs });
    } catch (err) {
      if (errno(err) !== "ENOENT") throw err;
    }
  }
  return found;
}

/**
 * Deletes a trashed object if it is still the one found old enough: it is first renamed to a private
 * name, so a concurrent restore or re-trash of the same name cannot be deleted by mistake (one
 * moved back into the trash meanwhile has a fresh mtime and is put back).
 */
async function purge(trashDir: string, name: string, cutoff: number): Promise<boolean> {
  const doomed = join(trashDir, `${DEAD_PREFIX}${randomId()}`);
  try {
    await fsp.rename(join(trashDir, name), doomed);
  } catch (err) {
    if (errno(err) === "ENOENT") return false;
    throw err;
  }
  if ((await fsp.stat(doomed)).mtimeMs <= cutoff) {
    await unlinkQuiet(doomed);
    return true;
  }
  try {
    await fsp.link(doomed, join(trashDir, name));
  } catch (err) {
    if (errno(err) !== "EEXIST") throw err;
  }
  await unlinkQuiet(doomed);
  return false;
}

/** Deletes what a purge killed in the middle left in a trash directory (only entries older than `cutoff`). */
async function sweepPurges(trashDir: string, cutoff: number): Promise<void> {
  for (const entry of await readDirEntries(trashDir)) {
    if (!entry.name.startsWith(DEAD_PREFIX)) continue;
    const path = join(trashDir, entry.name);
    try {
      if ((await fsp.stat(path)).mtimeMs <= cutoff) await unlinkQuiet(path);
    } catch (err) {
      if (errno(err) !== "ENOENT") throw err;
    }
  }
}

/**
 * Moves an object aside into the (existing) trash, stamped with the time of the move (or `now`, if
 * later); it stays readable: reads restore it.
 */
async function trash(kindDir: string, name: string, now: number): Promise<boolean> {
  const path = join(kindDir, name);
  const trashDir = join(kindDir, TRASH_DIR);
  const stamp = new Date(Math.max(now, Date.now()));
  try {
    await fsp.utimes(path, stamp, stamp);
    await fsp.rename(path, join(trashDir, name));
  } catch (err) {
    if (errno(err) === "ENOENT") return false;
    throw err;
  }
  return true;
}

/** The collector of the fs driver (see Collection at the top and src/coordinator/collect.ts). */
async function collectObjects(base: string, request: CollectRequest): Promise<CollectReport> {
  const now = request.now ?? Date.now();
  const cutoff = now - request.graceMs;
  const report: CollectReport = { objects: 0, trashed: 0, purged: 0, restored: 0, inTrash: 0, skipped: false };
  const old: Found[] = [];
  const expired: Found[] = [];
  for (const kind of request.kinds) {
    if (!segmentOk(kind)) continue;
    const kindDir = join(base, kind);
    const trashDir = join(kindDir, TRASH_DIR);
    const objects = await objectsIn(kindDir, kind);
    const trashed = await objectsIn(trashDir, kind);
    report.objects += objects.length;
    report.inTrash += trashed.length;
    old.push(...objects.filter((o) => o.mtimeMs <= cutoff));
    expired.push(...trashed.filter((o) => o.mtimeMs <= cutoff));
    await sweepPurges(trashDir, cutoff);
  }
  if (old.length === 0 && expired.length === 0) return report;
  // The references are asked for only now, after the ages were read: see collect.ts.
  const referenced = await request.referenced();
  if (referenced === null) return { ...report, skipped: true };
  for (const o of expired) {
    const kindDir = join(base, o.kind);
    if (referenced(`${o.kind}:${o.name}`)) {
      const p = pathsOf(base, `${o.kind}:${o.name}`);
      if (p !== null && (await restoreFromTrash(p))) {
        report.restored++;
        report.inTrash--;
      }
    } else if (await purge(join(kindDir, TRASH_DIR), o.name, cutoff)) {
      report.purged++;
      report.inTrash--;
    }
  }
  const touched = new Set<string>();
  for (const o of old) {
    if (referenced(`${o.kind}:${o.name}`)) continue;
    if (!touched.has(o.kind)) await ensureDir(join(base, o.kind, TRASH_DIR));
    touched.add(o.kind);
    if (await trash(join(base, o.kind), o.name, now)) {
      report.trashed++;
      report.inTrash++;
    }
  }
  for (const kind of touched) {
    await fsyncDir(join(base, kind));
    await fsyncDir(join(base, kind, TRASH_DIR));
  }
  report.objects += report.restored - report.trashed;
  return report;
}

/**
 * The path of the file currently holding the bytes of `key` under `base` (for tests that tamper
 * with stored files). Throws if the key has no value.
 */
export async function fsPathOf(base: string, key: string): Promise<string> {
  const current = await readCurrent(requirePaths(base, key), false);
  if (current.path === null) throw new Error(`no value stored under ${key} in ${base}`);
  return current.path;
}

/**
 * A Coordinator driver storing each key as a file under `options.base` (layout at the top of this
 * file), with atomic writes, a compare-and-swap that is safe across processes and crashes, and
 * `collectObjects`.
 */
export function fsDriver(options: FsDriverOptions): CoordinatorDriver {
  const base = options.base;

  async function read(key: string): Promise<Uint8Array | null> {
    const p = pathsOf(base, key);
    if (p === null) return null;
    return guard(`reading ${key}`, async () => (await readCurrent(p, true)).bytes);
  }

  async function write(key: string, value: unknown, opts: TransactionOptions | undefined): Promise<void> {
    const p = requirePaths(base, key);
    const ifMatch = ifMatchOf(opts);
    const bytes = bytesOf(value, key);
    await guard(`writing ${key}`, () =>
      ifMatch === undefined ? writeUnconditional(p, key, bytes) : writeVersioned(p, key, bytes, ifMatch, options.beforeCommit),
    );
  }

  async function getKeys(prefix: string | undefined): Promise<string[]> {
    const wanted = prefix ?? "";
    return guard(`listing ${wanted || "all keys"}`, async () => {
      let kinds: string[];
      const colon = wanted.indexOf(":");
      if (colon >= 0) {
        kinds = [wanted.slice(0, colon)];
      } else {
        kinds = (await readDirEntries(base)).filter((e) => e.isDirectory()).map((e) => e.name);
      }
      const keys: string[] = [];
      for (const kind of kinds) if (segmentOk(kind)) keys.push(...(await keysOfKind(base, kind)));
      return keys.filter((k) => k.startsWith(wanted));
    });
  }

  return {
    name: "coordinator-fs",
    options,
    async hasItem(key) {
      const p = pathsOf(base, key);
      if (p === null) return false;
      return guard(`checking ${key}`, async () => (await readCurrent(p, false)).path !== null);
    },
    async getItem(key) {
      const bytes = await read(key);
      return bytes === null ? null : decoder.decode(bytes);
    },
    getItemRaw: read,
    setItem: write,
    setItemRaw: write,
    async removeItem(key) {
      const p = pathsOf(base, key);
      if (p === null) return;
      await guard(`removing ${key}`, () => remove(p, key));
    },
    async getMeta(key) {
      const p = pathsOf(base, key);
      if (p === null) return null;
      return guard(`reading metadata of ${key}`, async () => {
        const current = await readCurrent(p, false);
        if (current.path === null) return null;
        const st = await fsp.stat(current.path);
        return { mtime: st.mtime, atime: st.atime, size: st.size };
      });
    },
    getKeys,
    async clear(prefix) {
      const keys = await getKeys(prefix);
      for (const key of keys) {
        const p = pathsOf(base, key);
        if (p !== null) await guard(`removing ${key}`, () => remove(p, key));
      }
    },
    collectObjects: (request) => guard("collecting unreferenced objects", () => collectObjects(base, request)),
  };
}
