// Certificate helpers of the TDX verifier: strict PEM chains, the pinned root, Intel's algorithm and name rules, and validity at a given time.
import { AsnConvert } from "@peculiar/asn1-schema";
import { ECDSASigValue } from "@peculiar/asn1-ecc";
import { Certificate } from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";
import { bytesEqual, fromHex, toHex } from "../../encoding.js";
import { sha256, subtle } from "../../crypto/provider.js";
import { AttestationError } from "../errors.js";
import type { AttestationErrorCode } from "../errors.js";

/** ECDSA P-256: the key of every certificate in Intel's PCK and TCB signing chains. */
export const p256 = { name: "ECDSA", namedCurve: "P-256" } as const;
/** ECDSA with SHA-256: every signature in a quote, its chains and its collateral. */
export const ecdsaSha256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** The OID of ecdsa-with-SHA256. */
const ecdsaWithSha256Oid = "1.2.840.10045.4.3.2";

/** The ASN.1 structures decodeCertificates parsed, to check signatures without parsing twice. */
const parsedCertificates = new WeakMap<x509.X509Certificate, Certificate>();

/** ECDSA P-256 verify keys already imported from certificates (a certificate object's key never changes). */
const verifyKeys = new WeakMap<x509.X509Certificate, CryptoKey>();

/** The certificate's public key as a WebCrypto ECDSA P-256 verify key, imported once per certificate object. */
export async function verifyKeyOf(certificate: x509.X509Certificate): Promise<CryptoKey> {
  let key = verifyKeys.get(certificate);
  if (key === undefined) {
    key = await certificate.publicKey.export(p256, ["verify"]);
    verifyKeys.set(certificate, key);
  }
  return key;
}

/** Common names Intel gives the certificates of its chains. */
export const intelNames = {
  root: "Intel SGX Root CA",
  platformCa: "Intel SGX PCK Platform CA",
  processorCa: "Intel SGX PCK Processor CA",
  pck: "Intel SGX PCK Certificate",
  tcbSigning: "Intel SGX TCB Signing",
} as const;

/**
 * Decodes PEM certificates, refusing anything but the canonical form (64-character lines, "\n"
 * line ends, one "\n" after each block; an optional single NUL at the end, as quotes carry it) and
 * any DER that does not re-encode to the same bytes. So every bit of the text is bound to the
 * certificates: no flipped bit can leave them unchanged. With `canonical: false` (collateral issuer
 * chains, whose text no signature covers) any PEM layout is accepted; the DER rule stays.
 */
export function decodeCertificates(
  text: string,
  code: AttestationErrorCode,
  what: string,
  options: { canonical: boolean } = { canonical: true },
): x509.X509Certificate[] {
  return decodePem(text, code, what, options).map((der, i) => parseCertificate(der, code, `certificate ${i} of ${what}`));
}

/**
 * The DER blocks of a PEM certificate chain, with decodeCertificates' rules for the text (canonical
 * unless `canonical: false`, at least one block); the DER itself is not parsed here.
 */
export function decodePem(text: string, code: AttestationErrorCode, what: string, options: { canonical: boolean } = { canonical: true }): ArrayBuffer[] {
  const body = text.endsWith("\0") ? text.slice(0, -1) : text;
  let ders: ArrayBuffer[];
  try {
    ders = x509.PemConverter.decode(body);
  } catch (err) {
    throw new AttestationError(code, `${what} is not PEM`, { cause: err });
  }
  const canonical = ders.map((der) => x509.PemConverter.encode(der, "CERTIFICATE") + "\n").join("");
  if (ders.length === 0 || (options.canonical && canonical !== body)) {
    throw new AttestationError(code, `${what} is not a canonical PEM certificate chain`);
  }
  return ders;
}

/** Parses one DER certificate strictly (it must re-encode to the same bytes); throws `code` naming `what` otherwise. */
export function parseCertificate(der: ArrayBuffer, code: AttestationErrorCode, what: string): x509.X509Certificate {
  try {
    const asn = AsnConvert.parse(der, Certificate);
    const certificate = new x509.X509Certificate(asn);
    parsedCertificates.set(certificate, asn);
    // rawData is the re-encoding of the parsed structure: it must be the DER we were given.
    if (!bytesEqual(new Uint8Array(certificate.rawData), new Uint8Array(der))) throw new Error("not DER");
    // Parse now what @peculiar/x509 would otherwise parse lazily, so damage shows here.
    void [certificate.subjectName, certificate.issuerName, certificate.extensions, certificate.publicKey.algorithm];
    void [certificate.signatureAlgorithm, certificate.notBefore, certificate.notAfter, certificate.serialNumber];
    return certificate;
  } catch (err) {
    throw new AttestationError(code, `${what} is not a DER X.509 certificate`, { cause: err });
  }
}

/** Loads a pinned root from PEM or DER and returns it with its SHA-256 fingerprint. */
export async function loadRoot(root: string | Uint8Array): Promise<{ certificate: x509.X509Certificate; sha256: Uint8Array }> {
  const certificate = new x509.X509Certificate(typeof root === "string" ? root : root.slice().buffer);
  return { certificate, sha256: await sha256(new Uint8Array(certificate.rawData)) };
}

/** True if the certificate's DER has the given SHA-256 fingerprint (bytes or hex). */
export async function hasFingerprint(certificate: x509.X509Certificate, fingerprint: Uint8Array | string): Promise<boolean> {
  const want = typeof fingerprint === "string" ? fromHex(fingerprint) : fingerprint;
  return bytesEqual(await sha256(new Uint8Array(certificate.rawData)), want);
}

