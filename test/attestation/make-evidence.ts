// A test TEE on disk and evidence from it: an AMD SEV-SNP hierarchy and an Intel TDX platform saved to a directory, and SNP/TDX evidence JSON for a nonce, a workload key and a policy hash (module, and a script for people).
//
// Nothing here gives any security: the "hardware" keys sit in a file. A Coordinator accepts this
// evidence only when it is started with `--attestation-roots DIR/roots.pem`.
//
// As a script (`node --import tsx test/attestation/make-evidence.ts …`):
//   init DIR                                        make the test TEE (a few seconds: three RSA-4096 keys)
//   snp|tdx DIR --nonce HEX (--key FILE | --spki FILE) (--policy FILE | --policy-hash HEX)
//       [--measurement HEX] [--outdated-tcb] [--debug] [-o FILE]
//                                                   write evidence JSON (stdout without -o)
// DIR then holds roots.pem (for --attestation-roots), reference-values.json (the manifest's
// ReferenceValues that this TEE's default evidence satisfies) and tee.json (the private keys, 0600;
// its format is src/attestation/test-tee.ts, which the Coordinator's `--simulated-tee FILE` loads).
import "reflect-metadata";
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { bytesEqual, concat, fromBase64, fromHex, toBase64, toHex } from "../../src/encoding.js";
import { toPem } from "../../src/crypto/ca.js";
import { subtle, useWebCrypto } from "../../src/crypto/provider.js";
import { createSimulatedAmd, simulatedTcb } from "../../src/attestation/snp/simulated.js";
import { parseSavedTee, savedTeeSnpReport, testTeeFormat } from "../../src/attestation/test-tee.js";
import type { SavedEndorsement, SavedTee } from "../../src/attestation/test-tee.js";
import type { SnpTcbParts } from "../../src/attestation/snp/report.js";
import type { SnpReferenceValues } from "../../src/attestation/snp/reference-values.js";
import { expectedReportData } from "../../src/attestation/report-data.js";
import { createSimulatedTdxPlatform } from "../../src/attestation/tdx/simulated.js";
import { parseTdxQuote } from "../../src/attestation/tdx/quote.js";
import type { TdxReferenceValues } from "../../src/attestation/tdx/reference-values.js";

/** The files of a saved test TEE. */
export const teeFiles = { roots: "roots.pem", referenceValues: "reference-values.json", secrets: "tee.json" } as const;

/** The SNP MEASUREMENT and TDX MRTD the default evidence carries (and reference-values.json expects). */
export const testMeasurement = { snp: "5a".repeat(48), tdx: "7d".repeat(48) } as const;

/** The TCB of the "outdated" VCEK: SNP firmware one below the default (simulatedTcb), so below the reference values' minimum. */
export const outdatedTcb: SnpTcbParts = { ...simulatedTcb, snp: simulatedTcb.snp - 1 };

/** The TD report body of a TD 1.0 (v4) quote: field offsets and sizes, as Intel's layout has them. */
const tdxBody = {
  tdAttributes: [120, 8],
  mrTd: [136, 48],
  mrConfigId: [184, 48],
  reportData: [520, 64],
  size: 584,
} as const;

/** TD attributes: SEPT_VE_DISABLE (bit 28), as Contrast requires; DEBUG is bit 0. */
const tdAttributes = { default: "0000001000000000", debug: "0100001000000000" } as const;

/** The manifest's ReferenceValues that default evidence of a test TEE satisfies. */
export interface TestReferenceValues {
  snp: SnpReferenceValues[];
  tdx: TdxReferenceValues[];
}

/** What the evidence is for, and how it differs from the default. */
export interface EvidenceRequest {
  /** The Coordinator's nonce, hex (as its 401 answer gives it). */
  nonce: string;
  /** The DER SPKI of the key the certificate is to be issued for. */
  spki: Uint8Array;
  /** Hex SHA-256 of the workload's policy: HOST_DATA (SNP), MRCONFIGID[0:32] (TDX). */
  policyHash: string;
  /** MEASUREMENT (SNP) or MRTD (TDX), hex 48 bytes; default testMeasurement. */
  measurement?: string;
  /** SNP only: sign with the VCEK of a TCB below the reference values' minimum. */
  outdatedTcb?: boolean;
  /** A debuggable guest (SNP policy bit 19, TDX TD attribute bit 0). */
  debug?: boolean;
}

