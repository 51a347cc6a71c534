// The TDX test TEE: its quotes verify with its pinned root and with no other; forged parts of them are refused with their codes.
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { utf8 } from "../../src/encoding.js";
import { decodeCertificates } from "../../src/attestation/tdx/certs.js";
import { readPckExtensions, sgxExtensionOid } from "../../src/attestation/tdx/pck.js";
import { parseTdxQuote } from "../../src/attestation/tdx/quote.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import type { SimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { expectedReportData } from "../../src/attestation/report-data.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { assemble, expectCode, vector } from "./tdx-helpers.js";

const now = new Date("2026-01-15T12:00:00Z");
let tee: SimulatedTdxPlatform;
let other: SimulatedTdxPlatform;

beforeAll(async () => {
  [tee, other] = await Promise.all([createSimulatedTdxPlatform({ now }), createSimulatedTdxPlatform({ now })]);
});

const chosen = {
  mrtd: "11".repeat(48),
  mrseam: "22".repeat(48),
  rtmr0: "30".repeat(48),
  rtmr1: "31".repeat(48),
  rtmr2: "32".repeat(48),
  rtmr3: "33".repeat(48),
  xfam: "e702060000000000",
  mrconfigid: "ab".repeat(32) + "00".repeat(16),
};

describe("the TDX test TEE", () => {
  it.each([
    ["v4 (TD 1.0)", 4, 2],
    ["v5 with a TD 1.0 body", 5, 2],
    ["v5 with a TD 1.5 body", 5, 3],
  ] as const)("makes %s quotes that verify with its pinned root, with the chosen fields", async (_, version, bodyType) => {
    const quote = await tee.quote({ version, bodyType, body: chosen });
    const v = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem });
    expect(v.version).toBe(version);
    expect(v.bodyType).toBe(bodyType);
    expect(v.fields).toMatchObject(chosen);
    expect(v.fields.tee_tcb_svn2 !== undefined).toBe(bodyType === 3);
    expect(v.policyHash).toBe("ab".repeat(32));
    expect(v.pck.extensions).toEqual(tee.pckExtensions);
    expect(v.tcbStatus).toBe("not-checked");
  });

  it("its quotes are refused with Intel's root (the default) and with another test TEE's root", async () => {
    const quote = await tee.quote();
    await expectCode(verifyTdxQuote(quote, { now }), "TDX_ROOT_NOT_PINNED");
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: other.rootPem }), "TDX_ROOT_NOT_PINNED");
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: new Uint8Array(other.root.rawData) }), "TDX_ROOT_NOT_PINNED");
  });

  it("pinned as DER works the same as PEM", async () => {
    await expect(verifyTdxQuote(await tee.quote(), { now, trustedRoot: new Uint8Array(tee.root.rawData) })).resolves.toBeDefined();
  });

  it("has a chain of Intel's shape: names, CA flags, key usages, and the SGX extension as Intel encodes it", async () => {
    const chain = decodeCertificates(new TextDecoder().decode(parseTdxQuote(await tee.quote()).pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
    const intel = decodeCertificates(
      new TextDecoder().decode(parseTdxQuote(vector("quote-v4-trustee.dat")).pckCertChain),
      "TDX_CERTIFICATE_MALFORMED",
      "chain",
    );
    expect(chain.map((c) => c.subject)).toEqual(intel.map((c) => c.subject));
    for (let i = 0; i < 3; i++) {
      const ours = chain[i]!;
      const theirs = intel[i]!;
      expect(ours.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(theirs.getExtension(x509.BasicConstraintsExtension)?.ca);
      expect(ours.getExtension(x509.BasicConstraintsExtension)?.pathLength).toBe(theirs.getExtension(x509.BasicConstraintsExtension)?.pathLength);
      expect(ours.getExtension(x509.KeyUsagesExtension)?.usages).toBe(theirs.getExtension(x509.KeyUsagesExtension)?.usages);
      expect(ours.publicKey.algorithm).toEqual(theirs.publicKey.algorithm);
    }
    const oursExt = readPckExtensions(chain[0]!);
    const intelExt = readPckExtensions(intel[0]!);
    expect(Object.keys(oursExt).sort()).toEqual(Object.keys(intelExt).sort());
    expect(chain[0]!.getExtension(sgxExtensionOid)?.critical).toBe(false);
  });

  it("a PCK from a processor CA (no PIID, no configuration) verifies", async () => {
    const processor = await createSimulatedTdxPlatform({ now, processorCa: true });
    const v = await verifyTdxQuote(await processor.quote(), { now, trustedRoot: processor.rootPem });
    expect(v.pck.chain[1]).toContain("Intel SGX PCK Processor CA");
    expect(v.pck.extensions.platformInstanceId).toBeUndefined();
  });

  it("binds a key and a nonce through REPORT_DATA = SHA-512(SPKI ‖ nonce)", async () => {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign"])) as CryptoKeyPair;
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const quote = await tee.quote({ reportData: await expectedReportData(spki, nonce) });
    await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem, expectedReportData: await expectedReportData(spki, nonce) })).resolves.toBeDefined();
    const otherNonce = crypto.getRandomValues(new Uint8Array(32));
    await expectCode(
      verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem, expectedReportData: await expectedReportData(spki, otherNonce) }),
      "TDX_REPORT_DATA_MISMATCH",
    );
  });

  it("certificates are checked at the injected time", async () => {
    const quote = await tee.quote();
    await expectCode(verifyTdxQuote(quote, { now: new Date(now.getTime() - 2 * 3600_000), trustedRoot: tee.rootPem }), "TDX_CERTIFICATE_EXPIRED");
    await expectCode(verifyTdxQuote(quote, { now: new Date(now.getTime() + 8 * 365 * 86400_000), trustedRoot: tee.rootPem }), "TDX_CERTIFICATE_EXPIRED");
  });
});

