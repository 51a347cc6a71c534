// End to end over real processes: set, SIGKILL, restart, recover, then G1 (byte-identical history) and G2 (CA continuity), checked with @peculiar/x509 and openssl.
import "reflect-metadata";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { SubjectAlternativeNameExtension, X509Certificate } from "@peculiar/x509";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { fromBase64, toHex } from "../../src/encoding.js";
import { expectCrossVerified, pemBlocks, signedBy } from "../certificates.js";
import { call, firstSetBody, manifestBytes, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef, JsonAnswer } from "../helpers.js";
import { bundlePath, ensureBundle, killAll, runBundle, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";


type Json = Record<string, unknown>;

interface MeshCert {
  certChain: string;
  meshCA: string;
  rootCA: string;
  workloadSecret: string;
  workloadSecretID: string;
  policyHash: string;
}

interface History {
  name: string;
  generation: number;
  latestTransition: string;
  transitions: string[];
  manifests: string[];
  policies: Record<string, string>;
  rootCA: string;
  meshCA: string;
  intermediateCA: string;
}

const getJson = (base: string, path: string): Promise<JsonAnswer> => call(base, "GET", path);

async function postJson(base: string, path: string, payload: unknown): Promise<{ status: number; body: Json; text: string }> {
  const res = await fetch(base + path, {
    method: "POST",
    body: JSON.stringify(payload),
    headers: { "content-type": "application/json" },
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text };
}

function errorCode(body: Json): unknown {
  return (body.error as { code?: unknown } | undefined)?.code;
}

/** The DNS names and IP addresses of a certificate's SAN extension. */
function sansOf(cert: X509Certificate): string[] {
  const ext = cert.getExtension(SubjectAlternativeNameExtension);
  expect(ext).not.toBeNull();
  return ext!.names.items.map((n) => n.value);
}

describe("recovery end to end (real processes, fs store)", () => {
  let work: string;
  let stateDir: string;
  let proc: CoordinatorProcess | null = null;

  let shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
  let owner: Awaited<ReturnType<typeof workloadOwner>>;
  let polA: Awaited<ReturnType<typeof policy>>;
  let polB: Awaited<ReturnType<typeof policy>>;
  let polC: Awaited<ReturnType<typeof policy>>;
  let manifest1: Uint8Array;
  let manifest2: Uint8Array;

  // State carried from step to step.
  let seedShares: SeedShareDocument;
  let firstTransition: string;
  let firstRef: CoordinatorRef;
  let historyBefore: string;
  let rootBefore: string;
  let meshBefore: string;
  let certBefore: MeshCert;
  let historyAfterUpdate: string;

  const base = () => proc!.url;

  async function restart(): Promise<void> {
    const exit = await proc!.stop("SIGKILL");
    expect(exit.signal).toBe("SIGKILL");
    proc = await startCoordinator({ store: `fs:${stateDir}` });
  }

  async function recover(): Promise<void> {
    const res = await postJson(base(), "/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
    expect(res.status, res.text).toBe(200);
    expect(res.body.state).toBe("ready");
    expect((await getJson(base(), "/v1/status")).body.state).toBe("ready");
  }

  async function meshCertificate(policyHash: string): Promise<{ status: number; body: Json; text: string }> {
    const key = await workloadKey();
    return postJson(base(), "/v1/mesh/certificate", {
      publicKey: key.spki,
      evidence: { type: "insecure-simulated", policyHash },
    });
  }

  beforeAll(async () => {
    ensureBundle();
    work = mkdtempSync(join(tmpdir(), "coordinator-e2e-"));
    stateDir = join(work, "state");
    [shareOwner, owner, polA, polB, polC] = await Promise.all([
      seedShareOwner(),
      workloadOwner(),
      policy("policy A: the frontend\n"),
      policy("policy B: the backend\n"),
      policy("policy C: the new backend\n"),
    ]);
    manifest1 = manifestBytes({
      policies: [
        { hash: polA.hash, name: "frontend" },
        { hash: polB.hash, name: "backend" },
      ],
      workloadOwners: [owner.digest],
      seedShareOwners: [shareOwner.publicHex],
    });
    manifest2 = manifestBytes({
      policies: [
        { hash: polB.hash, name: "backend" },
        { hash: polC.hash, name: "backend-v2" },
      ],
      workloadOwners: [owner.digest],
      seedShareOwners: [shareOwner.publicHex],
    });
  });

  afterAll(async () => {
    await killAll();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it("1. starts uninitialized on a fresh directory", async () => {
    proc = await startCoordinator({ store: `fs:${stateDir}` });
    expect((await getJson(base(), "/v1/status")).body.state).toBe("uninitialized");
    expect((await getJson(base(), "/readyz")).status).toBe(503);
    expect((await getJson(base(), "/healthz")).status).toBe(200);
  });

  it("2. accepts the first set and returns the seed shares", async () => {
    const res = await postJson(base(), "/v1/manifest", firstSetBody(manifest1, [polA.bytes, polB.bytes]));
    expect(res.status, res.text).toBe(200);
    expect(res.body.generation).toBe(1);
    seedShares = res.body.seedShares as SeedShareDocument;
    expect(seedShares.threshold).toBe(1);
    expect(seedShares.shares).toHaveLength(1);
    expect(seedShares.shares[0]!.ownerPublicKey).toBe(shareOwner.publicHex);
    firstTransition = res.body.transition as string;
    firstRef = { name: "coordinator", rootCA: res.body.rootCA as string };
  });

  it("3. issues a mesh certificate and serves the history", async () => {
    const res = await meshCertificate(polA.hash);
    expect(res.status, res.text).toBe(200);
    certBefore = res.body as unknown as MeshCert;
    expect(pemBlocks(certBefore.certChain)).toHaveLength(2);

    const history = await getJson(base(), "/v1/manifests");
    expect(history.status).toBe(200);
    historyBefore = history.text;
    const view = history.body as unknown as History;
    expect(view.generation).toBe(1);
    expect(view.latestTransition).toBe(firstTransition);
    expect(view.manifests.map((m) => toHex(fromBase64(m)))).toEqual([toHex(manifest1)]);
    rootBefore = view.rootCA;
    meshBefore = view.meshCA;
    expect(certBefore.rootCA).toBe(rootBefore);
    expect(certBefore.meshCA).toBe(meshBefore);
    expect((await getJson(base(), "/readyz")).status).toBe(200);
  });

  it("4.–5. after SIGKILL and a restart, only recovery is served", async () => {
    await restart();
    expect((await getJson(base(), "/v1/status")).body.state).toBe("recovery-required");

    const cert = await meshCertificate(polA.hash);
    expect(cert.status).toBe(409);
    expect(errorCode(cert.body)).toBe("RECOVERY_REQUIRED");

    expect((await getJson(base(), "/readyz")).status).toBe(503);
    expect((await getJson(base(), "/healthz")).status).toBe(200);

    const history = await getJson(base(), "/v1/manifests");
    expect(history.status).toBe(409);
    expect(errorCode(history.body)).toBe("RECOVERY_REQUIRED");

    const set = await postJson(base(), "/v1/manifest", firstSetBody(manifest1, [polA.bytes, polB.bytes]));
    expect(set.status).toBe(409);
    expect(errorCode(set.body)).toBe("RECOVERY_REQUIRED");

    // Still nothing served after the refusals.
    expect((await getJson(base(), "/v1/status")).body.state).toBe("recovery-required");
  });

  it("6. recovers with the owner's share; the history is byte-identical (G1)", async () => {
    await recover();
    const history = await getJson(base(), "/v1/manifests");
    expect(history.status).toBe(200);
    expect(history.text).toBe(historyBefore);
    expect((await getJson(base(), "/readyz")).status).toBe(200);
  });

  it("7. certificates before and after the restart verify against both bundles (G2)", async () => {
    const res = await meshCertificate(polA.hash);
    expect(res.status, res.text).toBe(200);
    const after = res.body as unknown as MeshCert;
    expect(after.rootCA).toBe(rootBefore);
    expect(after.meshCA).toBe(meshBefore);
    expect(after.workloadSecretID).toBe("frontend");
    expect(after.workloadSecret).toBe(certBefore.workloadSecret);
    expect(after.policyHash).toBe(polA.hash);

    const [newLeafPem, newInterPem] = pemBlocks(after.certChain) as [string, string];
    const [oldLeafPem, oldInterPem] = pemBlocks(certBefore.certChain) as [string, string];
    expect(newInterPem).toBe(oldInterPem);
    await expectCrossVerified(certBefore, after, join(work, "pem"));

    // The mesh CA is the intermediate's self-signed twin, and the leaves carry the entry's SANs.
    const meshOld = new X509Certificate(meshBefore);
    expect(await signedBy(meshOld, meshOld)).toBe(true);
    expect(await signedBy(new X509Certificate(newLeafPem), new X509Certificate(newInterPem))).toBe(true);
    expect(sansOf(new X509Certificate(newLeafPem)).sort()).toEqual(["frontend", "frontend.default.svc"]);
    expect(sansOf(new X509Certificate(oldLeafPem)).sort()).toEqual(["frontend", "frontend.default.svc"]);
  });

  it("8. a signed update survives another SIGKILL and recovery", async () => {
    const update = await postJson(base(), "/v1/manifest", await updateBody(manifest2, [polB.bytes, polC.bytes], firstTransition, owner, firstRef));
    expect(update.status, update.text).toBe(200);
    expect(update.body.generation).toBe(2);
    expect(update.body.seedShares).toBeUndefined();
    const secondTransition = update.body.transition as string;
    historyAfterUpdate = (await getJson(base(), "/v1/manifests")).text;

    await restart();
    expect((await getJson(base(), "/v1/status")).body.state).toBe("recovery-required");
    await recover();

    const status = (await getJson(base(), "/v1/status")).body;
    expect(status.generation).toBe(2);
    expect(status.latestTransition).toBe(secondTransition);

    const history = await getJson(base(), "/v1/manifests");
    expect(history.status).toBe(200);
    expect(history.text).toBe(historyAfterUpdate);
    const view = history.body as unknown as History;
    expect(view.generation).toBe(2);
    expect(view.latestTransition).toBe(secondTransition);
    expect(view.transitions).toEqual([firstTransition, secondTransition]);
    expect(view.manifests.map((m) => toHex(fromBase64(m)))).toEqual([toHex(manifest1), toHex(manifest2)]);
    expect(Object.keys(view.policies).sort()).toEqual([polA.hash, polB.hash, polC.hash].sort());
    for (const p of [polA, polB, polC]) expect(toHex(fromBase64(view.policies[p.hash]!))).toBe(toHex(p.bytes));
    expect(view.rootCA).toBe(rootBefore);
    // A fresh mesh CA per manifest.
    expect(view.meshCA).not.toBe(meshBefore);

    const fresh = await meshCertificate(polC.hash);
    expect(fresh.status, fresh.text).toBe(200);
    expect((fresh.body as unknown as MeshCert).meshCA).toBe(view.meshCA);
    const leaf = new X509Certificate(pemBlocks((fresh.body as unknown as MeshCert).certChain)[0]!);
    expect(sansOf(leaf).sort()).toEqual(["backend-v2", "backend-v2.default.svc"]);
    expect(await signedBy(leaf, new X509Certificate(view.meshCA))).toBe(true);

    const old = await meshCertificate(polA.hash);
    expect(old.status).toBe(403);
    expect(errorCode(old.body)).toBe("POLICY_NOT_IN_MANIFEST");
  });

  it("9. SIGTERM stops the process gracefully", async () => {
    const exit = await proc!.stop("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    const messages = proc!.stdout.map((line) => (JSON.parse(line) as { msg: string }).msg);
    expect(messages).toContain("stopped");
    expect(proc!.stderr()).toBe("");
  });
});

describe("the bundle on its own", () => {
  let work: string;

  beforeAll(() => {
    ensureBundle();
    work = mkdtempSync(join(tmpdir(), "coordinator-e2e-alone-"));
  });

  afterEach(async () => {
    await killAll();
  });

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it.each([
    ["--port", "abc"],
    ["--store", "nope"],
    ["--name", "Bad_Name"],
  ])("refuses %s %s with one error line and a non-zero exit", async (flag, value) => {
    const args = flag === "--port" ? [flag, value, "--store", "memory"] : ["--port", "0", "--host", "127.0.0.1", flag, value];
    const result = await runBundle(args, { cwd: work });
    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    const lines = result.stderr.split("\n").filter((l) => l !== "");
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]!.startsWith("contrast-coordinator: error:")).toBe(true);
    expect(result.stderr.endsWith("\n")).toBe(true);
  });

  it("starts from a copy alone in an empty directory and answers /healthz", async () => {
    const dir = join(work, "alone");
    mkdirSync(dir);
    // No node_modules in the directory or any directory above it.
    for (let d = dir; ; d = dirname(d)) {
      expect(existsSync(join(d, "node_modules")), `${d}/node_modules`).toBe(false);
      if (dirname(d) === d) break;
    }
    const copy = join(dir, "coordinator.mjs");
    copyFileSync(bundlePath, copy);
    const proc = await startCoordinator({ store: "fs:data", bundle: copy, cwd: dir });
    const res = await fetch(`${proc.url}/healthz`);
    expect(res.status).toBe(200);
    expect((await getJson(proc.url, "/v1/status")).body.state).toBe("uninitialized");
    const exit = await proc.stop("SIGTERM");
    expect(exit.code).toBe(0);
  });
});
