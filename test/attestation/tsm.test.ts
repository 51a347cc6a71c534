// The configfs-tsm evidence source against a fake configfs tree: SEV-SNP and TDX providers, a concurrent writer, a missing provider, and entries always removed.
import { afterEach, describe, expect, it } from "vitest";
import { tsmEvidenceSource } from "../../adapters/node/tsm.js";
import { certTableGuids } from "../../src/attestation/snp/certificates.js";
import { fromBase64 } from "../../src/encoding.js";
import { CoordinatorError } from "../../src/errors.js";
import { echoTee, fakeTsm } from "./fake-tsm.js";
import { certTable } from "./snp-fixtures.js";
import type { FakeTsm } from "./fake-tsm.js";

const trees: FakeTsm[] = [];
function tree(...args: Parameters<typeof fakeTsm>): FakeTsm {
  const t = fakeTsm(...args);
  trees.push(t);
  return t;
}
afterEach(() => {
  for (const t of trees.splice(0)) t.remove();
});

const reportData = new Uint8Array(64).map((_, i) => i + 1);

async function code(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CoordinatorError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("the configfs-tsm evidence source", () => {
  it("sev_guest: writes the report data to inblob, answers outblob as the report and auxblob as the certificate table, and removes the entry", async () => {
    const table = certTable([[certTableGuids.vcek, new Uint8Array([0x30, 0x03, 1, 2, 3])]]);
    const t = tree({ provider: "sev_guest\n", tee: async (inblob) => ({ ...(await echoTee(inblob)), auxblob: table }) });
    const evidence = await tsmEvidenceSource({ path: t.dir, fs: t.fs }).evidence(reportData);
    expect(t.inblobs).toEqual([reportData]);
    expect(evidence.type).toBe("amd-sev-snp");
    if (evidence.type !== "amd-sev-snp") return;
    const report = fromBase64(evidence.report);
    expect(report.length).toBe(1184);
    expect(report.subarray(0x50, 0x90)).toEqual(reportData);
    expect(fromBase64(evidence.certTable!)).toEqual(table);
    expect(evidence.certificates).toBeUndefined();
    expect(t.left()).toEqual([]);
  });

  it("sev_guest without an auxblob: no certificate table", async () => {
    const t = tree({ provider: "sev_guest" });
    const evidence = await tsmEvidenceSource({ path: t.dir, fs: t.fs }).evidence(reportData);
    expect(evidence).toMatchObject({ type: "amd-sev-snp" });
    expect("certTable" in evidence).toBe(false);
  });

  it("tdx_guest: answers outblob as the quote", async () => {
    const quote = new Uint8Array(5000).fill(7);
    const t = tree({ provider: "tdx_guest\n", tee: async () => ({ outblob: quote }) });
    const evidence = await tsmEvidenceSource({ path: t.dir, fs: t.fs }).evidence(reportData);
    expect(evidence.type).toBe("intel-tdx");
    if (evidence.type !== "intel-tdx") return;
    expect(fromBase64(evidence.quote)).toEqual(quote);
    expect(t.left()).toEqual([]);
  });

  it("a concurrent writer that changes generation once: the request is made again in a fresh entry and succeeds", async () => {
    const t = tree({ interfere: 1 });
    const evidence = await tsmEvidenceSource({ path: t.dir, fs: t.fs, attempts: 3 }).evidence(reportData);
    expect(evidence.type).toBe("amd-sev-snp");
    expect(t.entriesMade).toBe(2);
    expect(t.inblobs).toEqual([reportData, reportData]);
    expect(t.left()).toEqual([]);
  });

  it("a concurrent writer on every attempt: EVIDENCE_FAILED after the bounded number of attempts, nothing left behind", async () => {
    const t = tree({ interfere: 100 });
    const refusal = await code(tsmEvidenceSource({ path: t.dir, fs: t.fs, attempts: 3 }).evidence(reportData));
    expect(refusal.code).toBe("EVIDENCE_FAILED");
    expect(refusal.message).toMatch(/generation/);
    expect(t.entriesMade).toBe(3);
    expect(t.left()).toEqual([]);
  });

  it("a missing provider file: EVIDENCE_FAILED naming it, nothing left behind", async () => {
    const t = tree({ provider: null });
    const refusal = await code(tsmEvidenceSource({ path: t.dir, fs: t.fs }).evidence(reportData));
    expect(refusal.code).toBe("EVIDENCE_FAILED");
    expect(refusal.message).toContain("/provider");
    expect(t.left()).toEqual([]);
  });

  it("an unknown provider: EVIDENCE_FAILED", async () => {
    const t = tree({ provider: "arm_cca_guest\n" });
    const refusal = await code(tsmEvidenceSource({ path: t.dir, fs: t.fs }).evidence(reportData));
    expect(refusal.code).toBe("EVIDENCE_FAILED");
    expect(refusal.message).toContain("arm_cca_guest");
    expect(t.left()).toEqual([]);
  });

  it("a report directory that does not exist: EVIDENCE_FAILED naming the entry it could not make", async () => {
    const t = tree();
    const refusal = await code(tsmEvidenceSource({ path: `${t.dir}/nope`, fs: t.fs }).evidence(reportData));
    expect(refusal.code).toBe("EVIDENCE_FAILED");
    expect(refusal.message).toContain(`${t.dir}/nope/contrast-`);
  });

  it("with the real node:fs over a plain directory, the generation check and the entry's removal run against real files", async () => {
    // No kernel behind it: mkdir makes an empty entry, so the first read (generation) finds no file.
    const t = tree();
    const refusal = await code(tsmEvidenceSource({ path: t.dir }).evidence(reportData));
    expect(refusal.code).toBe("EVIDENCE_FAILED");
    expect(refusal.message).toMatch(/generation is missing/);
  });
});
