// Shared helpers of the TDX verifier tests: the vectors, a fixed verification time, and a quote re-assembler for surgery on parsed quotes.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import * as x509 from "@peculiar/x509";
import { concat, utf8 } from "../../src/encoding.js";
import { isAttestationError } from "../../src/attestation/errors.js";
import type { AttestationErrorCode } from "../../src/attestation/errors.js";
import type { TdxQuote } from "../../src/attestation/tdx/quote.js";
import { u16, u32 } from "../../src/attestation/tdx/simulated.js";

/** The folder of the TDX vectors. */
export const fixtures = fileURLToPath(new URL("../fixtures/attestation/tdx/", import.meta.url));

/** The two real quotes, by their expected.json names. */
export const vectorNames = ["quote-v4-trustee.dat", "quote-v5-trustee.dat"] as const;

/** A real quote's bytes. */
export function vector(name: (typeof vectorNames)[number]): Uint8Array {
  return new Uint8Array(readFileSync(fixtures + name));
}

/** expected.json's entry of a quote (the `tdx` section of the shared vectors' expected.json). */
export function expected(name: (typeof vectorNames)[number]): Record<string, unknown> {
  const all = JSON.parse(readFileSync(fixtures + "expected.json", "utf8")) as Record<string, Record<string, unknown>>;
  const entry = all[`tdx/${name}`];
  if (entry === undefined) throw new Error(`no expected.json entry for ${name}`);
  return entry;
}

/**
 * The fixed time the real quotes are verified at. Their PCK chains are valid: v4 PCK 2023-02-07..2030-02-07,
 * v5 PCK 2024-03-18..2031-03-18, PCK Platform CA 2018-05-21..2033-05-21, root 2018-05-21..2049-12-31.
 */
export const vectorTime = new Date("2025-01-01T00:00:00Z");

/** Re-assembles a quote from its parsed parts (with replacements), recomputing every size field. */
export function assemble(q: TdxQuote, replace: Partial<Pick<TdxQuote, "signature" | "attestationKey" | "qeReportSignature" | "qeAuthData" | "pckCertChain" | "signedBytes">> & { qeReport?: Uint8Array } = {}): Uint8Array {
  const chain = replace.pckCertChain ?? q.pckCertChain;
  const auth = replace.qeAuthData ?? q.qeAuthData;
  const certification = concat(
    replace.qeReport ?? q.qeReport.raw,
    replace.qeReportSignature ?? q.qeReportSignature,
    u16(auth.length),
    auth,
    u16(5),
    u32(chain.length),
    chain,
  );
  const signedData = concat(
    replace.signature ?? q.signature,
    replace.attestationKey ?? q.attestationKey,
    u16(6),
    u32(certification.length),
    certification,
  );
  return concat(replace.signedBytes ?? q.signedBytes, u32(signedData.length), signedData);
}

/** Expects `promise` to reject with an AttestationError whose code is `code` (or one of `code`). */
export async function expectCode(promise: Promise<unknown> | (() => unknown), code: AttestationErrorCode | AttestationErrorCode[]): Promise<void> {
  let error: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    error = err;
  }
  expect(error, "expected a refusal").toBeDefined();
  expect(isAttestationError(error), `expected an AttestationError, got ${String(error)}`).toBe(true);
  const codes = Array.isArray(code) ? code : [code];
  expect(codes).toContain((error as { code: string }).code);
}

/** The PEM chain of a quote with certificate `index` replaced by `der`. */
export function chainWith(q: TdxQuote, index: number, der: Uint8Array): Uint8Array {
  const pems = new TextDecoder()
    .decode(q.pckCertChain)
    .slice(0, -1)
    .split(/(?<=-----END CERTIFICATE-----\n)/);
  pems[index] = x509.PemConverter.encode(der.slice().buffer, "CERTIFICATE") + "\n";
  return utf8(pems.join("") + "\0");
}
