// The attested claims of real evidence become certificate extensions under Contrast's OIDs, readable by any X.509 parser.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { snpClaims } from "../../src/attestation/snp/validator.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import { amdTrustAnchors } from "../../src/attestation/snp/amd-roots.js";
import { tdxClaims } from "../../src/attestation/tdx/validator.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { workloadSecretIdClaim } from "../../src/attestation/claims.js";
import { createMeshCA, createRootCertificate, issueLeafDer, subjectKeyId } from "../../src/crypto/ca.js";
import { toHex } from "../../src/encoding.js";
import { validTime, vectorEvidence } from "./snp-fixtures.js";
import { vector, vectorTime } from "./tdx-helpers.js";

/** The DER of each extension's value in a certificate, by OID. */
function extensionValues(der: Uint8Array): Map<string, string> {
  const cert = new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
  return new Map(cert.extensions.map((e) => [e.type, toHex(new Uint8Array(e.value))]));
}

async function leafWith(extensions: { oid: string; value: Uint8Array }[]): Promise<Uint8Array> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = new Date();
  const rootCert = await createRootCertificate(keys, now);
  const root = { privateKey: keys.privateKey, certificate: rootCert, keyId: await subjectKeyId(keys.publicKey) };
  const mesh = await createMeshCA(root, now);
  const meshKey = { privateKey: mesh.keys.privateKey, certificate: mesh.intermediate, keyId: await subjectKeyId(mesh.keys.publicKey) };
  const leafKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return issueLeafDer(meshKey, { publicKey: leafKeys.publicKey, sans: [{ type: "dns", value: "web" }], commonName: "web", extensions }, now);
}

describe("attested claims as certificate extensions", () => {
  it("SEV-SNP: the measurement, HOST_DATA, REPORT_DATA, CHIP_ID, VMPL, debug and TCB under 1.3.9901.2.1", async () => {
    const verified = await verifySnpReport(vectorEvidence("milan-v3-ms"), { trustAnchors: amdTrustAnchors(), now: validTime("milan-v3-ms") });
    const values = extensionValues(await leafWith([...snpClaims(verified), workloadSecretIdClaim("web")]));
    const octets = (bytes: Uint8Array) => "04" + bytes.length.toString(16).padStart(2, "0") + toHex(bytes);
    expect(values.get("1.3.9901.2.1.22")).toBe("0430" + toHex(verified.report.measurement));
    expect(values.get("1.3.9901.2.1.23")).toBe(octets(verified.report.hostData));
    expect(values.get("1.3.9901.2.1.21")).toBe("0440" + toHex(verified.report.reportData));
    expect(values.get("1.3.9901.2.1.32")).toBe("0440" + toHex(verified.report.chipId));
    expect(values.get("1.3.9901.2.1.11")).toBe("020100"); // VMPL 0
    expect(values.get("1.3.9901.2.1.5")).toBe("010100"); // debug off
    expect(values.get("1.3.9901.2.1.31")).toBe("020200db"); // reported microcode SPL 219
    expect(values.get("1.3.9901.3.1")).toBe("0403" + toHex(new TextEncoder().encode("web")));
  });

  it("TDX: MRTD, RTMRs, MRCONFIGID, REPORT_DATA and TD attributes under 1.3.9901.2.2", async () => {
    const verified = await verifyTdxQuote(vector("quote-v4-trustee.dat"), { now: vectorTime });
    const values = extensionValues(await leafWith(tdxClaims(verified)));
    expect(values.get("1.3.9901.2.2.14")).toBe("0430" + verified.fields.mrtd);
    expect(values.get("1.3.9901.2.2.18")).toBe("0430" + verified.fields.rtmr0);
    expect(values.get("1.3.9901.2.2.15")).toBe("0430" + verified.fields.mrconfigid);
    expect(values.get("1.3.9901.2.2.22")).toBe("0440" + verified.fields.report_data);
    expect(values.get("1.3.9901.2.2.12")).toBe("0408" + verified.fields.td_attributes);
    expect(values.get("1.3.9901.2.2.1")).toBe("020104");
  });
});
