// Every single-bit flip in a real SNP report (signed part and signature) or in one of its certificates (TBS and signature) is refused, each with the code of what it breaks.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { bytesEqual } from "../../src/encoding.js";
import { amdTrustAnchors } from "../../src/attestation/snp/amd-roots.js";
import { pemCertificates } from "../../src/attestation/snp/certificates.js";
import type { SnpCertificates } from "../../src/attestation/snp/certificates.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpEvidence } from "../../src/attestation/snp/verify.js";
import { fixture, fixtureText, validTime } from "./snp-fixtures.js";

const anchors = amdTrustAnchors();
const runs = 100;

async function refusal(evidence: SnpEvidence, now: Date): Promise<string> {
  try {
    await verifySnpReport(evidence, { trustAnchors: anchors, now });
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

function flip(bytes: Uint8Array, offset: number, bit: number): Uint8Array {
  const out = bytes.slice();
  out[offset]! ^= 1 << bit;
  return out;
}

/** A v2 VCEK-signed Milan report (milan-v2-virtee) and a v3 VLEK-signed one (milan-v3-vlek-trustee), with their full chains. */
const [askMilan, arkMilan] = pemCertificates(fixtureText("amd/milan/cert_chain_vcek.pem"));
const [asvkMilan] = pemCertificates(fixtureText("amd/milan/cert_chain_vlek.pem"));
const cases = {
  v2: {
    report: fixture("snp/milan-v2-virtee/report.bin"),
    certificates: { vcek: fixture("snp/milan-v2-virtee/vcek.der"), ask: askMilan!, ark: arkMilan! } as SnpCertificates,
    now: validTime("milan-v2-virtee"),
  },
  v3vlek: {
    report: fixture("snp/milan-v3-vlek-trustee/report.bin"),
    certificates: { vlek: fixture("snp/milan-v3-vlek-trustee/vlek.der"), asvk: asvkMilan!, ark: arkMilan! } as SnpCertificates,
    now: validTime("milan-v3-vlek-trustee"),
  },
};

/**
 * The one code a flipped report bit must give, from the report layout (SNP ABI) and the report's
 * own values: reserved bytes and bits are malformed, the version and signature algorithm are
 * unsupported, SIGNING_KEY names a key the evidence lacks or a reserved one; every other bit of
 * the signed part breaks the signature.
 */
function expectedReportCode(report: Uint8Array, offset: number, bit: number): string {
  const view = new DataView(report.buffer, report.byteOffset);
  const version = view.getUint32(0, true);
  const inRange = (a: number, b: number): boolean => offset >= a && offset < b;
  if (inRange(0x000, 0x004)) {
    const v = version ^ (1 << (8 * offset + bit));
    if (![2, 3, 5].includes(v)) return "SNP_REPORT_VERSION_UNSUPPORTED";
    // v2 <-> v3: the CPUID bytes are zero in this v2 report and read as zero; v3 -> v2 makes them reserved.
    if (v === 2 && version >= 3 && (report[0x188] !== 0 || report[0x189] !== 0 || report[0x18a] !== 0)) return "SNP_REPORT_MALFORMED";
    return "SNP_SIGNATURE_INVALID";
  }
  if (inRange(0x034, 0x038)) return "SNP_SIGNATURE_ALGORITHM_UNSUPPORTED";
  if (inRange(0x008, 0x010)) {
    const policyBit = 8 * (offset - 0x008) + bit;
    return policyBit === 17 || policyBit >= 26 ? "SNP_REPORT_MALFORMED" : "SNP_SIGNATURE_INVALID";
  }
  if (inRange(0x030, 0x034)) return offset === 0x030 && bit < 2 ? "SNP_SIGNATURE_INVALID" : "SNP_REPORT_MALFORMED";
  if (inRange(0x048, 0x04c)) {
    const info = view.getUint32(0x48, true) ^ (1 << (8 * (offset - 0x48) + bit));
    if (info >>> 5 !== 0) return "SNP_REPORT_MALFORMED";
    const key = (info >>> 2) & 7;
    if (key !== 0 && key !== 1 && key !== 7) return "SNP_REPORT_MALFORMED";
    if (key === 7) return "SNP_SIGNING_KEY_UNSUPPORTED";
    const originalKey = (view.getUint32(0x48, true) >>> 2) & 7;
    return key !== originalKey ? "SNP_CERTIFICATE_MISSING" : "SNP_SIGNATURE_INVALID";
  }
  if (inRange(0x04c, 0x050)) return "SNP_REPORT_MALFORMED";
  if (inRange(0x188, 0x1a0)) return version >= 3 && offset < 0x18b ? "SNP_SIGNATURE_INVALID" : "SNP_REPORT_MALFORMED";
  if (offset === 0x1eb || offset === 0x1ef) return "SNP_REPORT_MALFORMED";
  if (inRange(0x1f8, 0x2a0)) return version >= 5 && offset < 0x208 ? "SNP_SIGNATURE_INVALID" : "SNP_REPORT_MALFORMED";
  if (inRange(0x2a0, 0x2d0) || inRange(0x2e8, 0x318)) return "SNP_SIGNATURE_INVALID";
  if (inRange(0x2d0, 0x2e8) || inRange(0x318, 0x330)) return "SNP_SIGNATURE_MALFORMED";
  if (inRange(0x330, 0x4a0)) return "SNP_REPORT_MALFORMED";
  return "SNP_SIGNATURE_INVALID";
}

describe.each(Object.entries(cases))("single-bit flips in the %s report", (_, c) => {
  it("the untouched evidence verifies", async () => {
    expect(await refusal({ report: c.report, certificates: c.certificates }, c.now)).toBe("accepted");
  });

  it("one flip in every byte of the report, each refused with its field's code", async () => {
    for (let offset = 0; offset < c.report.length; offset++) {
      const bit = offset % 8;
      const code = await refusal({ report: flip(c.report, offset, bit), certificates: c.certificates }, c.now);
      expect({ offset, bit, code }).toEqual({ offset, bit, code: expectedReportCode(c.report, offset, bit) });
    }
  });

  it("any flip in the signed part (bytes 0x000..0x29F) is refused with its field's code", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 0x29f }), fc.integer({ min: 0, max: 7 }), async (offset, bit) => {
        const code = await refusal({ report: flip(c.report, offset, bit), certificates: c.certificates }, c.now);
        expect(code).toBe(expectedReportCode(c.report, offset, bit));
      }),
      { numRuns: runs, seed: 0x5e7 },
    );
  });

  it("any flip in the signature (bytes 0x2A0..0x49F) is refused: r and s invalid, their upper 24 bytes or the rest malformed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0x2a0, max: 0x49f }), fc.integer({ min: 0, max: 7 }), async (offset, bit) => {
        const code = await refusal({ report: flip(c.report, offset, bit), certificates: c.certificates }, c.now);
        expect(code).toBe(expectedReportCode(c.report, offset, bit));
      }),
      { numRuns: runs, seed: 0x516 },
    );
  });
});

