// Single-bit flips in the real TDX quotes, in their signatures and in their certificates: each is refused with the code of the part it damaged.
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { utf8 } from "../../src/encoding.js";
import type { AttestationErrorCode } from "../../src/attestation/errors.js";
import { decodeCertificates } from "../../src/attestation/tdx/certs.js";
import { parseTdxQuote } from "../../src/attestation/tdx/quote.js";
import type { TdxQuote } from "../../src/attestation/tdx/quote.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { assemble, chainWith, expectCode, vector, vectorNames, vectorTime } from "./tdx-helpers.js";

interface Region {
  name: string;
  start: number;
  end: number;
  codes: AttestationErrorCode[];
  /** Flip one byte in `stride` (every byte if 1). */
  stride: number;
}

/** The quote's regions with the codes a flipped bit in each may produce. */
function regions(raw: Uint8Array, q: TdxQuote): Region[] {
  const out: Region[] = [];
  let at = 0;
  const add = (name: string, length: number, codes: AttestationErrorCode[], stride = 1): void => {
    out.push({ name, start: at, end: at + length, codes, stride });
    at += length;
  };
  add("version", 2, ["TDX_QUOTE_VERSION_UNSUPPORTED", "TDX_QUOTE_MALFORMED", "TDX_BODY_TYPE_UNSUPPORTED"]);
  add("attestation key type", 2, ["TDX_ATTESTATION_KEY_TYPE_UNSUPPORTED"]);
  add("TEE type", 4, ["TDX_TEE_TYPE_UNSUPPORTED"]);
  add("QE/PCE SVN, QE vendor ID, user data", 40, ["TDX_QUOTE_SIGNATURE_INVALID"]);
  if (q.version === 5) {
    add("body type", 2, ["TDX_BODY_TYPE_UNSUPPORTED", "TDX_QUOTE_MALFORMED"]);
    add("body size", 4, ["TDX_QUOTE_MALFORMED"]);
  }
  add("TD quote body", q.signedBytes.length - at, ["TDX_QUOTE_SIGNATURE_INVALID"], 7);
  add("signed data size", 4, ["TDX_QUOTE_MALFORMED"]);
  add("quote signature", 64, ["TDX_QUOTE_SIGNATURE_INVALID"]);
  add("attestation key", 64, ["TDX_QE_REPORT_DATA_MISMATCH"]);
  add("certification data type", 2, ["TDX_CERTIFICATION_DATA_UNSUPPORTED"]);
  add("certification data size", 4, ["TDX_QUOTE_MALFORMED"]);
  add("QE report", 384, ["TDX_QE_REPORT_SIGNATURE_INVALID"], 7);
  add("QE report signature", 64, ["TDX_QE_REPORT_SIGNATURE_INVALID"]);
  add("QE auth data size", 2, ["TDX_QUOTE_MALFORMED"]);
  add("QE auth data", q.qeAuthData.length, ["TDX_QE_REPORT_DATA_MISMATCH"]);
  add("PCK chain type", 2, ["TDX_CERTIFICATION_DATA_UNSUPPORTED"]);
  add("PCK chain size", 4, ["TDX_QUOTE_MALFORMED"]);
  const text = new TextDecoder().decode(q.pckCertChain);
  const second = text.indexOf("-----BEGIN", 1);
  const third = text.indexOf("-----BEGIN", second + 1);
  add("PCK leaf (PEM)", second, ["TDX_CERTIFICATE_MALFORMED", "TDX_CHAIN_INVALID"], 19);
  add("PCK CA (PEM)", third - second, ["TDX_CERTIFICATE_MALFORMED", "TDX_CHAIN_INVALID"], 19);
  add("root CA (PEM)", text.length - 1 - third, ["TDX_CERTIFICATE_MALFORMED", "TDX_ROOT_NOT_PINNED"], 19);
  add("terminating NUL", 1, ["TDX_CERTIFICATE_MALFORMED"]);
  expect(at).toBe(raw.length);
  return out;
}

describe.each(vectorNames)("single-bit flips in %s", (name) => {
  const raw = vector(name);
  const q = parseTdxQuote(raw);

  it("re-assembling the parsed quote gives the same bytes (the surgery below is exact)", () => {
    expect(assemble(q)).toEqual(raw);
  });

  it.each(regions(raw, q).map((r) => [r.name, r] as const))("a flipped bit in the %s is refused with its code", async (_, region) => {
    let flips = 0;
    for (let i = region.start; i < region.end; i += region.stride) {
      const damaged = raw.slice();
      damaged[i]! ^= 1 << ((i * 5) % 8);
      await expectCode(verifyTdxQuote(damaged, { now: vectorTime }), region.codes);
      flips++;
    }
    expect(flips).toBeGreaterThan(0);
  });
});

