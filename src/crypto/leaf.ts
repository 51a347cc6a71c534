// Workload leaf certificates built directly in DER from a per-mesh-CA template and signed with WebCrypto, without an ASN.1 object model.
import { p256, p384 } from "@noble/curves/nist.js";
import { fromHex } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { canonicalIp } from "../manifest/san.js";
import type { GeneralName } from "../manifest/san.js";
import {
  bitString,
  boolean,
  children,
  ecdsaSignatureDer,
  explicit,
  ia5Bytes,
  implicit,
  integer,
  isPrintable,
  namedBits,
  octetString,
  oid,
  printableString,
  readElement,
  sequence,
  setOf,
  smallInteger,
  tags,
  time,
  utf8String,
} from "./der.js";
import { sha256, subtle } from "./provider.js";

/** DER AlgorithmIdentifier of ecdsa-with-SHA384 (1.2.840.10045.4.3.3, parameters absent, RFC 5758 §3.2). */
export const ecdsaWithSha384 = sequence(oid("1.2.840.10045.4.3.3"));

const version3 = explicit(0, smallInteger(2));
const commonNameOid = oid("2.5.4.3");

/** Encoded OIDs by dotted form: the extensions' OIDs are a few constants, so each is encoded once. */
const encodedOids = new Map<string, Uint8Array>();

function extensionOid(id: string): Uint8Array {
  let encoded = encodedOids.get(id);
  if (encoded === undefined) {
    encoded = oid(id);
    if (encodedOids.size < 256) encodedOids.set(id, encoded);
  }
  return encoded;
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? sequence(extensionOid(id), boolean(true), octetString(value)) : sequence(extensionOid(id), octetString(value));
}

