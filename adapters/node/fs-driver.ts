// The Node filesystem driver: exact bytes in files, atomic crash-safe writes and multi-process compare-and-swap.
/*
 * On-disk layout under `base` (a key `kind:name` always has exactly two parts):
 *
 *   <base>/<kind>/<name>               a key only ever written unconditionally: its exact bytes
 *   <base>/<kind>/<name>@v/            a key that was ever written conditionally ("versioned")
 *   <base>/<kind>/<name>@v/<seq>       one version; <seq> is a 16-digit zero-padded sequence number.
 *                                      The current value is the highest <seq>: a regular file holds the
 *                                      exact bytes, an (empty) directory is a tombstone (key removed).
 *   <dir>/.tmp-<pid>-<random>          a temp file being written (in <kind>/ or in <name>@v/)
 *
 * Key parts may use letters, digits, `_`, `-` and `.` but cannot start with a dot and never contain
 * `@`, so temp files and `@v` directories can never be mistaken for keys (and are never listed).
 *
 * Writes. Every file is written to a temp file in the same directory and fsynced first. An
 * unconditional write of an ordinary key then renames the temp file over `<name>` and fsyncs the
 * directory. A versioned write hard-links the temp file to `<seq+1>` (link() creates atomically and
 * fails with EEXIST if another writer — in this or any other process — took that number first),
 * fsyncs `@v/` and unlinks the temp file. Versions are never deleted: a sequence number that once
 * existed can never be created again, which is what makes link() a compare-and-swap (if old versions
 * were pruned, a writer that read a stale version could re-create a pruned number and win with a stale
 * base). A head version is about 1 KiB, one per manifest update.
 *
 * Compare-and-swap (`setItemRaw` with `ifMatch`): read the current value, compare its SHA-256 hex with
 * `ifMatch` (null: no value), link to the next number; EEXIST means someone else won → CONFLICT.
 * The first conditional write of a key that has a plain `<name>` file (or none) first "seeds"
 * version 1: a hard link of `<name>` (or a tombstone if absent), then proceeds as above; once
 * `@v/` holds a version, `<name>` is ignored and deleted. Unconditional writes and removes of a
 * versioned key also append versions (a tombstone for remove), retrying on EEXIST. There is no lock
 * file: a process killed at any point leaves at worst a stale temp file (ignored, swept after a
 * while), an empty `@v/` directory (reads fall back to `<name>`) or a `<name>` next to a non-empty
 * `@v/` (ignored), never anything that blocks. An unconditional write that races the first
 * conditional write of the same key notices the new `@v/` afterwards and re-applies itself there.
 * Readers that lose a race (the version they listed is gone) simply retry; every retry loop is
 * bounded, and any failing system call is UNAVAILABLE at once (never retried). Stale temp
 * files (older than 10 minutes) are deleted when their `<kind>/` is listed or their `@v/` written.
 *
 * Tampering (for tests): `fsPathOf(base, key)` names the file holding the current bytes; editing it
 * changes the value in place. Deleting the highest `<seq>` file exposes the previous version, just as
 * a rollback by someone with access to the disk would. Files are created 0600, directories 0700.
 */
import type { Dirent } from "node:fs";
import * as fsp from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import type { TransactionOptions } from "unstorage";
import { contentVersion, StoreError, type CoordinatorDriver } from "../../src/storage/store.js";
import { bytesOf, ifMatchOf } from "../../src/storage/memory.js";

/** Options of the filesystem driver. */
export interface FsDriverOptions {
  /** The directory that holds all keys (created on first write). */
  base: string;
}

const VERSIONS_SUFFIX = "@v";
const TEMP_PREFIX = ".tmp-";
/** Temp files older than this are left over from a crash and may be deleted. */
const STALE_TEMP_MS = 10 * 60 * 1000;
/**
 * Retry loops (a reader that lost a race with a writer, a writer that lost the next sequence number to
 * another) give up with UNAVAILABLE after this many rounds or this long, whichever comes first. Each
 * round that is retried means another writer made progress, so these are never reached in normal use.
 * No failing system call is retried: any errno other than the EEXIST or ENOENT of a lost race is
 * UNAVAILABLE at once.
 */
const MAX_ATTEMPTS = 1_000;
const MAX_RETRY_MS = 30_000;
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

const segmentPattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$/;
const versionPattern = /^\d{16}$/;
const decoder = new TextDecoder();

interface Paths {
  kindDir: string;
  plain: string;
  versions: string;
}

/** What a key currently holds: `path` is the file with its bytes (null if absent), `seq` null for a plain key. */
interface Current {
  seq: number | null;
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
  return { kindDir, plain: join(kindDir, name), versions: join(kindDir, name + VERSIONS_SUFFIX) };
}

function requirePaths(base: string, key: string): Paths {
  const p = pathsOf(base, key);
  if (p === null) throw new StoreError("INVALID_KEY", `the fs driver cannot store key ${JSON.stringify(key)}`);
  return p;
}

