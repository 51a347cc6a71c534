// The real SEV-SNP vectors (Milan and Genoa, v2 and v3, VCEK- and VLEK-signed, Azure HCL) verify against AMD's pinned roots with exactly expected.json's fields; the negative vectors are refused with their codes.
import { describe, expect, it } from "vitest";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { concat, toHex } from "../../src/encoding.js";
import { amdArkSha256, amdTrustAnchors } from "../../src/attestation/snp/amd-roots.js";
import {
  certTableGuids,
  certificatesFromTable,
  endorsementExtensions,
  isAmdRsaPss,
  parseCertificate,
  pemCertificates,
  sha256Hex,
  verifySnpChain,
} from "../../src/attestation/snp/certificates.js";
import { checkReportData, verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpEvidence } from "../../src/attestation/snp/verify.js";
import {
  asExpectedExtensions,
  asExpectedFields,
  certTable,
  expected,
  fixture,
  fixtureText,
  signerCertificate,
  validTime,
  vectorEvidence,
  vectorNames,
} from "./snp-fixtures.js";

const anchors = amdTrustAnchors();
const products = ["milan", "genoa", "turin"] as const;
const productName = { milan: "Milan", genoa: "Genoa", turin: "Turin" } as const;

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

describe("real SNP vectors", () => {
  it("are all there: Milan and Genoa, v2 and v3, VCEK and VLEK, Azure HCL", () => {
    expect(vectorNames.sort()).toEqual([
      "azure-milan-v2-hcl",
      "genoa-v3-ms",
      "milan-v2-gsg",
      "milan-v2-trustee",
      "milan-v2-virtee",
      "milan-v3-ms",
      "milan-v3-vlek-trustee",
    ]);
  });

  it.each(vectorNames)("%s verifies with exactly the expected fields", async (name) => {
    const want = expected.vectors[`snp/${name}`]!;
    expect(await sha256Hex(fixture(want.report))).toBe(want.report_sha256);
    const verified = await verifySnpReport(vectorEvidence(name), { trustAnchors: anchors, now: validTime(name) });
    expect(verified.product.toLowerCase()).toBe(want.product);
    expect(verified.signer).toBe(want.signer);
    expect(asExpectedFields(verified)).toEqual(want.fields);
    expect(asExpectedExtensions(verified)).toEqual(want.cert_extensions);
    expect(verified.endorsement.notBefore.toISOString()).toBe(new Date(want.cert_not_before).toISOString());
    expect(verified.endorsement.notAfter.toISOString()).toBe(new Date(want.cert_not_after).toISOString());
    expect(verified.arkSha256).toBe(amdArkSha256[verified.product]);
    expect(verified.hostDataHex).toBe(want.fields.host_data);
  });

  it("verifies the same with the full chain in the evidence (ASK/ASVK and ARK from the KDS bundles)", async () => {
    for (const name of vectorNames) {
      const want = expected.vectors[`snp/${name}`]!;
      const bundle = pemCertificates(fixtureText(`amd/${want.product}/cert_chain_${want.signer}.pem`));
      const evidence = vectorEvidence(name);
      const intermediate = want.signer === "vcek" ? { ask: bundle[0]! } : { asvk: bundle[0]! };
      evidence.certificates = { ...evidence.certificates, ...intermediate, ark: bundle[1]! };
      const verified = await verifySnpReport(evidence, { trustAnchors: anchors, now: validTime(name) });
      expect(asExpectedFields(verified)).toEqual(want.fields);
    }
  });

  it("verifies the Azure vector with the chain Azure ships (VCEK, ASK, ARK in one PEM)", async () => {
    const [vcek, ask, ark] = pemCertificates(fixtureText("snp/azure-milan-v2-hcl/vcek-chain.pem"));
    const evidence: SnpEvidence = { report: fixture("snp/azure-milan-v2-hcl/report.bin"), certificates: { vcek: vcek!, ask: ask!, ark: ark! } };
    await expect(verifySnpReport(evidence, { trustAnchors: anchors, now: validTime("azure-milan-v2-hcl") })).resolves.toBeDefined();
  });

  it("the VLEK vector is refused after the VLEK expired and before it was issued", async () => {
    const evidence = vectorEvidence("milan-v3-vlek-trustee");
    expect(await refusal(verifySnpReport(evidence, { trustAnchors: anchors, now: new Date("2026-01-01T00:00:00Z") }))).toBe(
      "SNP_CERTIFICATE_EXPIRED",
    );
    expect(await refusal(verifySnpReport(evidence, { trustAnchors: anchors, now: new Date("2024-12-01T00:00:00Z") }))).toBe(
      "SNP_CERTIFICATE_NOT_YET_VALID",
    );
    // openssl's -attime 1735689600 of the provenance log.
    await expect(verifySnpReport(evidence, { trustAnchors: anchors, now: new Date(1735689600 * 1000) })).resolves.toBeDefined();
  });

  it("the Azure HCL vector's REPORT_DATA is SHA-256 of the HCL runtime data, zero-padded; a wrong one is refused", async () => {
    const hcl = fixture("snp/azure-milan-v2-hcl/hcl-report.bin");
    expect(new TextDecoder().decode(hcl.subarray(0, 4))).toBe("HCLA");
    expect(hcl.subarray(0x20, 0x4c0)).toEqual(fixture("snp/azure-milan-v2-hcl/report.bin"));
    const size = new DataView(hcl.buffer, hcl.byteOffset).getUint32(0x4d0, true);
    const runtimeData = hcl.subarray(0x4d4, 0x4d4 + size);
    expect(size).toBe(expected.vectors["snp/azure-milan-v2-hcl"]!.azure_hcl!.runtime_data_length);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", runtimeData as BufferSource));
    const verified = await verifySnpReport(vectorEvidence("azure-milan-v2-hcl"), { trustAnchors: anchors, now: validTime("azure-milan-v2-hcl") });
    expect(() => checkReportData(verified, concat(digest, new Uint8Array(32)))).not.toThrow();
    const other = runtimeData.slice();
    other[10]! ^= 1;
    const otherDigest = new Uint8Array(await crypto.subtle.digest("SHA-256", other as BufferSource));
    expect(() => checkReportData(verified, concat(otherDigest, new Uint8Array(32)))).toThrow(
      expect.objectContaining({ code: "SNP_REPORT_DATA_MISMATCH" }),
    );
  });
});

