// AMD SEV-SNP certificates: the VCEK/VLEK extensions, the ARK → ASK → VCEK and ARK → ASVK → VLEK chains (RSA-PSS over the exact TBS bytes), root pins and the extended report's certificate table.
import * as x509 from "@peculiar/x509";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  BasicConstraints,
  Certificate,
  CRLNumber,
  DisplayText,
  KeyUsage,
  KeyUsageFlags,
  id_ce_basicConstraints,
  id_ce_keyUsage,
} from "@peculiar/asn1-x509";
import { RsaSaPssParams, id_RSASSA_PSS, id_mgf1, id_sha384 } from "@peculiar/asn1-rsa";
import { bytesEqual, toHex } from "../../encoding.js";
import { subtle } from "../../crypto/provider.js";
import { AttestationError } from "../errors.js";
import type { AttestationErrorCode } from "../errors.js";
import type { SnpProduct, SnpSigningKey } from "./report.js";

/** AMD's OID arc for the VCEK/VLEK extensions. */
const amdArc = "1.3.6.1.4.1.3704.1";

/** The OIDs of the VCEK/VLEK extensions (AMD "VCEK Certificate and KDS Interface Specification"). */
export const amdExtensionOids = {
  structVersion: `${amdArc}.1`,
  productName: `${amdArc}.2`,
  blSpl: `${amdArc}.3.1`,
  teeSpl: `${amdArc}.3.2`,
  snpSpl: `${amdArc}.3.3`,
  spl4: `${amdArc}.3.4`,
  spl5: `${amdArc}.3.5`,
  spl6: `${amdArc}.3.6`,
  spl7: `${amdArc}.3.7`,
  ucodeSpl: `${amdArc}.3.8`,
  fmcSpl: `${amdArc}.3.9`,
  hwid: `${amdArc}.4`,
  cspId: `${amdArc}.5`,
} as const;

/** One pinned root: an ARK (its SHA-256 is the pin) with the ASK and ASVK it signed, used when the evidence brings none. */
export interface SnpTrustAnchor {
  product: SnpProduct;
  /** DER of the ARK. */
  ark: Uint8Array;
  /** DER of the ASK (issuer of VCEKs). */
  ask?: Uint8Array;
  /** DER of the ASVK (issuer of VLEKs). */
  asvk?: Uint8Array;
}

/** A certificate as the evidence brings it: DER bytes, or PEM text. */
export type CertificateInput = Uint8Array | string;

/** The decoded VCEK/VLEK extensions. */
export interface EndorsementExtensions {
  structVersion: number | null;
  /** As written, e.g. "Milan-B0", "Milan", "Genoa", "Turin". */
  productName: string;
  /** The product line the name denotes. */
  product: SnpProduct;
  blSpl: number;
  teeSpl: number;
  snpSpl: number;
  ucodeSpl: number;
  /** Turin only. */
  fmcSpl: number | null;
  spl4: number | null;
  spl5: number | null;
  spl6: number | null;
  spl7: number | null;
  /** The chip's hardware ID (VCEK only): 64 bytes on Milan/Genoa, 8 on Turin. */
  hwid: Uint8Array | null;
  /** Whether the HWID extension held the raw bytes or a DER OCTET STRING around them. */
  hwidEncoding: "raw" | "octet-string" | null;
  /** The cloud provider a VLEK was issued to (VLEK only). */
  cspId: string | null;
}

/** A parsed certificate with the exact bytes its signature covers. */
export interface ParsedCertificate {
  der: Uint8Array;
  asn: Certificate;
  x509: x509.X509Certificate;
  /** The exact DER of tbsCertificate, as it stands in the certificate. */
  tbs: Uint8Array;
  signature: Uint8Array;
  commonName: string;
}

function fail(code: AttestationErrorCode, message: string, cause?: unknown): AttestationError {
  return new AttestationError(code, message, cause === undefined ? undefined : { cause });
}

