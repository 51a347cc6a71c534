// The test TEE for TDX: a generated Intel-shaped PCK chain (root CA, PCK platform CA, PCK leaf with the SGX extension), quotes with chosen fields and signed collateral. Tests pin its root instead of Intel's; it gives no security.
import * as x509 from "@peculiar/x509";
import { concat, fromHex, toHex, utf8 } from "../../encoding.js";
import { randomBytes, sha256, subtle } from "../../crypto/provider.js";
import type { TdxCollateral } from "./collateral.js";
import { ecdsaSha256, intelNames, p256 } from "./certs.js";
import { encodePckExtensions, sgxExtensionOid } from "./pck.js";
import type { PckExtensions } from "./pck.js";
import { bodyTypeTd10, bodyTypeTd15, certificationDataPckChain, certificationDataQeReport } from "./quote.js";
import type { TdxFields } from "./verify.js";
import { intelQeVendorId } from "./verify.js";

const intelOrg = "O=Intel Corporation, L=Santa Clara, ST=CA, C=US";
const hour = 60 * 60 * 1000;
const year = 365 * 24 * hour;

/** Options of the test TEE's platform: its certificates and the PCK's SGX extension. */
export interface SimulatedTdxPlatformOptions {
  /** Certificates are valid from one hour before this time (default: now): root 30 years, CA 15, PCK and TCB signing 7. */
  now?: Date;
  /** Fields of the PCK's SGX extension (defaults: a platform CA PCK with FMSPC 50806f000000). */
  pck?: Partial<PckExtensions>;
  /** Issue the PCK from an "Intel SGX PCK Processor CA" instead of the platform CA. */
  processorCa?: boolean;
  /** Leave the SGX extension out of the PCK certificate (to test that it is required). */
  omitSgxExtension?: boolean;
}

/** Fields of one quote. Hex strings or bytes, in quote byte order. */
export interface SimulatedQuoteOptions {
  /** 4 (default) or 5. */
  version?: 4 | 5;
  /** For version 5: 2 (TD 1.0) or 3 (TD 1.5, default). */
  bodyType?: 2 | 3;
  /** TD report body fields, by their expected.json names. */
  body?: Partial<Record<keyof TdxFields, string | Uint8Array>>;
  /** REPORT_DATA (64 bytes); wins over body.report_data. */
  reportData?: Uint8Array;
  qeVendorId?: string;
  qeReport?: {
    mrSigner?: string;
    isvProdId?: number;
    isvSvn?: number;
    miscSelect?: number;
    attributes?: string;
    /** Replaces the binding SHA-256(attestation key ‖ auth data) ‖ 0³² (to test its check). */
    reportData?: Uint8Array;
  };
  qeAuthData?: Uint8Array;
}

/** The test TEE. */
export interface SimulatedTdxPlatform {
  /** The root CA: pin it (rootPem) in place of Intel's. */
  root: x509.X509Certificate;
  rootPem: string;
  intermediate: x509.X509Certificate;
  pck: x509.X509Certificate;
  pckExtensions: PckExtensions;
  /** The "Intel SGX TCB Signing" certificate that signs collateral. */
  tcbSigning: x509.X509Certificate;
  /** The QE report defaults (Intel's TD QE MRSIGNER, ISVPRODID 2, ISVSVN 4). */
  qe: { mrSigner: string; isvProdId: number; isvSvn: number; miscSelect: number; attributes: string };
  /** A signed quote with the chosen fields. */
  quote(options?: SimulatedQuoteOptions): Promise<Uint8Array>;
  /** TCB info and QE identity documents that match this platform and the given TEE_TCB_SVN (hex), status UpToDate. */
  collateralDocuments(options?: { teeTcbSvn?: string; now?: Date }): { tcbInfo: TcbInfoDocument; qeIdentity: QeIdentityDocument };
  /** Signs the documents as Intel PCS serves them (body text + issuer chain). */
  signCollateral(documents: { tcbInfo: unknown; qeIdentity: unknown }): Promise<TdxCollateral>;
  /** A PEM CRL of the PCK CA ("pck") or the root ("root") listing `revoked`. */
  crl(issuer: "pck" | "root", revoked: x509.X509Certificate[], validity?: { thisUpdate: Date; nextUpdate: Date }): Promise<string>;
}

/** A TDX TCB info document (Intel's v3 format), as a plain object. */
export interface TcbInfoDocument {
  id: string;
  version: number;
  issueDate: string;
  nextUpdate: string;
  fmspc: string;
  pceId: string;
  tcbType: number;
  tcbEvaluationDataNumber: number;
  tdxModule: { mrsigner: string; attributes: string; attributesMask: string };
  tdxModuleIdentities?: {
    id: string;
    mrsigner: string;
    attributes: string;
    attributesMask: string;
    tcbLevels: { tcb: { isvsvn: number }; tcbDate: string; tcbStatus: string; advisoryIDs?: string[] }[];
  }[];
  tcbLevels: {
    tcb: { sgxtcbcomponents: { svn: number }[]; pcesvn: number; tdxtcbcomponents: { svn: number }[] };
    tcbDate: string;
    tcbStatus: string;
    advisoryIDs?: string[];
  }[];
}

