// The Coordinator's own evidence through real processes started with `--evidence simulated`: GET /v1/attestation in uninitialized, ready and recovery-required, verified with the project's verifier pinning the ARK the process logged; tampered answers are refused and nothing changes.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import { certificateDerOf } from "../../src/client/verify.js";
import { bytesEqual, concat, fromBase64, fromHex, toHex } from "../../src/encoding.js";
import { firstSetBody, manifestBytes, policy, post, seedShareOwner, workloadOwner } from "../helpers.js";
import { ensureWorkerBundle, startWorkers } from "../worker/workerd.js";
import type { Workerd } from "../worker/workerd.js";
import { ensureBundle, killAll, runBundle, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const sha256 = async (b: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", b as BufferSource));
const randomNonce = () => toHex(crypto.getRandomValues(new Uint8Array(32)));

/** The documented report-data layout, written out here on its own. */
async function expectedReportData(nonce: string, a: Json): Promise<Uint8Array> {
  const u16 = (n: number) => new Uint8Array([n >> 8, n & 0xff]);
  const pk = fromBase64(a.hpkePublicKey);
  const name = new TextEncoder().encode(a.name);
  const held =
    a.latestTransition === null
      ? new Uint8Array([0])
      : concat(new Uint8Array([1]), fromHex(a.latestTransition), fromHex(a.rootCA), fromHex(a.meshCA));
  const input = concat(new TextEncoder().encode("CONTRAST COORDINATOR EVIDENCE v1"), new Uint8Array([0]), fromHex(nonce), u16(pk.length), pk, u16(name.length), name, held);
  return new Uint8Array(await crypto.subtle.digest("SHA-512", input as BufferSource));
}

/** The ARK the process logged when its simulated source was ready (the out-of-band pin of this test). */
async function loggedArk(proc: CoordinatorProcess): Promise<string> {
  for (let i = 0; i < 200; i++) {
    for (const line of proc.stdout) {
      const parsed = JSON.parse(line) as { arkSha256?: string };
      if (typeof parsed.arkSha256 === "string") return parsed.arkSha256;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no arkSha256 log line: ${proc.stdout.join("\n")}`);
}

/** What a client checks: the ARK is the pinned one, the report verifies to it, and REPORT_DATA binds the answer and the nonce. */
async function accepts(a: Json, nonce: string, arkSha256: string): Promise<boolean> {
  const certs = a.evidence.certificates as Record<string, string>;
  const ark = fromBase64(certs.ark!);
  if (toHex(await sha256(ark)) !== arkSha256) return false;
  const verified = await verifySnpReport(
    { report: fromBase64(a.evidence.report), certificates: { vcek: fromBase64(certs.vcek!) } },
    { trustAnchors: [{ product: "Milan", ark, ask: fromBase64(certs.ask!) }], now: new Date() },
  );
  return bytesEqual(verified.report.reportData, await expectedReportData(nonce, a));
}

async function getJson(base: string, path: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, body: await res.json() };
}

describe("GET /v1/attestation of a real process with --evidence simulated", () => {
  let dir: string;
  beforeAll(() => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "self-attestation-"));
  });
  afterAll(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves verifiable evidence in uninitialized, ready and recovery-required, binding the state it holds and its HPKE key", async () => {
    const store = `fs:${join(dir, "data")}`;
    const args = ["--evidence", "simulated", "--attestation", "insecure-simulated", "--name", "attested"];
    const first = await startCoordinator({ store, extraArgs: args, timeoutMs: 60_000 });
    expect(first.stdout.some((l) => /INSECURE: the simulated evidence source/.test(l))).toBe(true);

    // uninitialized
    let nonce = randomNonce();
    const u = await getJson(first.url, `/v1/attestation?nonce=${nonce}`);
    expect(u.status).toBe(200);
    const ark1 = await loggedArk(first);
    expect(u.body).toMatchObject({ format: "contrast-coordinator-evidence/v1", name: "attested", state: "uninitialized", latestTransition: null, rootCA: null, meshCA: null });
    expect(await accepts(u.body, nonce, ark1)).toBe(true);

    // Attacks on the answer: another nonce, a swapped HPKE key, a claimed state, another ARK.
    expect(await accepts(u.body, randomNonce(), ark1)).toBe(false);
    const otherKey = toHex(new Uint8Array(65).fill(4));
    expect(await accepts({ ...u.body, hpkePublicKey: Buffer.from(fromHex(otherKey)).toString("base64") }, nonce, ark1)).toBe(false);
    expect(await accepts({ ...u.body, name: "other" }, nonce, ark1)).toBe(false);
    expect(await accepts(u.body, nonce, "00".repeat(32))).toBe(false);

    // A bad nonce is refused and changes nothing.
    const statusBefore = await getJson(first.url, "/v1/status");
    for (const bad of ["", "?nonce=abc", `?nonce=${nonce}ff`]) {
      const r = await getJson(first.url, `/v1/attestation${bad}`);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("INVALID_REQUEST");
    }
    expect(await getJson(first.url, "/v1/status")).toEqual(statusBefore);

    // ready
    const [seed, workload, web] = await Promise.all([seedShareOwner(), workloadOwner(), policy("web")]);
    const manifest = manifestBytes({ policies: [{ name: "web", ...web }], workloadOwners: [workload.digest], seedShareOwners: [seed.publicHex] });
    const set = await fetch(`${first.url}/v1/manifest`, post(firstSetBody(manifest, [web.bytes])));
    expect(set.status).toBe(200);
    const history = (await getJson(first.url, "/v1/manifests")).body;
    nonce = randomNonce();
    const r = await getJson(first.url, `/v1/attestation?nonce=${nonce}`);
    expect(r.status).toBe(200);
    const rootCA = toHex(await sha256(certificateDerOf(history.rootCA)));
    const meshCA = toHex(await sha256(certificateDerOf(history.meshCA)));
    expect(r.body).toMatchObject({ state: "ready", latestTransition: history.latestTransition, rootCA, meshCA });
    expect(r.body.hpkePublicKey).toBe(u.body.hpkePublicKey);
    expect(await accepts(r.body, nonce, ark1)).toBe(true);
    expect(await accepts({ ...r.body, latestTransition: "00".repeat(32) }, nonce, ark1)).toBe(false);
    expect(await accepts({ ...r.body, latestTransition: null, rootCA: null, meshCA: null }, nonce, ark1)).toBe(false);
    await first.stop("SIGTERM");

    // recovery-required: a new process, a new HPKE key and a new simulated hierarchy; no state bound.
    const second = await startCoordinator({ store, extraArgs: args, timeoutMs: 60_000 });
    nonce = randomNonce();
    const q = await getJson(second.url, `/v1/attestation?nonce=${nonce}`);
    expect(q.status).toBe(200);
    const ark2 = await loggedArk(second);
    expect(q.body).toMatchObject({ state: "recovery-required", latestTransition: null, rootCA: null, meshCA: null });
    expect(q.body.hpkePublicKey).not.toBe(u.body.hpkePublicKey);
    expect(await accepts(q.body, nonce, ark2)).toBe(true);
    // The first process's ARK is not this one's: a pin of the old one refuses the new evidence.
    expect(await accepts(q.body, nonce, ark1)).toBe(false);
    expect((await getJson(second.url, "/v1/status")).body.state).toBe("recovery-required");
    await second.stop("SIGTERM");
  }, 180_000);

  it("--evidence none answers 404 EVIDENCE_UNAVAILABLE; an unknown --evidence is a configuration error (exit 2)", async () => {
    const proc = await startCoordinator({ store: "memory", extraArgs: ["--evidence", "none"] });
    const r = await getJson(proc.url, `/v1/attestation?nonce=${randomNonce()}`);
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe("EVIDENCE_UNAVAILABLE");
    await proc.stop("SIGTERM");
    const bad = await runBundle(["--store", "memory", "--evidence", "sgx"], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^contrast-coordinator: error: --evidence/);
    const noTsm = await runBundle(["--store", "memory", "--evidence", "tsm", "--tsm-path", join(dir, "no-such-dir")], { cwd: dir });
    expect(noTsm.code).toBe(2);
    expect(noTsm.stderr).toMatch(/--tsm-path/);
  }, 60_000);
});

describe("GET /v1/attestation of the Worker (workerd) with EVIDENCE=simulated", () => {
  let dir: string;
  let w: Workerd;
  beforeAll(async () => {
    ensureWorkerBundle();
    dir = mkdtempSync(join(tmpdir(), "self-attestation-worker-"));
    w = await startWorkers(dir, [
      { name: "attested", vars: { EVIDENCE: "simulated" } },
      { name: "plain", vars: {} },
    ]);
  }, 120_000);
  afterAll(async () => {
    await w?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves evidence that verifies (to the ARK it carries: the Worker has no log to pin from) and binds the nonce; without the var: EVIDENCE_UNAVAILABLE", async () => {
    const nonce = randomNonce();
    const res = await w.fetch(`/v1/attestation?nonce=${nonce}`, undefined, "attested");
    expect(res.status).toBe(200);
    const a = (await res.json()) as Json;
    expect(a).toMatchObject({ format: "contrast-coordinator-evidence/v1", state: "uninitialized", latestTransition: null });
    const ark = toHex(await sha256(fromBase64(a.evidence.certificates.ark)));
    expect(await accepts(a, nonce, ark)).toBe(true);
    expect(await accepts(a, randomNonce(), ark)).toBe(false);
    const plain = await w.fetch(`/v1/attestation?nonce=${nonce}`, undefined, "plain");
    expect(plain.status).toBe(404);
    expect(((await plain.json()) as Json).error.code).toBe("EVIDENCE_UNAVAILABLE");
  }, 120_000);
});
