// The TDX verifier's cache of verified PCK chains and issuers: it only ever saves work on bytes that passed before, never turns a refusal into a pass.
import { beforeAll, describe, expect, it } from "vitest";
import { decodeCertificates } from "../../src/attestation/tdx/certs.js";
import { parseTdxQuote } from "../../src/attestation/tdx/quote.js";
import type { TdxQuote } from "../../src/attestation/tdx/quote.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import type { SimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { assemble, chainWith, expectCode, vector, vectorTime } from "./tdx-helpers.js";

/** The DER of certificate `index` of a quote's PCK chain with one bit flipped `fromEnd` bytes before its end (in the signature). */
function flippedDer(q: TdxQuote, index: number, fromEnd = 10): Uint8Array {
  const certs = decodeCertificates(new TextDecoder().decode(q.pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
  const der = new Uint8Array(certs[index]!.rawData).slice();
  der[der.length - fromEnd]! ^= 0x04;
  return der;
}

describe("the PCK chain cache (test TEE)", () => {
  const now = new Date();
  let tee: SimulatedTdxPlatform;
  let other: SimulatedTdxPlatform;
  let quote: Uint8Array;
  let q: TdxQuote;

  beforeAll(async () => {
    [tee, other] = await Promise.all([createSimulatedTdxPlatform({ now }), createSimulatedTdxPlatform({ now })]);
    quote = await tee.quote();
    q = parseTdxQuote(quote);
  });

  it("a chain refused once is checked in full again: refused while expired, accepted when valid, refused again when expired", async () => {
    const later = new Date(now.getTime() + 8 * 365 * 86400_000);
    const freshQuote = await tee.quote({ reportData: new Uint8Array(64).fill(7) });
    await expectCode(verifyTdxQuote(freshQuote, { now: later, trustedRoot: tee.rootPem }), "TDX_CERTIFICATE_EXPIRED");
    await expect(verifyTdxQuote(freshQuote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
    // Now cached: validity is still checked at each call's time.
    await expectCode(verifyTdxQuote(freshQuote, { now: later, trustedRoot: tee.rootPem }), "TDX_CERTIFICATE_EXPIRED");
    await expectCode(verifyTdxQuote(freshQuote, { now: new Date(now.getTime() - 2 * 3600_000), trustedRoot: tee.rootPem }), "TDX_CERTIFICATE_EXPIRED");
  });

  it("a damaged chain is refused every time, before and after the good chain is cached", async () => {
    for (const index of [0, 1]) {
      const damaged = assemble(q, { pckCertChain: chainWith(q, index, flippedDer(q, index)) });
      await expectCode(verifyTdxQuote(damaged, { now, trustedRoot: tee.rootPem }), ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]);
      await expectCode(verifyTdxQuote(damaged, { now, trustedRoot: tee.rootPem }), ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]);
      await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
      await expectCode(verifyTdxQuote(damaged, { now, trustedRoot: tee.rootPem }), ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]);
    }
  });

  it("the cache is keyed by exact bytes: with the chain cached, a flipped bit in its intermediate, leaf or root is refused", async () => {
    await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
    // Flips in the DER (re-encoded as valid PEM), in the signature and in the signed part.
    for (const fromEnd of [10, 40, 120]) {
      for (const [index, codes] of [
        [1, ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]],
        [0, ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]],
        [2, ["TDX_ROOT_NOT_PINNED", "TDX_CERTIFICATE_MALFORMED"]],
      ] as const) {
        const damaged = assemble(q, { pckCertChain: chainWith(q, index, flippedDer(q, index, fromEnd)) });
        await expectCode(verifyTdxQuote(damaged, { now, trustedRoot: tee.rootPem }), [...codes]);
      }
    }
    // A flip in the PEM text of the cached intermediate.
    const text = new TextDecoder().decode(q.pckCertChain);
    const at = text.indexOf("-----BEGIN", 1) + 100;
    const chain = q.pckCertChain.slice();
    chain[at]! ^= 0x01;
    await expectCode(verifyTdxQuote(assemble(q, { pckCertChain: chain }), { now, trustedRoot: tee.rootPem }), [
      "TDX_CHAIN_INVALID",
      "TDX_CERTIFICATE_MALFORMED",
    ]);
    await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
  });

  it("the cache is keyed by the pinned root: a chain cached under one root is refused under another", async () => {
    await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: other.rootPem }), "TDX_ROOT_NOT_PINNED");
    await expectCode(verifyTdxQuote(quote, { now, trustedRoot: new Uint8Array(other.root.rawData) }), "TDX_ROOT_NOT_PINNED");
  });

  it("nothing about the quote itself is cached: with the chain cached, a damaged quote signature or QE report signature is refused", async () => {
    await expect(verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem })).resolves.toBeDefined();
    const signature = q.signature.slice();
    signature[5]! ^= 0x10;
    await expectCode(verifyTdxQuote(assemble(q, { signature }), { now, trustedRoot: tee.rootPem }), "TDX_QUOTE_SIGNATURE_INVALID");
    const qeReportSignature = q.qeReportSignature.slice();
    qeReportSignature[5]! ^= 0x10;
    await expectCode(verifyTdxQuote(assemble(q, { qeReportSignature }), { now, trustedRoot: tee.rootPem }), "TDX_QE_REPORT_SIGNATURE_INVALID");
  });

  it("a caller changing the returned PCK extensions does not change the next result", async () => {
    const first = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem });
    const fmspc = first.pck.extensions.fmspc;
    first.pck.extensions.fmspc = "ffffffffffff";
    first.pck.extensions.tcb.components[0] = 255;
    const second = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem });
    expect(second.pck.extensions.fmspc).toBe(fmspc);
    expect(second.pck.extensions).toEqual(tee.pckExtensions);
  });
});