describe("forgeries against the test TEE's pinned root", () => {
  it("a QE report that does not bind the attestation key", async () => {
    const quote = await tee.quote({ qeReport: { reportData: new Uint8Array(64) } });
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem }), "TDX_QE_REPORT_DATA_MISMATCH");
  });

  it("an attacker's own attestation key signing a body of their choice", async () => {
    const q = parseTdxQuote(await tee.quote());
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"])) as CryptoKeyPair;
    const attackerKey = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey)).slice(1);
    const body = q.signedBytes.slice();
    body.fill(0x66, 48 + 136, 48 + 184); // MRTD
    const signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, body));
    const forged = assemble(q, { signedBytes: body, signature, attestationKey: attackerKey });
    await expectCode(verifyTdxQuote(forged, { now, trustedRoot: tee.rootPem }), "TDX_QE_REPORT_DATA_MISMATCH");
  });

  it("a changed body under the genuine attestation key", async () => {
    const q = parseTdxQuote(await tee.quote());
    const body = q.signedBytes.slice();
    body[48 + 136]! ^= 1; // MRTD
    await expectCode(verifyTdxQuote(assemble(q, { signedBytes: body }), { now, trustedRoot: tee.rootPem }), "TDX_QUOTE_SIGNATURE_INVALID");
  });

  it("another platform's QE report and PCK chain grafted onto the quote", async () => {
    const mine = parseTdxQuote(await tee.quote());
    const theirs = parseTdxQuote(await other.quote());
    const grafted = assemble(mine, { qeReport: theirs.qeReport.raw, qeReportSignature: theirs.qeReportSignature, pckCertChain: theirs.pckCertChain });
    await expectCode(verifyTdxQuote(grafted, { now, trustedRoot: other.rootPem }), "TDX_QE_REPORT_DATA_MISMATCH");
  });

  it("a PCK CA of the same name issued by another root", async () => {
    const q = parseTdxQuote(await tee.quote());
    const text = new TextDecoder().decode(q.pckCertChain);
    const foreignCa = other.intermediate.toString("pem") + "\n";
    const parts = text.slice(0, -1).split(/(?<=-----END CERTIFICATE-----\n)/);
    parts[1] = foreignCa;
    const chain = utf8(parts.join("") + "\0");
    await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: chain }), { now, trustedRoot: tee.rootPem }), "TDX_CHAIN_INVALID");
  });

  it("a PCK leaf signed by the TCB signing key (a leaf, not a CA) in place of the PCK CA", async () => {
    const q = parseTdxQuote(await tee.quote());
    const parts = new TextDecoder().decode(q.pckCertChain).slice(0, -1).split(/(?<=-----END CERTIFICATE-----\n)/);
    parts[1] = tee.tcbSigning.toString("pem") + "\n";
    await expectCode(
      verifyTdxQuote(assemble(q, { pckCertChain: utf8(parts.join("") + "\0") }), { now, trustedRoot: tee.rootPem }),
      "TDX_CHAIN_INVALID",
    );
  });

  it("a QE vendor ID that is not Intel's", async () => {
    const quote = await tee.quote({ qeVendorId: "00".repeat(16) });
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem }), "TDX_QE_VENDOR_ID_MISMATCH");
  });

  it("a PCK certificate without the SGX extension, or with one not as Intel encodes it", async () => {
    const missing = await createSimulatedTdxPlatform({ now, omitSgxExtension: true });
    await expectCode(verifyTdxQuote(await missing.quote(), { now, trustedRoot: missing.rootPem }), "TDX_PCK_EXTENSIONS_MALFORMED");
    const shortFmspc = await createSimulatedTdxPlatform({ now, pck: { fmspc: "00" } });
    await expectCode(verifyTdxQuote(await shortFmspc.quote(), { now, trustedRoot: shortFmspc.rootPem }), "TDX_PCK_EXTENSIONS_MALFORMED");
  });

  it("signatures that are not P-256 points or are out of range", async () => {
    const q = parseTdxQuote(await tee.quote());
    const notAPoint = new Uint8Array(64).fill(0xff);
    await expectCode(
      verifyTdxQuote(assemble(q, { attestationKey: notAPoint }), { now, trustedRoot: tee.rootPem }),
      "TDX_QE_REPORT_DATA_MISMATCH",
    );
    const zeroSignature = new Uint8Array(64);
    await expectCode(verifyTdxQuote(assemble(q, { signature: zeroSignature }), { now, trustedRoot: tee.rootPem }), "TDX_QUOTE_SIGNATURE_INVALID");
    await expectCode(
      verifyTdxQuote(assemble(q, { qeReportSignature: zeroSignature }), { now, trustedRoot: tee.rootPem }),
      "TDX_QE_REPORT_SIGNATURE_INVALID",
    );
  });
});