function versionName(seq: number): string {
  return String(seq).padStart(16, "0");
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

/** Writes `bytes` to a new, fsynced temp file in `dir` and returns its path. */
async function writeTemp(dir: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString("hex")}`);
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
  return path;
}

/** Sequence numbers present in a versions directory, ascending; null if the directory does not exist. */
async function listVersions(dir: string): Promise<number[] | null> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if (errno(err) === "ENOENT") return null;
    throw err;
  }
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

/** The current value of a key (bytes only if `read`), consistent with concurrent writers in any process. */
async function readCurrent(p: Paths, read: boolean): Promise<Current> {
  const again = retryBound(() => `${p.plain} kept changing while being read`);
  for (;;) {
    again();
    const seqs = await listVersions(p.versions);
    const seq = seqs?.at(-1);
    if (seq !== undefined) {
      const path = join(p.versions, versionName(seq));
      const got = await loadFile(path, read);
      if (got === GONE) continue; // removed after we listed (by hand): look again
      return got === null ? { seq, path: null, bytes: null } : { seq, path, bytes: got };
    }
    const got = await loadFile(p.plain, read);
    // The plain file only counts while no version exists; if one appeared meanwhile, look again.
    const later = await listVersions(p.versions);
    if (later !== null && later.length > 0) continue;
    if (got === GONE || got === null) return { seq: null, path: null, bytes: null };
    return { seq: null, path: p.plain, bytes: got };
  }
}

/** Deletes temp files left over from crashes (never a version: see the layout notes). */
async function sweepTemps(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  await Promise.all(
    names.map(async (name) => {
      const path = join(dir, name);
      try {
        if (name.startsWith(TEMP_PREFIX)) {
          const st = await fsp.stat(path);
          if (now - st.mtimeMs > STALE_TEMP_MS) await unlinkQuiet(path);
        }
      } catch {
        // Pruning is best effort: another process may be pruning the same entries.
      }
    }),
  );
}

/** Housekeeping after a version was added: the plain file is obsolete, stale temp files go. */
async function afterVersionedWrite(p: Paths): Promise<void> {
  await unlinkQuiet(p.plain);
  await sweepTemps(p.versions);
}

/** Atomically creates version `seq` from `temp` (or a tombstone if `temp` is null); false if it exists. */
async function createVersion(p: Paths, seq: number, temp: string | null): Promise<boolean> {
  const target = join(p.versions, versionName(seq));
  try {
    if (temp === null) await fsp.mkdir(target, { mode: DIR_MODE });
    else await fsp.link(temp, target);
    return true;
  } catch (err) {
    if (errno(err) === "EEXIST") return false;
    throw err;
  }
}

/** Gives an empty versions directory its version 1: the plain file (hard link) or a tombstone. */
async function seed(p: Paths): Promise<void> {
  try {
    await fsp.link(p.plain, join(p.versions, versionName(1)));
  } catch (err) {
    const code = errno(err);
    if (code === "EEXIST") return;
    if (code !== "ENOENT") throw err;
    await createVersion(p, 1, null);
  }
  await fsyncDir(p.versions);
}

/** Appends a version holding `bytes` (null: a tombstone) after whatever is current. */
async function appendVersion(p: Paths, bytes: Uint8Array | null): Promise<void> {
  await ensureDir(p.versions);
  const temp = bytes === null ? null : await writeTemp(p.versions, bytes);
  let seq: number | undefined;
  const again = retryBound(() => `too much contention on ${p.versions}`);
  try {
    while (seq === undefined) {
      again();
      const next = ((await listVersions(p.versions))?.at(-1) ?? 0) + 1;
      if (await createVersion(p, next, temp)) seq = next;
    }
    await fsyncDir(p.versions);
  } finally {
    if (temp !== null) await unlinkQuiet(temp);
  }
  await afterVersionedWrite(p);
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

async function writeUnconditional(p: Paths, bytes: Uint8Array): Promise<void> {
  if (await exists(p.versions)) return appendVersion(p, bytes);
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
  if (await exists(p.versions)) await appendVersion(p, bytes);
}

async function writeConditional(p: Paths, key: string, bytes: Uint8Array, ifMatch: string | null): Promise<void> {
  let temp: string | null = null;
  let won = 0;
  const again = retryBound(() => `too much contention on ${key}`);
  try {
    while (won === 0) {
      again();
      const current = await readCurrent(p, true);
      const matches =
        ifMatch === null
          ? current.bytes === null
          : current.bytes !== null && (await contentVersion(current.bytes)) === ifMatch;
      if (!matches) throw new StoreError("CONFLICT", `${key} has changed`);
      if (current.seq === null) {
        // First conditional write: make the current state version 1, then compare against that.
        await ensureDir(p.versions);
        await seed(p);
        continue;
      }
      temp ??= await writeTemp(p.versions, bytes);
      if (!(await createVersion(p, current.seq + 1, temp))) throw new StoreError("CONFLICT", `${key} has changed`);
      won = current.seq + 1;
    }
    await fsyncDir(p.versions);
  } finally {
    if (temp !== null) await unlinkQuiet(temp);
  }
  await afterVersionedWrite(p);
}

async function remove(p: Paths): Promise<void> {
  if (await exists(p.versions)) {
    const current = await readCurrent(p, false);
    if (current.seq !== null && current.path === null) return unlinkQuiet(p.plain); // already removed
    return appendVersion(p, null);
  }
  if (!(await exists(p.plain))) return;
  await unlinkQuiet(p.plain);
  await fsyncDir(p.kindDir);
  // A conditional writer may have seeded from the file we just removed: remove there too.
  if (await exists(p.versions)) await appendVersion(p, null);
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
 * file), with atomic writes and a compare-and-swap that is safe across processes and crashes.
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
      ifMatch === undefined ? writeUnconditional(p, bytes) : writeConditional(p, key, bytes, ifMatch),
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
      await guard(`removing ${key}`, () => remove(p));
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
        if (p !== null) await guard(`removing ${key}`, () => remove(p));
      }
    },
  };
}
