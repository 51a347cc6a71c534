// `contrast mesh-cert --attestation tsm` as real processes: the built CLI gets its evidence from a configfs-tsm directory on disk whose kernel is the fake tree of fake-tsm.ts (signing real SNP reports with a test TEE), and a built Coordinator with the test TEE's roots pinned issues the certificate or refuses it.
//
// configfs does the kernel's work synchronously inside mkdir, write and rmdir. A plain directory
// cannot, so the CLI runs under a small wrapper (like the test clock of mesh-cert-evidence.test.ts)
// that hands exactly those three calls under the fake directory to this test process, where the
// fake tree's hooks do them on the real files (attribute files at mkdir; generation, outblob and
// auxblob at the inblob write) before the call returns. Every read is the CLI's own, from disk;
// everything else in the CLI bundle is untouched.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { killAll, runBundle, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { opensslVerify } from "../certificates.js";
import { createTestTee, spkiOfKeyFile, teeFiles, testMeasurement, testReferenceValues } from "../attestation/make-evidence.js";
import { fakeTsm } from "../attestation/fake-tsm.js";
import type { FakeTee, FakeTsm, FakeTsmOptions } from "../attestation/fake-tsm.js";
import { certTable } from "../attestation/snp-fixtures.js";
import { buildSnpReport, signSnpReport } from "../../src/attestation/snp/simulated.js";
import type { SnpTcbParts } from "../../src/attestation/snp/report.js";
import { certTableGuids } from "../../src/attestation/snp/certificates.js";
import { expectedReportData } from "../../src/attestation/report-data.js";
import { concat, fromBase64, fromHex, toHex } from "../../src/encoding.js";
import { subtle } from "../../src/crypto/provider.js";
import { cliPath, contrast, ensureBundles, expectFailure, expectOk, rewritingProxy } from "./harness.js";
import type { CliRun, RewritingProxy } from "./harness.js";

const execFileP = promisify(execFile);

/** The SNP part of a saved test TEE (tee.json) that signing a report needs. */
interface SavedSnp {
  product: "Milan" | "Genoa" | "Turin";
  ark: string;
  ask: string;
  vceks: { current: { certificate: string; privateKey: string; tcb: SnpTcbParts; hwid: string } };
}

/**
 * The guest's SEV-SNP firmware, as the test TEE: a report with REPORT_DATA = `reportDataOf(inblob)`
 * (the inblob itself for an honest one), the test measurement and `hostData`, signed by the test
 * TEE's VCEK; auxblob the extended report's certificate table (VCEK, ASK, ARK).
 */
function snpFirmware(teeDir: string, hostData: string, reportDataOf: (inblob: Uint8Array) => Promise<Uint8Array> | Uint8Array): FakeTee {
  const saved = (JSON.parse(readFileSync(join(teeDir, teeFiles.secrets), "utf8")) as { snp: SavedSnp }).snp;
  const vcek = saved.vceks.current;
  return async (inblob) => {
    const key = await subtle().importKey("pkcs8", fromBase64(vcek.privateKey) as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, false, ["sign"]);
    const hwid = fromHex(vcek.hwid);
    const report = buildSnpReport(saved.product, {
      reportedTcb: vcek.tcb,
      chipId: concat(hwid, new Uint8Array(64 - hwid.length)),
      measurement: fromHex(testMeasurement.snp),
      hostData: fromHex(hostData),
      reportData: await reportDataOf(inblob),
    });
    return {
      outblob: await signSnpReport(report, key),
      auxblob: certTable([
        [certTableGuids.vcek, fromBase64(vcek.certificate)],
        [certTableGuids.ask, fromBase64(saved.ask)],
        [certTableGuids.ark, fromBase64(saved.ark)],
      ]),
    };
  };
}

/** One call the CLI process hands to the fake kernel. */
interface KernelCall {
  op: "mkdir" | "writeFile" | "rmdir";
  path: string;
  /** writeFile's bytes, base64. */
  data?: string;
}

