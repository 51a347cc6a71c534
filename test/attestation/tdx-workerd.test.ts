// The TDX verifier and the test TEE run unchanged in workerd: the real quotes verify there with the same fields as on Node.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyTdxQuote } from "../../src/attestation/tdx/verify.js";
import { vector, vectorNames, vectorTime } from "./tdx-helpers.js";

let dir: string;
let mf: Miniflare;

async function call(path: string, init?: RequestInit): Promise<{ ok: boolean; result?: unknown; code?: string }> {
  const worker = (await mf.getWorker()) as unknown as { fetch(url: string, init?: RequestInit): Promise<Response> };
  return (await (await worker.fetch(`http://tdx.test${path}`, init)).json()) as { ok: boolean; result?: unknown; code?: string };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tdx-workerd-"));
  const outfile = join(dir, "tdx-worker.mjs");
  // The options build.mjs uses for the Coordinator's Worker bundle.
  await build({
    entryPoints: [fileURLToPath(new URL("./tdx-worker-entry.ts", import.meta.url))],
    outfile,
    bundle: true,
    platform: "neutral",
    format: "esm",
    target: "es2022",
    conditions: ["workerd", "worker", "browser", "import", "default"],
    mainFields: ["module", "main"],
    logLevel: "warning",
  });
  mf = new Miniflare({ modules: true, scriptPath: outfile, modulesRoot: dir, compatibilityDate: "2026-04-26" });
  await mf.ready;
});

afterAll(async () => {
  await mf?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("the TDX verifier in workerd", () => {
  it.each(vectorNames)("verifies %s with the same fields as on Node", async (name) => {
    const quote = vector(name);
    const there = await call(`/verify?now=${vectorTime.toISOString()}`, { method: "POST", body: quote as BodyInit });
    const here = await verifyTdxQuote(quote, { now: vectorTime });
    expect(there).toEqual({ ok: true, result: JSON.parse(JSON.stringify(here.fields)) });
  });

  it("refuses a flipped quote with the same code as on Node", async () => {
    const quote = vector("quote-v4-trustee.dat");
    quote[48 + 136]! ^= 1;
    expect(await call(`/verify?now=${vectorTime.toISOString()}`, { method: "POST", body: quote as BodyInit })).toEqual({
      ok: false,
      code: "TDX_QUOTE_SIGNATURE_INVALID",
    });
  });

  it("runs the test TEE: quote, collateral, verification, reference values, and refusal under Intel's root", async () => {
    expect(await call(`/simulated?now=2026-01-15T12:00:00Z`)).toEqual({
      ok: true,
      result: { mrtd: "42".repeat(48), tcbStatus: "UpToDate", match: 0, intel: "TDX_ROOT_NOT_PINNED" },
    });
  });
});
