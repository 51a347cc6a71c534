// Offline verification of a Coordinator's history: certificate chain, signed head, transition links, manifest and policy hashes.
import * as x509 from "@peculiar/x509";
import { bytesEqual, concat, fromBase64, toHex } from "../encoding.js";
import { sha256, webcrypto } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import { headKey, parseHead, verifyHead } from "../history/head.js";
import type { SignedHead } from "../history/head.js";
import { zeroHash } from "../history/transition.js";
import { parseManifest } from "../manifest/manifest.js";
import type { Manifest } from "../manifest/manifest.js";
import type { HistoryResponse } from "./client.js";

/**
 * Why a history was refused: `ROOT_CA_MISMATCH` (not the Coordinator the workspace set up),
 * `CERTIFICATE_INVALID` (a served certificate is malformed or not issued as it must be),
 * `HEAD_INVALID` (the head is malformed, does not match the answer, or its signature fails),
 * `HISTORY_INVALID` (a transition, manifest or policy does not hash to what links to it).
 */
export type VerificationCode = "ROOT_CA_MISMATCH" | "CERTIFICATE_INVALID" | "HEAD_INVALID" | "HISTORY_INVALID";

/** A history that failed verification; the message says which object and why. */
export class VerificationError extends Error {
  readonly code: VerificationCode;
  constructor(code: VerificationCode, message: string) {
    super(message);
    this.name = "VerificationError";
    this.code = code;
  }
}

/** A served certificate: the PEM as served, its DER and the hex SHA-256 of the DER (its store name). */
export interface VerifiedCertificate {
  pem: string;
  der: Uint8Array;
  hash: string;
  certificate: x509.X509Certificate;
}

/** A history whose every part checked out. */
export interface VerifiedHistory {
  name: string;
  generation: number;
  latestTransition: string;
  /** Oldest first; `transitions[i]` names `manifests[i]`. */
  transitions: string[];
  manifests: Uint8Array[];
  parsedManifests: Manifest[];
  /** Every policy of every manifest, by hash. */
  policies: Map<string, Uint8Array>;
  rootCA: VerifiedCertificate;
  meshCA: VerifiedCertificate;
  intermediateCA: VerifiedCertificate;
  transactionSigner: VerifiedCertificate;
  head: SignedHead;
}

async function certificate(pemText: string, what: string): Promise<VerifiedCertificate> {
  const blocks = pemText.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length !== 1) {
    throw new VerificationError("CERTIFICATE_INVALID", `the ${what} certificate must be one PEM certificate, got ${blocks.length}`);
  }
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(blocks[0]!);
  } catch (err) {
    throw new VerificationError("CERTIFICATE_INVALID", `the ${what} certificate does not parse: ${(err as Error).message}`);
  }
  const der = new Uint8Array(cert.rawData);
  return { pem: pemText, der, hash: toHex(await sha256(der)), certificate: cert };
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto());
  } catch {
    return false;
  }
}

