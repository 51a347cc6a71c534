// Parses Intel TDX quotes (version 4, and version 5 with TD 1.0 or TD 1.5 bodies) into typed fields, refusing malformed input with stable codes.
//
// Layout (Intel TDX DCAP Quoting Library API, appendix A; field names as in google/go-tdx-guest abi):
//   v4: header (48) | TD quote body (584)                          | signed data size u32 | signed data
//   v5: header (48) | body type u16 | body size u32 | body (584/648) | signed data size u32 | signed data
//   signed data: quote signature (64, r||s) | attestation key (64, x||y) | certification data
//   certification data type 6: QE report (384) | QE report signature (64) | QE auth data (u16 size + bytes)
//                              | certification data type 5 (u16) | size u32 | PCK certificate chain (PEM)
// All integers are little-endian. Nothing may follow the signed data.
import { AttestationError } from "../errors.js";
import type { AttestationErrorCode } from "../errors.js";

/** Attestation key type 2: ECDSA-256 with the P-256 curve (the only one TDX quotes use). */
export const attestationKeyTypeEcdsaP256 = 2;
/** TEE type of a TDX quote. */
export const teeTypeTdx = 0x81;
/** v5 body type of a TD 1.0 report body (584 bytes; the only body of a v4 quote). */
export const bodyTypeTd10 = 2;
/** v5 body type of a TD 1.5 report body (648 bytes). */
export const bodyTypeTd15 = 3;
/** Certification data type 6: QE report certification data. */
export const certificationDataQeReport = 6;
/** Certification data type 5: the PCK leaf, intermediate and root certificates, PEM-encoded. */
export const certificationDataPckChain = 5;

const td10BodySize = 584;
const td15BodySize = 648;
const qeReportSize = 384;
const signatureSize = 64;
const attestationKeySize = 64;

/** The 48-byte quote header. */
export interface TdxQuoteHeader {
  version: number;
  attestationKeyType: number;
  teeType: number;
  /** Bytes 8..10 (go-tdx-guest: QeSvn; reserved in Intel's v4 layout). */
  qeSvn: number;
  /** Bytes 10..12 (go-tdx-guest: PceSvn; reserved in Intel's v4 layout). */
  pceSvn: number;
  qeVendorId: Uint8Array;
  userData: Uint8Array;
}