describe("AMD roots", () => {
  it.each(products)("the embedded %s ARK, ASK and ASVK are the fixture certificates, and the ARK pin is the README's fingerprint", async (p) => {
    const anchor = anchors.find((a) => a.product === productName[p])!;
    const vcekBundle = pemCertificates(fixtureText(`amd/${p}/cert_chain_vcek.pem`));
    const vlekBundle = pemCertificates(fixtureText(`amd/${p}/cert_chain_vlek.pem`));
    expect(anchor.ark).toEqual(pemCertificates(fixtureText(`amd/${p}/ark.pem`))[0]);
    expect(anchor.ask).toEqual(pemCertificates(fixtureText(`amd/${p}/ask.pem`))[0]);
    expect(vcekBundle).toEqual([anchor.ask, anchor.ark]);
    expect(vlekBundle).toEqual([anchor.asvk, anchor.ark]);
    expect(await sha256Hex(anchor.ark)).toBe(amdArkSha256[productName[p]]);
    const readme = fixtureText("README.md");
    const row = `| ${productName[p]} | ${amdArkSha256[productName[p]]} | ${await sha256Hex(anchor.ask!)} | ${await sha256Hex(anchor.asvk!)} |`;
    expect(readme).toContain(row);
  });

  it("AMD signs with rsassaPss SHA-384, MGF1-SHA-384, salt 48, trailer 1 — and nothing else passes for it", () => {
    const ask = parseCertificate(anchors[0]!.ask!, "ASK");
    expect(isAmdRsaPss(ask.asn.signatureAlgorithm)).toBe(true);
    const vcek = AsnConvert.parse(fixture("snp/milan-v2-gsg/vcek.der"), Certificate);
    expect(isAmdRsaPss(vcek.signatureAlgorithm)).toBe(true);
    expect(isAmdRsaPss(vcek.tbsCertificate.subjectPublicKeyInfo.algorithm)).toBe(false);
  });

  it("the Turin VCEK (no report) chains to the Turin ARK, with Turin's extensions", async () => {
    const chain = await verifySnpChain({ vcek: fixture("snp/certs-only/turin-vcek-virtee.der") }, "vcek", anchors, new Date("2026-01-01T00:00:00Z"));
    expect(chain.product).toBe("Turin");
    expect(chain.arkSha256).toBe(amdArkSha256.Turin);
    const e = chain.extensions;
    expect([e.structVersion, e.productName, e.fmcSpl, e.blSpl, e.teeSpl, e.snpSpl, e.ucodeSpl]).toEqual([1, "Turin", 0, 0, 0, 0, 9]);
    expect(e.spl4).toBeNull();
    expect(toHex(e.hwid!)).toBe("1e550a8ee5cf9f4d");
  });
});