function isCA(cert: x509.X509Certificate): boolean {
  return cert.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

function decode(b64: string, what: string): Uint8Array {
  try {
    return fromBase64(b64);
  } catch {
    throw new VerificationError("HISTORY_INVALID", `${what} is not valid base64`);
  }
}

/**
 * Verifies a history as served by GET /v1/manifests, trusting nothing in it but the root CA
 * (which must equal `pinnedRootCA`, a DER certificate, when given):
 * - the head parses, is canonical, and names this answer's Coordinator, generation and latest transition;
 * - the root CA is a self-signed CA; the transaction-signer, intermediate and mesh CA certificates
 *   are signed as they must be (intermediate and signer by the root; the mesh CA self-signed with the
 *   intermediate's key and subject), and each hashes to the name the head pins;
 * - the head's signature verifies under the certified transaction-signing key;
 * - transitions link: `t_i = SHA-256(SHA-256(manifest_i) ‖ t_{i-1})` from 32 zero bytes, their number is
 *   the generation and the last is the head's latest transition;
 * - every manifest parses, and every policy it references is present and hashes to its name.
 */
export async function verifyHistory(history: HistoryResponse, opts: { pinnedRootCA?: Uint8Array } = {}): Promise<VerifiedHistory> {
  // The certificates, and the root against the pin first: nothing else means anything if the root is foreign.
  const rootCA = await certificate(history.rootCA, "root CA");
  if (opts.pinnedRootCA !== undefined && !bytesEqual(rootCA.der, opts.pinnedRootCA)) {
    throw new VerificationError(
      "ROOT_CA_MISMATCH",
      `the Coordinator's root CA (sha256 ${rootCA.hash}) is not the one this workspace set up ` +
        `(sha256 ${toHex(await sha256(opts.pinnedRootCA))}): this is not your Coordinator, or its state was replaced`,
    );
  }
  const transactionSigner = await certificate(history.transactionSigner, "transaction-signer");
  const intermediateCA = await certificate(history.intermediateCA, "intermediate CA");
  const meshCA = await certificate(history.meshCA, "mesh CA");

  const root = rootCA.certificate;
  if (!isCA(root) || root.subject !== root.issuer || !(await signedBy(root, root))) {
    throw new VerificationError("CERTIFICATE_INVALID", "the root CA certificate is not a self-signed CA certificate");
  }
  if (transactionSigner.certificate.issuer !== root.subject || !(await signedBy(transactionSigner.certificate, root))) {
    throw new VerificationError("CERTIFICATE_INVALID", "the transaction-signer certificate is not issued by the root CA");
  }
  if (!isCA(intermediateCA.certificate) || !(await signedBy(intermediateCA.certificate, root))) {
    throw new VerificationError("CERTIFICATE_INVALID", "the intermediate CA certificate is not issued by the root CA");
  }
  const meshKey = new Uint8Array(meshCA.certificate.publicKey.rawData);
  const intermediateKey = new Uint8Array(intermediateCA.certificate.publicKey.rawData);
  if (
    !isCA(meshCA.certificate) ||
    !bytesEqual(meshKey, intermediateKey) ||
    meshCA.certificate.subject !== intermediateCA.certificate.subject ||
    !(await signedBy(meshCA.certificate, meshCA.certificate))
  ) {
    throw new VerificationError("CERTIFICATE_INVALID", "the mesh CA certificate is not the self-signed twin of the intermediate CA");
  }

  // The head: parsed, consistent with the answer, pinning the served certificates, signed by the certified key.
  let head: SignedHead;
  try {
    head = parseHead(decode(history.head, "the head"), headKey(history.name));
  } catch (err) {
    if (err instanceof CoordinatorError) throw new VerificationError("HEAD_INVALID", `the head: ${err.message}`);
    throw err;
  }
  if (head.name !== history.name || head.generation !== history.generation || head.latestTransition !== history.latestTransition) {
    throw new VerificationError(
      "HEAD_INVALID",
      `the signed head (${head.name}, generation ${head.generation}, ${head.latestTransition}) does not match the answer ` +
        `(${history.name}, generation ${history.generation}, ${history.latestTransition})`,
    );
  }
  const pinned: [string, string, VerifiedCertificate][] = [
    ["root CA", head.objects.rootCA, rootCA],
    ["transaction-signer", head.objects.transactionSigner, transactionSigner],
    ["intermediate CA", head.objects.intermediateCA, intermediateCA],
    ["mesh CA", head.objects.meshCA, meshCA],
  ];
  for (const [what, expected, served] of pinned) {
    if (served.hash !== expected) {
      throw new VerificationError("HEAD_INVALID", `the served ${what} certificate (sha256 ${served.hash}) is not the one the head names (${expected})`);
    }
  }
  let signerKey: CryptoKey;
  try {
    signerKey = await transactionSigner.certificate.publicKey.export({ name: "ECDSA", namedCurve: "P-384" }, ["verify"], webcrypto());
  } catch {
    throw new VerificationError("CERTIFICATE_INVALID", "the transaction-signer certificate does not hold an ECDSA P-384 key");
  }
  if (!(await verifyHead(head, signerKey))) {
    throw new VerificationError("HEAD_INVALID", "the head's signature does not verify under the transaction-signing key");
  }

  // The chain of transitions, from the first manifest to the head.
  if (history.manifests.length !== head.generation || history.transitions.length !== head.generation) {
    throw new VerificationError(
      "HISTORY_INVALID",
      `the head is at generation ${head.generation}, but ${history.manifests.length} manifests and ${history.transitions.length} transitions were served`,
    );
  }
  const manifests: Uint8Array[] = [];
  const parsedManifests: Manifest[] = [];
  const policies = new Map<string, Uint8Array>();
  let previous: Uint8Array = zeroHash;
  for (let i = 0; i < head.generation; i++) {
    const bytes = decode(history.manifests[i]!, `manifest ${i + 1}`);
    const manifestHash = await sha256(bytes);
    const transition = await sha256(concat(manifestHash, previous));
    if (toHex(transition) !== history.transitions[i]) {
      throw new VerificationError(
        "HISTORY_INVALID",
        `manifest ${i + 1} (sha256 ${toHex(manifestHash)}) does not link to transition ${history.transitions[i]}: ` +
          `it or an earlier manifest was changed`,
      );
    }
    let manifest: Manifest;
    try {
      manifest = parseManifest(bytes);
    } catch (err) {
      throw new VerificationError("HISTORY_INVALID", `manifest ${i + 1} is not a valid manifest: ${(err as Error).message}`);
    }
    for (const hash of Object.keys(manifest.Policies)) {
      if (policies.has(hash)) continue;
      const served = history.policies[hash];
      if (served === undefined) {
        throw new VerificationError("HISTORY_INVALID", `policy ${hash}, referenced by manifest ${i + 1}, was not served`);
      }
      const policy = decode(served, `policy ${hash}`);
      const actual = toHex(await sha256(policy));
      if (actual !== hash) {
        throw new VerificationError("HISTORY_INVALID", `policy ${hash} was changed: its content hashes to ${actual}`);
      }
      policies.set(hash, policy);
    }
    manifests.push(bytes);
    parsedManifests.push(manifest);
    previous = transition;
  }
  if (toHex(previous) !== head.latestTransition) {
    throw new VerificationError("HISTORY_INVALID", `the last transition ${toHex(previous)} is not the head's ${head.latestTransition}`);
  }
  for (const hash of Object.keys(history.policies)) {
    if (!policies.has(hash)) throw new VerificationError("HISTORY_INVALID", `policy ${hash} was served but no manifest references it`);
  }
  return {
    name: history.name,
    generation: head.generation,
    latestTransition: head.latestTransition,
    transitions: [...history.transitions],
    manifests,
    parsedManifests,
    policies,
    rootCA,
    meshCA,
    intermediateCA,
    transactionSigner,
    head,
  };
}

/** The DER of the one certificate in a PEM text; throws TypeError if there is not exactly one. */
export function certificateDerOf(pemText: string): Uint8Array {
  const blocks = pemText.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length !== 1) throw new TypeError(`expected one PEM certificate, found ${blocks.length}`);
  return new Uint8Array(new x509.X509Certificate(blocks[0]!).rawData);
}

