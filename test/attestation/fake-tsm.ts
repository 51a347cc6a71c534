// A fake configfs-tsm tree in a temp directory, with the kernel's part played by hooks on the file operations: attribute files appear at mkdir, inblob bumps generation and produces outblob/auxblob.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { plainTreeFs } from "../../adapters/node/tsm.js";
import type { TsmFs } from "../../adapters/node/tsm.js";

/** What the fake TEE returns for an inblob. */
export type FakeTee = (inblob: Uint8Array) => Promise<{ outblob: Uint8Array; auxblob?: Uint8Array }>;

/** Options of the fake tree. */
export interface FakeTsmOptions {
  /** The provider file's content; null: the file is missing. */
  provider?: string | null;
  tee?: FakeTee;
  /** How many requests another writer disturbs (it writes inblob between our two reads of generation). */
  interfere?: number;
}

/** A fake configfs-tsm report directory and the TsmFs over it. */
export interface FakeTsm {
  dir: string;
  fs: TsmFs;
  /** Report entries made so far. */
  entriesMade: number;
  /** inblob bytes written by the source, in order. */
  inblobs: Uint8Array[];
  /** The entries left in the directory. */
  left(): string[];
  remove(): void;
}

/** An SNP-report-shaped outblob (1184 bytes) with the inblob at REPORT_DATA (0x50), and no certificate table. */
export const echoTee: FakeTee = async (inblob) => {
  const out = new Uint8Array(1184).fill(0xab);
  out.set(inblob, 0x50);
  return { outblob: out };
};

/** Makes the fake tree. */
export function fakeTsm(options: FakeTsmOptions = {}): FakeTsm {
  const dir = mkdtempSync(join(tmpdir(), "fake-tsm-"));
  const tee = options.tee ?? echoTee;
  const provider = options.provider === undefined ? "sev_guest\n" : options.provider;
  let interfere = options.interfere ?? 0;
  const generations = new Map<string, number>();
  const fake: FakeTsm = {
    dir,
    entriesMade: 0,
    inblobs: [],
    left: () => readdirSync(dir),
    remove: () => rmSync(dir, { recursive: true, force: true }),
    fs: {
      async mkdir(path) {
        await plainTreeFs.mkdir(path);
        fake.entriesMade++;
        generations.set(path, 0);
        writeFileSync(join(path, "generation"), "0\n");
        if (provider !== null) writeFileSync(join(path, "provider"), provider);
      },
      async writeFile(path, data) {
        await plainTreeFs.writeFile(path, data);
        if (basename(path) !== "inblob") return;
        const entry = dirname(path);
        fake.inblobs.push(data.slice());
        const g = (generations.get(entry) ?? 0) + 1;
        generations.set(entry, g);
        writeFileSync(join(entry, "generation"), `${g}\n`);
        const { outblob, auxblob } = await tee(data);
        writeFileSync(join(entry, "outblob"), outblob);
        if (auxblob !== undefined) writeFileSync(join(entry, "auxblob"), auxblob);
      },
      async readFile(path) {
        const bytes = await plainTreeFs.readFile(path);
        if (basename(path) === "outblob" && interfere > 0) {
          // Another process writes this entry's inblob now: the kernel bumps generation.
          interfere--;
          const entry = dirname(path);
          const g = (generations.get(entry) ?? 0) + 1;
          generations.set(entry, g);
          writeFileSync(join(entry, "generation"), `${g}\n`);
        }
        return bytes;
      },
      rmdir: (path) => plainTreeFs.rmdir(path),
    },
  };
  return fake;
}