/** Parses one certificate (DER or PEM); refuses anything else with SNP_CERTIFICATE_MALFORMED. */
export function parseCertificate(input: CertificateInput, what: string): ParsedCertificate {
  let der: Uint8Array;
  try {
    if (typeof input === "string") {
      const blocks = x509.PemConverter.decode(input);
      if (blocks.length !== 1) throw new Error(`expected one PEM certificate, found ${blocks.length}`);
      der = new Uint8Array(blocks[0]!);
    } else if (input instanceof Uint8Array) {
      der = input.slice();
    } else {
      throw new Error("not bytes or PEM text");
    }
    const asn = AsnConvert.parse(der, Certificate);
    // DER has one encoding of each value: a certificate that does not re-encode to its own bytes
    // (trailing data, BER lengths, non-zero unused bits in the signature) is refused.
    if (!bytesEqual(new Uint8Array(AsnConvert.serialize(asn)), der)) throw new Error("the certificate is not in canonical DER");
    const tbsRaw = asn.tbsCertificateRaw;
    if (tbsRaw === undefined) throw new Error("the TBS bytes are not available");
    const cert = new x509.X509Certificate(asn);
    const commonName = cert.subjectName.getField("CN")[0] ?? "";
    return {
      der,
      asn,
      x509: cert,
      tbs: new Uint8Array(tbsRaw),
      signature: new Uint8Array(asn.signatureValue),
      commonName,
    };
  } catch (err) {
    if (err instanceof AttestationError) throw err;
    throw fail("SNP_CERTIFICATE_MALFORMED", `the ${what} certificate does not parse`, err);
  }
}

/** Splits a PEM bundle (e.g. a KDS cert_chain) into DER certificates. */
export function pemCertificates(pem: string): Uint8Array[] {
  try {
    return x509.PemConverter.decode(pem).map((b) => new Uint8Array(b));
  } catch (err) {
    throw fail("SNP_CERTIFICATE_MALFORMED", "the PEM bundle does not parse", err);
  }
}

/** The product line a KDS product name denotes ("Milan-B0" → Milan). */
export function productFromName(name: string): SnpProduct | null {
  const line = name.split("-")[0];
  return line === "Milan" || line === "Genoa" || line === "Turin" ? line : null;
}

function integerExtension(value: Uint8Array, name: string): number {
  const n = AsnConvert.parse(value, CRLNumber).value; // CRLNumber's schema is a bare INTEGER
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new Error(`${name} is not a byte`);
  return n;
}

/**
 * Reads the VCEK/VLEK extensions. Refuses a missing product name or TCB component, a value out of
 * range, a repeated extension or an HWID of the wrong size (SNP_CERTIFICATE_MALFORMED), and an
 * unknown product (SNP_PRODUCT_UNKNOWN).
 */
export function endorsementExtensions(cert: ParsedCertificate): EndorsementExtensions {
  const values = new Map<string, Uint8Array>();
  for (const ext of cert.asn.tbsCertificate.extensions ?? []) {
    if (!ext.extnID.startsWith(`${amdArc}.`)) continue;
    if (values.has(ext.extnID)) throw fail("SNP_CERTIFICATE_MALFORMED", `extension ${ext.extnID} appears twice`);
    values.set(ext.extnID, new Uint8Array(ext.extnValue.buffer));
  }
  let productName: string;
  let product: SnpProduct | null;
  const result: Omit<EndorsementExtensions, "productName" | "product"> = {
    structVersion: null,
    blSpl: 0,
    teeSpl: 0,
    snpSpl: 0,
    ucodeSpl: 0,
    fmcSpl: null,
    spl4: null,
    spl5: null,
    spl6: null,
    spl7: null,
    hwid: null,
    hwidEncoding: null,
    cspId: null,
  };
  try {
    const required = (oid: string, name: string): Uint8Array => {
      const v = values.get(oid);
      if (v === undefined) throw new Error(`the ${name} extension is missing`);
      return v;
    };
    const optionalInt = (oid: string, name: string): number | null => {
      const v = values.get(oid);
      return v === undefined ? null : integerExtension(v, name);
    };
    const name = AsnConvert.parse(required(amdExtensionOids.productName, "productName"), DisplayText).ia5String;
    if (name === undefined) throw new Error("productName is not an IA5String");
    productName = name;
    product = productFromName(name);
    result.structVersion = optionalInt(amdExtensionOids.structVersion, "structVersion");
    result.blSpl = integerExtension(required(amdExtensionOids.blSpl, "blSPL"), "blSPL");
    result.teeSpl = integerExtension(required(amdExtensionOids.teeSpl, "teeSPL"), "teeSPL");
    result.snpSpl = integerExtension(required(amdExtensionOids.snpSpl, "snpSPL"), "snpSPL");
    result.ucodeSpl = integerExtension(required(amdExtensionOids.ucodeSpl, "ucodeSPL"), "ucodeSPL");
    result.fmcSpl = optionalInt(amdExtensionOids.fmcSpl, "fmcSPL");
    result.spl4 = optionalInt(amdExtensionOids.spl4, "spl4");
    result.spl5 = optionalInt(amdExtensionOids.spl5, "spl5");
    result.spl6 = optionalInt(amdExtensionOids.spl6, "spl6");
    result.spl7 = optionalInt(amdExtensionOids.spl7, "spl7");
    const hwid = values.get(amdExtensionOids.hwid);
    if (hwid !== undefined) {
      const size = product === "Turin" ? 8 : 64;
      if (hwid.length === size) {
        result.hwid = hwid.slice();
        result.hwidEncoding = "raw";
      } else if (hwid.length === size + 2 && hwid[0] === 0x04) {
        result.hwid = new Uint8Array(AsnConvert.parse(hwid, OctetString).buffer);
        result.hwidEncoding = "octet-string";
        if (result.hwid.length !== size) throw new Error("the hwID has the wrong size");
      } else {
        throw new Error(`the hwID extension has ${hwid.length} bytes`);
      }
    }
    const csp = values.get(amdExtensionOids.cspId);
    if (csp !== undefined) {
      const id = AsnConvert.parse(csp, DisplayText).ia5String;
      if (id === undefined) throw new Error("cspId is not an IA5String");
      result.cspId = id;
    }
  } catch (err) {
    throw fail("SNP_CERTIFICATE_MALFORMED", "the VCEK/VLEK extensions do not parse", err);
  }
  if (product === null) throw fail("SNP_PRODUCT_UNKNOWN", `unknown product name ${JSON.stringify(productName)}`);
  if (product === "Turin" && result.fmcSpl === null) {
    throw fail("SNP_CERTIFICATE_MALFORMED", "a Turin VCEK/VLEK must carry the fmcSPL extension");
  }
  return { ...result, productName, product };
}

