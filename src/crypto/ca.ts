// The Coordinator's certificates: root CA, transaction signer, mesh CA (intermediate + self-signed) and workload leaves.
import * as x509 from "@peculiar/x509";
import { concat, fromHex, toBase64, toHex } from "../encoding.js";
import { buildLeaf, canonicalEcPoint, templateFor } from "./leaf.js";
import { randomBytes, sha256, subtle, webcrypto } from "./provider.js";
import type { GeneralName } from "../manifest/san.js";

/** ECDSA P-384 with SHA-384: the algorithm of every CA signature. */
export const signingAlgorithm = { name: "ECDSA", hash: "SHA-384" } as const;
/** Parameters to generate or import a P-384 ECDSA key. */
export const p384 = { name: "ECDSA", namedCurve: "P-384" } as const;

/** Subjects, as in Contrast. */
export const subjects = {
  root: "CN=system:coordinator:root",
  mesh: "CN=system:coordinator:intermediate",
  transactionSigner: "CN=system:coordinator:transaction-signer",
} as const;

const caYears = 20;
const leafDays = 365;
const backdateMs = 60 * 60 * 1000;

/** A signing key pair with its certificate. */
export interface CertifiedKey {
  privateKey: CryptoKey;
  certificate: x509.X509Certificate;
  /** The subject key identifier (hex) of the certified key. */
  keyId: string;
}

/**
 * The subject key identifier of a public key, by one fixed method (RFC 7093 §2 method 1): the
 * leftmost 160 bits of the SHA-256 of the subjectPublicKey bits (for EC keys, the uncompressed point).
 */
export async function subjectKeyId(publicKey: CryptoKey): Promise<string> {
  const point = new Uint8Array(await subtle().exportKey("raw", publicKey));
  return toHex((await sha256(point)).slice(0, 20));
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return toHex(bytes);
}

function caValidity(now: Date): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(now.getTime() - backdateMs);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + caYears);
  return { notBefore, notAfter };
}

async function caExtensions(publicKey: CryptoKey, issuerKeyId: string | null): Promise<x509.Extension[]> {
  const keyId = await subjectKeyId(publicKey);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, issuerKeyId === null ? undefined : 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.SubjectKeyIdentifierExtension(keyId),
  ];
  extensions.push(new x509.AuthorityKeyIdentifierExtension(issuerKeyId ?? keyId));
  return extensions;
}

/** The self-signed root CA certificate for the seed-derived root key. Made once, then stored. */
export async function createRootCertificate(keys: CryptoKeyPair, now: Date): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: subjects.root,
      issuer: subjects.root,
      ...caValidity(now),
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm,
      extensions: await caExtensions(keys.publicKey, null),
    },
    webcrypto(),
  );
}

/** The root CA's certificate for the transaction-signing key, so clients can check the head offline. */
export async function createTransactionSignerCertificate(
  root: CertifiedKey,
  signerPublicKey: CryptoKey,
  now: Date,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: subjects.transactionSigner,
      issuer: root.certificate.subjectName,
      ...caValidity(now),
      publicKey: signerPublicKey,
      signingKey: root.privateKey,
      signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.SubjectKeyIdentifierExtension(await subjectKeyId(signerPublicKey)),
        new x509.AuthorityKeyIdentifierExtension(root.keyId),
      ],
    },
    webcrypto(),
  );
}

/** A fresh mesh CA: a random P-384 key, its intermediate certificate (signed by the root) and a self-signed twin. */
export interface MeshCA {
  keys: CryptoKeyPair;
  /** PKCS#8 of the private key, to be stored encrypted. */
  pkcs8: Uint8Array;
  intermediate: x509.X509Certificate;
  meshCA: x509.X509Certificate;
}

