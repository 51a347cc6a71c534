// The test TEE: a generated AMD key hierarchy (ARK, ASK, ASVK, VCEK/VLEK of the real shape) that signs SEV-SNP reports with chosen fields; runtime-neutral.
//
// Nothing here is trusted by default: a verifier accepts these reports only if the caller pins the
// generated ARK (`sim.anchor`) in place of AMD's roots.
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  BasicConstraints,
  CRLDistributionPoints,
  CRLNumber,
  Certificate,
  DisplayText,
  DistributionPoint,
  DistributionPointName,
  Extension,
  Extensions,
  GeneralName,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_basicConstraints,
  id_ce_cRLDistributionPoints,
  id_ce_keyUsage,
  id_ce_subjectKeyIdentifier,
} from "@peculiar/asn1-x509";
import { RsaSaPssParams, id_RSASSA_PSS, id_mgf1, id_sha384 } from "@peculiar/asn1-rsa";
import { concat, fromHex } from "../../encoding.js";
import { randomBytes, subtle } from "../../crypto/provider.js";
import { amdExtensionOids } from "./certificates.js";
import type { SnpCertificates, SnpTrustAnchor } from "./certificates.js";
import { SNP_REPORT_SIZE, SNP_SIGNED_LENGTH, encodeTcb } from "./report.js";
import type { SnpCpuid, SnpFirmwareVersion, SnpProduct, SnpReportVersion, SnpSigningKey, SnpTcbParts } from "./report.js";
import type { SnpEvidence } from "./verify.js";

/**
 * The rsassaPss parameters exactly as AMD's KDS writes them: SHA-384 and MGF1-SHA-384 with explicit
 * NULL parameters, saltLength 48 and an explicit trailerField 1 (which an ASN.1 encoder would omit
 * as DEFAULT). A test compares them with the bytes in AMD's own certificates.
 */
const amdPssParameters =
  "3039a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130a303020101";

const day = 24 * 3600 * 1000;

function pssAlgorithm(saltLength: number): AlgorithmIdentifier {
  if (saltLength === 48) {
    return new AlgorithmIdentifier({ algorithm: id_RSASSA_PSS, parameters: fromHex(amdPssParameters).buffer as ArrayBuffer });
  }
  const sha384 = new AlgorithmIdentifier({ algorithm: id_sha384, parameters: null });
  const params = new RsaSaPssParams({
    hashAlgorithm: sha384,
    maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: id_mgf1, parameters: AsnConvert.serialize(sha384) }),
    saltLength,
  });
  return new AlgorithmIdentifier({ algorithm: id_RSASSA_PSS, parameters: AsnConvert.serialize(params) });
}

/** AMD's distinguished names: OU, C, L, ST, O, CN, all UTF8String but the country. */
function amdName(commonName: string): Name {
  const rdn = (type: string, value: AttributeValue): RelativeDistinguishedName =>
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value })]);
  return new Name([
    rdn("2.5.4.11", new AttributeValue({ utf8String: "Engineering" })),
    rdn("2.5.4.6", new AttributeValue({ printableString: "US" })),
    rdn("2.5.4.7", new AttributeValue({ utf8String: "Santa Clara" })),
    rdn("2.5.4.8", new AttributeValue({ utf8String: "CA" })),
    rdn("2.5.4.10", new AttributeValue({ utf8String: "Advanced Micro Devices" })),
    rdn("2.5.4.3", new AttributeValue({ utf8String: commonName })),
  ]);
}

/** A key pair and its certificate (DER). */
export interface SimulatedKey {
  certificate: Uint8Array;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** What to put in a generated certificate. */
export interface SimulatedCertificateParams {
  serial: Uint8Array;
  issuer: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** The subject's public key. */
  publicKey: CryptoKey;
  /** The issuer's RSA-PSS private key. */
  signingKey: CryptoKey;
  extensions: Extension[];
  /** 48 unless a test wants a wrong one. */
  saltLength?: number;
}

/** Builds and signs a certificate of AMD's shape (RSA-PSS SHA-384 over the TBS). */
export async function issueSimulatedCertificate(params: SimulatedCertificateParams): Promise<Uint8Array> {
  const algorithm = pssAlgorithm(params.saltLength ?? 48);
  const spki = AsnConvert.parse(await subtle().exportKey("spki", params.publicKey), SubjectPublicKeyInfo);
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: params.serial.slice().buffer as ArrayBuffer,
    signature: algorithm,
    issuer: amdName(params.issuer),
    validity: new Validity({ notBefore: params.notBefore, notAfter: params.notAfter }),
    subject: amdName(params.subject),
    subjectPublicKeyInfo: spki,
    extensions: new Extensions(params.extensions),
  });
  const tbsDer = AsnConvert.serialize(tbs);
  const signature = await subtle().sign({ name: "RSA-PSS", saltLength: params.saltLength ?? 48 }, params.signingKey, tbsDer);
  const cert = new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: signature });
  return new Uint8Array(AsnConvert.serialize(cert));
}