function isSha384(alg: AlgorithmIdentifier): boolean {
  if (alg.algorithm !== id_sha384) return false;
  // Parameters are absent or NULL.
  if (alg.parameters === undefined || alg.parameters === null) return true;
  const p = new Uint8Array(alg.parameters);
  return p.length === 2 && p[0] === 0x05 && p[1] === 0x00;
}

/** True if an AlgorithmIdentifier is rsassaPss with SHA-384, MGF1-SHA-384, salt 48 and trailer field 1. */
export function isAmdRsaPss(alg: AlgorithmIdentifier): boolean {
  if (alg.algorithm !== id_RSASSA_PSS || alg.parameters === undefined || alg.parameters === null) return false;
  try {
    const params = AsnConvert.parse(alg.parameters, RsaSaPssParams);
    if (!isSha384(params.hashAlgorithm)) return false;
    if (params.maskGenAlgorithm.algorithm !== id_mgf1 || !params.maskGenAlgorithm.parameters) return false;
    if (!isSha384(AsnConvert.parse(params.maskGenAlgorithm.parameters, AlgorithmIdentifier))) return false;
    return params.saltLength === 48 && params.trailerField === 1;
  } catch {
    return false;
  }
}

/** The criticality of extensions this verifier understands; any other critical extension refuses the certificate. */
const understoodCritical = new Set([id_ce_basicConstraints, id_ce_keyUsage]);

function checkCriticalExtensions(cert: ParsedCertificate, what: string): void {
  for (const ext of cert.asn.tbsCertificate.extensions ?? []) {
    if (ext.critical && !understoodCritical.has(ext.extnID)) {
      throw fail("SNP_CHAIN_INVALID", `the ${what} certificate has an unknown critical extension ${ext.extnID}`);
    }
  }
}

function isCa(cert: ParsedCertificate): boolean {
  let ca = false;
  let certSign = true;
  for (const ext of cert.asn.tbsCertificate.extensions ?? []) {
    const value = ext.extnValue.buffer;
    if (ext.extnID === id_ce_basicConstraints) ca = AsnConvert.parse(value, BasicConstraints).cA;
    if (ext.extnID === id_ce_keyUsage) {
      certSign = (AsnConvert.parse(value, KeyUsage).toNumber() & KeyUsageFlags.keyCertSign) !== 0;
    }
  }
  return ca && certSign;
}

