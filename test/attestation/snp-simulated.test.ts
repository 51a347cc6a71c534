// The test TEE: generated ARK/ASK/ASVK/VCEK/VLEK hierarchies of AMD's shape sign reports with chosen fields; they verify only when the generated ARK is pinned, and every broken property is refused with its code.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Certificate, Extension } from "@peculiar/asn1-x509";
import { concat, toHex } from "../../src/encoding.js";
import { amdArkSha256, amdTrustAnchors } from "../../src/attestation/snp/amd-roots.js";
import { parseCertificate } from "../../src/attestation/snp/certificates.js";
import { encodeTcb } from "../../src/attestation/snp/report.js";
import { createSimulatedAmd, signSnpReport, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import type { SimulatedAmd, SimulatedReportFields } from "../../src/attestation/snp/simulated.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpEvidence } from "../../src/attestation/snp/verify.js";
import { fixture } from "./snp-fixtures.js";

const now = new Date("2026-06-01T12:00:00Z");
let milan: SimulatedAmd;
let genoa: SimulatedAmd;
let turin: SimulatedAmd;

beforeAll(async () => {
  [milan, genoa, turin] = await Promise.all([
    createSimulatedAmd({ product: "Milan", now }),
    createSimulatedAmd({ product: "Genoa", now, asvk: false }),
    createSimulatedAmd({ product: "Turin", now, asvk: false }),
  ]);
}, 180_000);

async function refusal(evidence: SnpEvidence, trustAnchors = [milan.anchor], at = now): Promise<string> {
  try {
    await verifySnpReport(evidence, { trustAnchors, now: at });
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

describe("the test TEE", () => {
  it("a report with chosen fields verifies when the generated ARK is pinned, with exactly those fields", async () => {
    const fields: SimulatedReportFields = {
      version: 5,
      guestSvn: 7,
      policy: 0x30000n,
      familyId: bytes(16, 1),
      imageId: bytes(16, 2),
      reportData: bytes(64, 3),
      measurement: bytes(48, 4),
      hostData: bytes(32, 5),
      idKeyDigest: bytes(48, 6),
      platformInfo: 0x25n,
      launchMitigationVector: 0b101n,
      currentMitigationVector: 0b111n,
      currentTcb: { bootloader: 9, tee: 1, snp: 30, microcode: 250 },
      currentVersion: { major: 1, minor: 58, build: 3 },
      committedVersion: { major: 1, minor: 57, build: 2 },
    };
    const v = await verifySnpReport(await milan.attest(fields), { trustAnchors: [milan.anchor], now });
    expect(v.product).toBe("Milan");
    expect(v.signer).toBe("vcek");
    expect(v.report.version).toBe(5);
    expect(v.report.guestSvn).toBe(7);
    expect(v.measurementHex).toBe("04".repeat(48));
    expect(v.hostDataHex).toBe("05".repeat(32));
    expect(toHex(v.report.reportData)).toBe("03".repeat(64));
    expect(v.report.cpuid).toEqual({ family: 0x19, model: 0x01, stepping: 1 });
    expect(v.report.launchMitigationVector).toBe(0b101n);
    expect(v.report.currentMitigationVector).toBe(0b111n);
    expect(v.platformInfo).toMatchObject({ smtEnabled: true, eccEnabled: true, aliasCheckComplete: true, tsmeEnabled: false });
    expect(v.policy).toMatchObject({ smt: true, debug: false, migrateMa: false });
    expect(v.tcb.reported).toMatchObject({ fmc: null, bootloader: 4, tee: 0, snp: 24, microcode: 219 });
    expect(v.tcb.current).toMatchObject({ bootloader: 9, tee: 1, snp: 30, microcode: 250 });
    expect(v.endorsement.extensions.productName).toBe("Milan-B0");
    expect(v.arkSha256).not.toBe(amdArkSha256.Milan);
  });

  it("its reports are refused with AMD's pins: the ARK is not pinned, and without it the ASK is not AMD's", async () => {
    const evidence = await milan.attest();
    expect(await refusal(evidence, amdTrustAnchors())).toBe("SNP_ARK_NOT_PINNED");
    const withoutArk: SnpEvidence = { ...evidence, certificates: { ...evidence.certificates, ark: undefined } };
    delete withoutArk.certificates!.ark;
    expect(await refusal(withoutArk, amdTrustAnchors())).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(withoutArk, [...amdTrustAnchors(), milan.anchor])).toBe("accepted");
  });

  it("AMD's reports are refused with only the generated ARK pinned", async () => {
    const report = fixture("snp/milan-v2-gsg/report.bin");
    const vcek = fixture("snp/milan-v2-gsg/vcek.der");
    expect(await refusal({ report, certificates: { vcek } }, [milan.anchor], new Date("2023-01-01T00:00:00Z"))).toBe("SNP_CHAIN_INVALID");
    const amdMilan = amdTrustAnchors()[0]!;
    expect(await refusal({ report, certificates: { vcek, ark: amdMilan.ark } }, [milan.anchor], new Date("2023-01-01T00:00:00Z"))).toBe(
      "SNP_ARK_NOT_PINNED",
    );
  });

  it("a hierarchy pinned under another product's name is a product mismatch", async () => {
    expect(await refusal(await milan.attest(), [{ ...milan.anchor, product: "Genoa" }])).toBe("SNP_ARK_NOT_PINNED");
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, productName: "Genoa" });
    const evidence = await milan.attest({ cpuid: { family: 0x19, model: 0x11, stepping: 1 } }, vcek);
    expect(await refusal(evidence, [{ ...milan.anchor, product: "Genoa" }])).toBe("SNP_PRODUCT_MISMATCH");
  });

  it.each([2, 3, 5])("report version %i verifies", async (version) => {
    const v = await verifySnpReport(await milan.attest({ version }), { trustAnchors: [milan.anchor], now });
    expect(v.report.version).toBe(version);
    expect(v.report.cpuid === null).toBe(version === 2);
    expect(v.report.launchMitigationVector === null).toBe(version < 5);
  });

  it.each([0, 1, 4, 6, 0x102])("report version %i is unsupported", async (version) => {
    expect(await refusal(await milan.attest({ version }))).toBe("SNP_REPORT_VERSION_UNSUPPORTED");
  });

  it("a VLEK-signed report verifies through the ASVK, and names its cloud provider", async () => {
    const vlek = await milan.issueEndorsement("vlek", { tcb: simulatedTcb, cspId: "CN=csp.simulated.invalid" });
    const v = await verifySnpReport(await milan.attest({}, vlek), { trustAnchors: [milan.anchor], now });
    expect(v.signer).toBe("vlek");
    expect(v.endorsement.extensions.cspId).toBe("CN=csp.simulated.invalid");
    expect(v.endorsement.extensions.hwid).toBeNull();
  });

  it("Genoa reports verify with Genoa's CPUID and are refused with Milan's", async () => {
    await expect(verifySnpReport(await genoa.attest(), { trustAnchors: [genoa.anchor], now })).resolves.toMatchObject({ product: "Genoa" });
    expect(await refusal(await genoa.attest({ cpuid: { family: 0x19, model: 0x01, stepping: 1 } }), [genoa.anchor])).toBe("SNP_PRODUCT_MISMATCH");
    expect(await refusal(await genoa.attest({ cpuid: { family: 0x17, model: 0x31, stepping: 0 } }), [genoa.anchor])).toBe("SNP_PRODUCT_UNKNOWN");
  });

  it("Turin reports use Turin's TCB layout and 8-byte hwID", async () => {
    const tcb = { fmc: 2, bootloader: 3, tee: 4, snp: 5, microcode: 66 };
    const vcek = await turin.issueEndorsement("vcek", { tcb });
    const v = await verifySnpReport(await turin.attest({ currentTcb: tcb }, vcek), { trustAnchors: [turin.anchor], now });
    expect(v.product).toBe("Turin");
    expect(toHex(v.report.reportedTcb)).toBe("0203040500000042");
    expect(v.tcb.reported).toMatchObject({ fmc: 2, bootloader: 3, tee: 4, snp: 5, microcode: 66 });
    expect(v.report.chipId).toEqual(concat(vcek.hwid!, new Uint8Array(56)));
    expect(v.endorsement.extensions).toMatchObject({ structVersion: 1, fmcSpl: 2, spl4: null });
  });

  it("the Milan layout put in a Turin report does not match the VCEK's TCB", async () => {
    const tcb = { fmc: 2, bootloader: 3, tee: 4, snp: 5, microcode: 66 };
    const vcek = await turin.issueEndorsement("vcek", { tcb });
    const evidence = await turin.attest({ currentTcb: tcb }, vcek);
    const milanLayout = encodeTcb(tcb, "Milan");
    const report = evidence.report.slice();
    report.set(milanLayout, 0x180);
    const resigned = await signSnpReport(report, vcek.privateKey);
    expect(await refusal({ ...evidence, report: resigned }, [turin.anchor])).toBe("SNP_TCB_MISMATCH");
  });
});