describe("the issuer cache (real quotes: two PCK leaves under the same Intel PCK Platform CA)", () => {
  const v4 = parseTdxQuote(vector("quote-v4-trustee.dat"));
  const v5raw = vector("quote-v5-trustee.dat");
  const v5 = parseTdxQuote(v5raw);

  it("with the platform CA cached by one leaf, another leaf is still checked: a flipped bit in it is refused", async () => {
    const v4Certs = decodeCertificates(new TextDecoder().decode(v4.pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
    const v5Certs = decodeCertificates(new TextDecoder().decode(v5.pckCertChain), "TDX_CERTIFICATE_MALFORMED", "chain");
    expect(new Uint8Array(v5Certs[1]!.rawData)).toEqual(new Uint8Array(v4Certs[1]!.rawData));
    expect(new Uint8Array(v5Certs[0]!.rawData)).not.toEqual(new Uint8Array(v4Certs[0]!.rawData));
    await expect(verifyTdxQuote(vector("quote-v4-trustee.dat"), { now: vectorTime })).resolves.toBeDefined();
    for (const fromEnd of [10, 40, 200]) {
      const damaged = assemble(v5, { pckCertChain: chainWith(v5, 0, flippedDer(v5, 0, fromEnd)) });
      await expectCode(verifyTdxQuote(damaged, { now: vectorTime }), ["TDX_CHAIN_INVALID", "TDX_CERTIFICATE_MALFORMED"]);
    }
    // The v4 leaf under the v5 chain's CA is a valid chain, but its key did not sign the v5 QE report.
    await expectCode(
      verifyTdxQuote(assemble(v5, { pckCertChain: chainWith(v5, 0, new Uint8Array(v4Certs[0]!.rawData)) }), { now: vectorTime }),
      "TDX_QE_REPORT_SIGNATURE_INVALID",
    );
    // A leaf that is not yet valid is refused even though its issuer is cached (v5 PCK from 2024-03-18).
    await expectCode(verifyTdxQuote(v5raw, { now: new Date("2024-01-01T00:00:00Z") }), "TDX_CERTIFICATE_EXPIRED");
    await expect(verifyTdxQuote(v5raw, { now: vectorTime })).resolves.toBeDefined();
  });
});