/** basicConstraints (critical): CA false, encoded as the empty SEQUENCE since cA defaults to FALSE. */
const basicConstraints = extension("2.5.29.19", true, sequence());
/** keyUsage (critical): digitalSignature (bit 0) and keyEncipherment (bit 2). */
const keyUsage = extension("2.5.29.15", true, namedBits([0, 2]));
/** extKeyUsage: serverAuth, clientAuth. */
const extKeyUsage = extension("2.5.29.37", false, sequence(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2")));

/** What stays the same for every leaf one mesh CA issues: its subject as the issuer, its key identifier and signing key. */
export interface LeafTemplate {
  /** The issuer Name, byte for byte the subject of the issuing CA certificate. */
  issuer: Uint8Array;
  /** The encoded authorityKeyIdentifier extension (keyIdentifier only). */
  authorityKeyIdentifier: Uint8Array;
  /** The CA's ECDSA private key. */
  signingKey: CryptoKey;
}

/** The per-leaf values. */
export interface LeafFields {
  /** The serial number's big-endian magnitude (positive; encoded minimally). */
  serialNumber: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** The subject's only attribute: PrintableString if it fits that alphabet, else UTF8String. */
  commonName: string;
  /** The subject's SubjectPublicKeyInfo, DER. */
  subjectPublicKeyInfo: Uint8Array;
  /** The subjectKeyIdentifier value. */
  subjectKeyId: Uint8Array;
  /** DNS names and IP addresses, in order; no subjectAltName extension when empty. */
  sans: readonly GeneralName[];
  /** Further non-critical extensions (OID and the DER of the value), after the standard ones. */
  extensions?: readonly { oid: string; value: Uint8Array }[];
}

/** The DER SubjectPublicKeyInfo of an uncompressed EC point on a named curve, up to the point: what WebCrypto exports. */
function ecSpkiPrefix(curveOid: string, pointLength: number): Uint8Array {
  const spki = sequence(sequence(oid("1.2.840.10045.2.1"), oid(curveOid)), bitString(new Uint8Array(pointLength)));
  return spki.subarray(0, spki.length - pointLength);
}

const ecSpkiPrefixes = [
  { namedCurve: "P-256", prefix: ecSpkiPrefix("1.2.840.10045.3.1.7", 65), pointLength: 65, curve: p256 },
  { namedCurve: "P-384", prefix: ecSpkiPrefix("1.3.132.0.34", 97), pointLength: 97, curve: p384 },
] as const;

/** An EC public key in the SubjectPublicKeyInfo form WebCrypto exports. */
export interface CanonicalEcKey {
  namedCurve: "P-256" | "P-384";
  /** The uncompressed point (0x04, X, Y). */
  point: Uint8Array;
}

/**
 * The curve and uncompressed point of a SubjectPublicKeyInfo if the SPKI is byte for byte the DER
 * that WebCrypto exports for a P-256 or P-384 public key (named curve, uncompressed point), else
 * null. It does not check that the point is on the curve: `isValidEcPoint` (or an import) does that.
 */
export function canonicalEcKey(spki: Uint8Array): CanonicalEcKey | null {
  for (const { namedCurve, prefix, pointLength } of ecSpkiPrefixes) {
    if (spki.length !== prefix.length + pointLength || spki[prefix.length] !== 0x04) continue;
    let same = true;
    for (let i = 0; i < prefix.length && same; i++) same = spki[i] === prefix[i];
    if (same) return { namedCurve, point: spki.slice(prefix.length) };
  }
  return null;
}

/** The uncompressed EC point of a SubjectPublicKeyInfo in the form WebCrypto exports (see `canonicalEcKey`), else null. */
export function canonicalEcPoint(spki: Uint8Array): Uint8Array | null {
  return canonicalEcKey(spki)?.point ?? null;
}

/**
 * Whether an uncompressed point is a public key on its curve: both coordinates below the field
 * prime and the curve equation holding (P-256 and P-384 have cofactor 1, so every such point is in
 * the prime-order group, and the point at infinity has no uncompressed form). The check a WebCrypto
 * import of the SPKI makes, by @noble/curves, without an import's cost.
 */
export function isValidEcPoint(key: CanonicalEcKey): boolean {
  const curve = key.namedCurve === "P-256" ? p256 : p384;
  try {
    curve.Point.fromBytes(key.point).assertValidity();
    return true;
  } catch {
    return false;
  }
}

/** The subject key identifier of an uncompressed point, by the method of ca.ts `subjectKeyId`: the leftmost 160 bits of its SHA-256. */
export async function pointKeyId(point: Uint8Array): Promise<Uint8Array> {
  return (await sha256(point)).slice(0, 20);
}

/** The subject Name of a DER certificate, exactly as encoded there. */
export function certificateSubject(certificate: Uint8Array): Uint8Array {
  const cert = readElement(certificate);
  const tbs = cert.tag === tags.sequence ? children(certificate, cert)[0] : undefined;
  if (cert.end !== certificate.length || tbs?.tag !== tags.sequence) {
    throw new CoordinatorError("INTERNAL", "the issuing CA certificate is not a DER certificate");
  }
  const fields = children(certificate, tbs);
  // version [0] is optional; then serialNumber, signature, issuer, validity, subject.
  const subject = fields[fields[0]?.tag === 0xa0 ? 5 : 4];
  if (subject?.tag !== tags.sequence) throw new CoordinatorError("INTERNAL", "the issuing CA certificate has no subject");
  return certificate.slice(subject.start, subject.end);
}

/** The template for leaves issued by the holder of `signingKey`, certified by `issuerCertificate` (DER) with key identifier `issuerKeyId`. */
export function leafTemplate(issuerCertificate: Uint8Array, issuerKeyId: Uint8Array, signingKey: CryptoKey): LeafTemplate {
  return {
    issuer: certificateSubject(issuerCertificate),
    authorityKeyIdentifier: extension("2.5.29.35", false, sequence(implicit(0, issuerKeyId))),
    signingKey,
  };
}

/** A CA as the core holds it (structurally `CertifiedKey`). */
export interface LeafIssuer {
  privateKey: CryptoKey;
  certificate: { rawData: ArrayBuffer };
  /** Subject key identifier, hex. */
  keyId: string;
}

const templates = new WeakMap<LeafIssuer, { certificate: LeafIssuer["certificate"]; keyId: string; template: LeafTemplate }>();

/** The template of a CA, made once per CA object and reused while its certificate, key and key identifier stay the same. */
export function templateFor(ca: LeafIssuer): LeafTemplate {
  const cached = templates.get(ca);
  if (
    cached !== undefined &&
    cached.certificate === ca.certificate &&
    cached.keyId === ca.keyId &&
    cached.template.signingKey === ca.privateKey
  ) {
    return cached.template;
  }
  const template = leafTemplate(new Uint8Array(ca.certificate.rawData), fromHex(ca.keyId), ca.privateKey);
  templates.set(ca, { certificate: ca.certificate, keyId: ca.keyId, template });
  return template;
}

/** The 4 or 16 address bytes of an IP SAN (any form `canonicalIp` accepts). */
export function ipAddressBytes(value: string): Uint8Array {
  const canonical = canonicalIp(value);
  if (canonical === null) throw new CoordinatorError("INTERNAL", `invalid IP address SAN ${JSON.stringify(value)}`);
  if (!canonical.includes(":")) return Uint8Array.from(canonical.split(".").map(Number));
  const out = new Uint8Array(16);
  canonical.split(":").forEach((group, i) => {
    const n = parseInt(group, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** The GeneralNames of the SANs: dNSName [2] IA5String, iPAddress [7] OCTET STRING (both implicitly tagged). */
function generalNames(sans: readonly GeneralName[]): Uint8Array {
  return sequence(
    ...sans.map((name) => (name.type === "dns" ? implicit(2, ia5Bytes(name.value)) : implicit(7, ipAddressBytes(name.value)))),
  );
}

/**
 * Encodings of values that repeat from leaf to leaf, each made once: the same request of a policy
 * has the same subject and SANs, and every leaf of one second the same validity. Only what cannot
 * change is cached: strings by value, and arrays or claims only when frozen (so their contents are
 * fixed), by identity.
 */
const encoded = {
  /** The subject Name by common name (bounded: cleared when full). */
  subjects: new Map<string, Uint8Array>(),
  /** The subjectAltName extension by its frozen list of names. */
  subjectAltNames: new WeakMap<readonly GeneralName[], Uint8Array>(),
  /** A further extension by its frozen claim. */
  claims: new WeakMap<{ oid: string; value: Uint8Array }, Uint8Array>(),
  /** The last Validity, by its two instants in whole seconds (what the encoding keeps of them). */
  validity: { notBefore: NaN, notAfter: NaN, der: new Uint8Array(0) as Uint8Array },
};

function subjectName(commonName: string): Uint8Array {
  let der = encoded.subjects.get(commonName);
  if (der === undefined) {
    const value = isPrintable(commonName) ? printableString(commonName) : utf8String(commonName);
    der = sequence(setOf(sequence(commonNameOid, value)));
    if (encoded.subjects.size >= 1024) encoded.subjects.clear();
    encoded.subjects.set(commonName, der);
  }
  return der;
}

function subjectAltName(sans: readonly GeneralName[]): Uint8Array {
  let der = encoded.subjectAltNames.get(sans);
  if (der === undefined) {
    der = extension("2.5.29.17", false, generalNames(sans));
    if (Object.isFrozen(sans) && sans.every((name) => Object.isFrozen(name))) encoded.subjectAltNames.set(sans, der);
  }
  return der;
}

function claimExtension(claim: { oid: string; value: Uint8Array }): Uint8Array {
  let der = encoded.claims.get(claim);
  if (der === undefined) {
    der = extension(claim.oid, false, claim.value);
    if (frozenClaims.has(claim)) encoded.claims.set(claim, der);
  }
  return der;
}

/** Claims made by `frozenClaim`: their bytes are never changed, so their extension is encoded once. */
const frozenClaims = new WeakSet<object>();

/**
 * A claim (an extension's OID and value) whose value bytes its maker never changes again, frozen, so
 * that leaves carrying it encode its extension once (e.g. the workload secret ID of a policy).
 */
export function frozenClaim(claim: { oid: string; value: Uint8Array }): Readonly<{ oid: string; value: Uint8Array }> {
  const frozen = Object.freeze({ oid: claim.oid, value: claim.value.slice() });
  frozenClaims.add(frozen);
  return frozen;
}

function validity(notBefore: Date, notAfter: Date): Uint8Array {
  // Times are encoded to the whole second (the fraction dropped), so instants of one second encode alike.
  const from = Math.floor(notBefore.getTime() / 1000);
  const to = Math.floor(notAfter.getTime() / 1000);
  if (encoded.validity.notBefore !== from || encoded.validity.notAfter !== to) {
    encoded.validity = { notBefore: from, notAfter: to, der: sequence(time(notBefore), time(notAfter)) };
  }
  return encoded.validity.der;
}

/** The DER TBSCertificate of a leaf, as RFC 5280 §4.1 lays it out. */
export function leafTbs(template: LeafTemplate, fields: LeafFields): Uint8Array {
  const extensions = [
    basicConstraints,
    keyUsage,
    extKeyUsage,
    extension("2.5.29.14", false, octetString(fields.subjectKeyId)),
    template.authorityKeyIdentifier,
  ];
  if (fields.sans.length > 0) extensions.push(subjectAltName(fields.sans));
  for (const e of fields.extensions ?? []) extensions.push(claimExtension(e));
  return sequence(
    version3,
    integer(fields.serialNumber),
    ecdsaWithSha384,
    template.issuer,
    validity(fields.notBefore, fields.notAfter),
    subjectName(fields.commonName),
    fields.subjectPublicKeyInfo,
    explicit(3, sequence(...extensions)),
  );
}

/** The DER certificate of a TBSCertificate signed with `signingKey` by ECDSA with SHA-384. */
export async function signCertificate(tbs: Uint8Array, signingKey: CryptoKey): Promise<Uint8Array> {
  const p1363 = new Uint8Array(await subtle().sign({ name: "ECDSA", hash: "SHA-384" }, signingKey, tbs as BufferSource));
  return sequence(tbs, ecdsaWithSha384, bitString(ecdsaSignatureDer(p1363)));
}

/** Builds and signs a leaf certificate; returns its DER. */
export async function buildLeaf(template: LeafTemplate, fields: LeafFields): Promise<Uint8Array> {
  return signCertificate(leafTbs(template, fields), template.signingKey);
}