function nameDer(name: Certificate["tbsCertificate"]["issuer"]): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(name));
}

async function rsaPssKey(cert: ParsedCertificate, what: string): Promise<CryptoKey> {
  let key: CryptoKey;
  try {
    key = await subtle().importKey(
      "spki",
      cert.x509.publicKey.rawData,
      { name: "RSA-PSS", hash: "SHA-384" },
      false,
      ["verify"],
    );
  } catch (err) {
    throw fail("SNP_CHAIN_INVALID", `the ${what} key is not an RSA key`, err);
  }
  if ((key.algorithm as RsaHashedKeyAlgorithm).modulusLength !== 4096) {
    throw fail("SNP_CHAIN_INVALID", `the ${what} key is not RSA-4096`);
  }
  return key;
}

/** Checks that `issuerKey` signed `cert` with AMD's RSA-PSS over the exact TBS bytes, and that the names chain. */
async function checkSignedBy(
  cert: ParsedCertificate,
  issuer: ParsedCertificate,
  issuerKey: CryptoKey,
  what: string,
): Promise<void> {
  const tbs = cert.asn.tbsCertificate;
  if (!isAmdRsaPss(cert.asn.signatureAlgorithm)) {
    throw fail("SNP_CHAIN_INVALID", `the ${what} certificate is not signed with RSA-PSS SHA-384, salt 48`);
  }
  if (!bytesEqual(new Uint8Array(AsnConvert.serialize(tbs.signature)), new Uint8Array(AsnConvert.serialize(cert.asn.signatureAlgorithm)))) {
    throw fail("SNP_CHAIN_INVALID", `the ${what} certificate's two signature algorithms differ`);
  }
  const ok = await subtle()
    .verify({ name: "RSA-PSS", saltLength: 48 }, issuerKey, cert.signature as BufferSource, cert.tbs as BufferSource)
    .catch(() => false);
  if (!ok) throw fail("SNP_CHAIN_INVALID", `the ${what} certificate's signature does not verify`);
  if (!bytesEqual(nameDer(tbs.issuer), nameDer(issuer.asn.tbsCertificate.subject))) {
    throw fail("SNP_CHAIN_INVALID", `the ${what} certificate's issuer is not its signer's subject`);
  }
  if (tbs.version !== 2) throw fail("SNP_CHAIN_INVALID", `the ${what} certificate is not X.509 v3`);
  checkCriticalExtensions(cert, what);
}

/** A certificate's validity period, in milliseconds since the epoch. */
interface Validity {
  what: string;
  notBefore: number;
  notAfter: number;
}

function validityOf(cert: ParsedCertificate, what: string): Validity {
  return { what, notBefore: cert.x509.notBefore.getTime(), notAfter: cert.x509.notAfter.getTime() };
}

function checkValidity(validity: Validity, now: Date): void {
  if (now.getTime() < validity.notBefore) {
    throw fail("SNP_CERTIFICATE_NOT_YET_VALID", `the ${validity.what} certificate is valid from ${new Date(validity.notBefore).toISOString()}`);
  }
  if (now.getTime() > validity.notAfter) {
    throw fail("SNP_CERTIFICATE_EXPIRED", `the ${validity.what} certificate expired on ${new Date(validity.notAfter).toISOString()}`);
  }
}

/** SHA-256 of bytes, lower-case hex. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await subtle().digest("SHA-256", bytes as BufferSource)));
}

/** The certificates of one piece of SNP evidence. */
export interface SnpCertificates {
  vcek?: CertificateInput;
  vlek?: CertificateInput;
  /** The VCEK's issuer. */
  ask?: CertificateInput;
  /** The VLEK's issuer. */
  asvk?: CertificateInput;
  /** Optional: if given, it must be byte-identical to a pinned ARK of the product. */
  ark?: CertificateInput;
}

/** The VCEK/VLEK of a verified chain. */
export interface VerifiedEndorsement {
  /** Its DER. */
  der: Uint8Array;
  /** SHA-256 of its DER, lower-case hex. */
  sha256: string;
  notBefore: Date;
  notAfter: Date;
}

/** What a verified chain establishes; each call gets its own copy (the chain cache keeps the original). */
export interface VerifiedChain {
  product: SnpProduct;
  signer: SnpSigningKey;
  endorsement: VerifiedEndorsement;
  extensions: EndorsementExtensions;
  /** The VCEK/VLEK public key (ECDSA P-384), to verify the report with. */
  endorsementKey: CryptoKey;
  /** SHA-256 of the pinned ARK the chain ends in. */
  arkSha256: string;
}