function ext(oid: string, value: ArrayBuffer | Uint8Array, critical = false): Extension {
  return new Extension({ extnID: oid, critical, extnValue: new OctetString(value) });
}

async function caExtensions(publicKey: CryptoKey, root: boolean, crl: string): Promise<Extension[]> {
  const spki = new Uint8Array(await subtle().exportKey("spki", publicKey));
  const keyId = new Uint8Array(await subtle().digest("SHA-1", spki as BufferSource));
  const usage = root ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign : KeyUsageFlags.keyCertSign;
  const exts = [
    ext(id_ce_subjectKeyIdentifier, AsnConvert.serialize(new SubjectKeyIdentifier(keyId))),
    ext(id_ce_basicConstraints, AsnConvert.serialize(new BasicConstraints({ cA: true, ...(root ? {} : { pathLenConstraint: 0 }) })), true),
    ext(id_ce_keyUsage, AsnConvert.serialize(new KeyUsage(usage)), true),
  ];
  if (!root) {
    const point = new DistributionPoint({
      distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: crl })] }),
    });
    exts.push(ext(id_ce_cRLDistributionPoints, AsnConvert.serialize(new CRLDistributionPoints([point]))));
  }
  return exts;
}

/** The TCB a VCEK/VLEK certifies, and what else goes in its AMD extensions. */
export interface SimulatedEndorsementParams {
  tcb: SnpTcbParts;
  /** VCEK only: 64 bytes (8 on Turin); random if absent. */
  hwid?: Uint8Array;
  /** VLEK only. */
  cspId?: string;
  /** Defaults: "Milan-B0" for a Milan VCEK, the product line otherwise. */
  productName?: string;
  /** How the hwID extension holds the ID; AMD writes it raw. */
  hwidEncoding?: "raw" | "octet-string";
  notBefore?: Date;
  notAfter?: Date;
  /** Sign with this issuer instead of the ASK (VCEK) or ASVK (VLEK). */
  issuer?: { key: SimulatedKey; commonName: string };
  /** Extra extensions, e.g. an unknown critical one. */
  extraExtensions?: Extension[];
  saltLength?: number;
}

function amdExtensions(product: SnpProduct, signer: SnpSigningKey, p: SimulatedEndorsementParams, hwid: Uint8Array): Extension[] {
  const int = (oid: string, v: number): Extension => ext(oid, AsnConvert.serialize(new CRLNumber(v)));
  const o = amdExtensionOids;
  const name = p.productName ?? (product === "Milan" && signer === "vcek" ? "Milan-B0" : product);
  const out = [
    int(o.structVersion, product === "Turin" ? 1 : 0),
    ext(o.productName, AsnConvert.serialize(new DisplayText({ ia5String: name }))),
  ];
  const t = p.tcb;
  if (product === "Turin") {
    out.push(
      int(o.fmcSpl, t.fmc ?? 0),
      int(o.blSpl, t.bootloader),
      int(o.teeSpl, t.tee),
      int(o.snpSpl, t.snp),
      int(o.spl5, t.spl5 ?? 0),
      int(o.spl6, t.spl6 ?? 0),
      int(o.spl7, t.spl7 ?? 0),
      int(o.ucodeSpl, t.microcode),
    );
  } else {
    out.push(
      int(o.blSpl, t.bootloader),
      int(o.teeSpl, t.tee),
      int(o.spl4, t.spl4 ?? 0),
      int(o.spl5, t.spl5 ?? 0),
      int(o.spl6, t.spl6 ?? 0),
      int(o.spl7, t.spl7 ?? 0),
      int(o.snpSpl, t.snp),
      int(o.ucodeSpl, t.microcode),
    );
  }
  if (signer === "vcek") {
    out.push(ext(o.hwid, p.hwidEncoding === "octet-string" ? AsnConvert.serialize(new OctetString(hwid)) : hwid));
  } else {
    out.push(ext(o.cspId, AsnConvert.serialize(new DisplayText({ ia5String: p.cspId ?? "CN=simulated.invalid" }))));
  }
  return [...out, ...(p.extraExtensions ?? [])];
}

