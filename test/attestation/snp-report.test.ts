// The SNP report parser: lengths, versions 2/3/5, reserved bytes and bits per version, signer info, TCB layouts and products, without any signature.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  SNP_REPORT_SIZE,
  decodeGuestPolicy,
  decodeTcb,
  encodeTcb,
  parseSnpReport,
  productFromCpuid,
} from "../../src/attestation/snp/report.js";
import type { SnpProduct } from "../../src/attestation/snp/report.js";
import { buildSnpReport } from "../../src/attestation/snp/simulated.js";
import { fixture } from "./snp-fixtures.js";

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

/** Reserved byte ranges per version, from the SNP ABI's ATTESTATION_REPORT table. */
function reservedRanges(version: number): [number, number][] {
  return [
    [0x04c, 0x050],
    version >= 3 ? [0x18b, 0x1a0] : [0x188, 0x1a0],
    [0x1eb, 0x1ec],
    [0x1ef, 0x1f0],
    version >= 5 ? [0x208, 0x2a0] : [0x1f8, 0x2a0],
    [0x330, 0x4a0],
  ];
}

describe("parseSnpReport", () => {
  it("refuses every length but 1184", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4096 }).filter((n) => n !== SNP_REPORT_SIZE), (n) => {
        expect(code(() => parseSnpReport(new Uint8Array(n)))).toBe("SNP_REPORT_MALFORMED");
      }),
      { numRuns: 200, seed: 1 },
    );
  });

  it("reads every real vector", () => {
    for (const name of ["milan-v2-gsg", "milan-v3-ms", "genoa-v3-ms", "milan-v3-vlek-trustee"]) {
      expect(code(() => parseSnpReport(fixture(`snp/${name}/report.bin`)))).toBe("accepted");
    }
  });

  it.each([2, 3, 5])("version %i: a non-zero byte anywhere reserved is malformed, anywhere else it is read", (version) => {
    const report = buildSnpReport("Milan", { version });
    const reserved = reservedRanges(version);
    const isReserved = (at: number): boolean => reserved.some(([a, b]) => at >= a && at < b);
    const special = (at: number): boolean =>
      at < 0x004 || (at >= 0x008 && at < 0x010) || (at >= 0x030 && at < 0x038) || (at >= 0x048 && at < 0x04c) || (at >= 0x2a0 && at < 0x330);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: SNP_REPORT_SIZE - 1 }), fc.integer({ min: 1, max: 255 }), (at, value) => {
        fc.pre(!special(at));
        const changed = report.slice();
        changed[at] = value;
        expect(code(() => parseSnpReport(changed))).toBe(isReserved(at) ? "SNP_REPORT_MALFORMED" : "accepted");
      }),
      { numRuns: 400, seed: version },
    );
  });

  it("reads v3's CPUID and v5's mitigation vectors only from those versions on", () => {
    const v2 = parseSnpReport(buildSnpReport("Genoa", { version: 2 }));
    const v3 = parseSnpReport(buildSnpReport("Genoa", { version: 3 }));
    const v5 = parseSnpReport(buildSnpReport("Genoa", { version: 5, launchMitigationVector: 3n, currentMitigationVector: 0xffn }));
    expect([v2.cpuid, v2.launchMitigationVector]).toEqual([null, null]);
    expect([v3.cpuid, v3.launchMitigationVector]).toEqual([{ family: 0x19, model: 0x11, stepping: 1 }, null]);
    expect([v5.launchMitigationVector, v5.currentMitigationVector]).toEqual([3n, 0xffn]);
  });

  it("refuses versions other than 2, 3 and 5, signature algorithms other than 1, and unsigned reports", () => {
    for (const version of [0, 1, 4, 6, 7, 0xffffffff]) {
      expect(code(() => parseSnpReport(buildSnpReport("Milan", { version })))).toBe("SNP_REPORT_VERSION_UNSUPPORTED");
    }
    for (const signatureAlgo of [0, 2, 0x100]) {
      expect(code(() => parseSnpReport(buildSnpReport("Milan", { signatureAlgo })))).toBe("SNP_SIGNATURE_ALGORITHM_UNSUPPORTED");
    }
    const unsigned = buildSnpReport("Milan");
    unsigned[0x48] = 7 << 2;
    expect(code(() => parseSnpReport(unsigned))).toBe("SNP_SIGNING_KEY_UNSUPPORTED");
    for (const key of [2, 3, 4, 5, 6]) {
      const reserved = buildSnpReport("Milan");
      reserved[0x48] = key << 2;
      expect(code(() => parseSnpReport(reserved))).toBe("SNP_REPORT_MALFORMED");
    }
  });

  it("refuses a VMPL above 3 and reserved guest policy bits", () => {
    expect(code(() => parseSnpReport(buildSnpReport("Milan", { vmpl: 4 })))).toBe("SNP_REPORT_MALFORMED");
    expect(code(() => parseSnpReport(buildSnpReport("Milan", { policy: 0x10000n })))).toBe("SNP_REPORT_MALFORMED");
    expect(code(() => parseSnpReport(buildSnpReport("Milan", { policy: 0x30000n | (1n << 26n) })))).toBe("SNP_REPORT_MALFORMED");
    expect(decodeGuestPolicy(0x3001fn)).toMatchObject({ abiMinor: 0x1f, abiMajor: 0, smt: true, debug: false });
    expect(decodeGuestPolicy(0xb0000n).debug).toBe(true);
  });
});

describe("TCB layouts and products", () => {
  it.each(["Milan", "Genoa", "Turin"] as const)("%s: decodeTcb(encodeTcb(parts)) gives the parts back", (product: SnpProduct) => {
    const byte = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(fc.record({ fmc: byte, bootloader: byte, tee: byte, snp: byte, microcode: byte }), (parts) => {
        const decoded = decodeTcb(encodeTcb(parts, product), product);
        expect(decoded).toMatchObject({ ...parts, fmc: product === "Turin" ? parts.fmc : null });
      }),
      { numRuns: 100, seed: 2 },
    );
  });

  it("Milan/Genoa put SNP at byte 6; Turin puts FMC first and SNP at byte 3", () => {
    const parts = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 };
    expect(Array.from(encodeTcb(parts, "Milan"))).toEqual([2, 3, 0, 0, 0, 0, 4, 5]);
    expect(Array.from(encodeTcb(parts, "Turin"))).toEqual([1, 2, 3, 4, 0, 0, 0, 5]);
  });

  it("CPUID names the product", () => {
    expect(productFromCpuid({ family: 0x19, model: 0x01, stepping: 1 })).toBe("Milan");
    expect(productFromCpuid({ family: 0x19, model: 0x11, stepping: 1 })).toBe("Genoa");
    expect(productFromCpuid({ family: 0x19, model: 0xa0, stepping: 2 })).toBe("Genoa");
    expect(productFromCpuid({ family: 0x1a, model: 0x02, stepping: 0 })).toBe("Turin");
    expect(productFromCpuid({ family: 0x1a, model: 0x11, stepping: 0 })).toBe("Turin");
    expect(productFromCpuid({ family: 0x17, model: 0x31, stepping: 0 })).toBeNull();
    expect(productFromCpuid({ family: 0x19, model: 0x21, stepping: 0 })).toBeNull();
  });
});