/** A pinned ARK and an intermediate it signed, both checked (signatures, CA flags, names); validity is checked per call. */
interface VerifiedIssuer {
  ark: ParsedCertificate;
  intermediate: ParsedCertificate;
  intermediateKey: CryptoKey;
}

/**
 * Issuers already verified, keyed by the SHA-256 of the ARK and of the intermediate DER (and the
 * role and product the names were checked for). Only successes are kept, and only a few: the
 * certificates AMD's ARKs sign are a handful, so the cache cannot be grown by evidence.
 */
const issuerCache = new Map<string, Promise<VerifiedIssuer>>();
const issuerCacheSize = 32;

function bytesOf(input: CertificateInput, what: string): Uint8Array {
  if (input instanceof Uint8Array) return input;
  const blocks = (() => {
    try {
      return x509.PemConverter.decode(input);
    } catch (err) {
      throw fail("SNP_CERTIFICATE_MALFORMED", `the ${what} certificate is not PEM`, err);
    }
  })();
  if (blocks.length !== 1) throw fail("SNP_CERTIFICATE_MALFORMED", `expected one ${what} certificate, found ${blocks.length}`);
  return new Uint8Array(blocks[0]!);
}

async function verifyIssuer(
  arkDer: Uint8Array,
  intermediateDer: Uint8Array,
  signer: SnpSigningKey,
  product: SnpProduct,
): Promise<VerifiedIssuer> {
  const interName = signer === "vcek" ? "ASK" : "ASVK";
  const intermediate = parseCertificate(intermediateDer, interName);
  const ark = parseCertificate(arkDer, "ARK");
  const arkKey = await rsaPssKey(ark, "ARK");
  await checkSignedBy(ark, ark, arkKey, "ARK");
  await checkSignedBy(intermediate, ark, arkKey, interName);
  const intermediateKey = await rsaPssKey(intermediate, interName);
  // The signatures hold; now what they say.
  if (!isCa(ark) || !isCa(intermediate)) {
    throw fail("SNP_CHAIN_INVALID", `the ARK and ${interName} must be CA certificates that may sign certificates`);
  }
  if (ark.commonName !== `ARK-${product}`) {
    throw fail("SNP_PRODUCT_MISMATCH", `the ${product} certificate chains to ${JSON.stringify(ark.commonName)}`);
  }
  const expectedName = signer === "vcek" ? `SEV-${product}` : `SEV-VLEK-${product}`;
  if (intermediate.commonName !== expectedName) {
    // Another product's ASK is a product mismatch; this product's ASVK in place of its ASK (or the reverse) is a broken chain.
    const named = productFromName(intermediate.commonName.replace(/^SEV-(VLEK-)?/, ""));
    throw fail(
      named !== null && named !== product ? "SNP_PRODUCT_MISMATCH" : "SNP_CHAIN_INVALID",
      `the ${signer.toUpperCase()}'s issuer is ${JSON.stringify(intermediate.commonName)}, not ${expectedName}`,
    );
  }
  return { ark, intermediate, intermediateKey };
}

async function cachedIssuer(
  arkDer: Uint8Array,
  arkSha256: string,
  intermediateDer: Uint8Array,
  signer: SnpSigningKey,
  product: SnpProduct,
): Promise<VerifiedIssuer> {
  const key = `${arkSha256}|${await sha256Hex(intermediateDer)}|${signer}|${product}`;
  const hit = issuerCache.get(key);
  if (hit !== undefined) return hit;
  const pending = verifyIssuer(arkDer.slice(), intermediateDer.slice(), signer, product);
  issuerCache.set(key, pending);
  pending.catch(() => issuerCache.delete(key));
  if (issuerCache.size > issuerCacheSize) issuerCache.delete(issuerCache.keys().next().value!);
  return pending;
}

/** A verified chain as the cache keeps it: never handed out, only copies of it. */
interface CachedChain {
  product: SnpProduct;
  signer: SnpSigningKey;
  endorsement: { der: Uint8Array; sha256: string; notBefore: number; notAfter: number };
  extensions: EndorsementExtensions;
  endorsementKey: CryptoKey;
  arkSha256: string;
  /** ARK, ASK/ASVK and VCEK/VLEK, in the order they are checked against `now`. */
  validity: Validity[];
}