/** Report fields to choose; everything absent gets a plausible default for the product. */
export interface SimulatedReportFields {
  version?: SnpReportVersion | number;
  guestSvn?: number;
  policy?: bigint;
  familyId?: Uint8Array;
  imageId?: Uint8Array;
  vmpl?: number;
  signatureAlgo?: number;
  currentTcb?: SnpTcbParts;
  platformInfo?: bigint;
  authorKeyEnabled?: boolean;
  maskChipKey?: boolean;
  signingKey?: SnpSigningKey;
  reportData?: Uint8Array;
  measurement?: Uint8Array;
  hostData?: Uint8Array;
  idKeyDigest?: Uint8Array;
  authorKeyDigest?: Uint8Array;
  reportId?: Uint8Array;
  reportIdMa?: Uint8Array;
  reportedTcb?: SnpTcbParts;
  cpuid?: SnpCpuid;
  chipId?: Uint8Array;
  committedTcb?: SnpTcbParts;
  currentVersion?: SnpFirmwareVersion;
  committedVersion?: SnpFirmwareVersion;
  launchTcb?: SnpTcbParts;
  launchMitigationVector?: bigint;
  currentMitigationVector?: bigint;
}

/** The CPUID of each product's first model. */
export const simulatedCpuid: Record<SnpProduct, SnpCpuid> = {
  Milan: { family: 0x19, model: 0x01, stepping: 1 },
  Genoa: { family: 0x19, model: 0x11, stepping: 1 },
  Turin: { family: 0x1a, model: 0x02, stepping: 0 },
};

/** The default TCB of simulated chips. */
export const simulatedTcb: SnpTcbParts = { fmc: 0, bootloader: 4, tee: 0, snp: 24, microcode: 219 };

/** Lays out an unsigned report (signature zero) with the chosen fields, in the product's TCB layout. */
export function buildSnpReport(product: SnpProduct, fields: SimulatedReportFields = {}): Uint8Array {
  const bytes = new Uint8Array(SNP_REPORT_SIZE);
  const view = new DataView(bytes.buffer);
  const put = (at: number, value: Uint8Array | undefined, length: number): void => {
    if (value === undefined) return;
    if (value.length !== length) throw new RangeError(`field at 0x${at.toString(16)} has ${length} bytes`);
    bytes.set(value, at);
  };
  const version = fields.version ?? 3;
  const tcb = (parts: SnpTcbParts | undefined): Uint8Array => encodeTcb(parts ?? simulatedTcb, product);
  view.setUint32(0x000, version, true);
  view.setUint32(0x004, fields.guestSvn ?? 0, true);
  view.setBigUint64(0x008, fields.policy ?? 0x30000n, true);
  put(0x010, fields.familyId, 16);
  put(0x020, fields.imageId, 16);
  view.setUint32(0x030, fields.vmpl ?? 0, true);
  view.setUint32(0x034, fields.signatureAlgo ?? 1, true);
  bytes.set(tcb(fields.currentTcb ?? fields.reportedTcb), 0x038);
  view.setBigUint64(0x040, fields.platformInfo ?? 0n, true);
  const signingKey = (fields.signingKey ?? "vcek") === "vcek" ? 0 : 1;
  view.setUint32(0x048, (fields.authorKeyEnabled ? 1 : 0) | (fields.maskChipKey ? 2 : 0) | (signingKey << 2), true);
  put(0x050, fields.reportData, 64);
  put(0x090, fields.measurement, 48);
  put(0x0c0, fields.hostData, 32);
  put(0x0e0, fields.idKeyDigest, 48);
  put(0x110, fields.authorKeyDigest, 48);
  put(0x140, fields.reportId ?? new Uint8Array(32).fill(0x11), 32);
  put(0x160, fields.reportIdMa ?? new Uint8Array(32).fill(0xff), 32);
  bytes.set(tcb(fields.reportedTcb), 0x180);
  if (version >= 3) {
    const cpuid = fields.cpuid ?? simulatedCpuid[product];
    bytes[0x188] = cpuid.family;
    bytes[0x189] = cpuid.model;
    bytes[0x18a] = cpuid.stepping;
  }
  put(0x1a0, fields.chipId, 64);
  bytes.set(tcb(fields.committedTcb ?? fields.reportedTcb), 0x1e0);
  const current = fields.currentVersion ?? { major: 1, minor: 55, build: 29 };
  const committed = fields.committedVersion ?? current;
  bytes.set([current.build, current.minor, current.major], 0x1e8);
  bytes.set([committed.build, committed.minor, committed.major], 0x1ec);
  bytes.set(tcb(fields.launchTcb ?? fields.reportedTcb), 0x1f0);
  if (version >= 5) {
    view.setBigUint64(0x1f8, fields.launchMitigationVector ?? 0n, true);
    view.setBigUint64(0x200, fields.currentMitigationVector ?? 0n, true);
  }
  return bytes;
}

