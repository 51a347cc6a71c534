// The two real TDX quotes (trustee's v4 and v5 test data): parsed and verified offline against Intel's pinned root, with exactly the fields in expected.json.
import { readFileSync } from "node:fs";
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { toHex } from "../../src/encoding.js";
import { decodeCertificates, fingerprintOf } from "../../src/attestation/tdx/certs.js";
import { intelSgxRootCaPem, intelSgxRootCaSha256 } from "../../src/attestation/tdx/intel-root.js";
import { encodePckExtensions, readPckExtensions, sgxExtensionOid } from "../../src/attestation/tdx/pck.js";
import { parseTdxQuote } from "../../src/attestation/tdx/quote.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { expectedReportData } from "../../src/attestation/report-data.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { expectCode, expected, fixtures, vector, vectorNames, vectorTime } from "./tdx-helpers.js";

/** expected.json keys that are TD report fields (the rest describe the quote and the checks). */
const nonFieldKeys = new Set([
  "version",
  "body_type",
  "body_size",
  "sig_data_len",
  "cert_data_type",
  "quote_sig_ok",
  "pck_cert_type",
  "pck_chain",
  "qe_binding_ok",
  "qe_sig_ok",
  "sha256",
]);

function expectedFields(name: (typeof vectorNames)[number]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(expected(name)).filter(([k]) => !nonFieldKeys.has(k)));
}

/** "CN=a, O=b" (RFC 4514 as @peculiar/x509 prints it) → "O=b,CN=a" (as expected.json lists the chain). */
function reversedDn(dn: string): string {
  return dn.split(", ").reverse().join(",");
}

describe.each(vectorNames)("TDX vector %s", (name) => {
  const quote = vector(name);
  const want = expected(name);

  it("is the file expected.json describes", async () => {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", quote as BufferSource));
    expect(toHex(digest)).toBe(want.sha256);
  });

  it("parses with the layout expected.json records", () => {
    const q = parseTdxQuote(quote);
    expect(q.version).toBe(want.version);
    expect(q.bodyType).toBe(want.body_type);
    const bodySize = Object.values(q.body).reduce((n: number, v) => n + (Array.isArray(v) ? v.reduce((m, r) => m + r.length, 0) : v.length), 0);
    expect(bodySize).toBe(want.body_size);
    expect(quote.length - q.signedBytes.length - 4).toBe(want.sig_data_len);
    expect(q.header.attestationKeyType).toBe(2);
    expect(q.header.teeType).toBe(0x81);
    expect(toHex(q.header.qeVendorId)).toBe("939a7233f79c4ca9940a0db3957f0607");
    expect(q.qeAuthData.length).toBe(32);
  });

  it("verifies at a fixed time with exactly the fields in expected.json, and reports the TCB as not checked", async () => {
    const v = await verifyTdxQuote(quote, { now: vectorTime });
    expect(v.version).toBe(want.version);
    expect(v.bodyType).toBe(want.body_type);
    expect(v.fields).toEqual(expectedFields(name));
    expect(v.pck.chain.map(reversedDn)).toEqual(want.pck_chain);
    expect(v.pck.rootSha256).toBe(intelSgxRootCaSha256);
    expect(v.policyHash).toBe(String(want.mrconfigid).slice(0, 64));
    expect(v.tcbStatus).toBe("not-checked");
    expect(v.tcb).toBeUndefined();
    // The checks expected.json records as passed are the ones verifyTdxQuote requires.
    expect([want.quote_sig_ok, want.qe_sig_ok, want.qe_binding_ok]).toEqual([true, true, true]);
    expect([want.cert_data_type, want.pck_cert_type]).toEqual([6, 5]);
  });

  it("binds REPORT_DATA only when it equals the expected value", async () => {
    const reportData = parseTdxQuote(quote).body.reportData;
    await expect(verifyTdxQuote(quote, { now: vectorTime, expectedReportData: reportData })).resolves.toBeDefined();
    const other = reportData.slice();
    other[63]! ^= 1;
    await expectCode(verifyTdxQuote(quote, { now: vectorTime, expectedReportData: other }), "TDX_REPORT_DATA_MISMATCH");
  });

  it("is refused after its PCK certificate expires", async () => {
    await expectCode(verifyTdxQuote(quote, { now: new Date("2031-06-01T00:00:00Z") }), "TDX_CERTIFICATE_EXPIRED");
  });

  it("is refused when a test TEE's root is pinned instead of Intel's", async () => {
    const tee = await createSimulatedTdxPlatform({ now: vectorTime });
    await expectCode(verifyTdxQuote(quote, { now: vectorTime, trustedRoot: tee.rootPem }), "TDX_ROOT_NOT_PINNED");
  });

  it("carries a PCK whose SGX extension the test TEE's encoder reproduces byte for byte", async () => {
    const leaf = decodeCertificates(new TextDecoder().decode(parseTdxQuote(quote).pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain")[0]!;
    const fields = readPckExtensions(leaf);
    expect(fields.tcb.components).toHaveLength(16);
    expect(toHex(new Uint8Array(encodePckExtensions(fields)))).toBe(toHex(new Uint8Array(leaf.getExtension(sgxExtensionOid)!.value)));
  });
});

describe("TDX vector validity windows", () => {
  it("an invalid time is an error, never a pass of the validity check", async () => {
    await expect(verifyTdxQuote(vector("quote-v4-trustee.dat"), { now: new Date(Number.NaN) })).rejects.toThrow(TypeError);
  });

  it("the v5 quote is refused before its PCK certificate's notBefore (2024-03-18)", async () => {
    await expectCode(verifyTdxQuote(vector("quote-v5-trustee.dat"), { now: new Date("2024-03-01T00:00:00Z") }), "TDX_CERTIFICATE_EXPIRED");
    await expect(verifyTdxQuote(vector("quote-v4-trustee.dat"), { now: new Date("2024-03-01T00:00:00Z") })).resolves.toBeDefined();
  });
});

describe("the pinned Intel SGX Root CA", () => {
  it("is the certificate both quotes carry and the fixture holds, with the documented fingerprint", async () => {
    const embedded = new x509.X509Certificate(intelSgxRootCaPem);
    const fixture = new x509.X509Certificate(readFileSync(fixtures + "intel-sgx-root-ca.pem", "utf8"));
    expect(await fingerprintOf(embedded)).toBe(intelSgxRootCaSha256);
    expect(await fingerprintOf(fixture)).toBe(intelSgxRootCaSha256);
    expect(intelSgxRootCaSha256).toBe("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3");
    for (const name of vectorNames) {
      const chain = decodeCertificates(new TextDecoder().decode(parseTdxQuote(vector(name)).pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
      expect(await fingerprintOf(chain[2]!)).toBe(intelSgxRootCaSha256);
    }
  });
});

describe("expectedReportData", () => {
  it("is SHA-512(SPKI DER ‖ nonce), as Contrast binds keys", async () => {
    const spki = new Uint8Array([0x30, 0x59, 1, 2, 3]);
    const nonce = new Uint8Array(32).fill(7);
    const want = new Uint8Array(await crypto.subtle.digest("SHA-512", new Uint8Array([...spki, ...nonce])));
    expect(toHex(await expectedReportData(spki, nonce))).toBe(toHex(want));
    expect((await expectedReportData(spki, nonce)).length).toBe(64);
  });
});