describe("single-bit flips in the DER of the PCK chain (re-encoded as valid PEM, sizes fixed)", () => {
  const q = parseTdxQuote(vector("quote-v4-trustee.dat"));
  const certs = decodeCertificates(new TextDecoder().decode(q.pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
  const cases: [string, number, AttestationErrorCode[]][] = [
    ["PCK leaf", 0, ["TDX_CERTIFICATE_MALFORMED", "TDX_CHAIN_INVALID"]],
    ["PCK platform CA", 1, ["TDX_CERTIFICATE_MALFORMED", "TDX_CHAIN_INVALID"]],
    ["root CA", 2, ["TDX_CERTIFICATE_MALFORMED", "TDX_ROOT_NOT_PINNED"]],
  ];

  it.each(cases)("in the %s: headers, signature algorithm and every byte of the signature, and a sample of the signed part", async (_, index, codes) => {
    const der = new Uint8Array(certs[index]!.rawData);
    expect(chainWith(q, index, der)).toEqual(q.pckCertChain);
    const flips: [number, number][] = [];
    for (let i = 0; i < 8; i++) flips.push([i, i % 8]); // outer and tbsCertificate headers
    for (let i = 8; i < der.length - 90; i += 37) flips.push([i, i % 8]); // a sample of the tbsCertificate
    for (let i = der.length - 90; i < der.length; i++) flips.push([i, i % 8]); // end of tbs, signatureAlgorithm, signatureValue
    for (let i = der.length - 73; i < der.length - 66; i++) flips.push([i, (i + 4) % 8]); // BIT STRING and SEQUENCE headers
    for (const [i, bit] of flips) {
      {
        const damaged = der.slice();
        damaged[i]! ^= 1 << bit;
        await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: chainWith(q, index, damaged) }), { now: vectorTime }), codes);
      }
    }
  });

  it("a signature @peculiar/x509 would accept after a flip (ECDSA-Sig-Value tag 0x30 → 0xb0) is refused", async () => {
    const der = new Uint8Array(certs[0]!.rawData);
    // The signature BIT STRING is the last element: 03 47 00 30 44 … ; flip the SEQUENCE tag inside it.
    const tagAt = der.length - 70;
    expect([der[tagAt - 3], der[tagAt - 1], der[tagAt]]).toEqual([0x03, 0x00, 0x30]);
    const damaged = der.slice();
    damaged[tagAt]! ^= 0x80;
    const lenient = new x509.X509Certificate(damaged);
    expect(await lenient.verify({ publicKey: certs[1]!.publicKey, signatureOnly: true })).toBe(true);
    await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: chainWith(q, 0, damaged) }), { now: vectorTime }), "TDX_CHAIN_INVALID");
  });

  it("a flipped unused-bits count of the signature BIT STRING is refused", async () => {
    const der = new Uint8Array(certs[0]!.rawData);
    const unusedAt = der.length - 71;
    expect([der[unusedAt - 2], der[unusedAt]]).toEqual([0x03, 0x00]);
    for (const bit of [0, 1, 2]) {
      const damaged = der.slice();
      damaged[unusedAt]! ^= 1 << bit;
      await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: chainWith(q, 0, damaged) }), { now: vectorTime }), "TDX_CERTIFICATE_MALFORMED");
    }
  });
});

describe("PEM framing of the PCK chain", () => {
  const q = parseTdxQuote(vector("quote-v4-trustee.dat"));
  const text = new TextDecoder().decode(q.pckCertChain);

  it.each([
    ["CRLF line ends", text.replace(/\n/g, "\r\n")],
    ["no terminating newline", text.replace(/\n\0$/, "\0")],
    ["two NULs", text + "\0"],
    ["a blank line between certificates", text.replace("-----END CERTIFICATE-----\n", "-----END CERTIFICATE-----\n\n")],
    ["only two certificates", text.slice(0, text.lastIndexOf("-----BEGIN")) + "\0"],
    ["a fourth certificate", text.slice(0, -1) + text.slice(text.lastIndexOf("-----BEGIN"))],
  ])("refuses %s", async (_, chain) => {
    await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: utf8(chain) }), { now: vectorTime }), "TDX_CERTIFICATE_MALFORMED");
  });

  it("accepts the chain without the terminating NUL", async () => {
    await expect(verifyTdxQuote(assemble(q, { pckCertChain: utf8(text.slice(0, -1)) }), { now: vectorTime })).resolves.toBeDefined();
  });
});

describe("structure", () => {
  const raw = vector("quote-v4-trustee.dat");

  it.each([
    ["empty", new Uint8Array(0)],
    ["truncated header", raw.slice(0, 20)],
    ["truncated body", raw.slice(0, 300)],
    ["truncated signed data", raw.slice(0, raw.length - 1)],
    ["a trailing byte", new Uint8Array([...raw, 0])],
  ])("refuses a quote with %s as TDX_QUOTE_MALFORMED", async (_, bytes) => {
    await expectCode(verifyTdxQuote(bytes, { now: vectorTime }), "TDX_QUOTE_MALFORMED");
  });
});
