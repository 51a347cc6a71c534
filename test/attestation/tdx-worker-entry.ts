// A Worker that runs the TDX verifier inside workerd for tdx-workerd.test.ts: POST /verify (a quote) and GET /simulated (the test TEE end to end).
import "reflect-metadata";
import { isAttestationError } from "../../src/attestation/errors.js";
import { checkReferenceValues } from "../../src/attestation/tdx/reference-values.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";

async function run(f: () => Promise<unknown>): Promise<Response> {
  try {
    return Response.json({ ok: true, result: await f() });
  } catch (err) {
    return Response.json({ ok: false, code: isAttestationError(err) ? err.code : String(err) });
  }
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const now = new Date(url.searchParams.get("now") ?? Date.now());
    if (url.pathname === "/verify") {
      const quote = new Uint8Array(await request.arrayBuffer());
      return run(async () => (await verifyTdxQuote(quote, { now })).fields);
    }
    if (url.pathname === "/simulated") {
      return run(async () => {
        const tee = await createSimulatedTdxPlatform({ now });
        const quote = await tee.quote({ version: 5, body: { mrtd: "42".repeat(48) } });
        const collateral = await tee.signCollateral(tee.collateralDocuments({ now }));
        const verified = await verifyTdxQuote(quote, { now, trustedRoot: tee.rootPem, collateral });
        const f = verified.fields;
        const match = checkReferenceValues(verified, [{ MrTd: f.mrtd, MrSeam: f.mrseam, Rtmrs: [f.rtmr0, f.rtmr1, f.rtmr2, f.rtmr3], Xfam: f.xfam }]);
        let intel = "accepted";
        try {
          await verifyTdxQuote(quote, { now });
        } catch (err) {
          intel = isAttestationError(err) ? err.code : String(err);
        }
        return { mrtd: f.mrtd, tcbStatus: verified.tcbStatus, match: match.index, intel };
      });
    }
    return new Response("not found", { status: 404 });
  },
};
