// The Coordinator's certificates: root CA, transaction signer, mesh CA (intermediate + self-signed) and workload leaves.
import * as x509 from "@peculiar/x509";
import { concat, fromHex, toHex } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { buildLeaf, canonicalEcPoint, pointKeyId, templateFor } from "./leaf.js";
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

/**
 * Random bytes for serial numbers, drawn from the active WebCrypto 4 KiB at a time (one call per 256
 * serials instead of one each); every byte is handed out once.
 */
const serialRandom = { pool: new Uint8Array(0) as Uint8Array, at: 0 };

/** 16 random bytes, the first in 0x40–0x7f: a positive 128-bit serial number of exactly 16 bytes. */
function serialBytes(): Uint8Array {
  if (serialRandom.at + 16 > serialRandom.pool.length) {
    serialRandom.pool = randomBytes(4096);
    serialRandom.at = 0;
  }
  const bytes = serialRandom.pool.slice(serialRandom.at, serialRandom.at + 16);
  serialRandom.pool.fill(0, serialRandom.at, serialRandom.at + 16);
  serialRandom.at += 16;
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes;
}

function serialNumber(): string {
  return toHex(serialBytes());
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
  sans: readonly GeneralName[];
  commonName: string;
  /** Further non-critical extensions, e.g. attested claims. */
  extensions?: readonly { oid: string; value: Uint8Array }[];
}

/**
 * Issues a workload certificate signed by the mesh CA key (its chain: leaf, intermediate) and
 * returns its DER. Built directly in DER (see leaf.ts); the issuer Name is copied byte for byte
 * from the subject of `mesh.certificate`. `subjectPublicKeyInfo`, if given, must be the DER of the
 * key (the one `publicKey` was imported from, if both are given): when it is already in the form
 * WebCrypto exports, it is used as is, the key is not exported again and its identifier is hashed
 * in place, and `publicKey` may be left out (the caller has checked the point: see
 * `isValidEcPoint`); otherwise `publicKey` is exported.
 */
export async function issueLeafDer(
  mesh: CertifiedKey,
  request: Omit<LeafRequest, "publicKey"> & { publicKey?: CryptoKey; subjectPublicKeyInfo?: Uint8Array },
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
    [spki, keyId] = [given, await pointKeyId(point)];
  } else if (request.publicKey !== undefined) {
    const [exported, hexId] = await Promise.all([subtle().exportKey("spki", request.publicKey), subjectKeyId(request.publicKey)]);
    [spki, keyId] = [new Uint8Array(exported), fromHex(hexId)];
  } else {
    throw new CoordinatorError("INTERNAL", "a leaf needs the key, or its SubjectPublicKeyInfo in the form WebCrypto exports");
  }
  return buildLeaf(templateFor(mesh), {
    serialNumber: serialBytes(),
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

const base64Alphabet = Uint8Array.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", (c) => c.charCodeAt(0));
const asciiDecoder = new TextDecoder();

/**
 * The base64 lines of a PEM body: standard base64 with padding, a newline after every 64 characters
 * and after the last line. Written straight into one buffer (certificates are PEM-encoded on every
 * issuance; the generic base64 and line split cost several times more).
 */
function pemBody(der: Uint8Array): string {
  const chars = 4 * Math.ceil(der.length / 3);
  if (chars === 0) return "\n";
  const out = new Uint8Array(chars + Math.ceil(chars / 64));
  let o = 0;
  let column = 0;
  const put = (c: number) => {
    out[o++] = c;
    if (++column === 64) {
      out[o++] = 0x0a;
      column = 0;
    }
  };
  let i = 0;
  for (; i + 2 < der.length; i += 3) {
    const n = (der[i]! << 16) | (der[i + 1]! << 8) | der[i + 2]!;
    put(base64Alphabet[n >>> 18]!);
    put(base64Alphabet[(n >>> 12) & 63]!);
    put(base64Alphabet[(n >>> 6) & 63]!);
    put(base64Alphabet[n & 63]!);
  }
  if (i < der.length) {
    const n = (der[i]! << 16) | ((der[i + 1] ?? 0) << 8);
    put(base64Alphabet[n >>> 18]!);
    put(base64Alphabet[(n >>> 12) & 63]!);
    put(i + 1 < der.length ? base64Alphabet[(n >>> 6) & 63]! : 0x3d);
    put(0x3d);
  }
  if (column !== 0) out[o++] = 0x0a;
  return asciiDecoder.decode(out.subarray(0, o));
}

/** PEM of DER bytes with the given label, 64 characters a line, ending in a newline. */
export function toPem(der: Uint8Array, label = "CERTIFICATE"): string {
  return `-----BEGIN ${label}-----\n${pemBody(der)}-----END ${label}-----\n`;
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
