// Real SEV-SNP and TDX evidence through the built CLI against the built Coordinator (real processes, a test TEE's roots pinned): a nonce, evidence bound to it and the key, a certificate; and every attack refused with its code and reason, nothing issued.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundlePath, killAll, projectRoot, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { opensslVerify } from "../certificates.js";
import { createTestTee, makeEvidence, spkiOfKeyFile, teeFiles, testReferenceValues } from "../attestation/make-evidence.js";
import type { EvidenceRequest } from "../attestation/make-evidence.js";
import { contrast, ensureBundles, expectFailure, expectOk } from "./harness.js";
import type { CliRun } from "./harness.js";

const execFileP = promisify(execFile);

/** How far SIGUSR2 moves the Coordinator's clock: past a nonce's 5 minutes. */
const clockStepMs = 6 * 60_000;

/**
 * Starts the Coordinator bundle under a test clock: `new Date()` and `Date.now()` run `offset` ms
 * ahead, and each SIGUSR2 adds clockStepMs and logs `test clock advanced` once it holds. Nothing else
 * of the bundle changes.
 */
function clockWrapper(bundle: string): string {
  return `const RealDate = Date;
let offset = 0;
class TestDate extends RealDate {
  constructor(...args) { if (args.length === 0) super(RealDate.now() + offset); else super(...args); }
  static now() { return RealDate.now() + offset; }
}
globalThis.Date = TestDate;
process.on("SIGUSR2", () => {
  offset += ${clockStepMs};
  process.stdout.write(JSON.stringify({ msg: "test clock advanced", offsetMs: offset }) + "\\n");
});
await import(${JSON.stringify(pathToFileURL(bundle).href)});
`;
}

