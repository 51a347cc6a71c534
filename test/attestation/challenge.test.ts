// The attestation challenge: POST /v1/mesh/certificate without evidence answers 401 with a nonce; a nonce is good once, until it expires, and only if this Coordinator issued it.
import { describe, expect, it } from "vitest";
import { NonceBook } from "../../src/attestation/nonces.js";
import { validatorsFor } from "../../src/attestation/modes.js";
import { createApp } from "../../src/app.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import { CoordinatorError } from "../../src/errors.js";
import { firstSetBody, manifestBytes, policy, seedShareOwner, workloadKey } from "../helpers.js";
import { postJson } from "../api/fixture.js";

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (err) {
    return err instanceof CoordinatorError ? err.code : String(err);
  }
}

describe("NonceBook", () => {
  it("accepts a nonce it issued once, refuses it replayed, expired, altered or foreign", async () => {
    let now = 1_000_000;
    const book = new NonceBook({ ttlMs: 60_000, now: () => now });
    const a = await book.issue();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await code(book.consume(a))).toBe("ok");
    expect(await code(book.consume(a))).toBe("NONCE_REPLAYED");
    const b = await book.issue();
    now += 60_000;
    expect(await code(book.consume(b))).toBe("NONCE_EXPIRED");
    const c = await book.issue();
    const flipped = c.slice(0, 20) + (c[20] === "0" ? "1" : "0") + c.slice(21);
    expect(await code(book.consume(flipped))).toBe("NONCE_INVALID");
    expect(await code(book.consume(await new NonceBook({ now: () => now }).issue()))).toBe("NONCE_INVALID");
    for (const bad of ["", "zz", "00".repeat(31), c.toUpperCase()]) expect(await code(book.consume(bad))).toBe("NONCE_INVALID");
  });

  it("remembers at most its capacity of used nonces, forgetting expired ones first", async () => {
    let now = 0;
    const book = new NonceBook({ ttlMs: 1_000, capacity: 2, now: () => now });
    const [x, y] = [await book.issue(), await book.issue()];
    expect(await code(book.consume(x))).toBe("ok");
    expect(await code(book.consume(y))).toBe("ok");
    expect(await code(book.consume(await book.issue()))).toBe("BUSY");
    now = 1_000;
    expect(await code(book.consume(await book.issue()))).toBe("ok");
  });
});

describe("POST /v1/mesh/certificate without evidence", () => {
  it("answers 401 ATTESTATION_REQUIRED with WWW-Authenticate and a nonce; evidence with a replayed, foreign or expired nonce is refused before it is verified", async () => {
    let now = Date.parse("2026-11-30T12:00:00Z");
    const coordinator = await Coordinator.start({
      store: createStore(memoryDriver()),
      name: "challenge",
      validators: validatorsFor(["sev-snp", "tdx"]),
      now: () => new Date(now),
    });
    const app = createApp({ coordinator });
    const [owner, web, key] = await Promise.all([seedShareOwner(), policy("policy of web\n"), workloadKey("P-384")]);
    const m = manifestBytes({ policies: [{ ...web, name: "web" }], workloadOwners: [], seedShareOwners: [owner.publicHex] });
    expect((await postJson(app, "/v1/manifest", firstSetBody(m, [web.bytes]))).status).toBe(200);

    const challenge = await app.request("/v1/mesh/certificate", {
      method: "POST",
      body: JSON.stringify({ publicKey: key.spki }),
      headers: { "content-type": "application/json" },
    });
    expect(challenge.status).toBe(401);
    const body = (await challenge.json()) as { error: { code: string }; nonce: string };
    expect(body.error.code).toBe("ATTESTATION_REQUIRED");
    expect(challenge.headers.get("www-authenticate")).toBe(`contrast-attestation-v1 nonce="${body.nonce}"`);

    // Evidence that is no valid report: the nonce is used up all the same, and the verifier's code is the reason.
    const snp = (nonce: string) => ({ publicKey: key.spki, evidence: { type: "amd-sev-snp", nonce, report: "AAAA" } });
    const first = await postJson(app, "/v1/mesh/certificate", snp(body.nonce));
    expect(first.json.error).toMatchObject({ code: "ATTESTATION_FAILED", reason: "SNP_REPORT_MALFORMED" });
    expect((await postJson(app, "/v1/mesh/certificate", snp(body.nonce))).json.error.code).toBe("NONCE_REPLAYED");
    expect((await postJson(app, "/v1/mesh/certificate", snp("ab".repeat(32)))).json.error.code).toBe("NONCE_INVALID");
    const tdx = await postJson(app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "intel-tdx", nonce: "00", quote: "AAAA" } });
    expect(tdx.json.error.code).toBe("NONCE_INVALID");
    const later = (await postJson(app, "/v1/mesh/certificate", { publicKey: key.spki })).json.nonce as string;
    now += 5 * 60 * 1000;
    expect((await postJson(app, "/v1/mesh/certificate", snp(later))).json.error.code).toBe("NONCE_EXPIRED");
    const malformed = await postJson(app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "amd-sev-snp", report: 5 } });
    expect(malformed.json.error).toMatchObject({ code: "ATTESTATION_FAILED", reason: "ATTESTATION_EVIDENCE_INVALID" });
  });
});
