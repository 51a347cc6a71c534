// Offline TCB evaluation of TDX quotes from collateral files (TCB info, QE identity, CRLs), with the test TEE signing the collateral.
import { beforeAll, describe, expect, it } from "vitest";
import { combineTcbStatuses } from "../../src/attestation/tdx/collateral.js";
import type { TdxCollateral } from "../../src/attestation/tdx/collateral.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import type { QeIdentityDocument, SimulatedTdxPlatform, TcbInfoDocument } from "../../src/attestation/tdx/simulated.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { expectCode, vector, vectorTime } from "./tdx-helpers.js";

const now = new Date("2026-01-15T12:00:00Z");
let tee: SimulatedTdxPlatform;
let other: SimulatedTdxPlatform;
let quote: Uint8Array;

beforeAll(async () => {
  [tee, other] = await Promise.all([createSimulatedTdxPlatform({ now }), createSimulatedTdxPlatform({ now })]);
  quote = await tee.quote();
});

function documents(teeTcbSvn?: string): { tcbInfo: TcbInfoDocument; qeIdentity: QeIdentityDocument } {
  return tee.collateralDocuments({ now, ...(teeTcbSvn === undefined ? {} : { teeTcbSvn }) });
}

async function verifyWith(collateral: TdxCollateral, extra: { quote?: Uint8Array; acceptedTcbStatuses?: ("UpToDate" | "OutOfDate" | "SWHardeningNeeded")[]; at?: Date } = {}) {
  return verifyTdxQuote(extra.quote ?? quote, {
    now: extra.at ?? now,
    trustedRoot: tee.rootPem,
    collateral,
    ...(extra.acceptedTcbStatuses === undefined ? {} : { acceptedTcbStatuses: extra.acceptedTcbStatuses }),
  });
}

