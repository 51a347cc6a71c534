// The Coordinator's evidence from Linux configfs-tsm (/sys/kernel/config/tsm/report): one report entry per request, for SEV-SNP and TDX guests alike.
import { mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { toBase64, toHex } from "../../src/encoding.js";
import { randomBytes } from "../../src/crypto/provider.js";
import { CoordinatorError } from "../../src/errors.js";
import type { CoordinatorEvidence, EvidenceSource } from "../../src/attestation/coordinator-evidence.js";

/** The kernel's configfs-tsm report directory. */
export const defaultTsmPath = "/sys/kernel/config/tsm/report";

/** The file operations the source uses; the kernel's configfs behind them in production, a test's fake tree in tests. */
export interface TsmFs {
  mkdir(path: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  /** Removes a report entry (configfs removes its attribute files with it). */
  rmdir(path: string): Promise<void>;
}

/** node:fs over configfs. */
export const nodeTsmFs: TsmFs = {
  mkdir: async (path) => {
    await mkdir(path);
  },
  readFile: async (path) => new Uint8Array(await readFile(path)),
  writeFile: (path, data) => writeFile(path, data),
  rmdir: (path) => rmdir(path),
};

/** A TsmFs for a plain directory tree (tests): rmdir removes the entry with its files. */
export const plainTreeFs: TsmFs = { ...nodeTsmFs, rmdir: (path) => rm(path, { recursive: true, force: true }) };

/** Options of the configfs-tsm source. */
export interface TsmOptions {
  /** The report directory (default /sys/kernel/config/tsm/report). */
  path?: string;
  /** How many times a request is made before a concurrent writer is reported (default 3). */
  attempts?: number;
  fs?: TsmFs;
}

function failed(message: string, cause?: unknown): CoordinatorError {
  return new CoordinatorError("EVIDENCE_FAILED", message, cause === undefined ? undefined : { cause });
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : undefined;
}

/**
 * The configfs-tsm source: for each request it makes a fresh report entry under `path`, writes the
 * 64 bytes of report data to `inblob`, reads `generation`, `outblob`, `auxblob` (optional: SNP's
 * certificate table) and `provider`, and reads `generation` again; a change means another writer
 * used the entry meanwhile, and the request is made again (at most `attempts` times in all). The
 * entry is removed afterwards. Provider `sev_guest` gives SEV-SNP evidence (outblob the report,
 * auxblob the certificate table), `tdx_guest` TDX evidence (outblob the quote). Every failure is
 * EVIDENCE_FAILED naming the file.
 */
export function tsmEvidenceSource(options: TsmOptions = {}): EvidenceSource {
  const base = options.path ?? defaultTsmPath;
  const attempts = options.attempts ?? 3;
  const fs = options.fs ?? nodeTsmFs;

  const read = async (entry: string, file: string, optional = false): Promise<Uint8Array | null> => {
    try {
      return await fs.readFile(join(entry, file));
    } catch (err) {
      if (optional && errnoCode(err) === "ENOENT") return null;
      if (errnoCode(err) === "ENOENT") {
        const hint = file === "provider" ? ": configfs-tsm has no report provider (is the sev-guest or tdx-guest driver loaded?)" : "";
        throw failed(`${join(entry, file)} is missing${hint}`, err);
      }
      throw failed(`cannot read ${join(entry, file)}: ${(err as Error).message}`, err);
    }
  };
  const generation = async (entry: string): Promise<string> => new TextDecoder().decode((await read(entry, "generation"))!).trim();

  const once = async (reportData: Uint8Array): Promise<CoordinatorEvidence | "conflict"> => {
    const entry = join(base, `contrast-${toHex(randomBytes(8))}`);
    try {
      await fs.mkdir(entry);
    } catch (err) {
      throw failed(`cannot create the report entry ${entry}: ${(err as Error).message}`, err);
    }
    try {
      try {
        await fs.writeFile(join(entry, "inblob"), reportData);
      } catch (err) {
        throw failed(`cannot write ${join(entry, "inblob")}: ${(err as Error).message}`, err);
      }
      const before = await generation(entry);
      const outblob = (await read(entry, "outblob"))!;
      const auxblob = await read(entry, "auxblob", true);
      const provider = new TextDecoder().decode((await read(entry, "provider"))!).trim();
      const after = await generation(entry);
      if (before !== after) return "conflict";
      if (outblob.length === 0) throw failed(`${join(entry, "outblob")} is empty`);
      if (provider === "sev_guest") {
        return { type: "amd-sev-snp", report: toBase64(outblob), ...(auxblob === null || auxblob.length === 0 ? {} : { certTable: toBase64(auxblob) }) };
      }
      if (provider === "tdx_guest") return { type: "intel-tdx", quote: toBase64(outblob) };
      throw failed(`${join(entry, "provider")} names ${JSON.stringify(provider)}, neither sev_guest nor tdx_guest`);
    } finally {
      await fs.rmdir(entry).catch(() => undefined);
    }
  };

  return {
    kind: "tsm",
    insecure: false,
    async evidence(reportData) {
      if (reportData.length !== 64) throw new RangeError("report data must have 64 bytes");
      for (let i = 0; i < attempts; i++) {
        const result = await once(reportData);
        if (result !== "conflict") return result;
      }
      throw failed(`another writer changed ${base}/*/generation during each of ${attempts} attempts; evidence could not be made`);
    },
  };
}