/** SNP evidence as POST /v1/mesh/certificate takes it. */
export interface SnpEvidenceJson {
  type: "amd-sev-snp";
  nonce: string;
  report: string;
  certificates: { vcek: string; ask: string; ark: string };
}

/** TDX evidence as POST /v1/mesh/certificate takes it. */
export interface TdxEvidenceJson {
  type: "intel-tdx";
  nonce: string;
  quote: string;
}

/**
 * Runs `make` with a WebCrypto whose generateKey also hands every key pair to `seen`: the TDX test
 * platform keeps its attestation key inside a closure, and a TEE saved to disk must keep it.
 */
async function recordingKeys<T>(make: () => Promise<T>): Promise<{ value: T; pairs: CryptoKeyPair[] }> {
  const base = globalThis.crypto;
  const pairs: CryptoKeyPair[] = [];
  const recording = new Proxy(base.subtle, {
    get(target, property) {
      if (property === "generateKey") {
        return async (...args: Parameters<SubtleCrypto["generateKey"]>) => {
          const key = await target.generateKey(...args);
          if (typeof key === "object" && "privateKey" in key) pairs.push(key);
          return key;
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const impl = {
    subtle: recording,
    getRandomValues: base.getRandomValues.bind(base),
    randomUUID: base.randomUUID.bind(base),
  } as unknown as Crypto;
  useWebCrypto(impl);
  try {
    return { value: await make(), pairs };
  } finally {
    useWebCrypto(base);
  }
}

async function pkcs8(key: CryptoKey): Promise<string> {
  return toBase64(new Uint8Array(await subtle().exportKey("pkcs8", key)));
}

/**
 * Makes a test TEE and saves it to `dir` (created if missing): roots.pem, reference-values.json and
 * tee.json. Slow (three RSA-4096 keys): make one per test file. Certificates are valid from a day
 * (SNP) or an hour (TDX) before `now` for years.
 */
export async function createTestTee(dir: string, options: { now?: Date } = {}): Promise<void> {
  const now = options.now ?? new Date();
  const amd = await createSimulatedAmd({ now });
  const vcek = async (tcb: SnpTcbParts): Promise<SavedEndorsement> => {
    const e = await amd.issueEndorsement("vcek", { tcb });
    return { certificate: toBase64(e.certificate), privateKey: await pkcs8(e.privateKey), tcb, hwid: toHex(e.hwid!) };
  };
  const vceks = { current: await vcek(simulatedTcb), outdated: await vcek(outdatedTcb) };

  const { value: tdx, pairs } = await recordingKeys(() => createSimulatedTdxPlatform({ now }));
  const template = await tdx.quote({ version: 4 });
  const attestationKey = parseTdxQuote(template).attestationKey;
  let attestationPrivate: CryptoKey | undefined;
  for (const pair of pairs) {
    const raw = new Uint8Array(await subtle().exportKey("raw", pair.publicKey));
    if (raw.length === 65 && bytesEqual(raw.subarray(1), attestationKey)) attestationPrivate = pair.privateKey;
  }
  if (attestationPrivate === undefined) throw new Error("the TDX test platform's attestation key was not among the keys it generated");

  const saved: SavedTee = {
    format: testTeeFormat,
    snp: {
      product: amd.product,
      ark: toBase64(amd.ark.certificate),
      ask: toBase64(amd.ask.certificate),
      asvk: amd.asvk === null ? null : toBase64(amd.asvk.certificate),
      vceks,
    },
    tdx: { quote: toBase64(template), attestationKey: await pkcs8(attestationPrivate) },
  };
  const roots =
    toPem(amd.ark.certificate) + toPem(amd.ask.certificate) + (amd.asvk === null ? "" : toPem(amd.asvk.certificate)) + tdx.rootPem.trim() + "\n";
  const body = parseTdxQuote(template).body;
  const referenceValues: TestReferenceValues = {
    snp: [
      {
        ProductName: amd.product,
        TrustedMeasurement: testMeasurement.snp,
        MinimumTCB: {
          BootloaderVersion: simulatedTcb.bootloader,
          TEEVersion: simulatedTcb.tee,
          SNPVersion: simulatedTcb.snp,
          MicrocodeVersion: simulatedTcb.microcode,
        },
        GuestPolicy: { ABIMinor: 0, ABIMajor: 0, SMT: true },
      },
    ],
    tdx: [
      {
        MrTd: testMeasurement.tdx,
        MrSeam: toHex(body.mrSeam),
        Rtmrs: [toHex(body.rtmrs[0]), toHex(body.rtmrs[1]), toHex(body.rtmrs[2]), toHex(body.rtmrs[3])],
        Xfam: toHex(body.xfam),
      },
    ],
  };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, teeFiles.roots), roots);
  writeFileSync(join(dir, teeFiles.referenceValues), JSON.stringify(referenceValues, null, 2) + "\n");
  writeFileSync(join(dir, teeFiles.secrets), JSON.stringify(saved, null, 2) + "\n", { mode: 0o600 });
}

function loadTee(dir: string): SavedTee {
  const file = join(dir, teeFiles.secrets);
  return parseSavedTee(readFileSync(file, "utf8"), file);
}

/** The reference values a saved test TEE's default evidence satisfies. */
export function testReferenceValues(dir: string): TestReferenceValues {
  return JSON.parse(readFileSync(join(dir, teeFiles.referenceValues), "utf8")) as TestReferenceValues;
}

function bytes(hex: string, length: number, what: string): Uint8Array {
  if (!new RegExp(`^[0-9a-f]{${2 * length}}$`).test(hex)) throw new Error(`${what} must be ${length} bytes of lower-case hex`);
  return fromHex(hex);
}

/** SNP evidence from a saved test TEE: a report signed by its VCEK, with the VCEK, ASK and ARK. */
export async function makeSnpEvidence(dir: string, request: EvidenceRequest): Promise<SnpEvidenceJson> {
  const nonce = bytes(request.nonce, request.nonce.length / 2, "the nonce");
  const { report, certificates } = await savedTeeSnpReport(loadTee(dir), {
    measurement: bytes(request.measurement ?? testMeasurement.snp, 48, "the measurement"),
    hostData: bytes(request.policyHash, 32, "the policy hash"),
    reportData: await expectedReportData(request.spki, nonce),
    debug: request.debug === true,
    outdatedTcb: request.outdatedTcb === true,
  });
  return { type: "amd-sev-snp", nonce: request.nonce, report: toBase64(report), certificates };
}

/** TDX evidence from a saved test TEE: its v4 quote with the body's MRTD, TD attributes, MRCONFIGID and REPORT_DATA set, re-signed. */
export async function makeTdxEvidence(dir: string, request: EvidenceRequest): Promise<TdxEvidenceJson> {
  if (request.outdatedTcb === true) throw new Error("a TDX test quote has no TCB to lower (the Coordinator checks no TDX collateral)");
  const tee = loadTee(dir).tdx;
  const template = fromBase64(tee.quote);
  const parsed = parseTdxQuote(template);
  const signed = parsed.signedBytes.slice();
  const bodyAt = signed.length - tdxBody.size;
  const set = ([offset, length]: readonly [number, number], value: Uint8Array): void => {
    if (value.length !== length) throw new RangeError(`a TD body field at ${offset} has ${length} bytes`);
    signed.set(value, bodyAt + offset);
  };
  const nonce = bytes(request.nonce, request.nonce.length / 2, "the nonce");
  set(tdxBody.tdAttributes, fromHex(request.debug === true ? tdAttributes.debug : tdAttributes.default));
  set(tdxBody.mrTd, bytes(request.measurement ?? testMeasurement.tdx, 48, "the measurement"));
  set(tdxBody.mrConfigId, concat(bytes(request.policyHash, 32, "the policy hash"), new Uint8Array(16)));
  set(tdxBody.reportData, await expectedReportData(request.spki, nonce));
  const key = await subtle().importKey("pkcs8", fromBase64(tee.attestationKey) as BufferSource, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const signature = new Uint8Array(await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, key, signed as BufferSource));
  // After the signed bytes: the signed-data size (4 bytes), then the 64-byte signature this replaces.
  const rest = template.slice(signed.length);
  rest.set(signature, 4);
  return { type: "intel-tdx", nonce: request.nonce, quote: toBase64(concat(signed, rest)) };
}

/** Evidence of either kind from a saved test TEE. */
export function makeEvidence(dir: string, kind: "snp" | "tdx", request: EvidenceRequest): Promise<SnpEvidenceJson | TdxEvidenceJson> {
  return kind === "snp" ? makeSnpEvidence(dir, request) : makeTdxEvidence(dir, request);
}

/** The DER SPKI of a private key file (PEM or DER; PKCS#8 or SEC1), via node:crypto. */
export function spkiOfKeyFile(path: string): Uint8Array {
  const content = readFileSync(path);
  const pemText = content.includes("-----BEGIN");
  const key = pemText
    ? createPrivateKey(content.toString("utf8"))
    : (() => {
        try {
          return createPrivateKey({ key: content, format: "der", type: "pkcs8" });
        } catch {
          return createPrivateKey({ key: content, format: "der", type: "sec1" });
        }
      })();
  return new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" }));
}

const usage = [
  "usage: node --import tsx test/attestation/make-evidence.ts init DIR",
  "       node --import tsx test/attestation/make-evidence.ts snp|tdx DIR --nonce HEX (--key FILE | --spki FILE)",
  "            (--policy FILE | --policy-hash HEX) [--measurement HEX] [--outdated-tcb] [--debug] [-o FILE]",
].join("\n");

async function script(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      nonce: { type: "string" },
      key: { type: "string" },
      spki: { type: "string" },
      policy: { type: "string" },
      "policy-hash": { type: "string" },
      measurement: { type: "string" },
      "outdated-tcb": { type: "boolean" },
      debug: { type: "boolean" },
      output: { type: "string", short: "o" },
    },
  });
  const [command, dir] = positionals;
  if (dir === undefined || positionals.length !== 2) throw new Error(usage);
  if (command === "init") {
    await createTestTee(dir);
    process.stdout.write(`wrote ${join(dir, teeFiles.roots)} (for --attestation-roots), ${join(dir, teeFiles.referenceValues)}, ${join(dir, teeFiles.secrets)}\n`);
    return;
  }
  if (command !== "snp" && command !== "tdx") throw new Error(usage);
  if (values.nonce === undefined) throw new Error(`--nonce is required (contrast mesh-cert --nonce prints one)\n${usage}`);
  const spki = values.key !== undefined ? spkiOfKeyFile(values.key) : values.spki !== undefined ? new Uint8Array(readFileSync(values.spki)) : undefined;
  if (spki === undefined) throw new Error(`--key FILE (the workload's private key) or --spki FILE (its DER SPKI) is required\n${usage}`);
  const policyHash =
    values.policy !== undefined ? createHash("sha256").update(readFileSync(values.policy)).digest("hex") : values["policy-hash"];
  if (policyHash === undefined) throw new Error(`--policy FILE or --policy-hash HEX is required\n${usage}`);
  const evidence = await makeEvidence(dir, command, {
    nonce: values.nonce,
    spki,
    policyHash,
    ...(values.measurement === undefined ? {} : { measurement: values.measurement }),
    outdatedTcb: values["outdated-tcb"] === true,
    debug: values.debug === true,
  });
  const text = JSON.stringify(evidence, null, 2) + "\n";
  if (values.output === undefined) process.stdout.write(text);
  else writeFileSync(values.output, text);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  script(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`make-evidence: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
