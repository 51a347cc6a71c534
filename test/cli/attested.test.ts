// The attested Coordinator through the built CLI and real processes: set, verify, status, kill -9, recover (sealed, over plain http) and verify with the Coordinator's evidence checked at every step; impostors at its address get no share, and a recording proxy learns nothing it could use.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simulatedTcb } from "../../src/attestation/snp/simulated.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk } from "./harness.js";
import type { CliRun } from "./harness.js";

const measurement = "5a".repeat(48);
const otherMeasurement = "6b".repeat(48);
const coordinatorPolicy = "package coordinator\nallow := true\n";
const coordinatorPolicyHash = createHash("sha256").update(coordinatorPolicy).digest("hex");

/** The simulated evidence source of a Coordinator process: its measurement and the coordinator policy as HOST_DATA. */
function evidenceArgs(m: string): string[] {
  return ["--attestation", "insecure-simulated", "--evidence", "simulated", "--simulated-measurement", m, "--simulated-host-data", coordinatorPolicyHash];
}

function pem(base64: string): string {
  return `-----BEGIN CERTIFICATE-----\n${base64.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
}

interface Answer {
  name: string;
  state: string;
  hpkePublicKey: string;
  evidence: { certificates: { ark: string; ask: string } };
}

async function evidenceOf(url: string, nonce = "00".repeat(32)): Promise<Answer> {
  const res = await fetch(`${url}/v1/attestation?nonce=${nonce}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Answer;
}

/**
 * Pins the ARK and ASK of a Coordinator's simulated source into `file`. The simulated source makes a
 * new hierarchy at each start: it stands in for AMD's, which never changes, so a test pins it anew
 * after each start as an owner pins AMD's once.
 */
async function pinRoots(url: string, file: string): Promise<void> {
  const { evidence } = await evidenceOf(url);
  writeFileSync(file, pem(evidence.certificates.ark) + pem(evidence.certificates.ask));
}

/** The failure's code and message, from the CLI's --json output (after the one-line check of expectFailure). */
function failure(run: CliRun): { code: string; message: string } {
  expectFailure(run);
  return (JSON.parse(run.stdout) as { error: { code: string; message: string } }).error;
}

async function statusOf(url: string): Promise<{ state: string; recovery: { received: number } | null }> {
  return (await (await fetch(`${url}/v1/status`)).json()) as { state: string; recovery: { received: number } | null };
}

/** One request a proxy saw. */
interface Seen {
  method: string;
  url: string;
  body: string;
}

/** A proxy in front of `target`; `answer` may answer a request itself (status, body) instead of forwarding. */
async function proxy(target: string, answer?: (req: Seen) => Promise<[number, string] | undefined>): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const request: Seen = { method: req.method ?? "", url: req.url ?? "", body: Buffer.concat(chunks).toString("utf8") };
      seen.push(request);
      const own = answer === undefined ? undefined : await answer(request);
      if (own !== undefined) {
        res.writeHead(own[0], { "content-type": "application/json" });
        res.end(own[1]);
        return;
      }
      const headers: Record<string, string> = {};
      if (req.headers["content-type"] !== undefined) headers["content-type"] = req.headers["content-type"];
      const forwarded = await fetch(target + request.url, { method: request.method, headers, body: request.body === "" ? undefined : request.body });
      res.writeHead(forwarded.status, { "content-type": forwarded.headers.get("content-type") ?? "application/json" });
      res.end(Buffer.from(await forwarded.arrayBuffer()));
    })().catch((err: unknown) => {
      res.writeHead(599);
      res.end(String(err));
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((done) => { server.closeAllConnections(); server.close(() => done()); }),
  };
}

