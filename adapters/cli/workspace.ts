// The workspace directory: its file names, reading inputs with clear errors, atomic writes of outputs, and the rollback memory.
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { memorySchema } from "../../src/client/rollback.js";
import type { Memory } from "../../src/client/rollback.js";
import { CliError } from "./errors.js";

/** The workspace's file names (docs/cli.md). */
export const files = {
  workloadOwnerKey: "workload-owner.pem",
  seedShareOwnerKey: "seedshare-owner.pem",
  manifest: "manifest.json",
  policies: "policies",
  seedShares: "seed-shares.json",
  previousSeedShares: "seed-shares.previous.json",
  /** Rekey approvals of seed-share owners (`contrast seedshare approve`), one file per owner. */
  approvals: "approvals",
  rootCA: "coordinator-root-ca.pem",
  meshCA: "mesh-ca.pem",
  verify: "verify",
  memory: ".contrast-state.json",
  /** What `set` sent and has no answer to yet (adapters/cli/pending.ts). */
  pendingSet: ".contrast-pending-set.json",
} as const;

/** Mode of files holding secrets (private keys, seed shares, workload secrets). */
export const secretMode = 0o600;
/** Where `set` keeps new seed shares that it could not verify yet: never over seed-shares.json, never lost. */
export function unverifiedSeedShares(transition: string): string {
  return `seed-shares.unverified-${transition.slice(0, 16)}.json`;
}

/** Mode of public outputs. */
export const publicMode = 0o644;

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === code;
}

/** Writes a file atomically: a temp file in the same directory, fsynced, then renamed over the target. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  try {
    const handle = await fsp.open(temp, "wx", mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.chmod(temp, mode);
    await fsp.rename(temp, path);
  } catch (err) {
    await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw new CliError("WRITE_FAILED", `cannot write ${path}: ${(err as Error).message}`, "check the directory's permissions");
  }
}

/** Reads a file the user must provide; a missing file is an error that names it and says how to get it. */
export async function readInput(path: string, hint: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await fsp.readFile(path));
  } catch (err) {
    if (isErrno(err, "ENOENT")) throw new CliError("FILE_MISSING", `${path} does not exist`, hint);
    if (isErrno(err, "EISDIR")) throw new CliError("FILE_INVALID", `${path} is a directory, not a file`, hint);
    throw new CliError("FILE_UNREADABLE", `cannot read ${path}: ${(err as Error).message}`, "check the file's permissions");
  }
}

/** True if a path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await fsp.stat(path);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** A workspace directory. */
export class Workspace {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens a workspace directory; `create` makes it if it is missing. */
  static async open(dir: string, opts: { create?: boolean } = {}): Promise<Workspace> {
    const abs = resolve(dir);
    try {
      const st = await fsp.stat(abs);
      if (!st.isDirectory()) throw new CliError("WORKSPACE_INVALID", `the workspace ${dir} is not a directory`, "pass a directory with -w");
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      if (!opts.create) {
        throw new CliError("WORKSPACE_MISSING", `the workspace ${dir} does not exist`, "pass an existing directory with -w, or run contrast generate there first");
      }
      await fsp.mkdir(abs, { recursive: true, mode: 0o700 });
    }
    return new Workspace(abs);
  }

  /** The absolute path of a workspace file. */
  path(name: string): string {
    return join(this.dir, name);
  }

  /** A path as the user should see it: relative to the current directory if inside it. */
  show(path: string): string {
    const rel = relative(process.cwd(), path);
    return rel === "" ? "." : rel.startsWith("..") ? path : rel;
  }

  /** Reads a workspace input file; a missing one is FILE_MISSING with the hint. */
  read(name: string, hint: string): Promise<Uint8Array> {
    return readInput(this.path(name), hint).catch((err: unknown) => {
      if (err instanceof CliError && err.code === "FILE_MISSING") {
        throw new CliError(err.code, `${this.show(this.path(name))} does not exist`, hint);
      }
      throw err;
    });
  }

  /** True if the workspace holds this file. */
  has(name: string): Promise<boolean> {
    return exists(this.path(name));
  }

  /** The names of the files in a workspace subdirectory (sorted), or [] if it does not exist. */
  async list(name: string): Promise<string[]> {
    try {
      return (await fsp.readdir(this.path(name), { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
    } catch (err) {
      if (isErrno(err, "ENOENT")) return [];
      throw new CliError("FILE_UNREADABLE", `cannot read ${this.show(this.path(name))}/: ${(err as Error).message}`, "check the directory's permissions");
    }
  }

  /** Renames a workspace file over another one (atomic within the directory). */
  async rename(from: string, to: string): Promise<void> {
    try {
      await fsp.rename(this.path(from), this.path(to));
    } catch (err) {
      throw new CliError("WRITE_FAILED", `cannot rename ${this.show(this.path(from))} to ${to}: ${(err as Error).message}`, "check the directory's permissions");
    }
  }

  /** Removes a workspace file if it exists. */
  async remove(name: string): Promise<void> {
    try {
      await fsp.rm(this.path(name), { force: true });
    } catch (err) {
      throw new CliError("WRITE_FAILED", `cannot remove ${this.show(this.path(name))}: ${(err as Error).message}`, "check the directory's permissions");
    }
  }

  /** Writes a workspace file atomically. */
  write(name: string, data: Uint8Array | string, mode: number = publicMode): Promise<void> {
    return writeFileAtomic(this.path(name), data, mode);
  }

  /** The rollback memory, or null if this workspace has none yet. A damaged one is an error, never ignored. */
  async memory(): Promise<Memory | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.path(files.memory), "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) return null;
      throw err;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const parsed = memorySchema.safeParse(json);
    if (!parsed.success) {
      throw new CliError(
        "MEMORY_INVALID",
        `${this.show(this.path(files.memory))} is damaged, so rollbacks cannot be detected`,
        "restore it from a backup, or delete it to trust the Coordinator's current generation afresh",
      );
    }
    return parsed.data;
  }

  /** Saves the rollback memory. */
  async saveMemory(memory: Memory): Promise<void> {
    await this.write(files.memory, JSON.stringify(memory, null, 2) + "\n");
  }

  /**
   * Replaces a whole output directory: written beside it, then swapped in with renames, so a reader
   * never sees a half-written one. `fill` writes into the directory it is given.
   */
  async replaceDir(name: string, fill: (dir: string) => Promise<void>): Promise<void> {
    const target = this.path(name);
    const suffix = randomBytes(6).toString("hex");
    const fresh = join(this.dir, `.${basename(name)}.new-${suffix}`);
    const old = join(this.dir, `.${basename(name)}.old-${suffix}`);
    await fsp.mkdir(fresh, { mode: 0o755 });
    try {
      await fill(fresh);
      const hadOld = await exists(target);
      if (hadOld) await fsp.rename(target, old);
      await fsp.rename(fresh, target);
      if (hadOld) await fsp.rm(old, { recursive: true, force: true });
    } catch (err) {
      await fsp.rm(fresh, { recursive: true, force: true }).catch(() => undefined);
      if (err instanceof CliError) throw err;
      throw new CliError("WRITE_FAILED", `cannot write ${this.show(target)}: ${(err as Error).message}`, "check the directory's permissions");
    }
  }
}