/** Signs bytes 0x000..0x29F with an ECDSA P-384 key and writes r and s as 72-byte little-endian fields. */
export async function signSnpReport(report: Uint8Array, privateKey: CryptoKey): Promise<Uint8Array> {
  const out = report.slice();
  const sig = new Uint8Array(
    await subtle().sign({ name: "ECDSA", hash: "SHA-384" }, privateKey, out.subarray(0, SNP_SIGNED_LENGTH) as BufferSource),
  );
  out.fill(0, SNP_SIGNED_LENGTH);
  out.set(sig.slice(0, 48).reverse(), SNP_SIGNED_LENGTH);
  out.set(sig.slice(48, 96).reverse(), SNP_SIGNED_LENGTH + 72);
  return out;
}

/** Options of a simulated AMD hierarchy. */
export interface SimulatedAmdOptions {
  product?: SnpProduct;
  /** The certificates are valid from a day before this time (default: the current time). */
  now?: Date;
  /** RSA modulus of the ARK, ASK and ASVK; AMD's are 4096 bits (and the verifier demands it). */
  modulusLength?: number;
  /** Whether to generate an ASVK (for VLEKs) too; default true. */
  asvk?: boolean;
}

/** A chip's signing key with its certificate. */
export interface SimulatedEndorsement extends SimulatedKey {
  signer: SnpSigningKey;
  hwid: Uint8Array | null;
  tcb: SnpTcbParts;
}

/** A generated AMD key hierarchy for one product. */
export interface SimulatedAmd {
  product: SnpProduct;
  ark: SimulatedKey;
  ask: SimulatedKey;
  /** Null if the hierarchy was made without one. */
  asvk: SimulatedKey | null;
  /** Pin this in place of AMD's roots to accept the hierarchy's reports. */
  anchor: SnpTrustAnchor;
  /** Issues a VCEK (a chip key) or a VLEK (a cloud provider's key) for a TCB. */
  issueEndorsement(signer: SnpSigningKey, params: SimulatedEndorsementParams): Promise<SimulatedEndorsement>;
  /** Signs a report with the chosen fields by `endorsement` (a VCEK matching REPORTED_TCB and CHIP_ID, if absent) and returns the evidence. */
  attest(fields?: SimulatedReportFields, endorsement?: SimulatedEndorsement): Promise<SnpEvidence>;
}

