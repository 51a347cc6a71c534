// Sealed seed shares through real processes started with `--evidence simulated`: plain shares refused, a share sealed to the attested HPKE key for the current attempt recovers, and old-attempt, replayed and wrongly keyed shares are refused over real HTTP with nothing changed; the simulated measurement and host data flags.
import "reflect-metadata";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coordinatorReportData } from "../../src/attestation/coordinator-evidence.js";
import { parseSnpReport } from "../../src/attestation/snp/report.js";
import { verifySnpReport } from "../../src/attestation/snp/verify.js";
import { sealShare } from "../../src/coordinator/sealed-share.js";
import { HpkeRecipient } from "../../src/crypto/hpke.js";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { bytesEqual, fromBase64, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { firstSetBody, manifestBytes, policy, post, resetBody, seedShareOwner, workloadOwner } from "../helpers.js";
import { bundlePath, ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
type SeedOwner = Awaited<ReturnType<typeof seedShareOwner>>;

const name = "sealed";
const sha256 = async (b: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", b as BufferSource));
const randomHex = (n: number) => toHex(crypto.getRandomValues(new Uint8Array(n)));

async function getJson(base: string, path: string): Promise<{ status: number; body: Json; text: string }> {
  const res = await fetch(`${base}${path}`);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text };
}

async function send(base: string, method: "POST" | "DELETE", path: string, body: unknown): Promise<{ status: number; body: Json; text: string }> {
  const res = await fetch(`${base}${path}`, { ...post(body), method });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text };
}

/** The ARK the process logged when its simulated source was ready (this test's out-of-band pin). */
async function loggedArk(proc: CoordinatorProcess): Promise<string> {
  for (let i = 0; i < 400; i++) {
    for (const line of proc.stdout) {
      const parsed = JSON.parse(line) as { arkSha256?: string };
      if (typeof parsed.arkSha256 === "string") return parsed.arkSha256;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no arkSha256 log line: ${proc.stdout.join("\n")}`);
}

/** GET /v1/attestation for a fresh nonce, verified to the logged ARK and REPORT_DATA; the attested HPKE key and the parsed report. */
async function attestedKey(proc: CoordinatorProcess): Promise<{ key: Uint8Array; report: ReturnType<typeof parseSnpReport> }> {
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const a = await getJson(proc.url, `/v1/attestation?nonce=${toHex(nonce)}`);
  expect(a.status, a.text).toBe(200);
  const certs = a.body.evidence.certificates as Record<string, string>;
  const ark = fromBase64(certs.ark!);
  expect(toHex(await sha256(ark))).toBe(await loggedArk(proc));
  const verified = await verifySnpReport(
    { report: fromBase64(a.body.evidence.report), certificates: { vcek: fromBase64(certs.vcek!) } },
    { trustAnchors: [{ product: "Milan", ark, ask: fromBase64(certs.ask!) }], now: new Date() },
  );
  const key = fromBase64(a.body.hpkePublicKey);
  const expected = await coordinatorReportData({ nonce, hpkePublicKey: key, name: a.body.name, state: null });
  expect(bytesEqual(verified.report.reportData, expected)).toBe(true);
  return { key, report: parseSnpReport(fromBase64(a.body.evidence.report)) };
}

describe("sealed seed shares against a real process with --evidence simulated", () => {
  let dir: string;
  let owners: SeedOwner[];
  let doc: SeedShareDocument;
  let history: string;
  const args = ["--evidence", "simulated", "--attestation", "insecure-simulated", "--name", name];
  const store = () => `fs:${join(dir, "data")}`;

  beforeAll(async () => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "sealed-recovery-"));
    const [a, b, c, workload, web] = await Promise.all([seedShareOwner(), seedShareOwner(), seedShareOwner(), workloadOwner(), policy("web")]);
    owners = [a, b, c];
    const m = JSON.parse(
      new TextDecoder().decode(manifestBytes({ policies: [{ name: "web", ...web }], workloadOwners: [workload.digest], seedShareOwners: owners.map((o) => o.publicHex) })),
    ) as Record<string, unknown>;
    // Set 2-of-3 on a first process, then kill -9 it: the store holds the state, nobody the seed.
    const first = await startCoordinator({ store: store(), extraArgs: args, timeoutMs: 60_000 });
    const set = await send(first.url, "POST", "/v1/manifest", firstSetBody(utf8(JSON.stringify({ ...m, Threshold: 2 })), [web.bytes]));
    expect(set.status, set.text).toBe(200);
    doc = set.body.seedShares as SeedShareDocument;
    history = (await getJson(first.url, "/v1/manifests")).text;
    expect((await first.stop("SIGKILL")).signal).toBe("SIGKILL");
  }, 120_000);

  afterAll(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  async function shareOf(owner: SeedOwner): Promise<Uint8Array> {
    const entry = doc.shares.find((s) => s.ownerPublicKey === owner.publicHex)!;
    return decryptSeedShare(entry.encryptedShare, owner.keys.privateKey);
  }

  async function sealed(owner: SeedOwner, key: Uint8Array, attempt: string): Promise<{ salt: string; sealedShare: unknown }> {
    return { salt: doc.salt, sealedShare: await sealShare(key, await shareOf(owner), { name, attempt, salt: doc.salt }) };
  }

  const status = async (proc: CoordinatorProcess) => (await getJson(proc.url, "/v1/status")).body;

  /** Sends a share that must be refused with `code`, and checks that the status is exactly what it was. */
  async function refused(proc: CoordinatorProcess, body: unknown, httpStatus: number, code: string): Promise<void> {
    const before = await status(proc);
    const answer = await send(proc.url, "POST", "/v1/recover", body);
    expect({ status: answer.status, code: answer.body?.error?.code }, answer.text).toEqual({ status: httpStatus, code });
    expect(await status(proc)).toEqual(before);
  }

  it("attacks on the recovery fail and change nothing; shares sealed to the attested key for the current attempt recover byte-identical state", async () => {
    const proc = await startCoordinator({ store: store(), extraArgs: args, timeoutMs: 60_000 });
    const { key } = await attestedKey(proc);
    const start = await status(proc);
    expect(start).toMatchObject({ state: "recovery-required", recovery: { threshold: 2, received: 0, nonce: expect.stringMatching(/^[0-9a-f]{32}$/) } });
    const attemptA = start.recovery.nonce as string;

    // A share in clear: refused, not kept.
    await refused(proc, { salt: doc.salt, share: toBase64(await shareOf(owners[0]!)) }, 400, "SHARE_NOT_SEALED");
    // A share sealed to another HPKE key (an impostor's, or a man in the middle's): it does not open.
    const impostor = await HpkeRecipient.generate();
    await refused(proc, await sealed(owners[0]!, impostor.publicKey, attemptA), 400, "SEALED_SHARE_INVALID");

    // Alice's share, sealed to the attested key for attempt A, counts. Someone records it on the way.
    const recorded = await sealed(owners[0]!, key, attemptA);
    const accepted = await send(proc.url, "POST", "/v1/recover", recorded);
    expect(accepted.status, accepted.text).toBe(200);
    expect(accepted.body.recovery).toEqual({ threshold: 2, received: 1, nonce: attemptA });

    // Bob resets the attempt; a new nonce begins.
    const reset = await send(proc.url, "DELETE", "/v1/recover", await resetBody(owners[1]!, name, attemptA));
    expect(reset.status, reset.text).toBe(200);
    const attemptB = reset.body.recovery.nonce as string;
    expect(attemptB).toMatch(/^[0-9a-f]{32}$/);
    expect(attemptB).not.toBe(attemptA);
    // The recorded share replayed in the new attempt, a share sealed for the old attempt, and the
    // recorded one relabelled with the new attempt: all refused, nothing kept.
    await refused(proc, recorded, 409, "ATTEMPT_CHANGED");
    await refused(proc, await sealed(owners[1]!, key, attemptA), 409, "ATTEMPT_CHANGED");
    await refused(proc, { ...recorded, sealedShare: { ...(recorded.sealedShare as object), attempt: attemptB } }, 400, "SEALED_SHARE_INVALID");
    expect((await status(proc)).recovery).toEqual({ threshold: 2, received: 0, nonce: attemptB });

    // A restart: a new process, a new HPKE key, a new attempt. The recorded share is refused there too.
    expect((await proc.stop("SIGKILL")).signal).toBe("SIGKILL");
    const next = await startCoordinator({ store: store(), extraArgs: args, timeoutMs: 60_000 });
    const attested = await attestedKey(next);
    expect(toHex(attested.key)).not.toBe(toHex(key));
    const attemptC = (await status(next)).recovery.nonce as string;
    expect([attemptA, attemptB]).not.toContain(attemptC);
    await refused(next, recorded, 409, "ATTEMPT_CHANGED");
    await refused(next, { ...recorded, sealedShare: { ...(recorded.sealedShare as object), attempt: attemptC } }, 400, "SEALED_SHARE_INVALID");
    // Sealed to the old process's key for the current attempt: it does not open here.
    await refused(next, await sealed(owners[0]!, key, attemptC), 400, "SEALED_SHARE_INVALID");

    // Alice and Carol seal to the attested key for the current attempt: ready, with the same history.
    const one = await send(next.url, "POST", "/v1/recover", await sealed(owners[0]!, attested.key, attemptC));
    expect(one.body, one.text).toEqual({ state: "recovery-required", recovery: { threshold: 2, received: 1, nonce: attemptC } });
    const two = await send(next.url, "POST", "/v1/recover", await sealed(owners[2]!, attested.key, attemptC));
    expect(two.body, two.text).toEqual({ state: "ready", recovery: { threshold: 2, received: 2, nonce: attemptC } });
    expect((await getJson(next.url, "/v1/manifests")).text).toBe(history);
    // Once ready, a replay changes nothing.
    await refused(next, recorded, 409, "NOT_IN_RECOVERY");
    expect(await status(next)).toMatchObject({ state: "ready", generation: 1 });
    await next.stop("SIGTERM");
  }, 240_000);
});

describe("--simulated-measurement and --simulated-host-data", () => {
  let dir: string;
  beforeAll(() => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "simulated-fields-"));
  });
  afterAll(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it("land in MEASUREMENT and HOST_DATA of the simulated report; default all zeros", async () => {
    const measurement = randomHex(48);
    const hostData = randomHex(32);
    const proc = await startCoordinator({
      store: "memory",
      extraArgs: ["--evidence", "simulated", "--simulated-measurement", measurement, "--simulated-host-data", hostData.toUpperCase()],
      timeoutMs: 60_000,
    });
    const { report } = await attestedKey(proc);
    expect({ measurement: toHex(report.measurement), hostData: toHex(report.hostData) }).toEqual({ measurement, hostData });
    await proc.stop("SIGTERM");

    const plain = await startCoordinator({ store: "memory", extraArgs: ["--evidence", "simulated"], timeoutMs: 60_000 });
    const zeros = (await attestedKey(plain)).report;
    expect({ measurement: toHex(zeros.measurement), hostData: toHex(zeros.hostData) }).toEqual({ measurement: "00".repeat(48), hostData: "00".repeat(32) });
    await plain.stop("SIGTERM");
  }, 180_000);

  it("are refused without --evidence simulated, or when not of their length (exit 2, one line)", async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [["--simulated-measurement", "11".repeat(48)], {}, /--simulated-measurement .*needs --evidence simulated/],
      [["--evidence", "none", "--simulated-host-data", "22".repeat(32)], {}, /--simulated-host-data .*needs --evidence simulated/],
      [["--evidence", "tsm", "--tsm-path", dir, "--simulated-host-data", "22".repeat(32)], {}, /--simulated-host-data .*needs --evidence simulated/],
      [[], { CONTRAST_SIMULATED_MEASUREMENT: "11".repeat(48) }, /--simulated-measurement .*needs --evidence simulated/],
      [["--evidence", "simulated", "--simulated-measurement", "11".repeat(32)], {}, /--simulated-measurement must be 48 bytes in hex/],
      [["--evidence", "simulated", "--simulated-host-data", "zz".repeat(32)], {}, /--simulated-host-data must be 32 bytes in hex/],
    ];
    for (const [flags, env, message] of cases) {
      const run = spawnSync(process.execPath, [bundlePath, "--store", "memory", "--port", "0", "--host", "127.0.0.1", ...flags], {
        cwd: dir,
        env: { ...process.env, ...env },
        encoding: "utf8",
        timeout: 20_000,
      });
      expect({ flags, env, code: run.status }).toEqual({ flags, env, code: 2 });
      expect(run.stderr).toMatch(/^contrast-coordinator: error: /);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toMatch(message);
    }
  }, 60_000);
});