/** The CLI bundle, with mkdir, writeFile and rmdir under `tsmDir` done by the fake kernel at `kernelUrl`. */
function cliWrapper(tsmDir: string, kernelUrl: string): string {
  return `import { createRequire, syncBuiltinESMExports } from "node:module";
const fsp = createRequire(import.meta.url)("node:fs/promises");
const root = ${JSON.stringify(tsmDir + "/")};
const inside = (path) => typeof path === "string" && path.startsWith(root);
async function kernel(op, path, data) {
  const res = await fetch(${JSON.stringify(kernelUrl)}, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ op, path, data: data === undefined ? undefined : Buffer.from(data).toString("base64") }),
  });
  const answer = await res.json();
  if (!res.ok) throw Object.assign(new Error(answer.message), { code: answer.code });
}
const real = { mkdir: fsp.mkdir, writeFile: fsp.writeFile, rmdir: fsp.rmdir };
fsp.mkdir = (path, ...rest) => (inside(path) ? kernel("mkdir", path) : real.mkdir(path, ...rest));
fsp.writeFile = (path, data, ...rest) => (inside(path) ? kernel("writeFile", path, data) : real.writeFile(path, data, ...rest));
fsp.rmdir = (path, ...rest) => (inside(path) ? kernel("rmdir", path) : real.rmdir(path, ...rest));
syncBuiltinESMExports();
await import(${JSON.stringify(pathToFileURL(cliPath).href)});
`;
}