async function rsaKeyPair(modulusLength: number): Promise<CryptoKeyPair> {
  return (await subtle().generateKey(
    { name: "RSA-PSS", modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-384" },
    true,
    ["sign", "verify"],
  )) as CryptoKeyPair;
}

/** Generates an ARK (self-signed), an ASK and an ASVK for a product, with AMD's names and extensions. */
export async function createSimulatedAmd(options: SimulatedAmdOptions = {}): Promise<SimulatedAmd> {
  const product = options.product ?? "Milan";
  const now = options.now ?? new Date();
  const modulusLength = options.modulusLength ?? 4096;
  const from = new Date(now.getTime() - day);
  const until = new Date(from.getTime() + 25 * 365 * day);
  const [arkKeys, askKeys, asvkKeys] = await Promise.all([
    rsaKeyPair(modulusLength),
    rsaKeyPair(modulusLength),
    options.asvk === false ? null : rsaKeyPair(modulusLength),
  ]);
  const arkName = `ARK-${product}`;
  const ca = async (keys: CryptoKeyPair, serial: number[], subject: string, crl: string): Promise<SimulatedKey> => ({
    certificate: await issueSimulatedCertificate({
      serial: new Uint8Array(serial),
      issuer: arkName,
      subject,
      notBefore: from,
      notAfter: until,
      publicKey: keys.publicKey,
      signingKey: arkKeys.privateKey,
      extensions: await caExtensions(keys.publicKey, keys === arkKeys, crl),
    }),
    privateKey: keys.privateKey,
    publicKey: keys.publicKey,
  });
  const ark = await ca(arkKeys, [0x01, 0x00, 0x00], arkName, "");
  const ask = await ca(askKeys, [0x01, 0x00, 0x01], `SEV-${product}`, `https://kds.simulated.invalid/vcek/v1/${product}/crl`);
  const asvk =
    asvkKeys === null
      ? null
      : await ca(asvkKeys, [0x01, 0x01, 0x01], `SEV-VLEK-${product}`, `https://kds.simulated.invalid/vlek/v1/${product}/crl`);

  const issueEndorsement = async (signer: SnpSigningKey, params: SimulatedEndorsementParams): Promise<SimulatedEndorsement> => {
    const keys = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const hwid = signer === "vcek" ? (params.hwid ?? randomBytes(product === "Turin" ? 8 : 64)) : null;
    let issuer = params.issuer;
    if (issuer === undefined && signer === "vcek") issuer = { key: ask, commonName: `SEV-${product}` };
    if (issuer === undefined && asvk !== null) issuer = { key: asvk, commonName: `SEV-VLEK-${product}` };
    if (issuer === undefined) throw new Error("this simulated hierarchy has no ASVK to issue VLEKs");
    const notBefore = params.notBefore ?? from;
    const certificate = await issueSimulatedCertificate({
      serial: new Uint8Array([0]),
      issuer: issuer.commonName,
      subject: signer === "vcek" ? "SEV-VCEK" : "SEV-VLEK",
      notBefore,
      notAfter: params.notAfter ?? new Date(notBefore.getTime() + 7 * 365 * day),
      publicKey: keys.publicKey,
      signingKey: issuer.key.privateKey,
      extensions: amdExtensions(product, signer, params, hwid ?? new Uint8Array(0)),
      ...(params.saltLength === undefined ? {} : { saltLength: params.saltLength }),
    });
    return { certificate, privateKey: keys.privateKey, publicKey: keys.publicKey, signer, hwid, tcb: params.tcb };
  };

  const attest = async (fields: SimulatedReportFields = {}, endorsement?: SimulatedEndorsement): Promise<SnpEvidence> => {
    const signer = endorsement?.signer ?? fields.signingKey ?? "vcek";
    const key =
      endorsement ??
      (await issueEndorsement(signer, {
        tcb: fields.reportedTcb ?? simulatedTcb,
        ...(fields.chipId === undefined ? {} : { hwid: fields.chipId.slice(0, product === "Turin" ? 8 : 64) }),
      }));
    const chipId = fields.chipId ?? (key.hwid === null ? new Uint8Array(64) : concat(key.hwid, new Uint8Array(64 - key.hwid.length)));
    const report = await signSnpReport(
      buildSnpReport(product, { reportedTcb: key.tcb, ...fields, signingKey: signer, chipId }),
      key.privateKey,
    );
    const certificates: SnpCertificates =
      signer === "vcek"
        ? { vcek: key.certificate, ask: ask.certificate, ark: ark.certificate }
        : { vlek: key.certificate, ...(asvk === null ? {} : { asvk: asvk.certificate }), ark: ark.certificate };
    return { report, certificates };
  };

  return {
    product,
    ark,
    ask,
    asvk,
    anchor: { product, ark: ark.certificate, ask: ask.certificate, ...(asvk === null ? {} : { asvk: asvk.certificate }) },
    issueEndorsement,
    attest,
  };
}