describe("negative vectors", () => {
  const gsg = (): SnpEvidence => vectorEvidence("milan-v2-gsg");
  const now = validTime("milan-v2-gsg");

  it.each(["raw", "octetstring"])("the bad-signature VCEK with a %s hwID parses, and its chain is refused", async (encoding) => {
    const der = fixture(`snp/certs-only/milan-vcek-badsig-hwid-${encoding}.der`);
    const ext = endorsementExtensions(parseCertificate(der, "VCEK"));
    expect(toHex(ext.hwid!)).toBe(toHex(Uint8Array.from({ length: 64 }, (_, i) => i)));
    expect(ext.hwidEncoding).toBe(encoding === "raw" ? "raw" : "octet-string");
    expect(await refusal(verifySnpReport({ ...gsg(), certificates: { vcek: der } }, { trustAnchors: anchors, now }))).toBe("SNP_CHAIN_INVALID");
  });

  it("a Milan VCEK is refused when only Genoa's ARK is pinned, or with Genoa's ASK, or with Genoa's ARK in the evidence", async () => {
    const genoa = anchors.filter((a) => a.product === "Genoa");
    expect(await refusal(verifySnpReport(gsg(), { trustAnchors: genoa, now }))).toBe("SNP_ARK_NOT_PINNED");
    const genoaAsk = pemCertificates(fixtureText("amd/genoa/ask.pem"))[0]!;
    const genoaArk = pemCertificates(fixtureText("amd/genoa/ark.pem"))[0]!;
    expect(await refusal(verifySnpReport({ ...gsg(), certificates: { ...gsg().certificates, ask: genoaAsk } }, { trustAnchors: anchors, now }))).toBe(
      "SNP_CHAIN_INVALID",
    );
    expect(await refusal(verifySnpReport({ ...gsg(), certificates: { ...gsg().certificates, ark: genoaArk } }, { trustAnchors: anchors, now }))).toBe(
      "SNP_ARK_NOT_PINNED",
    );
  });

  it("a VLEK's ASVK cannot stand in for a VCEK's ASK", async () => {
    const asvk = pemCertificates(fixtureText("amd/milan/cert_chain_vlek.pem"))[0]!;
    expect(await refusal(verifySnpReport({ ...gsg(), certificates: { ...gsg().certificates, ask: asvk } }, { trustAnchors: anchors, now }))).toBe(
      "SNP_CHAIN_INVALID",
    );
  });

  it("each report is refused with every other vector's VCEK", async () => {
    for (const name of vectorNames) {
      for (const other of vectorNames) {
        if (other === name || expected.vectors[`snp/${other}`]!.signer !== expected.vectors[`snp/${name}`]!.signer) continue;
        const evidence = { ...vectorEvidence(name), certificates: vectorEvidence(other).certificates! };
        const code = await refusal(verifySnpReport(evidence, { trustAnchors: anchors, now: validTime(other) }));
        // The Genoa VCEK under a Milan v3 report: the signature fails before the product could.
        expect(code).toBe("SNP_SIGNATURE_INVALID");
      }
    }
  });

  it("a report without its VCEK, or a VLEK-signed report with only a VCEK, is refused", async () => {
    expect(await refusal(verifySnpReport({ report: gsg().report }, { trustAnchors: anchors, now }))).toBe("SNP_CERTIFICATE_MISSING");
    const vlek = vectorEvidence("milan-v3-vlek-trustee");
    const onlyVcek: SnpEvidence = { report: vlek.report, certificates: { vcek: signerCertificate("snp/milan-v2-gsg/vcek.der") } };
    expect(await refusal(verifySnpReport(onlyVcek, { trustAnchors: anchors, now }))).toBe("SNP_CERTIFICATE_MISSING");
  });

  it("a report is refused when no root at all is pinned", async () => {
    expect(await refusal(verifySnpReport(gsg(), { trustAnchors: [], now }))).toBe("SNP_ARK_NOT_PINNED");
  });
});