/** A TD QE identity document (Intel's v2 format), as a plain object. */
export interface QeIdentityDocument {
  id: string;
  version: number;
  issueDate: string;
  nextUpdate: string;
  tcbEvaluationDataNumber: number;
  miscselect: string;
  miscselectMask: string;
  attributes: string;
  attributesMask: string;
  mrsigner: string;
  isvprodid: number;
  tcbLevels: { tcb: { isvsvn: number }; tcbDate: string; tcbStatus: string; advisoryIDs?: string[] }[];
}

const defaultBody: Record<keyof TdxFields, string> = {
  tee_tcb_svn: "03000500000000000000000000000000",
  mrseam: "5e".repeat(48),
  mrsignerseam: "00".repeat(48),
  seam_attributes: "00".repeat(8),
  td_attributes: "0000001000000000",
  xfam: "e742060000000000",
  mrtd: "7d".repeat(48),
  mrconfigid: "00".repeat(48),
  mrowner: "00".repeat(48),
  mrownerconfig: "00".repeat(48),
  rtmr0: "a0".repeat(48),
  rtmr1: "a1".repeat(48),
  rtmr2: "00".repeat(48),
  rtmr3: "00".repeat(48),
  report_data: "00".repeat(64),
  tee_tcb_svn2: "03000500000000000000000000000000",
  mrservicetd: "00".repeat(48),
};

const bodyLayout: [keyof TdxFields, number][] = [
  ["tee_tcb_svn", 16],
  ["mrseam", 48],
  ["mrsignerseam", 48],
  ["seam_attributes", 8],
  ["td_attributes", 8],
  ["xfam", 8],
  ["mrtd", 48],
  ["mrconfigid", 48],
  ["mrowner", 48],
  ["mrownerconfig", 48],
  ["rtmr0", 48],
  ["rtmr1", 48],
  ["rtmr2", 48],
  ["rtmr3", 48],
  ["report_data", 64],
];

function bytes(value: string | Uint8Array, length: number, what: string): Uint8Array {
  const b = typeof value === "string" ? fromHex(value) : value;
  if (b.length !== length) throw new RangeError(`${what} must be ${length} bytes`);
  return b;
}

/** A little-endian u16, as quotes store their integers. */
export function u16(v: number): Uint8Array {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setUint16(0, v, true);
  return out;
}

/** A little-endian u32, as quotes store their integers. */
export function u32(v: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, v, true);
  return out;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await subtle().generateKey(p256, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function sign(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().sign(ecdsaSha256, key, data as BufferSource));
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40;
  return toHex(b);
}