/**
 * Fully verified chains, keyed by the SHA-256 of everything the chain check reads except the time:
 * the signer, the exact VCEK/VLEK, issuer and ARK inputs of the evidence, and the exact bytes of every
 * pinned anchor. Only successes are kept (at most 64, the oldest dropped first); validity is checked
 * against `now` on every call, and nothing about a report is kept.
 */
const chainCache = new Map<string, CachedChain>();
const chainCacheSize = 64;

/** The inputs of one chain check, copied once so that the key and the check read the same bytes. */
interface ChainInputs {
  key: Uint8Array;
  certificates: SnpCertificates;
  anchors: SnpTrustAnchor[];
}

/**
 * Copies the chain check's inputs into one length-prefixed buffer (its SHA-256 is the cache key) and
 * returns views into that buffer to check. Null for inputs of the wrong type, which are left to the check to refuse.
 */
function chainInputs(certificates: SnpCertificates, signer: SnpSigningKey, anchors: readonly SnpTrustAnchor[]): ChainInputs | null {
  const text = new TextEncoder();
  const parts: Uint8Array[] = [];
  // Each field: a one-byte tag (0 absent, 1 bytes, 2 PEM text), a 4-byte length, the bytes.
  const field = (value: unknown): boolean => {
    let tag: number;
    let bytes: Uint8Array;
    if (value === undefined) [tag, bytes] = [0, new Uint8Array(0)];
    else if (value instanceof Uint8Array) [tag, bytes] = [1, value];
    else if (typeof value === "string") [tag, bytes] = [2, text.encode(value)];
    else return false;
    const head = new Uint8Array(5);
    head[0] = tag;
    new DataView(head.buffer).setUint32(1, bytes.length);
    parts.push(head, bytes);
    return true;
  };
  const leaf = signer === "vcek" ? certificates.vcek : certificates.vlek;
  const intermediate = signer === "vcek" ? certificates.ask : certificates.asvk;
  const ok =
    field(signer) &&
    field(leaf) &&
    field(intermediate) &&
    field(certificates.ark) &&
    field(String(anchors.length)) &&
    anchors.every((a) => {
      const issuer = signer === "vcek" ? a.ask : a.asvk;
      if (!(a.ark instanceof Uint8Array) || !(issuer === undefined || issuer instanceof Uint8Array)) return false;
      return field(String(a.product)) && field(a.ark) && field(issuer);
    });
  if (!ok) return null;
  const key = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  const views: Uint8Array[] = [];
  let at = 0;
  for (const p of parts) {
    key.set(p, at);
    views.push(key.subarray(at, at + p.length));
    at += p.length;
  }
  // views alternate head, bytes: the n-th field's bytes are views[2n + 1].
  const copy = (n: number, value: unknown): CertificateInput | undefined =>
    value === undefined ? undefined : typeof value === "string" ? value : views[2 * n + 1]!;
  const copied: SnpCertificates = {};
  const leafCopy = copy(1, leaf);
  const intermediateCopy = copy(2, intermediate);
  const arkCopy = copy(3, certificates.ark);
  if (leafCopy !== undefined) copied[signer] = leafCopy;
  if (intermediateCopy !== undefined) copied[signer === "vcek" ? "ask" : "asvk"] = intermediateCopy;
  if (arkCopy !== undefined) copied.ark = arkCopy;
  const copiedAnchors = anchors.map((a, i): SnpTrustAnchor => {
    const base = 5 + 3 * i;
    const issuer = copy(base + 2, signer === "vcek" ? a.ask : a.asvk) as Uint8Array | undefined;
    return {
      product: a.product,
      ark: views[2 * (base + 1) + 1]!,
      ...(issuer === undefined ? {} : signer === "vcek" ? { ask: issuer } : { asvk: issuer }),
    };
  });
  return { key, certificates: copied, anchors: copiedAnchors };
}

function copyChain(chain: CachedChain): VerifiedChain {
  return {
    product: chain.product,
    signer: chain.signer,
    endorsement: {
      der: chain.endorsement.der.slice(),
      sha256: chain.endorsement.sha256,
      notBefore: new Date(chain.endorsement.notBefore),
      notAfter: new Date(chain.endorsement.notAfter),
    },
    extensions: { ...chain.extensions, hwid: chain.extensions.hwid === null ? null : chain.extensions.hwid.slice() },
    endorsementKey: chain.endorsementKey,
    arkSha256: chain.arkSha256,
  };
}