/** Makes a new mesh CA under the root. */
export async function createMeshCA(root: CertifiedKey, now: Date): Promise<MeshCA> {
  const generated = (await subtle().generateKey(p384, true, ["sign", "verify"])) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await subtle().exportKey("pkcs8", generated.privateKey));
  const keys = await importMeshKey(pkcs8, generated.publicKey);
  const validity = caValidity(now);
  const intermediate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: subjects.mesh,
      issuer: root.certificate.subjectName,
      ...validity,
      publicKey: keys.publicKey,
      signingKey: root.privateKey,
      signingAlgorithm,
      extensions: await caExtensions(keys.publicKey, root.keyId),
    },
    webcrypto(),
  );
  const meshCA = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: subjects.mesh,
      issuer: subjects.mesh,
      ...validity,
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm,
      extensions: await caExtensions(keys.publicKey, null),
    },
    webcrypto(),
  );
  return { keys, pkcs8, intermediate, meshCA };
}

/** Imports a mesh CA private key from PKCS#8 as a non-extractable signing key. */
export async function importMeshKey(pkcs8: Uint8Array, publicKey: CryptoKey): Promise<CryptoKeyPair> {
  const privateKey = await subtle().importKey("pkcs8", pkcs8 as BufferSource, p384, false, ["sign"]);
  return { privateKey, publicKey };
}

/** What a workload certificate says. */
export interface LeafRequest {
  publicKey: CryptoKey;
  sans: GeneralName[];
  commonName: string;
  /** Further non-critical extensions, e.g. attested claims. */
  extensions?: readonly { oid: string; value: Uint8Array }[];
}

/**
 * Issues a workload certificate signed by the mesh CA key (its chain: leaf, intermediate) and
 * returns its DER. Built directly in DER (see leaf.ts); the issuer Name is copied byte for byte
 * from the subject of `mesh.certificate`. `subjectPublicKeyInfo`, if given, must be the DER that
 * `publicKey` was imported from: when it is already in the form WebCrypto exports, it is used as
 * is and the key is not exported again (saving two exports per certificate).
 */
export async function issueLeafDer(
  mesh: CertifiedKey,
  request: LeafRequest & { subjectPublicKeyInfo?: Uint8Array },
  now: Date,
): Promise<Uint8Array> {
  const notBefore = new Date(now.getTime() - backdateMs);
  const notAfter = new Date(notBefore.getTime() + leafDays * 24 * 60 * 60 * 1000);
  const given = request.subjectPublicKeyInfo;
  const point = given === undefined ? null : canonicalEcPoint(given);
  let spki: Uint8Array;
  let keyId: Uint8Array;
  if (given !== undefined && point !== null) {
    // subjectKeyId's method, on the point the SPKI carries (the same bytes a raw export gives).
    [spki, keyId] = [given, (await sha256(point)).slice(0, 20)];
  } else {
    const [exported, hexId] = await Promise.all([subtle().exportKey("spki", request.publicKey), subjectKeyId(request.publicKey)]);
    [spki, keyId] = [new Uint8Array(exported), fromHex(hexId)];
  }
  return buildLeaf(templateFor(mesh), {
    serialNumber: fromHex(serialNumber()),
    notBefore,
    notAfter,
    commonName: request.commonName,
    subjectPublicKeyInfo: spki,
    subjectKeyId: keyId,
    sans: request.sans,
    ...(request.extensions === undefined ? {} : { extensions: request.extensions }),
  });
}

/** Issues a workload certificate as `issueLeafDer` does, parsed. */
export async function issueLeaf(
  mesh: CertifiedKey,
  request: LeafRequest,
  now: Date,
): Promise<x509.X509Certificate> {
  return parseCertificate(await issueLeafDer(mesh, request, now));
}

/** PEM of DER bytes with the given label, 64 characters a line, ending in a newline. */
export function toPem(der: Uint8Array, label = "CERTIFICATE"): string {
  const b64 = toBase64(der);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The DER bytes of a certificate. */
export function certificateDer(cert: x509.X509Certificate): Uint8Array {
  return new Uint8Array(cert.rawData);
}

/** Parses a DER certificate. */
export function parseCertificate(der: Uint8Array): x509.X509Certificate {
  return new x509.X509Certificate(der as BufferSource);
}

/** Domain-separated message bytes: an ASCII tag, a zero byte, then the payload. */
export function domainMessage(tag: string, payload: Uint8Array): Uint8Array {
  return concat(new TextEncoder().encode(tag), new Uint8Array([0]), payload);
}