async function caExtensions(keys: CryptoKeyPair, issuer: CryptoKey, pathLength: number, crl: string): Promise<x509.Extension[]> {
  return [
    await x509.AuthorityKeyIdentifierExtension.create(issuer),
    new x509.CRLDistributionPointsExtension([crl]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    new x509.BasicConstraintsExtension(true, pathLength, true),
  ];
}

async function leafExtensions(keys: CryptoKeyPair, issuer: CryptoKey, crl: string): Promise<x509.Extension[]> {
  return [
    await x509.AuthorityKeyIdentifierExtension.create(issuer),
    new x509.CRLDistributionPointsExtension([crl]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation, true),
    new x509.BasicConstraintsExtension(false, undefined, true),
  ];
}

/**
 * Creates a test TEE: fresh P-256 keys for the root, the PCK CA, the PCK leaf, the TCB signer and
 * the attestation key, certificates of Intel's shape and names. Runtime-neutral (WebCrypto).
 */
export async function createSimulatedTdxPlatform(options: SimulatedTdxPlatformOptions = {}): Promise<SimulatedTdxPlatform> {
  const notBefore = new Date((options.now ?? new Date()).getTime() - hour);
  const until = (years: number): Date => new Date(notBefore.getTime() + years * year);
  const [rootKeys, caKeys, pckKeys, tcbKeys, attestationKeys] = await Promise.all([keyPair(), keyPair(), keyPair(), keyPair(), keyPair()]);
  const caName = options.processorCa === true ? intelNames.processorCa : intelNames.platformCa;
  const rootDn = `CN=${intelNames.root}, ${intelOrg}`;
  const caDn = `CN=${caName}, ${intelOrg}`;

  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: rootDn,
    notBefore,
    notAfter: until(30),
    keys: rootKeys,
    signingAlgorithm: ecdsaSha256,
    extensions: await caExtensions(rootKeys, rootKeys.publicKey, 1, "https://tee.invalid/IntelSGXRootCA.der"),
  });
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: caDn,
    issuer: rootDn,
    notBefore,
    notAfter: until(15),
    publicKey: caKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: ecdsaSha256,
    extensions: await caExtensions(caKeys, rootKeys.publicKey, 0, "https://tee.invalid/IntelSGXRootCA.der"),
  });

  const pckExtensions: PckExtensions = {
    ppid: toHex(await sha256(utf8("simulated PPID"))).slice(0, 32),
    tcb: {
      components: [5, 5, 13, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0],
      pceSvn: 11,
      cpuSvn: "05050d02030100030000000000000000",
    },
    pceId: "0000",
    fmspc: "50806f000000",
    sgxType: 1,
    ...(options.processorCa === true
      ? {}
      : {
          platformInstanceId: toHex(await sha256(utf8("simulated PIID"))).slice(0, 32),
          configuration: { dynamicPlatform: true, cachedKeys: true, smtEnabled: true },
        }),
    ...options.pck,
  };
  const pck = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${intelNames.pck}, ${intelOrg}`,
    issuer: caDn,
    notBefore,
    notAfter: until(7),
    publicKey: pckKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: ecdsaSha256,
    extensions: [
      ...(await leafExtensions(pckKeys, caKeys.publicKey, "https://tee.invalid/pckcrl")),
      ...(options.omitSgxExtension === true ? [] : [new x509.Extension(sgxExtensionOid, false, encodePckExtensions(pckExtensions))]),
    ],
  });
  const tcbSigning = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${intelNames.tcbSigning}, ${intelOrg}`,
    issuer: rootDn,
    notBefore,
    notAfter: until(7),
    publicKey: tcbKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: ecdsaSha256,
    extensions: await leafExtensions(tcbKeys, rootKeys.publicKey, "https://tee.invalid/IntelSGXRootCA.der"),
  });

  const pem = (c: x509.X509Certificate): string => c.toString("pem") + "\n";
  const chainText = pem(pck) + pem(intermediate) + pem(root) + "\0";
  const attestationKey = new Uint8Array(await subtle().exportKey("raw", attestationKeys.publicKey)).slice(1);
  const qe = {
    mrSigner: "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5",
    isvProdId: 2,
    isvSvn: 4,
    miscSelect: 0,
    attributes: "11000000000000000000000000000000",
  };

  async function quote(o: SimulatedQuoteOptions = {}): Promise<Uint8Array> {
    const version = o.version ?? 4;
    const bodyType = version === 4 ? bodyTypeTd10 : (o.bodyType ?? bodyTypeTd15);
    const header = concat(
      u16(version),
      u16(2),
      u32(0x81),
      u16(0),
      u16(0),
      bytes(o.qeVendorId ?? intelQeVendorId, 16, "qeVendorId"),
      new Uint8Array(20),
    );
    const field = (name: keyof TdxFields, length: number): Uint8Array =>
      name === "report_data" && o.reportData !== undefined
        ? bytes(o.reportData, 64, "reportData")
        : bytes(o.body?.[name] ?? defaultBody[name], length, name);
    const parts = bodyLayout.map(([name, length]) => field(name, length));
    if (bodyType === bodyTypeTd15) parts.push(field("tee_tcb_svn2", 16), field("mrservicetd", 48));
    const body = concat(...parts);
    const signedBytes = version === 4 ? concat(header, body) : concat(header, u16(bodyType), u32(body.length), body);

    const authData = o.qeAuthData ?? new Uint8Array(32).map((_, i) => i);
    const q = { ...qe, ...o.qeReport };
    const qeReportData = q.reportData ?? concat(await sha256(concat(attestationKey, authData)), new Uint8Array(32));
    const qeReport = concat(
      fromHex(pckExtensions.tcb.cpuSvn),
      u32(q.miscSelect),
      new Uint8Array(28),
      bytes(q.attributes, 16, "QE attributes"),
      new Uint8Array(32),
      new Uint8Array(32),
      bytes(q.mrSigner, 32, "QE MRSIGNER"),
      new Uint8Array(96),
      u16(q.isvProdId),
      u16(q.isvSvn),
      new Uint8Array(60),
      bytes(qeReportData, 64, "QE report data"),
    );
    const chain = utf8(chainText);
    const certification = concat(
      qeReport,
      await sign(pckKeys.privateKey, qeReport),
      u16(authData.length),
      authData,
      u16(certificationDataPckChain),
      u32(chain.length),
      chain,
    );
    const signedData = concat(
      await sign(attestationKeys.privateKey, signedBytes),
      attestationKey,
      u16(certificationDataQeReport),
      u32(certification.length),
      certification,
    );
    return concat(signedBytes, u32(signedData.length), signedData);
  }

  function collateralDocuments(o: { teeTcbSvn?: string; now?: Date } = {}): { tcbInfo: TcbInfoDocument; qeIdentity: QeIdentityDocument } {
    const at = o.now ?? new Date(notBefore.getTime() + hour);
    const issueDate = new Date(at.getTime() - 24 * hour).toISOString().replace(/\.\d{3}Z$/, "Z");
    const nextUpdate = new Date(at.getTime() + 30 * 24 * hour).toISOString().replace(/\.\d{3}Z$/, "Z");
    const svn = fromHex(o.teeTcbSvn ?? defaultBody.tee_tcb_svn);
    const moduleVersion = svn[1]!;
    const tdxComponents = [...svn].map((s, i) => ({ svn: moduleVersion !== 0 && i < 2 ? 0 : s }));
    const tcbInfo: TcbInfoDocument = {
      id: "TDX",
      version: 3,
      issueDate,
      nextUpdate,
      fmspc: pckExtensions.fmspc,
      pceId: pckExtensions.pceId,
      tcbType: 0,
      tcbEvaluationDataNumber: 17,
      tdxModule: { mrsigner: "00".repeat(48), attributes: "0000000000000000", attributesMask: "FFFFFFFFFFFFFFFF" },
      tcbLevels: [
        {
          tcb: {
            sgxtcbcomponents: pckExtensions.tcb.components.map((s) => ({ svn: s })),
            pcesvn: pckExtensions.tcb.pceSvn,
            tdxtcbcomponents: tdxComponents,
          },
          tcbDate: "2024-03-13T00:00:00Z",
          tcbStatus: "UpToDate",
        },
      ],
    };
    if (moduleVersion !== 0) {
      tcbInfo.tdxModuleIdentities = [
        {
          id: `TDX_${moduleVersion.toString(16).toUpperCase().padStart(2, "0")}`,
          mrsigner: "00".repeat(48),
          attributes: "0000000000000000",
          attributesMask: "FFFFFFFFFFFFFFFF",
          tcbLevels: [{ tcb: { isvsvn: svn[0]! }, tcbDate: "2024-03-13T00:00:00Z", tcbStatus: "UpToDate" }],
        },
      ];
    }
    const qeIdentity: QeIdentityDocument = {
      id: "TD_QE",
      version: 2,
      issueDate,
      nextUpdate,
      tcbEvaluationDataNumber: 17,
      miscselect: "00000000",
      miscselectMask: "FFFFFFFF",
      attributes: "11000000000000000000000000000000",
      attributesMask: "FBFFFFFFFFFFFFFF0000000000000000",
      mrsigner: qe.mrSigner.toUpperCase(),
      isvprodid: qe.isvProdId,
      tcbLevels: [{ tcb: { isvsvn: qe.isvSvn }, tcbDate: "2024-03-13T00:00:00Z", tcbStatus: "UpToDate" }],
    };
    return { tcbInfo, qeIdentity };
  }

  async function signDocument(name: string, document: unknown): Promise<string> {
    const text = JSON.stringify(document);
    return `{"${name}":${text},"signature":"${toHex(await sign(tcbKeys.privateKey, utf8(text)))}"}`;
  }

  async function signCollateral(documents: { tcbInfo: unknown; qeIdentity: unknown }): Promise<TdxCollateral> {
    const issuerChain = pem(tcbSigning) + pem(root);
    return {
      tcbInfo: await signDocument("tcbInfo", documents.tcbInfo),
      tcbInfoIssuerChain: issuerChain,
      qeIdentity: await signDocument("enclaveIdentity", documents.qeIdentity),
      qeIdentityIssuerChain: issuerChain,
    };
  }

  async function crl(
    issuer: "pck" | "root",
    revoked: x509.X509Certificate[],
    validity = { thisUpdate: new Date(notBefore.getTime() + hour), nextUpdate: new Date(notBefore.getTime() + 30 * 24 * hour) },
  ): Promise<string> {
    const list = await x509.X509CrlGenerator.create({
      issuer: issuer === "pck" ? caDn : rootDn,
      thisUpdate: validity.thisUpdate,
      nextUpdate: validity.nextUpdate,
      entries: revoked.map((c) => ({ serialNumber: c.serialNumber, revocationDate: validity.thisUpdate })),
      signingKey: issuer === "pck" ? caKeys.privateKey : rootKeys.privateKey,
      signingAlgorithm: ecdsaSha256,
    });
    return list.toString("pem");
  }

  return {
    root,
    rootPem: root.toString("pem"),
    intermediate,
    pck,
    pckExtensions,
    tcbSigning,
    qe,
    quote,
    collateralDocuments,
    signCollateral,
    crl,
  };
}