describe("report and VCEK disagree", () => {
  it("REPORTED_TCB other than the VCEK's TCB is refused", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb });
    for (const part of ["bootloader", "tee", "snp", "microcode"] as const) {
      const reportedTcb = { ...simulatedTcb, [part]: simulatedTcb[part] + 1 };
      const evidence = await milan.attest({ reportedTcb, currentTcb: reportedTcb }, vcek);
      expect({ part, code: await refusal(evidence) }).toEqual({ part, code: "SNP_TCB_MISMATCH" });
    }
  });

  it("CHIP_ID other than the VCEK's hwID is refused; a masked (zero) CHIP_ID is accepted", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb });
    const other = vcek.hwid!.slice();
    other[63]! ^= 1;
    expect(await refusal(await milan.attest({ chipId: other }, vcek))).toBe("SNP_CHIP_ID_MISMATCH");
    expect(await refusal(await milan.attest({ chipId: new Uint8Array(64), maskChipKey: true }, vcek))).toBe("accepted");
    expect(await refusal(await milan.attest({ chipId: vcek.hwid!, maskChipKey: true }, vcek))).toBe("SNP_CHIP_ID_MISMATCH");
  });

  it("a VCEK whose hwID is DER-wrapped (as some tools write it) still matches CHIP_ID", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, hwidEncoding: "octet-string" });
    const v = await verifySnpReport(await milan.attest({}, vcek), { trustAnchors: [milan.anchor], now });
    expect(v.endorsement.extensions.hwidEncoding).toBe("octet-string");
  });

  it("TCBs that contradict each other are refused", async () => {
    const low = { ...simulatedTcb, snp: 1 };
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb });
    expect(await refusal(await milan.attest({ currentTcb: low }, vcek))).toBe("SNP_TCB_INCONSISTENT");
    expect(await refusal(await milan.attest({ committedTcb: { ...simulatedTcb, microcode: 250 } }, vcek))).toBe("SNP_TCB_INCONSISTENT");
    expect(
      await refusal(await milan.attest({ currentVersion: { major: 1, minor: 55, build: 1 }, committedVersion: { major: 1, minor: 56, build: 1 } }, vcek)),
    ).toBe("SNP_TCB_INCONSISTENT");
    expect(
      await refusal(await milan.attest({ currentVersion: { major: 1, minor: 56, build: 1 }, committedVersion: { major: 1, minor: 55, build: 1 } }, vcek)),
    ).toBe("accepted");
  });

  it("a VLEK-signed report with only a VCEK, or a VCEK passed as a VLEK, is refused", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb });
    const evidence = await milan.attest({ signingKey: "vlek" }, { ...vcek, signer: "vlek" });
    expect(await refusal(evidence)).toBe("SNP_CHAIN_INVALID"); // a VCEK is not signed by the ASVK
    const vlekEvidence = await milan.attest({ signingKey: "vlek" });
    const onlyVcek: SnpEvidence = { report: vlekEvidence.report, certificates: { vcek: vcek.certificate, ask: milan.ask.certificate } };
    expect(await refusal(onlyVcek)).toBe("SNP_CERTIFICATE_MISSING");
  });
});