/** The TD report body: TD 1.0 fields, plus TEE_TCB_SVN2 and MRSERVICETD for TD 1.5. */
export interface TdxQuoteBody {
  teeTcbSvn: Uint8Array;
  mrSeam: Uint8Array;
  mrSignerSeam: Uint8Array;
  seamAttributes: Uint8Array;
  tdAttributes: Uint8Array;
  xfam: Uint8Array;
  mrTd: Uint8Array;
  mrConfigId: Uint8Array;
  mrOwner: Uint8Array;
  mrOwnerConfig: Uint8Array;
  rtmrs: [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  reportData: Uint8Array;
  /** TD 1.5 only. */
  teeTcbSvn2?: Uint8Array;
  /** TD 1.5 only. */
  mrServiceTd?: Uint8Array;
}

/** The Quoting Enclave's SGX report (384 bytes), signed by the PCK key. */
export interface QeReport {
  /** The 384 bytes the QE report signature covers. */
  raw: Uint8Array;
  cpuSvn: Uint8Array;
  miscSelect: number;
  attributes: Uint8Array;
  mrEnclave: Uint8Array;
  mrSigner: Uint8Array;
  isvProdId: number;
  isvSvn: number;
  reportData: Uint8Array;
}

/** A parsed quote. Byte fields are copies in quote byte order. */
export interface TdxQuote {
  version: 4 | 5;
  header: TdxQuoteHeader;
  /** 2 (TD 1.0) or 3 (TD 1.5); always 2 for a v4 quote. */
  bodyType: 2 | 3;
  body: TdxQuoteBody;
  /** The bytes the attestation key signs: everything before the signed-data size field. */
  signedBytes: Uint8Array;
  /** The quote signature, raw r||s (32 bytes each, big-endian). */
  signature: Uint8Array;
  /** The attestation public key, raw x||y (32 bytes each). */
  attestationKey: Uint8Array;
  qeReport: QeReport;
  /** The QE report signature, raw r||s. */
  qeReportSignature: Uint8Array;
  qeAuthData: Uint8Array;
  /** The PCK certificate chain exactly as carried (PEM text, possibly NUL-terminated). */
  pckCertChain: Uint8Array;
}

function fail(code: AttestationErrorCode, message: string): never {
  throw new AttestationError(code, message);
}

/** A bounds-checked little-endian reader over the quote. */
class Reader {
  private readonly view: DataView;
  offset = 0;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(n: number, what: string): void {
    if (this.offset + n > this.data.length) {
      fail("TDX_QUOTE_MALFORMED", `quote ends inside ${what} (offset ${this.offset}, ${n} bytes needed)`);
    }
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.data.slice(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
}

function parseHeader(r: Reader): TdxQuoteHeader {
  const version = r.u16("the header");
  const attestationKeyType = r.u16("the header");
  const teeType = r.u32("the header");
  const qeSvn = r.u16("the header");
  const pceSvn = r.u16("the header");
  const qeVendorId = r.bytes(16, "the header");
  const userData = r.bytes(20, "the header");
  if (version !== 4 && version !== 5) fail("TDX_QUOTE_VERSION_UNSUPPORTED", `quote version ${version} is not 4 or 5`);
  if (attestationKeyType !== attestationKeyTypeEcdsaP256) {
    fail("TDX_ATTESTATION_KEY_TYPE_UNSUPPORTED", `attestation key type ${attestationKeyType} is not 2 (ECDSA P-256)`);
  }
  if (teeType !== teeTypeTdx) fail("TDX_TEE_TYPE_UNSUPPORTED", `TEE type 0x${teeType.toString(16)} is not TDX (0x81)`);
  return { version, attestationKeyType, teeType, qeSvn, pceSvn, qeVendorId, userData };
}

function parseBody(r: Reader, bodyType: 2 | 3): TdxQuoteBody {
  const b = (n: number): Uint8Array => r.bytes(n, "the TD quote body");
  const body: TdxQuoteBody = {
    teeTcbSvn: b(16),
    mrSeam: b(48),
    mrSignerSeam: b(48),
    seamAttributes: b(8),
    tdAttributes: b(8),
    xfam: b(8),
    mrTd: b(48),
    mrConfigId: b(48),
    mrOwner: b(48),
    mrOwnerConfig: b(48),
    rtmrs: [b(48), b(48), b(48), b(48)],
    reportData: b(64),
  };
  if (bodyType === bodyTypeTd15) {
    body.teeTcbSvn2 = b(16);
    body.mrServiceTd = b(48);
  }
  return body;
}

function parseQeReport(raw: Uint8Array): QeReport {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    raw,
    cpuSvn: raw.slice(0x00, 0x10),
    miscSelect: view.getUint32(0x10, true),
    attributes: raw.slice(0x30, 0x40),
    mrEnclave: raw.slice(0x40, 0x60),
    mrSigner: raw.slice(0x80, 0xa0),
    isvProdId: view.getUint16(0x100, true),
    isvSvn: view.getUint16(0x102, true),
    reportData: raw.slice(0x140, 0x180),
  };
}

/**
 * Parses a TDX quote. Throws AttestationError with TDX_QUOTE_MALFORMED (truncated, sizes that do
 * not add up, trailing bytes), TDX_QUOTE_VERSION_UNSUPPORTED, TDX_ATTESTATION_KEY_TYPE_UNSUPPORTED,
 * TDX_TEE_TYPE_UNSUPPORTED, TDX_BODY_TYPE_UNSUPPORTED or TDX_CERTIFICATION_DATA_UNSUPPORTED.
 * Parsing checks no signature: see verifyTdxQuote.
 */
export function parseTdxQuote(quote: Uint8Array): TdxQuote {
  if (!(quote instanceof Uint8Array)) fail("TDX_QUOTE_MALFORMED", "a quote must be bytes");
  const r = new Reader(quote);
  const header = parseHeader(r);
  const version = header.version as 4 | 5;

  let bodyType: 2 | 3 = bodyTypeTd10;
  if (version === 5) {
    const type = r.u16("the body descriptor");
    const size = r.u32("the body descriptor");
    if (type !== bodyTypeTd10 && type !== bodyTypeTd15) {
      fail("TDX_BODY_TYPE_UNSUPPORTED", `v5 body type ${type} is not 2 (TD 1.0) or 3 (TD 1.5)`);
    }
    bodyType = type;
    const expected = type === bodyTypeTd10 ? td10BodySize : td15BodySize;
    if (size !== expected) fail("TDX_QUOTE_MALFORMED", `v5 body of type ${type} has size ${size}, not ${expected}`);
  }
  const body = parseBody(r, bodyType);
  const signedBytes = quote.slice(0, r.offset);

  const signedDataSize = r.u32("the signed data size");
  if (r.offset + signedDataSize !== quote.length) {
    fail(
      "TDX_QUOTE_MALFORMED",
      `signed data size ${signedDataSize} does not match the ${quote.length - r.offset} bytes that follow it`,
    );
  }
  const signature = r.bytes(signatureSize, "the quote signature");
  const attestationKey = r.bytes(attestationKeySize, "the attestation key");
  const certificationType = r.u16("the certification data");
  const certificationSize = r.u32("the certification data");
  if (r.offset + certificationSize !== quote.length) {
    fail("TDX_QUOTE_MALFORMED", `certification data size ${certificationSize} does not match the signed data`);
  }
  if (certificationType !== certificationDataQeReport) {
    fail("TDX_CERTIFICATION_DATA_UNSUPPORTED", `certification data type ${certificationType} is not 6 (QE report)`);
  }
  const qeReport = parseQeReport(r.bytes(qeReportSize, "the QE report"));
  const qeReportSignature = r.bytes(signatureSize, "the QE report signature");
  const authSize = r.u16("the QE auth data");
  const qeAuthData = r.bytes(authSize, "the QE auth data");
  const chainType = r.u16("the PCK certification data");
  const chainSize = r.u32("the PCK certification data");
  if (r.offset + chainSize !== quote.length) {
    fail("TDX_QUOTE_MALFORMED", `PCK certificate chain size ${chainSize} does not match the certification data`);
  }
  if (chainType !== certificationDataPckChain) {
    fail("TDX_CERTIFICATION_DATA_UNSUPPORTED", `inner certification data type ${chainType} is not 5 (PCK chain)`);
  }
  const pckCertChain = r.bytes(chainSize, "the PCK certificate chain");

  return {
    version,
    header,
    bodyType,
    body,
    signedBytes,
    signature,
    attestationKey,
    qeReport,
    qeReportSignature,
    qeAuthData,
    pckCertChain,
  };
}
