// Attacks with weak inputs on the real Coordinator and CLI: owner keys with public exponent 1 or 3, number-like and wildcard SANs, DER key files, and a stdout closed early.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadWorkloadOwnerKey } from "../../src/client/keys.js";
import { signedUpdate } from "../../src/client/update.js";
import { certificateDerOf } from "../../src/client/verify.js";
import { sha256 } from "../../src/crypto/provider.js";
import { makeSeedShares, shareCommitment } from "../../src/crypto/seedshares.js";
import { fromBase64, fromHex, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { cliPath, contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, snapshot } from "./harness.js";
import type { CliRun, OwnerKeyFiles } from "./harness.js";
import { exponentOnePrivatePem, readExponentOneCiphertext, spkiPem, withExponent } from "./weak-keys.js";

const openssl = "/usr/bin/openssl";

interface Status {
  state: string;
  generation: number | null;
  latestTransition: string | null;
}

interface ManifestJson {
  Policies: Record<string, { SANs: string[]; WorkloadSecretID: string }>;
  ReferenceValues: Record<string, unknown>;
  WorkloadOwnerKeyDigests: string[];
  SeedshareOwnerPubKeys: string[];
  Threshold?: number;
}

describe("weak inputs against the real Coordinator and CLI", () => {
  let work: string;
  let stateDir: string;
  let proc: CoordinatorProcess;
  let alice: OwnerKeyFiles;
  let mallory: OwnerKeyFiles;
  /** Alice's modulus with public exponent 1 and 3, as hex DER SPKI. */
  let weak1: string;
  let weak3: string;
  const policyBytes = utf8("package web\n");
  let policyHash: string;

  const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;
  const stateSnapshot = () => (existsSync(stateDir) ? snapshot(stateDir) : {});

  async function status(): Promise<Status> {
    return (await (await fetch(`${proc.url}/v1/status`)).json()) as Status;
  }

  async function post(path: string, body: unknown): Promise<{ status: number; code: string | undefined; message: string | undefined }> {
    const res = await fetch(proc.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const json = (await res.json()) as { error?: { code: string; message: string } };
    return { status: res.status, code: json.error?.code, message: json.error?.message };
  }

  function manifest(opts: { owners: string[]; sans?: string[]; threshold?: number; workloadOwners?: string[] }): ManifestJson {
    const m: ManifestJson = {
      Policies: { [policyHash]: { SANs: opts.sans ?? ["web"], WorkloadSecretID: "web" } },
      ReferenceValues: {},
      WorkloadOwnerKeyDigests: opts.workloadOwners ?? [],
      SeedshareOwnerPubKeys: opts.owners,
    };
    if (opts.threshold !== undefined) m.Threshold = opts.threshold;
    return m;
  }

  function firstSet(m: ManifestJson): Promise<{ status: number; code: string | undefined; message: string | undefined }> {
    return post("/v1/manifest", { manifest: toBase64(utf8(JSON.stringify(m))), policies: [toBase64(policyBytes)] });
  }

  /** The stable code of a failed `--json` run (the error document on stdout). */
  function jsonCode(run: CliRun): string {
    expectFailure(run);
    return (JSON.parse(run.stdout) as { error: { code: string } }).error.code;
  }

  function workspace(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, "policies"), { recursive: true });
    writeFileSync(join(dir, "policies", "web.rego"), policyBytes);
    return dir;
  }

  beforeAll(async () => {
    ensureBundles();
    work = mkdtempSync(join(tmpdir(), "contrast-weak-inputs-"));
    stateDir = join(work, "state");
    policyHash = toHex(await sha256(policyBytes));
    [alice, mallory] = await Promise.all([ownerKeyFiles(work, "alice"), ownerKeyFiles(work, "mallory")]);
    weak1 = toHex(await withExponent(fromHex(alice.spki), 1));
    weak3 = toHex(await withExponent(fromHex(alice.spki), 3));
    writeFileSync(join(work, "weak1.pub"), spkiPem(fromHex(weak1)));
    writeFileSync(join(work, "weak1.der"), fromHex(weak1));
    writeFileSync(join(work, "weak3.pub"), spkiPem(fromHex(weak3)));
    proc = await startCoordinator({ store: `fs:${stateDir}` });
  });

  afterAll(async () => {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("the weak keys are alice's modulus with exponent 1 and 3, and openssl reads them so", () => {
    const text = (file: string) => execFileSync(openssl, ["pkey", "-pubin", "-in", join(work, file), "-noout", "-text"], { encoding: "utf8" });
    expect(text("weak1.pub")).toMatch(/Exponent: 1 \(0x1\)/);
    expect(text("weak3.pub")).toMatch(/Exponent: 3 \(0x3\)/);
    expect(text("alice.pub")).toMatch(/Exponent: 65537 \(0x10001\)/);
    const modulus = (t: string) => t.slice(t.indexOf("Modulus"), t.indexOf("Exponent"));
    expect(modulus(text("weak1.pub"))).toBe(modulus(text("alice.pub")));
  });

  it("the Coordinator refuses a first set naming an owner key with exponent 1 or 3: 400 INVALID_MANIFEST, and stays uninitialized", async () => {
    const before = stateSnapshot();
    for (const m of [
      manifest({ owners: [weak1] }),
      manifest({ owners: [weak3] }),
      manifest({ owners: [alice.spki, weak1], threshold: 2 }),
      manifest({ owners: [mallory.spki, weak3] }),
    ]) {
      const res = await firstSet(m);
      expect(res.status).toBe(400);
      expect(res.code).toBe("INVALID_MANIFEST");
      expect(res.message).toMatch(/exponent (1|3)\b/);
    }
    expect(await status()).toMatchObject({ state: "uninitialized", generation: null });
    expect((await fetch(`${proc.url}/v1/manifests`)).status).toBe(409);
    expect(stateSnapshot()).toEqual(before);
  });

  it("the Coordinator refuses a first set with a wildcard over a TLD, a number-like name or an unspecified address, and stays uninitialized", async () => {
    const before = stateSnapshot();
    for (const san of ["*.com", "0x7f.1", "0177.0.0.1", "127.1", "2130706433", "web.0x1", "0.0.0.0", "::", "::ffff:0.0.0.0"]) {
      const res = await firstSet(manifest({ owners: [alice.spki], sans: ["web", san] }));
      expect(res.status, san).toBe(400);
      expect(res.code, san).toBe("INVALID_MANIFEST");
    }
    expect(await status()).toMatchObject({ state: "uninitialized", generation: null });
    expect(stateSnapshot()).toEqual(before);
  });

  it("contrast generate refuses a weak owner key (PEM or DER, given or kept from manifest.json) with KEY_WEAK, and writes nothing", async () => {
    const ws = workspace("ws-weak");
    const before = snapshot(ws);
    for (const args of [
      ["--seedshare-owner-key", join(work, "weak1.pub")],
      ["--seedshare-owner-key", join(work, "weak1.der")],
      ["--seedshare-owner-key", join(work, "weak3.pub")],
      ["--seedshare-owner-key", alice.pub, "--add-seedshare-owner-key", join(work, "weak1.pub")],
    ]) {
      const run = await contrast(["-w", ws, "--json", "generate", ...args], work);
      expect(jsonCode(run), args.join(" ")).toBe("KEY_WEAK");
      expect(snapshot(ws)).toEqual(before);
    }
    // A manifest.json edited by hand to list the weak key: generate does not carry it on.
    const edited = JSON.stringify(manifest({ owners: [alice.spki, weak1] }), null, 2);
    writeFileSync(join(ws, "manifest.json"), edited);
    const withManifest = snapshot(ws);
    const line = expectFailure(await contrast(["-w", ws, "generate"], work));
    expect(line).toMatch(/SeedshareOwnerPubKeys\[1\].*exponent 1/);
    expect(snapshot(ws)).toEqual(withManifest);
  });

  describe("after a first set with alice's key", () => {
    let ws: string;

    beforeAll(async () => {
      ws = workspace("ws");
      expectOk(await contrast(["-w", ws, "generate", "--seedshare-owner-key", alice.pub], work));
      expectOk(await contrast(["-c", proc.url, "-w", ws, "set"], work));
      expectOk(await contrast(["-c", proc.url, "-w", ws, "verify"], work));
    });

    /** A signed update of the workspace's manifest, changed by `edit`. */
    async function update(edit: (m: ManifestJson) => void): Promise<{ body: unknown; bytes: Uint8Array }> {
      const m = readJson<ManifestJson>(join(ws, "manifest.json"));
      edit(m);
      const bytes = utf8(JSON.stringify(m, null, 2) + "\n");
      const owner = await loadWorkloadOwnerKey(readFileSync(join(ws, "workload-owner.pem"), "utf8"), "workload-owner.pem");
      const rootCA = toHex(await sha256(certificateDerOf(readFileSync(join(ws, "coordinator-root-ca.pem"), "utf8"))));
      const { latestTransition } = await status();
      const { body } = await signedUpdate({
        manifest: bytes,
        policies: [policyBytes],
        previousTransition: latestTransition!,
        owner: { privateKey: owner.privateKey, spki: owner.spki },
        coordinator: { name: "coordinator", rootCA },
      });
      return { body, bytes };
    }

    it("a signed update naming a bad SAN or a weak owner key is refused 400 INVALID_MANIFEST and changes nothing; the same update with a good SAN is accepted", async () => {
      const before = await status();
      const stored = snapshot(stateDir);
      expect(before).toMatchObject({ state: "ready", generation: 1 });
      for (const san of ["*.com", "0x7f.1", "0.0.0.0", "::"]) {
        const res = await post("/v1/manifest", (await update((m) => Object.values(m.Policies)[0]!.SANs.push(san))).body);
        expect(res.status, san).toBe(400);
        expect(res.code, san).toBe("INVALID_MANIFEST");
      }
      for (const owners of [[weak1], [alice.spki, weak3]]) {
        const res = await post("/v1/manifest", (await update((m) => (m.SeedshareOwnerPubKeys = owners))).body);
        expect(res.code).toBe("INVALID_MANIFEST");
      }
      expect(await status()).toEqual(before);
      expect(snapshot(stateDir)).toEqual(stored);

      // The control: the same signed update with an acceptable SAN goes through.
      const good = await update((m) => Object.values(m.Policies)[0]!.SANs.push("*.web.example.com"));
      const res = await post("/v1/manifest", good.body);
      expect(res.status).toBe(200);
      expect((await status()).generation).toBe(2);
      writeFileSync(join(ws, "manifest.json"), good.bytes);
      expectOk(await contrast(["-c", proc.url, "-w", ws, "verify"], work));
    });

    it("contrast verify with its stdout closed before it writes (verify | head -1): exit 0, nothing on stderr, and its work done", async () => {
      rmSync(join(ws, "verify"), { recursive: true, force: true });
      rmSync(join(ws, ".contrast-state.json"));
      const run = await withClosedStdout(["-c", proc.url, "-w", ws, "verify"]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(existsSync(join(ws, "verify", "manifest.2.json"))).toBe(true);
      expect(readJson<{ generation: number }>(join(ws, ".contrast-state.json")).generation).toBe(2);
      // A failing command keeps its own status and its one stderr line.
      const failing = await withClosedStdout(["-c", proc.url, "-w", join(work, "nowhere"), "verify"]);
      expect(failing.code).toBe(1);
      expect(failing.stderr).toMatch(/^contrast: error: [^\n]*\n$/);
      for (const args of [["--help"], ["--version"], ["-c", proc.url, "status"], ["--json", "-c", proc.url, "status"]]) {
        const quick = await withClosedStdout(args);
        expect(quick.stderr, args.join(" ")).toBe("");
        expect(quick.code, args.join(" ")).toBe(0);
      }
    });
  });

  it("contrast seedshare check refuses a seed-shares.json with a share for an exponent-1 key (a share anyone can read) with KEY_WEAK", async () => {
    // The document a Coordinator without the exponent check would have handed out: 2 of 2, share 2 for the weak key.
    const seed = crypto.getRandomValues(new Uint8Array(64));
    const salt = crypto.getRandomValues(new Uint8Array(32));
    const doc = await makeSeedShares(seed, salt, [alice.spki, weak1], 2, "coordinator");
    // The attack: mallory reads share 2 from the public document with a key of her own, and it is the committed share.
    const stolen = await readExponentOneCiphertext(fromBase64(doc.shares[1]!.encryptedShare), readFileSync(mallory.pem, "utf8"));
    expect(await shareCommitment(salt, stolen)).toBe(doc.shares[1]!.commitment);

    const ws = workspace("ws-check");
    writeFileSync(join(ws, "seed-shares.json"), JSON.stringify(doc, null, 2));
    writeFileSync(join(work, "weak1.pem"), exponentOnePrivatePem(readFileSync(alice.pem, "utf8")));
    const before = snapshot(ws);
    for (const key of [alice.pem, join(work, "weak1.pem")]) {
      const run = await contrast(["-w", ws, "--json", "seedshare", "check", "--seedshare-owner-key", key], work);
      expect(jsonCode(run), key).toBe("KEY_WEAK");
    }
    expect(expectFailure(await contrast(["-w", ws, "seedshare", "check", "--seedshare-owner-key", alice.pem], work))).toMatch(
      /share 2 .*exponent 1/,
    );
    expect(snapshot(ws)).toEqual(before);

    // The control: the same owner's share in a document without the weak key checks out.
    writeFileSync(join(ws, "seed-shares.json"), JSON.stringify(await makeSeedShares(seed, salt, [alice.spki], 1, "coordinator"), null, 2));
    expectOk(await contrast(["-w", ws, "seedshare", "check", "--seedshare-owner-key", alice.pem], work));
  });

  it("contrast generate takes key files in DER as openssl writes them (-outform DER), to the same keys as PEM", async () => {
    const der = (name: string, ...args: string[]) => {
      execFileSync(openssl, [...args, "-outform", "DER", "-out", join(work, name)], { stdio: "pipe" });
      return join(work, name);
    };
    const ecPem = join(work, "owner-ec.pem");
    execFileSync(openssl, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", ecPem], { stdio: "pipe" });
    const ecSpki = der("owner-ec.pub.der", "pkey", "-in", ecPem, "-pubout");
    const ecDigest = toHex(await sha256(new Uint8Array(readFileSync(ecSpki))));
    const workloadForms = [ecSpki, der("owner-ec.pkcs8.der", "pkey", "-in", ecPem), der("owner-ec.sec1.der", "ec", "-in", ecPem)];
    const shareForms = [
      der("alice.spki.der", "pkey", "-in", alice.pem, "-pubout"),
      der("alice.pkcs1pub.der", "rsa", "-in", alice.pem, "-RSAPublicKey_out"),
      der("alice.pkcs8.der", "pkey", "-in", alice.pem),
      der("alice.pkcs1.der", "rsa", "-in", alice.pem, "-traditional"),
    ];
    for (const [i, shareFile] of shareForms.entries()) {
      const ws = workspace(`ws-der-${i}`);
      // The workspace's own workload-owner.pem may be DER too.
      writeFileSync(join(ws, "workload-owner.pem"), readFileSync(workloadForms[1 + (i % 2)]!));
      const args = ["-w", ws, "generate", "--seedshare-owner-key", shareFile];
      for (const f of workloadForms) args.push("--add-workload-owner-key", f);
      expectOk(await contrast(args, work));
      const m = readJson<ManifestJson>(join(ws, "manifest.json"));
      expect(m.SeedshareOwnerPubKeys, shareFile).toEqual([alice.spki]);
      expect(m.WorkloadOwnerKeyDigests, shareFile).toEqual([ecDigest]);
    }
    // A file that is neither PEM nor a DER key: one line naming the file and the formats, no internal error.
    writeFileSync(join(work, "junk.bin"), Uint8Array.of(0x00, 0xff, 0xfe, 0x80, 0x13, 0x37));
    const ws = workspace("ws-der-junk");
    const line = expectFailure(await contrast(["-w", ws, "generate", "--seedshare-owner-key", join(work, "junk.bin")], work));
    expect(line).toMatch(/junk\.bin is neither a PEM key file nor DER holding a PKCS#8, SPKI, PKCS#1 or SEC1 key/);
    expect(line).not.toMatch(/internal error/);
  });
});

/**
 * Runs the CLI with its stdout a pipe whose reading end is closed before the CLI writes anything. Its
 * Coordinator serves no evidence, so attestation is skipped, and the warning saying so is taken out
 * of stderr as contrast() does.
 */
function withClosedStdout(args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CONTRAST_INSECURE_SKIP_ATTESTATION: "1" };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, [cliPath, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    // The reader goes away at once, as `head -1` does after its line: every write of the CLI meets EPIPE.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: "", stderr: stderr.replace(/^contrast: warning: attestation skipped .*\n/gm, "") }));
  });
}