/**
 * Verifies ARK → ASK → VCEK (or ARK → ASVK → VLEK) at `now`, with the ARK pinned per product. The
 * product comes from the VCEK/VLEK; the anchors of that product are the only roots tried. Codes:
 * SNP_CERTIFICATE_MISSING, SNP_CERTIFICATE_MALFORMED, SNP_ARK_NOT_PINNED (no anchor for the product,
 * or an evidence ARK that is not byte-identical to a pinned one), SNP_CHAIN_INVALID (a signature,
 * algorithm, name or CA flag is wrong), SNP_PRODUCT_MISMATCH (the ARK/ASK names another product),
 * SNP_CERTIFICATE_EXPIRED / SNP_CERTIFICATE_NOT_YET_VALID.
 *
 * A chain verified before with the very same inputs (see `chainCache`) is not checked again, except
 * for the validity of its three certificates at `now`.
 */
export async function verifySnpChain(
  certificates: SnpCertificates,
  signer: SnpSigningKey,
  anchors: readonly SnpTrustAnchor[],
  now: Date,
): Promise<VerifiedChain> {
  const inputs = chainInputs(certificates, signer, anchors);
  if (inputs === null) return copyChain(await verifyChainUncached(certificates, signer, anchors, now));
  const key = await sha256Hex(inputs.key);
  const hit = chainCache.get(key);
  if (hit !== undefined) {
    for (const validity of hit.validity) checkValidity(validity, now);
    return copyChain(hit);
  }
  const chain = await verifyChainUncached(inputs.certificates, signer, inputs.anchors, now);
  chainCache.set(key, chain);
  if (chainCache.size > chainCacheSize) chainCache.delete(chainCache.keys().next().value!);
  return copyChain(chain);
}

async function verifyChainUncached(
  certificates: SnpCertificates,
  signer: SnpSigningKey,
  anchors: readonly SnpTrustAnchor[],
  now: Date,
): Promise<CachedChain> {
  const leafInput = signer === "vcek" ? certificates.vcek : certificates.vlek;
  if (leafInput === undefined) {
    throw fail("SNP_CERTIFICATE_MISSING", `the report is signed by a ${signer.toUpperCase()}, and the evidence has none`);
  }
  const leafName = signer.toUpperCase();
  const endorsement = parseCertificate(leafInput, leafName);
  const extensions = endorsementExtensions(endorsement);
  const product = extensions.product;

  const candidates = anchors.filter((a) => a.product === product);
  if (candidates.length === 0) throw fail("SNP_ARK_NOT_PINNED", `no ARK is pinned for ${product}`);
  const pins = await Promise.all(candidates.map(async (a) => ({ anchor: a, sha256: await sha256Hex(a.ark) })));
  let chosen = pins;
  if (certificates.ark !== undefined) {
    // The pin is the fingerprint: an evidence ARK is only ever compared, never trusted for its content.
    const fingerprint = await sha256Hex(bytesOf(certificates.ark, "ARK"));
    chosen = pins.filter((p) => p.sha256 === fingerprint);
    if (chosen.length === 0) {
      throw fail(
        "SNP_ARK_NOT_PINNED",
        `the evidence's ARK (SHA-256 ${fingerprint}) is not a pinned ${product} ARK (expected one of: ${pins.map((p) => p.sha256).join(", ")})`,
      );
    }
  }

  const interName = signer === "vcek" ? "ASK" : "ASVK";
  const givenIntermediate = signer === "vcek" ? certificates.ask : certificates.asvk;
  let lastError: AttestationError | null = null;
  for (const pin of chosen) {
    const intermediateInput = givenIntermediate ?? (signer === "vcek" ? pin.anchor.ask : pin.anchor.asvk);
    if (intermediateInput === undefined) {
      lastError = fail("SNP_CERTIFICATE_MISSING", `the evidence has no ${interName}, and none is pinned for ${product}`);
      continue;
    }
    let issuer: VerifiedIssuer;
    try {
      issuer = await cachedIssuer(pin.anchor.ark, pin.sha256, bytesOf(intermediateInput, interName), signer, product);
      await checkSignedBy(endorsement, issuer.intermediate, issuer.intermediateKey, leafName);
    } catch (err) {
      if (err instanceof AttestationError && err.code === "SNP_CHAIN_INVALID" && chosen.length > 1) {
        lastError = err;
        continue;
      }
      throw err;
    }
    if (endorsement.commonName !== `SEV-${leafName}`) {
      throw fail("SNP_CHAIN_INVALID", `the report is signed by a ${leafName}, and the certificate is ${JSON.stringify(endorsement.commonName)}`);
    }
    if (signer === "vcek" && extensions.hwid === null) throw fail("SNP_CERTIFICATE_MALFORMED", "the VCEK has no hwID");
    if (signer === "vlek" && extensions.cspId === null) throw fail("SNP_CERTIFICATE_MALFORMED", "the VLEK has no cspId");
    const validity = [validityOf(issuer.ark, "ARK"), validityOf(issuer.intermediate, interName), validityOf(endorsement, leafName)];
    for (const v of validity) checkValidity(v, now);

    let endorsementKey: CryptoKey;
    try {
      endorsementKey = await subtle().importKey(
        "spki",
        endorsement.x509.publicKey.rawData,
        { name: "ECDSA", namedCurve: "P-384" },
        false,
        ["verify"],
      );
    } catch (err) {
      throw fail("SNP_CERTIFICATE_MALFORMED", `the ${leafName} key is not an ECDSA P-384 key`, err);
    }
    return {
      product,
      signer,
      endorsement: {
        der: endorsement.der.slice(),
        sha256: await sha256Hex(endorsement.der),
        notBefore: validity[2]!.notBefore,
        notAfter: validity[2]!.notAfter,
      },
      extensions,
      endorsementKey,
      arkSha256: pin.sha256,
      validity,
    };
  }
  throw lastError ?? fail("SNP_CHAIN_INVALID", "no pinned root verifies the chain");
}