describe("an attested Coordinator through the CLI (simulated evidence, real processes)", () => {
  let root: string;
  let ws: string;
  let store: string;
  let roots: string;
  let genuine: CoordinatorProcess;
  const cli = (url: string, ...args: string[]): Promise<CliRun> =>
    contrast([...args, "-c", url, "-w", ws, "--attestation-roots", roots, "--timeout", "20s"], ws, 60_000, { attest: true });

  beforeAll(async () => {
    ensureBundles();
    root = mkdtempSync(join(tmpdir(), "contrast-attested-"));
    ws = join(root, "ws");
    store = join(root, "store");
    roots = join(root, "roots.pem");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\nallow := true\n");
    writeFileSync(join(ws, "policies", "coordinator.rego"), coordinatorPolicy);
    expectOk(await contrast(["generate", "-w", ws, "--seedshare-owner-bits", "3072"], ws, 60_000));
    // The Coordinator's own policy and the platform's reference values, as Contrast's manifests carry them.
    const manifest = JSON.parse(readFileSync(join(ws, "manifest.json"), "utf8")) as {
      Policies: Record<string, { SANs: string[]; Role?: string }>;
      ReferenceValues?: unknown;
    };
    manifest.Policies[coordinatorPolicyHash]!.Role = "coordinator";
    manifest.ReferenceValues = {
      snp: [
        {
          ProductName: "Milan",
          TrustedMeasurement: measurement,
          MinimumTCB: { BootloaderVersion: simulatedTcb.bootloader, TEEVersion: simulatedTcb.tee, SNPVersion: simulatedTcb.snp, MicrocodeVersion: simulatedTcb.microcode },
          GuestPolicy: { ABIMinor: 0, ABIMajor: 0, SMT: true },
        },
      ],
    };
    writeFileSync(join(ws, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    genuine = await startCoordinator({ store: `fs:${store}`, extraArgs: evidenceArgs(measurement) });
    await pinRoots(genuine.url, roots);
  }, 180_000);

  afterAll(async () => {
    await killAll();
    rmSync(root, { recursive: true, force: true });
  });

  it("set, verify and status check the evidence first, and say what they attested", async () => {
    const set = await cli(genuine.url, "set");
    expectOk(set);
    expect(set.stdout).toContain(`attested: amd-sev-snp Coordinator coordinator, policy ${coordinatorPolicyHash}`);
    const verify = await cli(genuine.url, "verify");
    expectOk(verify);
    expect(verify.stdout).toContain("attested: amd-sev-snp");
    const status = await cli(genuine.url, "status", "--json");
    expectOk(status);
    expect((JSON.parse(status.stdout) as { attested: { policy: string } }).attested.policy).toBe(coordinatorPolicyHash);
  }, 120_000);

  it("an unpinned platform root fails attestation and nothing is sent", async () => {
    const other = join(root, "other-roots.pem");
    const impostor = await startCoordinator({ store: `fs:${join(root, "unpinned")}`, extraArgs: evidenceArgs(measurement) });
    await pinRoots(impostor.url, other);
    const run = await contrast(["status", "--json", "-c", genuine.url, "-w", ws, "--attestation-roots", other], ws, 60_000, { attest: true });
    const error = failure(run);
    expect(error.code).toBe("ATTESTATION_FAILED");
    expect(error.message).toContain("[SNP_ARK_NOT_PINNED]");
    await impostor.stop("SIGKILL");
  }, 120_000);

  describe("after kill -9 and a restart", () => {
    beforeAll(async () => {
      expect((await genuine.stop("SIGKILL")).signal).toBe("SIGKILL");
      genuine = await startCoordinator({ store: `fs:${store}`, extraArgs: evidenceArgs(measurement) });
      await pinRoots(genuine.url, roots);
    }, 120_000);

    it("an impostor without evidence (a copy of the store) gets no share: ATTESTATION_UNAVAILABLE", async () => {
      const copy = join(root, "copy-none");
      cpSync(store, copy, { recursive: true });
      const impostor = await startCoordinator({ store: `fs:${copy}`, extraArgs: ["--attestation", "insecure-simulated"] });
      const run = await cli(impostor.url, "recover", "--json");
      expect(failure(run).code).toBe("ATTESTATION_UNAVAILABLE");
      expect((await statusOf(impostor.url)).recovery!.received).toBe(0);
      await impostor.stop("SIGKILL");
    }, 120_000);

    it("an impostor in a TEE with another measurement gets no share: the error names MEASUREMENT", async () => {
      const copy = join(root, "copy-measurement");
      cpSync(store, copy, { recursive: true });
      const impostor = await startCoordinator({ store: `fs:${copy}`, extraArgs: evidenceArgs(otherMeasurement) });
      const impostorRoots = join(root, "impostor-roots.pem");
      await pinRoots(impostor.url, impostorRoots);
      const run = await contrast(["recover", "--json", "-c", impostor.url, "-w", ws, "--attestation-roots", impostorRoots], ws, 60_000, { attest: true });
      const error = failure(run);
      expect(error.code).toBe("ATTESTATION_FAILED");
      expect(error.message).toContain("[SNP_MEASUREMENT_MISMATCH]");
      expect(error.message).toContain(otherMeasurement);
      expect(error.message).toContain(measurement);
      expect((await statusOf(impostor.url)).recovery!.received).toBe(0);
      await impostor.stop("SIGKILL");
    }, 120_000);

    it("an impostor relaying the genuine evidence with its own key, or an old answer, gets no share: REPORT_DATA mismatch", async () => {
      const copy = join(root, "copy-relay");
      cpSync(store, copy, { recursive: true });
      const impostor = await startCoordinator({ store: `fs:${copy}`, extraArgs: evidenceArgs(otherMeasurement) });
      const ownKey = (await evidenceOf(impostor.url)).hpkePublicKey;
      const recorded = JSON.stringify(await evidenceOf(genuine.url, "11".repeat(32)));
      for (const mode of ["swap-key", "replay"] as const) {
        const front = await proxy(impostor.url, async (req) => {
          if (!req.url.startsWith("/v1/attestation")) return undefined;
          if (mode === "replay") return [200, recorded];
          const relayed = (await (await fetch(genuine.url + req.url)).json()) as Answer;
          return [200, JSON.stringify({ ...relayed, hpkePublicKey: ownKey })];
        });
        const error = failure(await cli(front.url, "recover", "--json"));
        expect(error.code).toBe("ATTESTATION_FAILED");
        expect(error.message).toContain("[COORDINATOR_REPORT_DATA_MISMATCH]");
        expect(front.seen.filter((r) => r.method === "POST")).toEqual([]);
        await front.close();
      }
      expect((await statusOf(impostor.url)).recovery!.received).toBe(0);
      expect((await statusOf(genuine.url)).recovery!.received).toBe(0);
      await impostor.stop("SIGKILL");
    }, 120_000);

    it("status, then recover over plain http sealed to the attested key, then verify: ready again", async () => {
      const status = await cli(genuine.url, "status");
      expectOk(status);
      expect(status.stdout).toMatch(/state\s+recovery-required/);
      const recording = await proxy(genuine.url);
      const recover = await cli(recording.url, "recover");
      expectOk(recover);
      expect(recover.stdout).toContain("recovered Coordinator coordinator");
      expectOk(await cli(genuine.url, "verify"));
      await recording.close();

      // What the recording proxy saw: one sealed share, never a share in clear.
      const posts = recording.seen.filter((r) => r.method === "POST" && r.url === "/v1/recover");
      expect(posts).toHaveLength(1);
      const body = JSON.parse(posts[0]!.body) as { share?: string; sealedShare?: { attempt: string } };
      expect(body.share).toBeUndefined();
      expect(body.sealedShare).toBeDefined();

      // Replayed to the same Coordinator after another restart (a new key, a new attempt), it recovers nothing.
      expect((await genuine.stop("SIGKILL")).signal).toBe("SIGKILL");
      genuine = await startCoordinator({ store: `fs:${store}`, extraArgs: evidenceArgs(measurement) });
      const replay = await fetch(`${genuine.url}/v1/recover`, { method: "POST", headers: { "content-type": "application/json" }, body: posts[0]!.body });
      expect([400, 409]).toContain(replay.status);
      expect(["SEALED_SHARE_INVALID", "ATTEMPT_CHANGED"]).toContain(((await replay.json()) as { error: { code: string } }).error.code);
      const after = await statusOf(genuine.url);
      expect(after.state).toBe("recovery-required");
      expect(after.recovery!.received).toBe(0);
    }, 180_000);

    it("without reference values the CLI sends nothing; given as a file, the same owner recovers", async () => {
      const bare = mkdtempSync(join(root, "bare-"));
      cpSync(join(ws, "seed-shares.json"), join(bare, "seed-shares.json"));
      cpSync(join(ws, "seedshare-owner.pem"), join(bare, "seedshare-owner.pem"));
      const run = await contrast(["recover", "--json", "-c", genuine.url, "-w", bare, "--attestation-roots", roots], bare, 60_000, { attest: true });
      expect(failure(run).code).toBe("COORDINATOR_REFERENCE_MISSING");
      expect((await statusOf(genuine.url)).recovery!.received).toBe(0);
      // With the reference values given as a file, the same workspace recovers.
      await pinRoots(genuine.url, roots);
      const withFile = await contrast(
        ["recover", "-c", genuine.url, "-w", bare, "--attestation-roots", roots, "--coordinator-reference-values", join(ws, "manifest.json")],
        bare,
        60_000,
        { attest: true },
      );
      expectOk(withFile);
      expect((await statusOf(genuine.url)).state).toBe("ready");
    }, 120_000);
  });
});
