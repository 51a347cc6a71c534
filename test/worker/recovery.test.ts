// The Coordinator Worker in workerd: set, mesh certificate, a new runtime instance on the same Durable Object storage, recover, byte-identical history (G1), CA continuity (G2), concurrent sets, configuration errors.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromBase64, toHex } from "../../src/encoding.js";
import { expectCrossVerified, pemBlocks } from "../certificates.js";
import type { IssuedCertificate } from "../certificates.js";
import { jsonAnswer, firstSetBody, manifestBytes, policy, post, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef, JsonAnswer } from "../helpers.js";
import { ensureWorkerBundle, startWorker, startWorkers } from "./workerd.js";
import type { Workerd } from "./workerd.js";

type Json = Record<string, unknown>;

type Answer = JsonAnswer;

const answer = jsonAnswer;

const errorCode = (a: Answer): unknown => (a.body.error as { code?: unknown } | undefined)?.code;

/** The JSON log lines a Worker wrote, parsed. */
function logLines(w: Workerd): Json[] {
  return w.logs.flatMap((line) => {
    try {
      return [JSON.parse(line) as Json];
    } catch {
      return [];
    }
  });
}

let work: string;
const running = new Set<Workerd>();

async function start(persistDir: string, vars: Record<string, string>): Promise<Workerd> {
  const w = await startWorker({ persistDir, vars });
  running.add(w);
  return w;
}

async function stop(w: Workerd): Promise<void> {
  running.delete(w);
  await w.dispose();
}

beforeAll(() => {
  ensureWorkerBundle();
  work = mkdtempSync(join(tmpdir(), "coordinator-workerd-"));
});

