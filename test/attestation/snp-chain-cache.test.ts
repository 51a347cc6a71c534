// The SNP verifier's cache of verified VCEK/VLEK chains: it saves work on the very same chain, and never lets a changed chain, another root, a date outside validity or a bad report through.
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { concat } from "../../src/encoding.js";
import { verifySnpChain } from "../../src/attestation/snp/certificates.js";
import type { SnpCertificates, SnpTrustAnchor } from "../../src/attestation/snp/certificates.js";
import { createSimulatedAmd, signSnpReport, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import type { SimulatedAmd } from "../../src/attestation/snp/simulated.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import type { SnpEvidence } from "../../src/attestation/snp/verify.js";

const now = new Date();
const day = 24 * 3600 * 1000;
let a: SimulatedAmd;
let b: SimulatedAmd;

beforeAll(async () => {
  [a, b] = await Promise.all([createSimulatedAmd({ product: "Milan", now }), createSimulatedAmd({ product: "Milan", now })]);
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function refusal(evidence: SnpEvidence, anchors: readonly SnpTrustAnchor[], at: Date = now): Promise<string> {
  try {
    await verifySnpReport(evidence, { trustAnchors: anchors, now: at });
  } catch (err) {
    return (err as { code?: string }).code ?? `not an AttestationError: ${String(err)}`;
  }
  return "accepted";
}

/** Counts the RSA-PSS verifies (chain signatures) the verifier makes while `run` runs. */
async function rsaVerifies(run: () => Promise<unknown>): Promise<number> {
  const subtle = globalThis.crypto.subtle;
  const original = subtle.verify.bind(subtle);
  let count = 0;
  const spy = vi.spyOn(subtle, "verify").mockImplementation((algorithm, key, signature, data) => {
    if ((typeof algorithm === "string" ? algorithm : algorithm.name) === "RSA-PSS") count++;
    return original(algorithm, key, signature, data);
  });
  try {
    await run();
  } finally {
    spy.mockRestore();
  }
  return count;
}

function flipLast(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[out.length - 1]! ^= 1;
  return out;
}

function withCertificates(evidence: SnpEvidence, certificates: SnpCertificates): SnpEvidence {
  return { report: evidence.report, certificates };
}

describe("SNP chain cache", () => {
  it("a chain refused once is verified in full again, and only a success is reused", async () => {
    const vcek = await a.issueEndorsement("vcek", { tcb: simulatedTcb, notBefore: new Date(now.getTime() + day) });
    const evidence = await a.attest({}, vcek);
    // Not yet valid: refused, and refused again after a full check (the leaf signature is verified each time).
    expect(await rsaVerifies(async () => expect(await refusal(evidence, [a.anchor])).toBe("SNP_CERTIFICATE_NOT_YET_VALID"))).toBeGreaterThan(0);
    expect(await rsaVerifies(async () => expect(await refusal(evidence, [a.anchor])).toBe("SNP_CERTIFICATE_NOT_YET_VALID"))).toBeGreaterThan(0);
    // Once valid, the first success is a full check; the next call reuses it.
    const later = new Date(now.getTime() + 2 * day);
    expect(await rsaVerifies(async () => expect(await refusal(evidence, [a.anchor], later)).toBe("accepted"))).toBeGreaterThan(0);
    expect(await rsaVerifies(async () => expect(await refusal(evidence, [a.anchor], later)).toBe("accepted"))).toBe(0);
  });

  it("a flipped bit in a cached VCEK, ASK, evidence ARK or pinned ARK/ASK is refused", async () => {
    const evidence = await a.attest();
    const certs = evidence.certificates!;
    expect(await refusal(evidence, [a.anchor])).toBe("accepted");
    const vcek = certs.vcek as Uint8Array;
    const ask = certs.ask as Uint8Array;
    const ark = certs.ark as Uint8Array;
    expect(await refusal(withCertificates(evidence, { ...certs, vcek: flipLast(vcek) }), [a.anchor])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(withCertificates(evidence, { ...certs, ask: flipLast(ask) }), [a.anchor])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(withCertificates(evidence, { ...certs, ark: flipLast(ark) }), [a.anchor])).toBe("SNP_ARK_NOT_PINNED");
    // Without ARK and ASK in the evidence, the pinned ones are used: cached first, then damaged.
    const bare = withCertificates(evidence, { vcek });
    expect(await refusal(bare, [a.anchor])).toBe("accepted");
    expect(await refusal(bare, [{ ...a.anchor, ark: flipLast(a.anchor.ark) }])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(bare, [{ ...a.anchor, ask: flipLast(a.anchor.ask!) }])).toBe("SNP_CHAIN_INVALID");
    // The damage is refused every time, and the intact chain still passes.
    expect(await refusal(withCertificates(evidence, { ...certs, vcek: flipLast(vcek) }), [a.anchor])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(evidence, [a.anchor])).toBe("accepted");
  });

  it("the validity of the ARK, ASK and VCEK is checked on a cache hit", async () => {
    const vcek = await a.issueEndorsement("vcek", { tcb: simulatedTcb, notAfter: new Date(now.getTime() + 40 * 365 * day) });
    const evidence = await a.attest({}, vcek);
    const short = await a.attest();
    const vcekOf = (e: SnpEvidence) => e.certificates!.vcek as Uint8Array;
    expect(await refusal(evidence, [a.anchor])).toBe("accepted");
    expect(await refusal(short, [a.anchor])).toBe("accepted");
    expect(await rsaVerifies(async () => expect(await refusal(evidence, [a.anchor])).toBe("accepted"))).toBe(0);
    // The ARK and ASK expire 25 years after issue, the long-lived VCEK later: a hit must still refuse.
    const afterCas = new Date(now.getTime() + 30 * 365 * day);
    expect(await refusal(evidence, [a.anchor], afterCas)).toBe("SNP_CERTIFICATE_EXPIRED");
    // The short VCEK expires after 7 years, before its issuers; and none is valid before issue.
    expect(await refusal(short, [a.anchor], new Date(now.getTime() + 8 * 365 * day))).toBe("SNP_CERTIFICATE_EXPIRED");
    expect(await refusal(evidence, [a.anchor], new Date(now.getTime() + 8 * 365 * day))).toBe("accepted");
    expect(await refusal(short, [a.anchor], new Date(now.getTime() - 2 * day))).toBe("SNP_CERTIFICATE_NOT_YET_VALID");
    expect(vcekOf(short)).not.toEqual(vcekOf(evidence));
    expect(await refusal(short, [a.anchor])).toBe("accepted");
  });

  it("a chain cached under one pinned root is not reused under another", async () => {
    const evidence = await a.attest();
    const withAsk = withCertificates(evidence, { vcek: evidence.certificates!.vcek!, ask: evidence.certificates!.ask! });
    const bare = withCertificates(evidence, { vcek: evidence.certificates!.vcek! });
    expect(await refusal(withAsk, [a.anchor])).toBe("accepted");
    expect(await refusal(bare, [a.anchor])).toBe("accepted");
    // Another Milan root (same names, other keys): its ARK signed neither this ASK nor this VCEK's issuer.
    expect(await refusal(withAsk, [b.anchor])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(bare, [b.anchor])).toBe("SNP_CHAIN_INVALID");
    expect(await refusal(bare, [{ ...b.anchor, ask: a.anchor.ask! }])).toBe("SNP_CHAIN_INVALID");
    // The same root pinned under another product's name.
    expect(await refusal(bare, [{ ...a.anchor, product: "Genoa" }])).toBe("SNP_ARK_NOT_PINNED");
    // The evidence's ARK against the other pin.
    expect(await refusal(evidence, [b.anchor])).toBe("SNP_ARK_NOT_PINNED");
    expect(await refusal(bare, [a.anchor])).toBe("accepted");
  });

  it("with the chain cached, a damaged or foreign report signature and a wrong TCB or CHIP_ID are refused", async () => {
    const vcek = await a.issueEndorsement("vcek", { tcb: simulatedTcb });
    const evidence = await a.attest({}, vcek);
    expect(await refusal(evidence, [a.anchor])).toBe("accepted");
    for (const offset of [0x2a0, 0x2a0 + 72, 0x50]) {
      const report = evidence.report.slice();
      report[offset]! ^= 1;
      expect(await refusal({ ...evidence, report }, [a.anchor])).toBe("SNP_SIGNATURE_INVALID");
    }
    // A report signed by another chip's key, presented with the cached VCEK.
    const other = await a.issueEndorsement("vcek", { tcb: simulatedTcb, hwid: vcek.hwid! });
    const foreign = await signSnpReport(evidence.report, other.privateKey);
    expect(await refusal({ ...evidence, report: foreign }, [a.anchor])).toBe("SNP_SIGNATURE_INVALID");
    // Correctly signed by the cached VCEK's key, but with another TCB or chip ID.
    const tcb = await a.attest({ reportedTcb: { ...simulatedTcb, snp: simulatedTcb.snp + 1 } }, vcek);
    expect(await refusal(tcb, [a.anchor])).toBe("SNP_TCB_MISMATCH");
    const chip = await a.attest({ chipId: concat(new Uint8Array(63), new Uint8Array([1])) }, vcek);
    expect(await refusal(chip, [a.anchor])).toBe("SNP_CHIP_ID_MISMATCH");
    expect(await refusal(evidence, [a.anchor])).toBe("accepted");
  });

  it("what a cached chain returns is a copy: changing it changes no later result", async () => {
    const evidence = await a.attest();
    const certs = evidence.certificates!;
    const first = await verifySnpChain(certs, "vcek", [a.anchor], now);
    const want = structuredClone({ extensions: first.extensions, endorsement: first.endorsement, arkSha256: first.arkSha256 });
    first.extensions.hwid![0]! ^= 0xff;
    first.extensions.productName = "Genoa";
    first.extensions.snpSpl = 0;
    first.endorsement.der[0]! ^= 0xff;
    first.endorsement.notAfter.setTime(0);
    first.endorsement.notBefore.setTime(0);
    const second = await verifySnpChain(certs, "vcek", [a.anchor], now);
    expect({ extensions: second.extensions, endorsement: second.endorsement, arkSha256: second.arkSha256 }).toEqual(want);
    // The same through verifySnpReport.
    const v1 = await verifySnpReport(evidence, { trustAnchors: [a.anchor], now });
    const before = structuredClone(v1.endorsement);
    v1.endorsement.extensions.hwid![1]! ^= 0xff;
    v1.endorsement.notAfter.setTime(0);
    const v2 = await verifySnpReport(evidence, { trustAnchors: [a.anchor], now });
    expect(v2.endorsement).toEqual(before);
    // Changing the caller's input bytes after a success does not change what is cached either.
    const vcek = (certs.vcek as Uint8Array).slice();
    const mine: SnpCertificates = { ...certs, vcek };
    await verifySnpChain(mine, "vcek", [a.anchor], now);
    vcek[vcek.length - 1]! ^= 1;
    await expect(verifySnpChain(mine, "vcek", [a.anchor], now)).rejects.toMatchObject({ code: "SNP_CHAIN_INVALID" });
  });
});