/** Where a certificate's TBS and signature value lie in its DER. */
function regions(der: Uint8Array): { tbs: [number, number]; signature: [number, number] } {
  const asn = AsnConvert.parse(der, Certificate);
  const tbs = new Uint8Array(asn.tbsCertificateRaw!);
  let start = -1;
  for (let i = 0; i + tbs.length <= der.length; i++) {
    if (bytesEqual(der.subarray(i, i + tbs.length), tbs)) {
      start = i;
      break;
    }
  }
  const sigLength = asn.signatureValue.byteLength;
  return { tbs: [start, start + tbs.length], signature: [der.length - sigLength, der.length] };
}

const certificateCases: { name: string; evidence: keyof typeof cases; role: keyof SnpCertificates; tbsCodes: string[] }[] = [
  { name: "VCEK", evidence: "v2", role: "vcek", tbsCodes: ["SNP_CERTIFICATE_MALFORMED", "SNP_CHAIN_INVALID", "SNP_PRODUCT_UNKNOWN"] },
  { name: "ASK", evidence: "v2", role: "ask", tbsCodes: ["SNP_CERTIFICATE_MALFORMED", "SNP_CHAIN_INVALID"] },
  { name: "VLEK", evidence: "v3vlek", role: "vlek", tbsCodes: ["SNP_CERTIFICATE_MALFORMED", "SNP_CHAIN_INVALID", "SNP_PRODUCT_UNKNOWN"] },
  { name: "ASVK", evidence: "v3vlek", role: "asvk", tbsCodes: ["SNP_CERTIFICATE_MALFORMED", "SNP_CHAIN_INVALID"] },
  { name: "ARK", evidence: "v2", role: "ark", tbsCodes: ["SNP_CERTIFICATE_MALFORMED", "SNP_ARK_NOT_PINNED"] },
];

describe.each(certificateCases)("single-bit flips in the $name certificate", ({ evidence, role, tbsCodes }) => {
  const c = cases[evidence];
  const der = c.certificates[role] as Uint8Array;
  const { tbs, signature } = regions(der);
  const withFlip = (offset: number, bit: number): SnpEvidence => ({
    report: c.report,
    certificates: { ...c.certificates, [role]: flip(der, offset, bit) },
  });

  it("its TBS and signature are where the DER says", () => {
    expect(tbs[0]).toBeGreaterThan(0);
    expect(signature[1] - signature[0]).toBe(512); // RSA-4096 signatures, for the VCEK/VLEK too
    expect(signature[0]).toBeGreaterThan(tbs[1]);
  });

  it("any flip in the TBS is refused (malformed, or its signature fails; the ARK is not the pinned one)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: tbs[0], max: tbs[1] - 1 }), fc.integer({ min: 0, max: 7 }), async (offset, bit) => {
        expect(tbsCodes).toContain(await refusal(withFlip(offset, bit), c.now));
      }),
      { numRuns: runs, seed: 0xce47 },
    );
  });

  it("any flip in the signature value is refused", async () => {
    const codes = role === "ark" ? ["SNP_ARK_NOT_PINNED"] : ["SNP_CHAIN_INVALID"];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: signature[0], max: signature[1] - 1 }), fc.integer({ min: 0, max: 7 }), async (offset, bit) => {
        expect(codes).toContain(await refusal(withFlip(offset, bit), c.now));
      }),
      { numRuns: runs, seed: 0x5167 },
    );
  });

  it("any flip between the TBS and the signature value (algorithm, lengths, unused bits) is refused", async () => {
    for (let offset = tbs[1]; offset < signature[0]; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        const code = await refusal(withFlip(offset, bit), c.now);
        expect(["SNP_CERTIFICATE_MALFORMED", "SNP_CHAIN_INVALID", "SNP_ARK_NOT_PINNED"]).toContain(code);
      }
    }
  });

  it("a flip in the outer header is refused as malformed (or, for the ARK, unpinned)", async () => {
    for (let offset = 0; offset < tbs[0]; offset++) {
      for (let bit = 0; bit < 8; bit++) {
        expect(["SNP_CERTIFICATE_MALFORMED", "SNP_ARK_NOT_PINNED"]).toContain(await refusal(withFlip(offset, bit), c.now));
      }
    }
  });
});