/** Hex SHA-256 of a certificate's DER. */
export async function fingerprintOf(certificate: x509.X509Certificate): Promise<string> {
  return toHex(await sha256(new Uint8Array(certificate.rawData)));
}

/** The subject common name of a certificate, if it has exactly one. */
export function commonName(certificate: x509.X509Certificate): string | undefined {
  const names = certificate.subjectName.getField("CN");
  return names.length === 1 ? names[0] : undefined;
}

function isEcdsaP256Sha256(certificate: x509.X509Certificate): boolean {
  const sig = certificate.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  const key = certificate.publicKey.algorithm as { name?: string; namedCurve?: string };
  return sig.name === "ECDSA" && sig.hash?.name === "SHA-256" && key.name === "ECDSA" && key.namedCurve === "P-256";
}

function isCa(certificate: x509.X509Certificate): boolean {
  const bc = certificate.getExtension(x509.BasicConstraintsExtension);
  return bc !== null && bc.ca;
}

/**
 * Checks that `certificate` is issued by `issuer`: ECDSA P-256 / SHA-256 on both, the issuer's
 * subject as issuer name, the issuer a CA, and a valid signature. Throws `code` otherwise.
 */
export async function checkIssuedBy(
  certificate: x509.X509Certificate,
  issuer: x509.X509Certificate,
  code: AttestationErrorCode,
  what: string,
): Promise<void> {
  if (!isEcdsaP256Sha256(certificate) || !isEcdsaP256Sha256(issuer)) {
    throw new AttestationError(code, `${what}: not ECDSA P-256 with SHA-256`);
  }
  if (certificate.issuer !== issuer.subject) throw new AttestationError(code, `${what}: issuer name is not its issuer's subject`);
  if (!isCa(issuer)) throw new AttestationError(code, `${what}: the issuer is not a CA`);
  const signature = strictSignature(certificate);
  if (signature === null) throw new AttestationError(code, `${what}: the signature is not a DER ECDSA-Sig-Value with SHA-256`);
  let valid: boolean;
  try {
    const key = await verifyKeyOf(issuer);
    valid = await subtle().verify(ecdsaSha256, key, signature.value as BufferSource, signature.signed as BufferSource);
  } catch {
    valid = false;
  }
  if (!valid) throw new AttestationError(code, `${what}: the signature does not verify`);
}

/** The minimal big-endian magnitude of a DER INTEGER, or null if it is negative or not minimally encoded. */
function derUnsigned(integer: Uint8Array): Uint8Array | null {
  if (integer.length === 0 || (integer[0]! & 0x80) !== 0) return null;
  if (integer.length > 1 && integer[0] === 0 && (integer[1]! & 0x80) === 0) return null;
  return integer[0] === 0 ? integer.subarray(1) : integer;
}

/**
 * The signed bytes (tbsCertificate) and the raw r||s signature of a certificate, or null unless the
 * signature algorithm is ecdsa-with-SHA256 without parameters in both places and the signature is a
 * strict DER ECDSA-Sig-Value with 32-byte r and s. @peculiar/x509's own check decodes the signature
 * leniently, which would let a flipped bit in it go unnoticed.
 */
function strictSignature(certificate: x509.X509Certificate): { signed: Uint8Array; value: Uint8Array } | null {
  try {
    const asn = parsedCertificates.get(certificate) ?? AsnConvert.parse(certificate.rawData, Certificate);
    const outer = asn.signatureAlgorithm;
    const inner = asn.tbsCertificate.signature;
    if (outer.algorithm !== ecdsaWithSha256Oid || inner.algorithm !== ecdsaWithSha256Oid) return null;
    if (outer.parameters !== undefined && outer.parameters !== null) return null;
    if (inner.parameters !== undefined && inner.parameters !== null) return null;
    if (asn.tbsCertificateRaw === undefined) return null;
    const sig = AsnConvert.parse(asn.signatureValue, ECDSASigValue);
    if (!bytesEqual(new Uint8Array(AsnConvert.serialize(sig)), new Uint8Array(asn.signatureValue))) return null;
    const r = derUnsigned(new Uint8Array(sig.r));
    const s = derUnsigned(new Uint8Array(sig.s));
    if (r === null || s === null || r.length > 32 || s.length > 32) return null;
    const value = new Uint8Array(64);
    value.set(r, 32 - r.length);
    value.set(s, 64 - s.length);
    return { signed: new Uint8Array(asn.tbsCertificateRaw), value };
  } catch {
    return null;
  }
}

/** True if the certificate is not a CA (no basic constraints, or cA false). */
export function isLeaf(certificate: x509.X509Certificate): boolean {
  return !isCa(certificate);
}

/** Throws `code` unless every certificate is valid at `now` (notBefore ≤ now ≤ notAfter). */
export function checkValidAt(certificates: x509.X509Certificate[], now: Date, code: AttestationErrorCode, what: string): void {
  for (const c of certificates) {
    // Written so that an invalid Date (NaN) fails rather than passes.
    if (!(now.getTime() >= c.notBefore.getTime() && now.getTime() <= c.notAfter.getTime())) {
      throw new AttestationError(
        code,
        `${what}: "${commonName(c) ?? c.subject}" is valid ${c.notBefore.toISOString()}..${c.notAfter.toISOString()}, not at ${now.toISOString()}`,
      );
    }
  }
}