describe("certificate table", () => {

  it("an extended report's table (VCEK, ASK, ARK) gives the certificates, and the report verifies with it", async () => {
    const [ask, ark] = pemCertificates(fixtureText("amd/milan/cert_chain_vcek.pem"));
    const vcek = fixture("snp/milan-v2-gsg/vcek.der");
    const t = certTable([
      [certTableGuids.vcek, vcek],
      [certTableGuids.ask, ask!],
      [certTableGuids.ark, ark!],
    ]);
    expect(certificatesFromTable(t)).toEqual({ vcek, ask, ark });
    const evidence: SnpEvidence = { report: fixture("snp/milan-v2-gsg/report.bin"), certTable: t };
    await expect(verifySnpReport(evidence, { trustAnchors: anchors, now: validTime("milan-v2-gsg") })).resolves.toBeDefined();
  });

  it("a VLEK-signed report's table carries the ASVK under the ASK GUID", async () => {
    const [asvk] = pemCertificates(fixtureText("amd/milan/cert_chain_vlek.pem"));
    const vlek = fixture("snp/milan-v3-vlek-trustee/vlek.der");
    const t = certTable([
      [certTableGuids.vlek, vlek],
      [certTableGuids.ask, asvk!],
    ]);
    const evidence: SnpEvidence = { report: fixture("snp/milan-v3-vlek-trustee/report.bin"), certTable: t };
    const verified = await verifySnpReport(evidence, { trustAnchors: anchors, now: validTime("milan-v3-vlek-trustee") });
    expect(verified.signer).toBe("vlek");
  });

  it("refuses a table without its terminator, with an entry pointing outside it, or with a repeated entry", () => {
    const vcek = fixture("snp/milan-v2-gsg/vcek.der");
    const good = certTable([[certTableGuids.vcek, vcek]]);
    expect(() => certificatesFromTable(good.subarray(0, 30))).toThrow(expect.objectContaining({ code: "SNP_CERTIFICATE_MALFORMED" }));
    const outside = good.slice();
    new DataView(outside.buffer).setUint32(20, vcek.length + 1, true);
    expect(() => certificatesFromTable(outside)).toThrow(expect.objectContaining({ code: "SNP_CERTIFICATE_MALFORMED" }));
    const intoHeader = good.slice();
    new DataView(intoHeader.buffer).setUint32(16, 8, true);
    expect(() => certificatesFromTable(intoHeader)).toThrow(expect.objectContaining({ code: "SNP_CERTIFICATE_MALFORMED" }));
    const twice = certTable([
      [certTableGuids.vcek, vcek],
      [certTableGuids.vcek, vcek],
    ]);
    expect(() => certificatesFromTable(twice)).toThrow(expect.objectContaining({ code: "SNP_CERTIFICATE_MALFORMED" }));
  });
});