describe("contrast mesh-cert --attestation tsm (real processes, a configfs-tsm tree on disk, a test TEE)", () => {
  let work: string;
  let ws: string;
  let tee: string;
  let proc: CoordinatorProcess;
  let proxy: RewritingProxy;
  let kernelServer: Server;
  let kernelUrl: string;
  let workloadKey: string;
  let otherKey: string;
  let webHash: string;
  let outputs = 0;
  /** The fake trees by directory: the kernel calls of the CLI process go to the tree they are under. */
  const kernels = new Map<string, FakeTsm>();
  const file = (...parts: string[]) => join(work, ...parts);
  const newOutput = () => file(`out-${++outputs}`);

  /** coordinator_mesh_certificates_total from /metrics (0 before the first). */
  async function issued(): Promise<number> {
    const text = await (await fetch(`${proc.url}/metrics`)).text();
    const line = /^coordinator_mesh_certificates_total (\d+)$/m.exec(text);
    return line === null ? 0 : Number(line[1]);
  }

  /** A fake configfs-tsm tree whose kernel serves the CLI process; removed after the test. */
  function tsmTree(options: FakeTsmOptions): { fake: FakeTsm; wrapper: string } {
    const fake = fakeTsm(options);
    kernels.set(fake.dir, fake);
    const wrapper = file(`contrast-with-tsm-${kernels.size}.mjs`);
    writeFileSync(wrapper, cliWrapper(fake.dir, kernelUrl));
    return { fake, wrapper };
  }

  /** The CLI bundle (or a wrapper of it) through the recording proxy in front of the Coordinator. */
  async function cli(bundle: string, ...args: string[]): Promise<CliRun> {
    const run = await runBundle(["-c", proxy.url, "-w", ws, ...args], { cwd: work, bundle, timeoutMs: 30_000 });
    return { code: run.code, stdout: run.stdout, stderr: run.stderr };
  }

  /** The nonces the Coordinator handed out (its 401 answers), in order. */
  function noncesIssued(): string[] {
    return proxy.exchanges.filter((e) => e.status === 401).map((e) => (JSON.parse(e.body) as { nonce: string }).nonce);
  }

  /** The evidence of the certificate requests that carried some, in order. */
  function evidenceSent(): Record<string, unknown>[] {
    return proxy.exchanges
      .filter((e) => e.method === "POST" && e.url === "/v1/mesh/certificate")
      .map((e) => (JSON.parse(e.requestBody) as { evidence?: Record<string, unknown> }).evidence)
      .filter((e): e is Record<string, unknown> => e !== undefined);
  }

  /** The error of a failed --json run, after expectFailure. */
  function errorOf(run: CliRun, exitCode = 1): { code: string; message: string; hint: string } {
    const line = expectFailure(run, exitCode);
    const error = (JSON.parse(run.stdout) as { error: { code: string; message: string; hint: string } }).error;
    expect(error.message.length, line).toBeGreaterThan(0);
    return error;
  }

  /** The leaf certificate's extension values (hex DER) by OID. */
  function leafExtensions(out: string): Map<string, string> {
    const chain = readFileSync(join(out, "cert-chain.pem"), "utf8");
    const leaf = new x509.X509Certificate(chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0]);
    return new Map(leaf.extensions.map((e) => [e.type, toHex(new Uint8Array(e.value))]));
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-cli-tsm-"));
    ws = join(work, "ws");
    tee = join(work, "tee");
    mkdirSync(join(ws, "policies"), { recursive: true });
    writeFileSync(join(ws, "policies", "web.rego"), "package web\nallow := true\n");
    webHash = (await execFileP("/usr/bin/openssl", ["dgst", "-sha256", "-r", join(ws, "policies", "web.rego")])).stdout.slice(0, 64);
    workloadKey = file("workload-key.pem");
    otherKey = file("other-key.pem");
    await execFileP("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", workloadKey]);
    await execFileP("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", otherKey]);

    // The fake kernel: does each call the CLI process hands over on the real files, with the hooks of the tree it is under.
    kernelServer = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const call = JSON.parse(Buffer.concat(chunks).toString("utf8")) as KernelCall;
        const entry = call.op === "writeFile" ? dirname(call.path) : call.path;
        const fake = kernels.get(dirname(entry));
        const done =
          fake === undefined
            ? Promise.reject(Object.assign(new Error(`no fake kernel serves ${call.path}`), { code: "ENOENT" }))
            : call.op === "mkdir"
              ? fake.fs.mkdir(call.path)
              : call.op === "writeFile"
                ? fake.fs.writeFile(call.path, fromBase64(call.data ?? ""))
                : fake.fs.rmdir(call.path);
        done.then(
          () => {
            res.writeHead(200, { "content-type": "application/json" });
            res.end("{}");
          },
          (err: unknown) => {
            res.writeHead(500, { "content-type": "application/json" });
            res.end(JSON.stringify({ code: (err as { code?: unknown }).code ?? "EIO", message: (err as Error).message }));
          },
        );
      });
    });
    await new Promise<void>((done) => kernelServer.listen(0, "127.0.0.1", done));
    kernelUrl = `http://127.0.0.1:${(kernelServer.address() as AddressInfo).port}/`;

    // The slow part, once: the test TEE (three RSA-4096 keys).
    await createTestTee(tee);
    proc = await startCoordinator({
      store: `fs:${file("state")}`,
      extraArgs: ["--attestation", "sev-snp", "--attestation-roots", join(tee, teeFiles.roots)],
    });
    proxy = await rewritingProxy(proc.url, () => undefined);

    // The manifest: the web policy, and the reference values the test TEE's reports satisfy.
    expectOk(await contrast(["-c", proc.url, "-w", ws, "generate", "--seedshare-owner-bits", "3072"], work));
    const manifest = JSON.parse(readFileSync(join(ws, "manifest.json"), "utf8")) as Record<string, unknown>;
    manifest.ReferenceValues = testReferenceValues(tee);
    writeFileSync(join(ws, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    expectOk(await contrast(["-c", proc.url, "-w", ws, "set"], work));
  });

  afterEach(() => {
    for (const fake of kernels.values()) fake.remove();
    kernels.clear();
  });

  afterAll(async () => {
    await proxy?.close();
    await new Promise<void>((done) => (kernelServer === undefined ? done() : kernelServer.close(() => done())));
    await killAll();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it("writes SHA-512(its key's SPKI ‖ the Coordinator's nonce) to inblob, presents the guest's report with that nonce, and gets a certificate carrying the report's claims", async () => {
    const { fake, wrapper } = tsmTree({ provider: "sev_guest\n", tee: snpFirmware(tee, webHash, (inblob) => inblob) });
    const before = await issued();
    const out = newOutput();
    const run = await cli(wrapper, "--json", "mesh-cert", "--attestation", "tsm", "--tsm-path", fake.dir, "-o", out);
    expectOk(run);
    expect(JSON.parse(run.stdout)).toMatchObject({ policyHash: webHash, workloadSecretID: "web", evidence: { source: "tsm", type: "amd-sev-snp" } });
    expect(await issued()).toBe(before + 1);

    // One report entry, removed again; its inblob binds the key the CLI made (key.pem) and the nonce the Coordinator gave.
    const [nonce] = noncesIssued();
    expect(nonce).toMatch(/^[0-9a-f]{64}$/);
    const spki = spkiOfKeyFile(join(out, "key.pem"));
    const reportData = await expectedReportData(spki, fromHex(nonce!));
    expect(fake.entriesMade).toBe(1);
    expect(fake.inblobs).toEqual([reportData]);
    expect(fake.left()).toEqual([]);

    // What was sent: the source's wire shape (outblob as the report, auxblob as the certificate table) and the nonce.
    const [evidence] = evidenceSent();
    expect(Object.keys(evidence!).sort()).toEqual(["certTable", "nonce", "report", "type"]);
    expect(evidence).toMatchObject({ type: "amd-sev-snp", nonce });

    // The certificate: for key.pem's key, chaining to the Coordinator's CAs, with the report's claims.
    const { stdout: keyPub } = await execFileP("/usr/bin/openssl", ["pkey", "-in", join(out, "key.pem"), "-pubout"]);
    const leaf = join(out, "leaf.pem");
    writeFileSync(leaf, readFileSync(join(out, "cert-chain.pem"), "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    const { stdout: certPub } = await execFileP("/usr/bin/openssl", ["x509", "-in", leaf, "-noout", "-pubkey"]);
    expect(certPub).toBe(keyPub);
    const verified = await opensslVerify(["-CAfile", join(ws, "coordinator-root-ca.pem"), "-untrusted", join(out, "cert-chain.pem"), leaf]);
    expect(verified.ok, verified.output).toBe(true);
    const claims = leafExtensions(out);
    expect(claims.get("1.3.9901.2.1.21")).toBe("0440" + toHex(reportData)); // REPORT_DATA
    expect(claims.get("1.3.9901.2.1.22")).toBe("0430" + testMeasurement.snp); // MEASUREMENT
    expect(claims.get("1.3.9901.2.1.23")).toBe("0420" + webHash); // HOST_DATA: the policy
    expect(claims.get("1.3.9901.3.1")).toBe("0403" + toHex(new TextEncoder().encode("web")));
  });

  it("with --key, the certificate is for that key and no key.pem is written", async () => {
    const { fake, wrapper } = tsmTree({ tee: snpFirmware(tee, webHash, (inblob) => inblob) });
    const out = newOutput();
    const run = await cli(wrapper, "mesh-cert", "--attestation", "tsm", "--tsm-path", fake.dir, "--key", workloadKey, "-o", out);
    expectOk(run);
    expect(run.stdout).toMatch(/presented amd-sev-snp evidence from configfs-tsm/);
    expect(existsSync(join(out, "key.pem"))).toBe(false);
    const nonce = noncesIssued().at(-1)!;
    expect(fake.inblobs).toEqual([await expectedReportData(spkiOfKeyFile(workloadKey), fromHex(nonce))]);
    const leaf = join(out, "leaf.pem");
    writeFileSync(leaf, readFileSync(join(out, "cert-chain.pem"), "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    const { stdout: keyPub } = await execFileP("/usr/bin/openssl", ["pkey", "-in", workloadKey, "-pubout"]);
    const { stdout: certPub } = await execFileP("/usr/bin/openssl", ["x509", "-in", leaf, "-noout", "-pubkey"]);
    expect(certPub).toBe(keyPub);
  });

  it("evidence from configfs-tsm whose REPORT_DATA is for another key: the Coordinator refuses it (ATTESTATION_FAILED SNP_REPORT_DATA_MISMATCH), the CLI shows why, nothing is issued or written", async () => {
    // A host that answers the inblob with a report bound to the attacker's key and the same nonce.
    const attacker = spkiOfKeyFile(otherKey);
    const { fake, wrapper } = tsmTree({ tee: snpFirmware(tee, webHash, () => expectedReportData(attacker, fromHex(noncesIssued().at(-1)!))) });
    const before = await issued();
    const out = newOutput();
    const run = await cli(wrapper, "--json", "mesh-cert", "--attestation", "tsm", "--tsm-path", fake.dir, "--key", workloadKey, "-o", out);
    const error = errorOf(run);
    expect(error.code).toBe("ATTESTATION_FAILED");
    expect(error.message).toContain("[403 ATTESTATION_FAILED SNP_REPORT_DATA_MISMATCH]");
    expect(error.hint).toMatch(/configfs-tsm/);
    // The CLI asked for the report data of its own key, and sent what it got.
    expect(fake.inblobs).toEqual([await expectedReportData(spkiOfKeyFile(workloadKey), fromHex(noncesIssued().at(-1)!))]);
    expect(evidenceSent().at(-1)).toMatchObject({ type: "amd-sev-snp", nonce: noncesIssued().at(-1) });
    expect(fake.left()).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(await issued()).toBe(before);
  });

  it("configfs-tsm without a provider (no sev-guest or tdx-guest driver): EVIDENCE_FAILED naming the file, no evidence sent, nothing issued", async () => {
    const { fake, wrapper } = tsmTree({ provider: null, tee: snpFirmware(tee, webHash, (inblob) => inblob) });
    const before = await issued();
    const sent = evidenceSent().length;
    const out = newOutput();
    const run = await cli(wrapper, "--json", "mesh-cert", "--attestation", "tsm", "--tsm-path", fake.dir, "-o", out);
    const error = errorOf(run);
    expect(error.code).toBe("EVIDENCE_FAILED");
    expect(error.message).toContain(`${fake.dir}/contrast-`);
    expect(error.message).toMatch(/\/provider is missing/);
    expect(fake.entriesMade).toBe(1);
    expect(fake.left()).toEqual([]);
    expect(evidenceSent().length).toBe(sent);
    expect(existsSync(out)).toBe(false);
    expect(await issued()).toBe(before);
  });

  it("a --tsm-path that does not exist, or is a file: TSM_UNAVAILABLE with a hint, nothing asked of the Coordinator", async () => {
    const asked = proxy.exchanges.length;
    writeFileSync(file("not-a-dir"), "");
    for (const path of [file("no-such-tsm"), file("not-a-dir")]) {
      const out = newOutput();
      const error = errorOf(await cli(cliPath, "--json", "mesh-cert", "--attestation", "tsm", "--tsm-path", path, "-o", out));
      expect(error.code).toBe("TSM_UNAVAILABLE");
      expect(error.message).toContain(path);
      expect(error.hint).toMatch(/configfs/);
      expect(existsSync(out)).toBe(false);
    }
    expect(proxy.exchanges.length).toBe(asked);
  });

  it("usage mistakes (exit 2), nothing asked: --attestation tsm with --evidence or --policy, --tsm-path without --attestation tsm or with --nonce", async () => {
    const asked = proxy.exchanges.length;
    const before = await issued();
    writeFileSync(file("evidence.json"), "{}");
    const policy = join(ws, "policies", "web.rego");
    const tsm = file("no-such-tsm");
    for (const args of [
      ["--attestation", "tsm", "--evidence", file("evidence.json"), "--key", workloadKey, "-o", newOutput()],
      ["--attestation", "tsm", "--policy", policy, "-o", newOutput()],
      ["--attestation", "insecure-simulated", "--policy", policy, "--tsm-path", tsm, "-o", newOutput()],
      ["--evidence", file("evidence.json"), "--key", workloadKey, "--tsm-path", tsm, "-o", newOutput()],
      ["--nonce", "--tsm-path", tsm],
    ]) {
      const run = await cli(cliPath, "--json", "mesh-cert", ...args);
      expect(errorOf(run, 2).code, args.join(" ")).toBe("USAGE");
    }
    expect(proxy.exchanges.length).toBe(asked);
    expect(await issued()).toBe(before);
  });
});