describe("certificates of the wrong shape", () => {
  it("a VCEK signed with salt 32 instead of 48 is refused", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, saltLength: 32 });
    expect(await refusal(await milan.attest({}, vcek))).toBe("SNP_CHAIN_INVALID");
  });

  it("a VCEK with an unknown critical extension is refused", async () => {
    const extra = new Extension({ extnID: "1.3.6.1.4.1.99999.1", critical: true, extnValue: new OctetString(new Uint8Array([5, 0])) });
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, extraExtensions: [extra] });
    expect(await refusal(await milan.attest({}, vcek))).toBe("SNP_CHAIN_INVALID");
  });

  it("a VCEK issued by the ASVK (not the ASK) is refused", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, issuer: { key: milan.asvk!, commonName: "SEV-VLEK-Milan" } });
    expect(await refusal(await milan.attest({}, vcek))).toBe("SNP_CHAIN_INVALID");
  });

  it("a VCEK of an unknown product is refused", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, productName: "Naples" });
    expect(await refusal(await milan.attest({}, vcek))).toBe("SNP_PRODUCT_UNKNOWN");
  });

  it("an expired or not yet valid VCEK is refused", async () => {
    const expired = await milan.issueEndorsement("vcek", {
      tcb: simulatedTcb,
      notBefore: new Date(now.getTime() - 10 * 86400_000),
      notAfter: new Date(now.getTime() - 1000),
    });
    expect(await refusal(await milan.attest({}, expired))).toBe("SNP_CERTIFICATE_EXPIRED");
    const future = await milan.issueEndorsement("vcek", { tcb: simulatedTcb, notBefore: new Date(now.getTime() + 1000) });
    expect(await refusal(await milan.attest({}, future))).toBe("SNP_CERTIFICATE_NOT_YET_VALID");
  });

  it("the ARK and ASK must be valid at the verification time too", async () => {
    const evidence = await milan.attest();
    expect(await refusal(evidence, [milan.anchor], new Date(now.getTime() - 2 * 86400_000))).toBe("SNP_CERTIFICATE_NOT_YET_VALID");
    expect(await refusal(evidence, [milan.anchor], new Date(now.getTime() + 30 * 365 * 86400_000))).toBe("SNP_CERTIFICATE_EXPIRED");
  });

  it("RSA-2048 roots are not AMD's shape", async () => {
    const small = await createSimulatedAmd({ product: "Milan", now, modulusLength: 2048, asvk: false });
    expect(await refusal(await small.attest(), [small.anchor])).toBe("SNP_CHAIN_INVALID");
  });

  it("the generated certificates have AMD's shape: algorithm bytes, names, serials and extension order", () => {
    const real = AsnConvert.parse(fixture("snp/milan-v2-gsg/vcek.der"), Certificate);
    const realAsk = parseCertificate(amdTrustAnchors()[0]!.ask!, "ASK");
    return milan.issueEndorsement("vcek", { tcb: simulatedTcb }).then((vcek) => {
      const sim = AsnConvert.parse(vcek.certificate, Certificate);
      const der = (v: unknown): string => toHex(new Uint8Array(AsnConvert.serialize(v)));
      expect(der(sim.signatureAlgorithm)).toBe(der(real.signatureAlgorithm));
      expect(der(sim.tbsCertificate.issuer)).toBe(der(real.tbsCertificate.issuer));
      expect(der(sim.tbsCertificate.subject)).toBe(der(real.tbsCertificate.subject));
      expect(toHex(new Uint8Array(sim.tbsCertificate.serialNumber))).toBe("00");
      expect(sim.tbsCertificate.extensions!.map((e) => e.extnID)).toEqual(real.tbsCertificate.extensions!.map((e) => e.extnID));
      expect(sim.tbsCertificate.subjectPublicKeyInfo.algorithm.algorithm).toBe(real.tbsCertificate.subjectPublicKeyInfo.algorithm.algorithm);
      const simAsk = parseCertificate(milan.ask.certificate, "ASK");
      expect(simAsk.asn.tbsCertificate.extensions!.map((e) => [e.extnID, e.critical])).toEqual(
        realAsk.asn.tbsCertificate.extensions!.filter((e) => e.extnID !== "2.5.29.35").map((e) => [e.extnID, e.critical]),
      );
      expect(simAsk.asn.tbsCertificate.subjectPublicKeyInfo.algorithm.algorithm).toBe("1.2.840.113549.1.1.1");
    });
  });
});