describe("TDX collateral", () => {
  it("without collateral the TCB is reported as not checked", async () => {
    const v = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem });
    expect(v.tcbStatus).toBe("not-checked");
    expect(v.tcb).toBeUndefined();
  });

  it("matching collateral gives UpToDate, with the evaluation data number; revocation not checked without CRLs", async () => {
    const v = await verifyWith(await tee.signCollateral(documents()));
    expect(v.tcbStatus).toBe("UpToDate");
    expect(v.tcb).toMatchObject({ status: "UpToDate", tcbEvaluationDataNumber: 17, revocation: "not-checked" });
  });

  it("a TDX module with a major version uses its module identity (TEE_TCB_SVN 05 01 02 …)", async () => {
    const svn = "05010200000000000000000000000000";
    const q = await tee.quote({ body: { tee_tcb_svn: svn } });
    const v = await verifyWith(await tee.signCollateral(documents(svn)), { quote: q });
    expect(v.tcbStatus).toBe("UpToDate");
    const noIdentity = documents(svn);
    delete noIdentity.tcbInfo.tdxModuleIdentities;
    await expectCode(verifyWith(await tee.signCollateral(noIdentity), { quote: q }), "TDX_TDX_MODULE_MISMATCH");
    const oldModule = documents(svn);
    oldModule.tcbInfo.tdxModuleIdentities![0]!.tcbLevels = [
      { tcb: { isvsvn: 6 }, tcbDate: "2024-11-13T00:00:00Z", tcbStatus: "UpToDate" },
      { tcb: { isvsvn: 4 }, tcbDate: "2024-03-13T00:00:00Z", tcbStatus: "OutOfDate", advisoryIDs: ["INTEL-SA-01036"] },
    ];
    await expectCode(verifyWith(await tee.signCollateral(oldModule), { quote: q }), "TDX_TCB_STATUS_NOT_ACCEPTED");
    const accepted = await verifyWith(await tee.signCollateral(oldModule), { quote: q, acceptedTcbStatuses: ["UpToDate", "OutOfDate"] });
    expect(accepted.tcb).toMatchObject({ status: "OutOfDate", moduleStatus: "OutOfDate", advisoryIds: ["INTEL-SA-01036"] });
  });

  it("an OutOfDate platform level is refused unless accepted", async () => {
    const docs = documents();
    docs.tcbInfo.tcbLevels[0]!.tcbStatus = "OutOfDate";
    const collateral = await tee.signCollateral(docs);
    await expectCode(verifyWith(collateral), "TDX_TCB_STATUS_NOT_ACCEPTED");
    expect((await verifyWith(collateral, { acceptedTcbStatuses: ["OutOfDate"] })).tcbStatus).toBe("OutOfDate");
  });

  it("picks the first level the platform reaches", async () => {
    const docs = documents();
    const current = docs.tcbInfo.tcbLevels[0]!;
    const newer = structuredClone(current);
    newer.tcb.pcesvn = current.tcb.pcesvn + 1;
    newer.tcbStatus = "UpToDate";
    current.tcbStatus = "SWHardeningNeeded";
    docs.tcbInfo.tcbLevels = [newer, current];
    const v = await verifyWith(await tee.signCollateral(docs), { acceptedTcbStatuses: ["SWHardeningNeeded"] });
    expect(v.tcb?.platformStatus).toBe("SWHardeningNeeded");
  });

  it("no level the platform reaches: TDX_TCB_LEVEL_NOT_FOUND", async () => {
    const docs = documents();
    docs.tcbInfo.tcbLevels[0]!.tcb.sgxtcbcomponents[0]!.svn = 200;
    await expectCode(verifyWith(await tee.signCollateral(docs)), "TDX_TCB_LEVEL_NOT_FOUND");
    const tdx = documents();
    tdx.tcbInfo.tcbLevels[0]!.tcb.tdxtcbcomponents[2]!.svn = 99;
    await expectCode(verifyWith(await tee.signCollateral(tdx)), "TDX_TCB_LEVEL_NOT_FOUND");
  });

  it("TCB info for another FMSPC or PCE-ID: TDX_COLLATERAL_MISMATCH", async () => {
    const docs = documents();
    docs.tcbInfo.fmspc = "00906ed50000";
    await expectCode(verifyWith(await tee.signCollateral(docs)), "TDX_COLLATERAL_MISMATCH");
    const pce = documents();
    pce.tcbInfo.pceId = "0100";
    await expectCode(verifyWith(await tee.signCollateral(pce)), "TDX_COLLATERAL_MISMATCH");
  });

  it("a TDX module signed by someone else: TDX_TDX_MODULE_MISMATCH", async () => {
    const docs = documents();
    docs.tcbInfo.tdxModule.mrsigner = "01".repeat(48);
    await expectCode(verifyWith(await tee.signCollateral(docs)), "TDX_TDX_MODULE_MISMATCH");
  });

  it("a QE that is not the identified one, or an out-of-date QE", async () => {
    const docs = documents();
    docs.qeIdentity.mrsigner = "02".repeat(32);
    await expectCode(verifyWith(await tee.signCollateral(docs)), "TDX_QE_IDENTITY_MISMATCH");
    const prod = documents();
    prod.qeIdentity.isvprodid = 1;
    await expectCode(verifyWith(await tee.signCollateral(prod)), "TDX_QE_IDENTITY_MISMATCH");
    const old = documents();
    old.qeIdentity.tcbLevels = [
      { tcb: { isvsvn: 5 }, tcbDate: "2024-11-13T00:00:00Z", tcbStatus: "UpToDate" },
      { tcb: { isvsvn: 4 }, tcbDate: "2024-03-13T00:00:00Z", tcbStatus: "OutOfDate" },
    ];
    await expectCode(verifyWith(await tee.signCollateral(old)), "TDX_TCB_STATUS_NOT_ACCEPTED");
    const newer = documents();
    newer.qeIdentity.tcbLevels = [{ tcb: { isvsvn: 9 }, tcbDate: "2024-11-13T00:00:00Z", tcbStatus: "UpToDate" }];
    await expectCode(verifyWith(await tee.signCollateral(newer)), "TDX_TCB_LEVEL_NOT_FOUND");
  });

  it("collateral changed after signing, or signed under another root, is refused", async () => {
    const collateral = await tee.signCollateral(documents());
    await expectCode(verifyWith({ ...collateral, tcbInfo: collateral.tcbInfo.replace('"UpToDate"', '"UpToDatE"') }), "TDX_COLLATERAL_SIGNATURE_INVALID");
    await expectCode(verifyWith({ ...collateral, qeIdentity: collateral.qeIdentity.replace('"isvprodid":2', '"isvprodid":3') }), "TDX_COLLATERAL_SIGNATURE_INVALID");
    const foreign = await other.signCollateral(documents());
    await expectCode(verifyWith(foreign), "TDX_ROOT_NOT_PINNED");
    // A foreign TCB signer presented with the pinned root: its signature by that root does not verify.
    const mixedChain = other.tcbSigning.toString("pem") + "\n" + tee.rootPem + "\n";
    await expectCode(verifyWith({ ...foreign, tcbInfoIssuerChain: mixedChain }), "TDX_COLLATERAL_SIGNATURE_INVALID");
    // The PCK CA is not a TCB signer, even though the pinned root issued it.
    await expectCode(
      verifyWith({ ...collateral, tcbInfoIssuerChain: tee.intermediate.toString("pem") + "\n" + tee.rootPem + "\n" }),
      "TDX_COLLATERAL_SIGNATURE_INVALID",
    );
  });

  it("expired or not yet valid collateral: TDX_COLLATERAL_EXPIRED", async () => {
    const collateral = await tee.signCollateral(documents());
    await expectCode(verifyWith(collateral, { at: new Date(now.getTime() + 31 * 86400_000) }), "TDX_COLLATERAL_EXPIRED");
    const future = documents();
    future.qeIdentity.issueDate = new Date(now.getTime() + 3600_000).toISOString();
    await expectCode(verifyWith(await tee.signCollateral(future)), "TDX_COLLATERAL_EXPIRED");
  });

  it("malformed documents: TDX_COLLATERAL_MALFORMED", async () => {
    const collateral = await tee.signCollateral(documents());
    await expectCode(verifyWith({ ...collateral, tcbInfo: "{}" }), "TDX_COLLATERAL_MALFORMED");
    await expectCode(verifyWith({ ...collateral, tcbInfoIssuerChain: "not PEM" }), "TDX_COLLATERAL_MALFORMED");
    const wrongId = documents();
    (wrongId.tcbInfo as { id: string }).id = "SGX";
    await expectCode(verifyWith(await tee.signCollateral(wrongId)), "TDX_COLLATERAL_MALFORMED");
    await expectCode(verifyWith(await tee.signCollateral({ tcbInfo: { ...documents().tcbInfo, tcbLevels: [] }, qeIdentity: documents().qeIdentity })), "TDX_COLLATERAL_MALFORMED");
  });

  it("CRLs: revocation checked; a revoked PCK or PCK CA is refused; a CRL from the wrong issuer is refused", async () => {
    const base = await tee.signCollateral(documents());
    const clean = { ...base, pckCrl: await tee.crl("pck", []), rootCaCrl: await tee.crl("root", []) };
    expect((await verifyWith(clean)).tcb?.revocation).toBe("checked");
    await expectCode(verifyWith({ ...clean, pckCrl: await tee.crl("pck", [tee.pck]) }), "TDX_CERTIFICATE_REVOKED");
    await expectCode(verifyWith({ ...clean, rootCaCrl: await tee.crl("root", [tee.intermediate]) }), "TDX_CERTIFICATE_REVOKED");
    await expectCode(verifyWith({ ...clean, pckCrl: await other.crl("pck", []) }), "TDX_COLLATERAL_SIGNATURE_INVALID");
    const stale = await tee.crl("pck", [], { thisUpdate: new Date(now.getTime() - 40 * 86400_000), nextUpdate: new Date(now.getTime() - 10 * 86400_000) });
    await expectCode(verifyWith({ ...clean, pckCrl: stale }), "TDX_COLLATERAL_EXPIRED");
    await expectCode(verifyWith({ ...clean, pckCrl: "garbage" }), "TDX_COLLATERAL_MALFORMED");
  });

  it("the real quotes with the test TEE's collateral: it is not signed under Intel's root", async () => {
    await expectCode(
      verifyTdxQuote(vector("quote-v5-trustee.dat"), { now: vectorTime, collateral: await tee.signCollateral(documents()) }),
      "TDX_ROOT_NOT_PINNED",
    );
  });
});

describe("combineTcbStatuses", () => {
  it.each([
    [["UpToDate", "UpToDate"], "UpToDate"],
    [["UpToDate", "SWHardeningNeeded"], "SWHardeningNeeded"],
    [["SWHardeningNeeded", "ConfigurationNeeded"], "ConfigurationAndSWHardeningNeeded"],
    [["OutOfDate", "ConfigurationNeeded"], "OutOfDateConfigurationNeeded"],
    [["OutOfDate", "SWHardeningNeeded"], "OutOfDate"],
    [["Revoked", "UpToDate", "OutOfDate"], "Revoked"],
  ] as const)("%j → %s", (statuses, want) => {
    expect(combineTcbStatuses([...statuses])).toBe(want);
  });
});