/** The GUIDs of the extended report's certificate table (GHCB specification), in their textual form. */
export const certTableGuids = {
  vcek: "63da758d-e664-4564-adc5-f4b93be8accd",
  vlek: "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
  ask: "4ab7b379-bbac-4fe4-a02f-05aef327c782",
  ark: "c0b406a4-a803-4952-9743-3fb6014cd0ae",
} as const;

function guidText(bytes: Uint8Array): string {
  const h = toHex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Reads the certificate table of an extended report (SNP_GET_EXT_REPORT): 24-byte entries of
 * GUID (16 bytes, textual byte order), offset and length (u32 little-endian), ending in an all-zero
 * entry. The ASK GUID carries the ASVK when the signer is a VLEK. Unknown GUIDs are ignored;
 * a malformed table is SNP_CERTIFICATE_MALFORMED.
 */
export function certificatesFromTable(table: Uint8Array, signer: SnpSigningKey = "vcek"): SnpCertificates {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const entries: { guid: string; offset: number; length: number }[] = [];
  let headerEnd: number;
  for (let at = 0; ; at += 24) {
    if (at + 24 > table.length) throw fail("SNP_CERTIFICATE_MALFORMED", "the certificate table has no terminating entry");
    const guid = guidText(table.subarray(at, at + 16));
    const offset = view.getUint32(at + 16, true);
    const length = view.getUint32(at + 20, true);
    if (offset === 0 && length === 0 && guid === "00000000-0000-0000-0000-000000000000") {
      headerEnd = at + 24;
      break;
    }
    entries.push({ guid, offset, length });
  }
  const out: SnpCertificates = {};
  const seen = new Set<string>();
  for (const { guid, offset, length } of entries) {
    if (offset < headerEnd || offset + length > table.length) {
      throw fail("SNP_CERTIFICATE_MALFORMED", `certificate table entry ${guid} points outside the table`);
    }
    if (seen.has(guid)) throw fail("SNP_CERTIFICATE_MALFORMED", `certificate table entry ${guid} appears twice`);
    seen.add(guid);
    const der = table.slice(offset, offset + length);
    if (guid === certTableGuids.vcek) out.vcek = der;
    else if (guid === certTableGuids.vlek) out.vlek = der;
    else if (guid === certTableGuids.ark) out.ark = der;
    else if (guid === certTableGuids.ask) {
      if (signer === "vcek") out.ask = der;
      else out.asvk = der;
    }
  }
  return out;
}