describe("properties", () => {
  it("any chosen measurement, host data, report data, VMPL, guest SVN and TCB come back verified as chosen", async () => {
    const vcek = await milan.issueEndorsement("vcek", { tcb: simulatedTcb });
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 48, maxLength: 48 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.record({
          bootloader: fc.integer({ min: 4, max: 255 }),
          tee: fc.integer({ min: 0, max: 255 }),
          snp: fc.integer({ min: 24, max: 255 }),
          microcode: fc.integer({ min: 219, max: 255 }),
        }),
        fc.constantFrom(2, 3, 5),
        async (measurement, hostData, reportData, vmpl, guestSvn, currentTcb, version) => {
          const v = await verifySnpReport(await milan.attest({ measurement, hostData, reportData, vmpl, guestSvn, currentTcb, version }, vcek), {
            trustAnchors: [milan.anchor],
            now,
          });
          expect(v.report.measurement).toEqual(measurement);
          expect(v.report.hostData).toEqual(hostData);
          expect(v.report.reportData).toEqual(reportData);
          expect([v.report.vmpl, v.report.guestSvn, v.report.version]).toEqual([vmpl, guestSvn, version]);
          expect(v.tcb.current).toMatchObject(currentTcb);
        },
      ),
      { numRuns: 25, seed: 0x7ee },
    );
  });
});
