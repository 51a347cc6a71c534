// `contrast mesh-cert`: the workload side, as an initializer does it: a key, evidence bound to it and a Coordinator nonce (from a file, from the guest's configfs-tsm, or simulated), and the mesh certificate files.
import { createPrivateKey, createPublicKey } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { resolve } from "node:path";
import { ClientError, CoordinatorClient } from "../../../src/client/client.js";
import type { MeshCertificateRequest } from "../../../src/client/client.js";
import { KeyError, pem } from "../../../src/client/keys.js";
import { sha256, subtle } from "../../../src/crypto/provider.js";
import { fromHex, fromUtf8, toBase64, toHex } from "../../../src/encoding.js";
import { expectedReportData } from "../../../src/attestation/report-data.js";
import { CoordinatorError } from "../../../src/errors.js";
import { defaultTsmPath, tsmEvidenceSource } from "../../node/tsm.js";
import { CliError, usageError } from "../errors.js";
import { clientOf, fetchTrusting, patiently, requestTimeout, requiredFlag, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { exists, publicMode, readInput, secretMode, writeFileAtomic } from "../workspace.js";

/** The files mesh-cert writes into -o DIR (key.pem only for a key it made itself). */
const outputs = ["key.pem", "cert-chain.pem", "mesh-ca.pem", "coordinator-root-ca.pem", "workload-secret"] as const;

/** Evidence kinds the CLI can make itself: from the guest's configfs-tsm, or simulated. */
const attestationKinds = ["tsm", "insecure-simulated"] as const;

/** Evidence types a file given with --evidence may hold (the Coordinator's validators). */
const evidenceTypes = ["amd-sev-snp", "intel-tdx"] as const;

/** The Coordinator's nonces: 32 bytes, hex. */
const noncePattern = /^[0-9a-f]{64}$/;

/** The codes in which the Coordinator cannot answer until a person acts (mesh-cert waits for them only with --timeout). */
const peopleCodes = ["RECOVERY_REQUIRED", "STALE", "NOT_INITIALIZED"];

/** What the last answer said beyond what ClientError keeps: a 401's nonce, a refusal's reason. */
interface Answer {
  status: number;
  authenticate: string | null;
  body: unknown;
}

/**
 * The Coordinator client of clientOf (the same URL, --ca and request bounds), whose fetch also keeps
 * the last answer: the nonce of a 401 and the reason of an attestation refusal live in the body.
 */
function recordingClient(ctx: Context): { client: CoordinatorClient; last: () => Answer | undefined } {
  const plain = clientOf(ctx);
  const ca = stringFlag(ctx.flags, "ca");
  // clientOf has checked --ca (it exists and holds PEM certificates); only its certificates are passed on.
  const inner =
    ca === undefined
      ? (input: string, init?: RequestInit) => fetch(input, init)
      : fetchTrusting((readFileSync(ca, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).join("\n") + "\n");
  let last: Answer | undefined;
  const recording = async (input: string, init?: RequestInit): Promise<Response> => {
    last = undefined;
    const res = await inner(input, init);
    let body: unknown;
    try {
      body = JSON.parse(await res.clone().text());
    } catch {
      body = undefined;
    }
    last = { status: res.status, authenticate: res.headers.get("www-authenticate"), body };
    return res;
  };
  const client = new CoordinatorClient({ baseUrl: plain.baseUrl, fetch: recording, requestTimeoutMs: (method) => requestTimeout(ctx, method) });
  return { client, last: () => last };
}

/** The workload key: its DER SPKI, and its PKCS#8 if mesh-cert made it (then it writes key.pem). */
interface WorkloadKey {
  spki: Uint8Array;
  /** Set only for a key made here. */
  pkcs8?: Uint8Array;
  /** The file it came from, for --key. */
  file?: string;
}

const curves: Record<string, string> = { prime256v1: "P-256", secp384r1: "P-384" };

/** Reads --key: an EC P-256 or P-384 private key, PEM or DER, PKCS#8 or SEC1 (as openssl writes them). */
async function loadWorkloadKey(path: string): Promise<WorkloadKey> {
  const content = await readInput(path, "pass the workload's private key file with --key (PEM or DER, PKCS#8 or SEC1, EC P-256 or P-384)");
  const buffer = Buffer.from(content);
  let key: KeyObject | undefined;
  const attempts: (() => KeyObject)[] = buffer.includes("-----BEGIN")
    ? [() => createPrivateKey({ key: buffer, format: "pem" })]
    : [() => createPrivateKey({ key: buffer, format: "der", type: "pkcs8" }), () => createPrivateKey({ key: buffer, format: "der", type: "sec1" })];
  let failure: unknown;
  for (const attempt of attempts) {
    try {
      key = attempt();
      break;
    } catch (err) {
      failure = err;
    }
  }
  if (key === undefined) {
    const code = (failure as { code?: unknown } | undefined)?.code;
    if (code === "ERR_MISSING_PASSPHRASE" || buffer.includes("ENCRYPTED")) {
      throw new KeyError("KEY_ENCRYPTED", `--key ${path} is encrypted with a passphrase; decrypt it first (openssl pkey -in FILE -out FILE.plain)`);
    }
    throw new KeyError("KEY_INVALID", `--key ${path} is not a private key file (PEM or DER, PKCS#8 or SEC1)`);
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve === undefined || curves[curve] === undefined) {
    const what = key.asymmetricKeyType === "ec" ? `EC ${curve ?? "key on an unknown curve"}` : (key.asymmetricKeyType ?? "unknown");
    throw new KeyError("KEY_WRONG_TYPE", `--key ${path} is an ${what} key; a workload key must be ECDSA P-256 or P-384`);
  }
  return { spki: new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" })), file: path };
}

/** A fresh ECDSA P-384 workload key. */
async function freshWorkloadKey(): Promise<WorkloadKey> {
  const pair = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return {
    spki: new Uint8Array(await subtle().exportKey("spki", pair.publicKey)),
    pkcs8: new Uint8Array(await subtle().exportKey("pkcs8", pair.privateKey)),
  };
}

/** The nonce of a 401 ATTESTATION_REQUIRED answer: the body's `nonce`, which must agree with WWW-Authenticate's. */
function nonceOf(answer: Answer | undefined, url: string): string {
  const fromBody = (answer?.body as { nonce?: unknown } | undefined)?.nonce;
  const fromHeader = /(?:^|[\s,])nonce="([^"]*)"/.exec(answer?.authenticate ?? "")?.[1];
  const nonce = typeof fromBody === "string" ? fromBody : fromHeader;
  if (nonce === undefined || !noncePattern.test(nonce) || (fromHeader !== undefined && fromHeader !== nonce)) {
    throw new CliError(
      "BAD_RESPONSE",
      `${url} answered 401 ATTESTATION_REQUIRED without a usable nonce (a nonce field of 64 hex digits, the same as in WWW-Authenticate)`,
      "check that --coordinator is a Contrast Coordinator as new as this CLI",
    );
  }
  return nonce;
}

/** Asks the Coordinator for a nonce: a certificate request without evidence, answered 401 ATTESTATION_REQUIRED with one. */
async function askNonce(ctx: Context, workloadKey: WorkloadKey): Promise<string> {
  const { client, last } = recordingClient(ctx);
  return patiently(
    ctx,
    client.baseUrl,
    async () => {
      try {
        // No evidence at all: the request the Coordinator answers with a nonce.
        await client.meshCertificate({ publicKey: toBase64(workloadKey.spki) } as MeshCertificateRequest);
      } catch (err) {
        if (err instanceof ClientError && err.code === "ATTESTATION_REQUIRED") return nonceOf(last(), `${client.baseUrl}/v1/mesh/certificate`);
        throw err;
      }
      throw new CliError(
        "BAD_RESPONSE",
        `${client.baseUrl} issued a certificate without any evidence: this Coordinator checks no attestation`,
        "do not trust certificates of this Coordinator for anything but development",
      );
    },
    peopleCodes,
  );
}

/** What to do about an attestation refusal, by the verifier's reason code (and whether the CLI made the evidence itself from configfs-tsm). */
function reasonHint(reason: string, fromTsm: boolean): string | undefined {
  if (reason.endsWith("_REPORT_DATA_MISMATCH") && fromTsm) {
    return "this CLI wrote SHA-512(the key's DER SPKI ‖ the nonce) to inblob, and configfs-tsm answered evidence for other report data: the directory of --tsm-path is not this guest's own TEE, or another writer used the report entry; run mesh-cert inside the workload's confidential VM";
  }
  if (reason.endsWith("_REPORT_DATA_MISMATCH")) {
    return "the evidence is not for this key and nonce: its REPORT_DATA must be SHA-512(the DER SPKI of --key ‖ the nonce); produce it again for this key and a new nonce (contrast mesh-cert --nonce)";
  }
  if (reason === "SNP_TCB_TOO_LOW" || reason === "SNP_LAUNCH_TCB_TOO_LOW" || reason === "TDX_TCB_EVALUATION_DATA_NUMBER_TOO_LOW") {
    return "the platform's firmware (TCB) is older than the manifest's ReferenceValues allow: update the host's firmware, or lower the minimum in the manifest if that is acceptable";
  }
  if (/^(SNP_MEASUREMENT|TDX_MRTD|TDX_RTMR|TDX_MRSEAM|TDX_XFAM|TDX_TD_ATTRIBUTES)_MISMATCH$/.test(reason)) {
    return "the workload's launch measurement is not one the manifest's ReferenceValues trust: run the image the reference values describe, or add its values to the manifest (contrast set)";
  }
  if (reason.endsWith("_DEBUG_ENABLED")) return "a debuggable guest is never admitted: start the workload with debugging off";
  if (reason === "SNP_ARK_NOT_PINNED" || reason === "TDX_ROOT_NOT_PINNED") {
    return "the evidence's certificates end in a root this Coordinator does not trust (AMD's and Intel's, or those of its --attestation-roots)";
  }
  if (reason.endsWith("_NO_REFERENCE_VALUES")) return "the manifest's ReferenceValues list nothing for this platform: add its values to the manifest (contrast set)";
  if (reason.endsWith("_CERTIFICATE_EXPIRED") || reason.endsWith("_CERTIFICATE_NOT_YET_VALID")) {
    return "a certificate that comes with the evidence is not valid now: fetch current ones for the platform (and check the clocks)";
  }
  return undefined;
}

/** An attestation refusal with the verifier's reason (error.reason of the answer) in the message, and a hint for that reason. */
function refusal(err: ClientError, answer: Answer | undefined, fromTsm: boolean): CliError | ClientError {
  const reason = (answer?.body as { error?: { reason?: unknown } } | undefined)?.error?.reason;
  if (err.code !== "ATTESTATION_FAILED" || typeof reason !== "string" || !/^[A-Z0-9_]{1,64}$/.test(reason)) return err;
  const message = err.message.includes(reason) ? err.message : `${reason}: ${err.message}`;
  return new CliError(
    err.code,
    `the Coordinator refused the evidence: ${message} [${err.status ?? 403} ${err.code} ${reason}]`,
    reasonHint(reason, fromTsm) ?? "the evidence must show the platform and policy the manifest's ReferenceValues and Policies describe",
  );
}

/** Reads and checks the outline of --evidence FILE (the Coordinator checks the rest). */
async function readEvidence(path: string): Promise<Record<string, unknown>> {
  const hint = "pass the workload's evidence as JSON: {\"type\": \"amd-sev-snp\", \"nonce\", \"report\", \"certificates\"} or {\"type\": \"intel-tdx\", \"nonce\", \"quote\"}";
  const bytes = await readInput(path, hint);
  let evidence: unknown;
  try {
    evidence = JSON.parse(fromUtf8(bytes));
  } catch {
    throw new CliError("FILE_INVALID", `--evidence ${path} is not JSON`, hint);
  }
  if (typeof evidence !== "object" || evidence === null || Array.isArray(evidence)) {
    throw new CliError("FILE_INVALID", `--evidence ${path} is not a JSON object`, hint);
  }
  const e = evidence as Record<string, unknown>;
  if (typeof e.type !== "string" || !(evidenceTypes as readonly string[]).includes(e.type)) {
    throw new CliError(
      "FILE_INVALID",
      `--evidence ${path}: type ${JSON.stringify(e.type ?? null)} is not one of ${evidenceTypes.join(", ")}`,
      e.type === "insecure-simulated" ? "for simulated evidence pass --attestation insecure-simulated --policy FILE instead" : hint,
    );
  }
  if (typeof e.nonce !== "string" || !noncePattern.test(e.nonce)) {
    throw new CliError(
      "FILE_INVALID",
      `--evidence ${path} has no nonce of 64 hex digits`,
      "the evidence must be made for a nonce of this Coordinator (contrast mesh-cert --nonce prints one) and carry it in its nonce field",
    );
  }
  return e;
}

/** Checks that --tsm-path is a directory (the kernel's configfs-tsm report directory, or what stands in for it). */
async function checkTsmPath(path: string): Promise<void> {
  const hint =
    "run mesh-cert inside the workload's confidential VM: an SEV-SNP or TDX guest with Linux 6.7 or newer, its sev-guest or tdx-guest driver loaded and configfs mounted at /sys/kernel/config (mount -t configfs none /sys/kernel/config); or pass --tsm-path DIR; nothing was requested";
  let stat;
  try {
    stat = await fsp.stat(path);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const why = code === "ENOENT" ? "does not exist" : `cannot be read (${(err as Error).message})`;
    throw new CliError("TSM_UNAVAILABLE", `the configfs-tsm report directory ${path} ${why}: this machine offers no configfs-tsm reports`, hint);
  }
  if (!stat.isDirectory()) throw new CliError("TSM_UNAVAILABLE", `the configfs-tsm report directory ${path} is not a directory`, hint);
}

/**
 * The workload's own evidence from configfs-tsm at `path` for `nonce` (hex): REPORT_DATA =
 * SHA-512(the key's DER SPKI ‖ the nonce), as the workload validators check it, in the wire shape
 * the Coordinator takes (the source's shape and the nonce). EVIDENCE_FAILED of the source becomes a
 * CliError with the same code.
 */
async function tsmEvidence(path: string, workloadKey: WorkloadKey, nonce: string): Promise<Record<string, unknown>> {
  const reportData = await expectedReportData(workloadKey.spki, fromHex(nonce));
  try {
    return { ...(await tsmEvidenceSource({ path }).evidence(reportData)), nonce };
  } catch (err) {
    if (!(err instanceof CoordinatorError) || err.code !== "EVIDENCE_FAILED") throw err;
    throw new CliError(
      "EVIDENCE_FAILED",
      `configfs-tsm (${path}) made no evidence: ${err.message}`,
      "check that this runs as root in an SEV-SNP or TDX guest whose sev-guest or tdx-guest driver is loaded; nothing was sent but the request for a nonce",
    );
  }
}

/** Runs `contrast mesh-cert`. */
export async function meshCert(ctx: Context): Promise<void> {
  const keyPath = stringFlag(ctx.flags, "key");
  const evidencePath = stringFlag(ctx.flags, "evidence");
  const attestation = stringFlag(ctx.flags, "attestation");
  const tsmPathFlag = stringFlag(ctx.flags, "tsm-path");

  if (ctx.flags["nonce"] === true) {
    const extra = ["policy", "output", "attestation", "evidence", "tsm-path", "force"].filter((f) => ctx.flags[f] !== undefined);
    if (extra.length > 0) {
      throw usageError(`--nonce only asks the Coordinator for a nonce: it takes no ${extra.map((f) => `--${f}`).join(", ")}`, "usage: contrast mesh-cert -c URL --nonce [--key FILE]");
    }
    const workloadKey = keyPath === undefined ? await freshWorkloadKey() : await loadWorkloadKey(keyPath);
    const nonce = await askNonce(ctx, workloadKey);
    ctx.out.result({ nonce });
    ctx.out.line(nonce);
    return;
  }

  if (evidencePath !== undefined && attestation !== undefined) {
    throw usageError(
      `--evidence and --attestation ${attestation} both give evidence: pass one`,
      "--evidence FILE for evidence made beforehand, --attestation tsm to make it now from the guest's configfs-tsm, --attestation insecure-simulated for development",
    );
  }
  if (tsmPathFlag !== undefined && attestation !== "tsm") {
    throw usageError("--tsm-path is where --attestation tsm finds configfs-tsm: it has no effect without it", "pass --attestation tsm --tsm-path DIR, or leave out --tsm-path");
  }
  if (attestation === "tsm" && stringFlag(ctx.flags, "policy") !== undefined) {
    throw usageError(
      "--policy is for --attestation insecure-simulated: with --attestation tsm, the policy is the one the guest's evidence names (HOST_DATA, MRCONFIGID)",
      "leave out --policy",
    );
  }
  if (evidencePath !== undefined && stringFlag(ctx.flags, "policy") !== undefined) {
    throw usageError(
      "--policy is for --attestation insecure-simulated: with --evidence, the policy is the one the evidence names (HOST_DATA, MRCONFIGID)",
      "leave out --policy",
    );
  }
  if (evidencePath !== undefined && keyPath === undefined) {
    throw usageError(
      "--evidence needs --key FILE: evidence from a file binds the key it was made for (REPORT_DATA = SHA-512(its SPKI ‖ nonce)), so a key made now cannot be certified with it",
      "pass the workload's private key with --key FILE (the key the evidence was produced for)",
    );
  }
  if (evidencePath === undefined && attestation === undefined) {
    throw usageError(
      "no attestation evidence to present",
      "pass --attestation tsm (inside the workload's confidential VM: evidence from configfs-tsm), --evidence FILE --key FILE (a workload's evidence, for a nonce from contrast mesh-cert --nonce), or --attestation insecure-simulated (development and tests only: it proves nothing)",
    );
  }
  if (attestation !== undefined && !(attestationKinds as readonly string[]).includes(attestation)) {
    throw usageError(
      `--attestation ${attestation}: unknown kind`,
      `the kinds are: ${attestationKinds.join(", ")}; evidence made elsewhere (${evidenceTypes.join(", ")}) is passed with --evidence FILE --key FILE`,
    );
  }
  const fromTsm = attestation === "tsm";
  const policyPath = evidencePath === undefined && !fromTsm ? requiredFlag(ctx.flags, "policy", "pass the workload's policy file: --policy FILE") : undefined;
  const outDir = requiredFlag(ctx.flags, "output", "pass the directory to write the certificates to: -o DIR");
  const tsmPath = tsmPathFlag ?? defaultTsmPath;
  if (fromTsm) await checkTsmPath(tsmPath);

  // configfs-tsm evidence is made below, once the key and a nonce are there.
  let evidence: Record<string, unknown> = {};
  if (evidencePath !== undefined) {
    evidence = await readEvidence(evidencePath);
  } else if (!fromTsm) {
    const policy = await readInput(policyPath!, "pass the workload's policy file with --policy");
    evidence = { type: attestation, policyHash: toHex(await sha256(policy)) };
  }
  const workloadKey = keyPath === undefined ? await freshWorkloadKey() : await loadWorkloadKey(keyPath);
  const written = outputs.filter((name) => name !== "key.pem" || workloadKey.pkcs8 !== undefined);
  const { client, last } = recordingClient(ctx);
  // key.pem is a private key nobody else has: replacing it by surprise would strand whatever uses it.
  const dir = resolve(outDir);
  const present: string[] = [];
  for (const name of written) if (await exists(resolve(dir, name))) present.push(name);
  if (present.length > 0 && ctx.flags["force"] !== true) {
    throw new CliError(
      "OUTPUT_EXISTS",
      `${outDir}/ already holds ${present.join(", ")}, which this would replace${present.includes("key.pem") ? " (key.pem by a new private key)" : ""}`,
      "pass another -o DIR, or --force to replace them; nothing was requested",
    );
  }

  if (fromTsm) evidence = await tsmEvidence(tsmPath, workloadKey, await askNonce(ctx, workloadKey));

  let result;
  try {
    result = await patiently(ctx, client.baseUrl, () => client.meshCertificate({ publicKey: toBase64(workloadKey.spki), evidence }), peopleCodes);
  } catch (err) {
    throw err instanceof ClientError ? refusal(err, last(), fromTsm) : err;
  }

  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CliError("WRITE_FAILED", `cannot create ${outDir}: ${(err as Error).message}`, "check the path and its permissions");
  }
  if (workloadKey.pkcs8 !== undefined) await writeFileAtomic(resolve(dir, "key.pem"), pem(workloadKey.pkcs8, "PRIVATE KEY"), secretMode);
  await writeFileAtomic(resolve(dir, "cert-chain.pem"), result.certChain, publicMode);
  await writeFileAtomic(resolve(dir, "mesh-ca.pem"), result.meshCA, publicMode);
  await writeFileAtomic(resolve(dir, "coordinator-root-ca.pem"), result.rootCA, publicMode);
  await writeFileAtomic(resolve(dir, "workload-secret"), result.workloadSecret + "\n", secretMode);

  ctx.out.result({
    coordinator: client.baseUrl,
    policyHash: result.policyHash,
    workloadSecretID: result.workloadSecretID,
    output: dir,
    ...(fromTsm ? { evidence: { source: "tsm", path: tsmPath, type: evidence.type } } : {}),
  });
  if (fromTsm) ctx.out.line(`presented ${String(evidence.type)} evidence from configfs-tsm (${tsmPath})`);
  ctx.out.line(`issued a mesh certificate for workload ${result.workloadSecretID} (policy ${result.policyHash})`);
  ctx.out.line(
    `wrote ${outDir}/: ${written.join(", ")}${present.length > 0 ? ` (replaced ${present.join(", ")}: --force)` : ""}` +
      (workloadKey.file === undefined ? "" : ` (the key stays in ${workloadKey.file})`),
  );
}