describe("contrast mesh-cert with SEV-SNP and TDX evidence (real processes, a test TEE)", () => {
  let work: string;
  let ws: string;
  let tee: string;
  let proc: CoordinatorProcess;
  /** The workload key (EC P-256, PKCS#8 PEM, as openssl writes it) and another one (P-384, SEC1 PEM). */
  let workloadKey: string;
  let otherKey: string;
  let webHash: string;
  let rogueHash: string;
  let outputs = 0;
  const file = (...parts: string[]) => join(work, ...parts);
  const cli = (...args: string[]): Promise<CliRun> => contrast(["-c", proc.url, "-w", ws, ...args], work);
  const newOutput = () => file(`out-${++outputs}`);

  /** coordinator_mesh_certificates_total from /metrics (0 before the first). */
  async function issued(): Promise<number> {
    const text = await (await fetch(`${proc.url}/metrics`)).text();
    const line = /^coordinator_mesh_certificates_total (\d+)$/m.exec(text);
    return line === null ? 0 : Number(line[1]);
  }

  /** A nonce through `contrast mesh-cert --nonce --json`. */
  async function nonce(): Promise<string> {
    const run = await cli("--json", "mesh-cert", "--nonce");
    expectOk(run);
    const { nonce: value } = JSON.parse(run.stdout) as { nonce: string };
    expect(value).toMatch(/^[0-9a-f]{64}$/);
    return value;
  }

  /** Evidence from the test TEE written to a file; defaults: a fresh nonce, the workload key, the web policy. */
  async function evidenceFile(kind: "snp" | "tdx", change: Partial<EvidenceRequest> = {}): Promise<string> {
    const request: EvidenceRequest = { nonce: change.nonce ?? (await nonce()), spki: spkiOfKeyFile(workloadKey), policyHash: webHash, ...change };
    const path = file(`evidence-${kind}-${++outputs}.json`);
    writeFileSync(path, JSON.stringify(await makeEvidence(tee, kind, request)));
    return path;
  }

  /** Presents evidence with the workload key; expects a refusal with `code` (and `reason`), no output directory, nothing issued. */
  async function expectRefused(evidence: string, code: string, reason?: string, key = workloadKey): Promise<void> {
    const before = await issued();
    const out = newOutput();
    const run = await cli("--json", "mesh-cert", "--evidence", evidence, "--key", key, "-o", out);
    const line = expectFailure(run);
    const error = (JSON.parse(run.stdout) as { error: { code: string; message: string } }).error;
    expect(error.code, line).toBe(code);
    if (reason === undefined) expect(error.message).not.toMatch(/\[403 ATTESTATION_FAILED/);
    else expect(error.message, line).toContain(`[403 ATTESTATION_FAILED ${reason}]`);
    expect(existsSync(out)).toBe(false);
    expect(await issued()).toBe(before);
  }

  /** Presents evidence with the workload key; expects a certificate for that key that openssl verifies. */
  async function expectIssued(evidence: string): Promise<string> {
    const before = await issued();
    const out = newOutput();
    const run = await cli("--json", "mesh-cert", "--evidence", evidence, "--key", workloadKey, "-o", out);
    expectOk(run);
    const result = JSON.parse(run.stdout) as { policyHash: string; workloadSecretID: string };
    expect(result).toMatchObject({ policyHash: webHash, workloadSecretID: "web" });
    expect(await issued()).toBe(before + 1);
    // The workload's key stays where it is: no key.pem.
    expect(existsSync(join(out, "key.pem"))).toBe(false);
    const chain = readFileSync(join(out, "cert-chain.pem"), "utf8");
    writeFileSync(join(out, "leaf.pem"), chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    for (const args of [
      ["-CAfile", join(out, "coordinator-root-ca.pem"), "-untrusted", join(out, "cert-chain.pem"), join(out, "leaf.pem")],
      ["-CAfile", join(out, "mesh-ca.pem"), join(out, "leaf.pem")],
      ["-CAfile", join(ws, "coordinator-root-ca.pem"), "-untrusted", join(out, "cert-chain.pem"), join(out, "leaf.pem")],
    ]) {
      const result = await opensslVerify(args);
      expect(result.ok, result.output).toBe(true);
    }
    // The certified key is --key's.
    const { stdout: keyPub } = await execFileP("/usr/bin/openssl", ["pkey", "-in", workloadKey, "-pubout"]);
    const { stdout: certPub } = await execFileP("/usr/bin/openssl", ["x509", "-in", join(out, "leaf.pem"), "-noout", "-pubkey"]);
    expect(certPub).toBe(keyPub);
    return out;
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-cli-evidence-"));
    ws = join(work, "ws");
    tee = join(work, "tee");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\nallow := true\n");
    writeFileSync(file("rogue.rego"), "package rogue\nallow := true\n");
    webHash = (await execFileP("/usr/bin/openssl", ["dgst", "-sha256", "-r", join(ws, "policies", "web.rego")])).stdout.slice(0, 64);
    rogueHash = (await execFileP("/usr/bin/openssl", ["dgst", "-sha256", "-r", file("rogue.rego")])).stdout.slice(0, 64);
    workloadKey = file("workload-key.pem");
    otherKey = file("other-key.pem");
    await execFileP("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", workloadKey]);
    await execFileP("/usr/bin/openssl", ["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", otherKey]);

    // The slow part, once: the test TEE (three RSA-4096 keys).
    await createTestTee(tee);
    const wrapper = file("coordinator-with-test-clock.mjs");
    writeFileSync(wrapper, clockWrapper(bundlePath));
    proc = await startCoordinator({
      store: `fs:${file("state")}`,
      bundle: wrapper,
      extraArgs: ["--attestation", "sev-snp,tdx", "--attestation-roots", join(tee, teeFiles.roots)],
    });

    // The manifest: the web policy, and the reference values the test TEE's default evidence satisfies.
    expectOk(await cli("generate", "--seedshare-owner-bits", "3072"));
    const manifest = JSON.parse(readFileSync(join(ws, "manifest.json"), "utf8")) as Record<string, unknown>;
    manifest.ReferenceValues = testReferenceValues(tee);
    writeFileSync(join(ws, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    expectOk(await cli("set"));
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("--nonce prints a fresh nonce alone (and {nonce} with --json); each ask gives another", async () => {
    const run = await cli("mesh-cert", "--nonce");
    expectOk(run);
    expect(run.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const again = await nonce();
    expect(again).not.toBe(run.stdout.trim());
    expect(await issued()).toBe(0);
  });

  it("SNP evidence made (by the make-evidence script) for the nonce and the key gets a certificate that openssl verifies", async () => {
    const n = await nonce();
    const evidence = file("evidence-snp-script.json");
    const { stderr } = await execFileP(
      process.execPath,
      ["--import", "tsx", "test/attestation/make-evidence.ts", "snp", tee, "--nonce", n, "--key", workloadKey, "--policy", join(ws, "policies", "web.rego"), "-o", evidence],
      { cwd: projectRoot },
    );
    expect(stderr).toBe("");
    expect(JSON.parse(readFileSync(evidence, "utf8"))).toMatchObject({ type: "amd-sev-snp", nonce: n });
    await expectIssued(evidence);
  });

  it("TDX evidence made for the nonce and the key gets a certificate that openssl verifies", async () => {
    await expectIssued(await evidenceFile("tdx"));
  });

  it("SNP: a wrong measurement, a TCB below the minimum, a debuggable guest, an unlisted policy and another key's evidence are each refused", async () => {
    await expectRefused(await evidenceFile("snp", { measurement: "00".repeat(48) }), "ATTESTATION_FAILED", "SNP_MEASUREMENT_MISMATCH");
    await expectRefused(await evidenceFile("snp", { outdatedTcb: true }), "ATTESTATION_FAILED", "SNP_TCB_TOO_LOW");
    await expectRefused(await evidenceFile("snp", { debug: true }), "ATTESTATION_FAILED", "SNP_DEBUG_ENABLED");
    await expectRefused(await evidenceFile("snp", { policyHash: rogueHash }), "POLICY_NOT_IN_MANIFEST");
    // Evidence bound to another key, presented for the workload key (whose certificate the attacker wants).
    await expectRefused(await evidenceFile("snp", { spki: spkiOfKeyFile(otherKey) }), "ATTESTATION_FAILED", "SNP_REPORT_DATA_MISMATCH");
    // The other way round: the workload's evidence, presented for the attacker's key.
    await expectRefused(await evidenceFile("snp"), "ATTESTATION_FAILED", "SNP_REPORT_DATA_MISMATCH", otherKey);
  });

  it("TDX: a wrong MRTD, a debug TD, an unlisted policy and another key's evidence are each refused", async () => {
    await expectRefused(await evidenceFile("tdx", { measurement: "00".repeat(48) }), "ATTESTATION_FAILED", "TDX_MRTD_MISMATCH");
    await expectRefused(await evidenceFile("tdx", { debug: true }), "ATTESTATION_FAILED", "TDX_DEBUG_ENABLED");
    await expectRefused(await evidenceFile("tdx", { policyHash: rogueHash }), "POLICY_NOT_IN_MANIFEST");
    await expectRefused(await evidenceFile("tdx", { spki: spkiOfKeyFile(otherKey) }), "ATTESTATION_FAILED", "TDX_REPORT_DATA_MISMATCH");
  });

  it("a nonce works once: the same evidence again, or new evidence for a nonce a refused request used, is NONCE_REPLAYED", async () => {
    const evidence = await evidenceFile("snp");
    await expectIssued(evidence);
    await expectRefused(evidence, "NONCE_REPLAYED");
    // A refusal uses the nonce up too: no second try with other evidence for it.
    const n = await nonce();
    await expectRefused(await evidenceFile("tdx", { nonce: n, debug: true }), "ATTESTATION_FAILED", "TDX_DEBUG_ENABLED");
    await expectRefused(await evidenceFile("tdx", { nonce: n }), "NONCE_REPLAYED");
  });

  it("a forged nonce is NONCE_INVALID: one never issued, and an issued one with one digit changed", async () => {
    await expectRefused(await evidenceFile("snp", { nonce: "0".repeat(64) }), "NONCE_INVALID");
    const n = await nonce();
    const forged = n.slice(0, 40) + (n[40] === "0" ? "1" : "0") + n.slice(41);
    await expectRefused(await evidenceFile("tdx", { nonce: forged }), "NONCE_INVALID");
  });

  it("the CLI refuses evidence without --key, --policy with --evidence, a key of another type, and --nonce with -o, asking nothing", async () => {
    const before = await issued();
    const evidence = await evidenceFile("snp");
    const noKey = await cli("mesh-cert", "--evidence", evidence, "-o", newOutput());
    expect(expectFailure(noKey, 2)).toMatch(/--evidence needs --key FILE/);
    const withPolicy = await cli("mesh-cert", "--evidence", evidence, "--key", workloadKey, "--policy", join(ws, "policies", "web.rego"), "-o", newOutput());
    expect(expectFailure(withPolicy, 2)).toMatch(/--policy is for --attestation insecure-simulated/);
    await execFileP("/usr/bin/openssl", ["genpkey", "-algorithm", "ED25519", "-out", file("ed25519.pem")]);
    const wrongKey = await cli("--json", "mesh-cert", "--evidence", evidence, "--key", file("ed25519.pem"), "-o", newOutput());
    expectFailure(wrongKey);
    expect((JSON.parse(wrongKey.stdout) as { error: { code: string } }).error.code).toBe("KEY_WRONG_TYPE");
    expectFailure(await cli("mesh-cert", "--nonce", "-o", newOutput()), 2);
    expect(await issued()).toBe(before);
    // The evidence was never sent: its nonce is still good.
    await expectIssued(evidence);
  });

  it("simulated evidence is refused by a Coordinator that runs only the real validators", async () => {
    const before = await issued();
    const run = await cli("--json", "mesh-cert", "--policy", join(ws, "policies", "web.rego"), "-o", newOutput(), "--attestation", "insecure-simulated");
    expectFailure(run);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe("ATTESTATION_UNSUPPORTED");
    expect(await issued()).toBe(before);
  });

  // Last: it moves the Coordinator's clock 6 minutes ahead.
  it("a nonce older than 5 minutes is NONCE_EXPIRED", async () => {
    const evidence = await evidenceFile("snp");
    const advanced = proc.stdout.filter((l) => l.includes("test clock advanced")).length;
    proc.child.kill("SIGUSR2");
    await expect.poll(() => proc.stdout.filter((l) => l.includes("test clock advanced")).length, { timeout: 10_000 }).toBe(advanced + 1);
    await expectRefused(evidence, "NONCE_EXPIRED");
    // A nonce asked for after that is good again.
    await expectIssued(await evidenceFile("tdx"));
  });
});