afterAll(async () => {
  for (const w of [...running]) await stop(w);
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

describe("recovery inside workerd (Durable Object storage persisted across runtime instances)", () => {
  const vars = { COORDINATOR_NAME: "edge", ATTESTATION: "insecure-simulated" };
  let persist: string;
  let w: Workerd;

  let shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
  let owner: Awaited<ReturnType<typeof workloadOwner>>;
  let polA: Awaited<ReturnType<typeof policy>>;
  let polBig: Awaited<ReturnType<typeof policy>>;
  let polC: Awaited<ReturnType<typeof policy>>;
  let polD: Awaited<ReturnType<typeof policy>>;

  let seedShares: SeedShareDocument;
  let firstTransition: string;
  let firstRef: CoordinatorRef;
  let winnerManifest: Uint8Array;
  let historyBefore: string;
  let certBefore: Json;

  const get = async (path: string) => answer(await w.fetch(path));
  const send = async (path: string, body: unknown) => answer(await w.fetch(path, post(body)));
  const meshCertificate = async (policyHash: string) =>
    send("/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence: { type: "insecure-simulated", policyHash } });

  async function restart(): Promise<void> {
    await stop(w);
    w = await start(persist, vars);
  }

  beforeAll(async () => {
    persist = join(work, "edge");
    [shareOwner, owner, polA, polBig, polC, polD] = await Promise.all([
      seedShareOwner(),
      workloadOwner(),
      policy("policy A: the frontend\n"),
      // 600 KiB: stored in two 512 KiB rows.
      policy(`policy B: the backend\n${"x".repeat(600 * 1024)}\n`),
      policy("policy C: backend v2\n"),
      policy("policy D: backend v3\n"),
    ]);
    w = await start(persist, vars);
  });

  it("starts uninitialized under the configured name", async () => {
    const status = await get("/v1/status");
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ state: "uninitialized", name: "edge" });
    expect((await get("/healthz")).status).toBe(200);
    expect((await get("/readyz")).status).toBe(503);
    const messages = logLines(w).map((l) => l.msg);
    expect(messages).toContain("started");
    expect(messages).toContain("INSECURE: the simulated attestation validator is on; any caller can claim any policy. Never use it in production.");
  });

  it("two concurrent first sets: one wins, the other gets 409 STALE_BASE", async () => {
    const manifest = (extra: string) =>
      manifestBytes({
        policies: [
          { hash: polA.hash, name: "frontend" },
          { hash: polBig.hash, name: extra },
        ],
        workloadOwners: [owner.digest],
        seedShareOwners: [shareOwner.publicHex],
      });
    const candidates = [manifest("backend"), manifest("backend-other")];
    const results = await Promise.all(candidates.map((m) => send("/v1/manifest", firstSetBody(m, [polA.bytes, polBig.bytes]))));
    const winners = results.flatMap((r, i) => (r.status === 200 ? [i] : []));
    expect(winners, results.map((r) => r.text.slice(0, 200)).join("\n")).toHaveLength(1);
    const loser = results[1 - winners[0]!]!;
    expect(loser.status).toBe(409);
    expect(errorCode(loser)).toBe("STALE_BASE");
    const won = results[winners[0]!]!;
    expect(won.body.generation).toBe(1);
    seedShares = won.body.seedShares as SeedShareDocument;
    expect(seedShares.threshold).toBe(1);
    firstTransition = won.body.transition as string;
    firstRef = { name: "edge", rootCA: won.body.rootCA as string };
    winnerManifest = candidates[winners[0]!]!;
  });

  it("issues a mesh certificate and serves the history", async () => {
    const res = await meshCertificate(polA.hash);
    expect(res.status, res.text).toBe(200);
    certBefore = res.body;
    const history = await get("/v1/manifests");
    expect(history.status).toBe(200);
    historyBefore = history.text;
    expect(history.body.generation).toBe(1);
    expect((history.body.manifests as string[]).map((m) => toHex(fromBase64(m)))).toEqual([toHex(winnerManifest)]);
    expect(toHex(fromBase64((history.body.policies as Record<string, string>)[polBig.hash]!))).toBe(toHex(polBig.bytes));
  });

  it("a new runtime instance on the same storage is in recovery-required and serves nothing else", async () => {
    await restart();
    const status = await get("/v1/status");
    expect(status.body).toMatchObject({ state: "recovery-required", name: "edge", recovery: { threshold: 1, received: 0 } });
    expect(errorCode(await meshCertificate(polA.hash))).toBe("RECOVERY_REQUIRED");
    const history = await get("/v1/manifests");
    expect(history.status).toBe(409);
    expect(errorCode(history)).toBe("RECOVERY_REQUIRED");
    expect((await get("/readyz")).status).toBe(503);
    expect(logLines(w).find((l) => l.msg === "started")?.state).toBe("recovery-required");
  });

  it("recovers with the owner's share; the history is byte-identical (G1)", async () => {
    const wrong = await send("/v1/recover", { share: btoa("x".repeat(64)), salt: seedShares.salt });
    expect(wrong.status).toBe(403);
    expect(errorCode(wrong)).toBe("SEED_MISMATCH");
    const res = await send("/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
    expect(res.status, res.text).toBe(200);
    expect(res.body.state).toBe("ready");
    const history = await get("/v1/manifests");
    expect(history.status).toBe(200);
    expect(history.text).toBe(historyBefore);
    expect((await get("/readyz")).status).toBe(200);
  });

  it("certificates before and after the restart verify against both bundles (G2), with @peculiar/x509 and openssl", async () => {
    const res = await meshCertificate(polA.hash);
    expect(res.status, res.text).toBe(200);
    const after = res.body;
    expect(after.rootCA).toBe(certBefore.rootCA);
    expect(after.meshCA).toBe(certBefore.meshCA);
    expect(after.workloadSecret).toBe(certBefore.workloadSecret);
    expect(pemBlocks(after.certChain as string)[1]).toBe(pemBlocks(certBefore.certChain as string)[1]);
    await expectCrossVerified(certBefore as unknown as IssuedCertificate, after as unknown as IssuedCertificate, join(work, "pem"));
  });

  it("two concurrent signed updates on the same base: one wins, the other gets 409, the history does not fork", async () => {
    const update = (pol: typeof polC, name: string) =>
      updateBody(
        manifestBytes({ policies: [{ hash: pol.hash, name }], workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] }),
        [pol.bytes],
        firstTransition,
        owner,
        firstRef,
      );
    const bodies = await Promise.all([update(polC, "backend-v2"), update(polD, "backend-v3")]);
    const results = await Promise.all(bodies.map((b) => send("/v1/manifest", b)));
    const winners = results.flatMap((r, i) => (r.status === 200 ? [i] : []));
    expect(winners, results.map((r) => r.text.slice(0, 200)).join("\n")).toHaveLength(1);
    const loser = results[1 - winners[0]!]!;
    expect(loser.status).toBe(409);
    expect(errorCode(loser)).toBe("STALE_BASE");
    const secondTransition = results[winners[0]!]!.body.transition as string;

    const check = async () => {
      const history = await get("/v1/manifests");
      expect(history.status).toBe(200);
      expect(history.body.generation).toBe(2);
      expect(history.body.transitions).toEqual([firstTransition, secondTransition]);
      expect(history.body.latestTransition).toBe(secondTransition);
      return history.text;
    };
    const historyAfter = await check();

    // The persisted state agrees: after another restart and recovery, the same two-entry history.
    await restart();
    expect((await get("/v1/status")).body.state).toBe("recovery-required");
    const res = await send("/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
    expect(res.status, res.text).toBe(200);
    expect(await check()).toBe(historyAfter);
    expect((await get("/v1/status")).body).toMatchObject({ state: "ready", generation: 2, latestTransition: secondTransition });
  });
});

describe("configuration through vars and bindings", () => {
  let w: Workerd;
  beforeAll(async () => {
    w = await startWorkers(join(work, "config"), [
      { name: "defaults", vars: {} },
      { name: "bad-attestation", vars: { ATTESTATION: "snp" } },
      { name: "bad-name", vars: { COORDINATOR_NAME: "Bad_Name" } },
      { name: "unbound", vars: {}, withBinding: false },
    ]);
    running.add(w);
  });

  it("defaults: name coordinator, no attestation validator", async () => {
    const status = await answer(await w.fetch("/v1/status", undefined, "defaults"));
    expect(status.body).toMatchObject({ state: "uninitialized", name: "coordinator" });
    expect(logLines(w).some((l) => String(l.msg).startsWith("INSECURE"))).toBe(false);
  });

  it.each([
    ["bad-attestation", 'ATTESTATION must be none or a comma-separated list of sev-snp, tdx, insecure-simulated, not "snp"'],
    ["bad-name", "COORDINATOR_NAME must be a lower-case DNS label"],
    ["unbound", "the Durable Object binding COORDINATOR (class CoordinatorObject) is missing"],
  ])("%s: every request answers 500 CONFIG_INVALID with one line, logged once", async (worker, message) => {
    for (const path of ["/v1/status", "/healthz", "/v1/manifests", "/nope", "/v1/status"]) {
      const res = await answer(await w.fetch(path, undefined, worker));
      expect(res.status, path).toBe(500);
      expect(errorCode(res)).toBe("CONFIG_INVALID");
      const text = (res.body.error as { message: string }).message;
      expect(text).toContain(message);
      expect(text).not.toContain("\n");
    }
    const errors = logLines(w).filter((l) => l.code === "CONFIG_INVALID" && String(l.error).includes(message));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ level: "error", msg: "invalid configuration" });
  });
});
