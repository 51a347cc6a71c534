// Verifies Intel TDX quotes offline: the PCK chain to the pinned Intel SGX Root CA, the QE report, the attestation key binding and the quote signature.
//
// Public API of src/attestation/tdx/ (runtime-neutral: WebCrypto, @peculiar/x509, @peculiar/asn1-*):
//
//   verifyTdxQuote(quote, { now?, trustedRoot?, expectedReportData?, collateral?, acceptedTcbStatuses? })
//     → VerifiedTdxQuote { version, bodyType, fields (hex), policyHash, qeVendorId, pck, tcbStatus, tcb?, quote }
//     Checks, in this order (the first failure throws AttestationError with its code):
//       1. parse (quote.ts codes: TDX_QUOTE_MALFORMED, TDX_QUOTE_VERSION_UNSUPPORTED, ...);
//       2. the PCK chain carried in the quote: canonical PEM of exactly leaf, intermediate, root
//          (TDX_CERTIFICATE_MALFORMED); the root's DER SHA-256 equals the pinned root's
//          (TDX_ROOT_NOT_PINNED); Intel's names, ECDSA P-256/SHA-256, CA flags and signatures
//          (TDX_CHAIN_INVALID); every certificate valid at `now` (TDX_CERTIFICATE_EXPIRED);
//          the leaf's SGX extension (TDX_PCK_EXTENSIONS_MALFORMED);
//       3. the QE report signature by the PCK leaf key (TDX_QE_REPORT_SIGNATURE_INVALID);
//       4. QE REPORT_DATA = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes
//          (TDX_QE_REPORT_DATA_MISMATCH);
//       5. the quote signature over header and body by the attestation key (TDX_QUOTE_SIGNATURE_INVALID);
//       6. the QE vendor ID is Intel's (TDX_QE_VENDOR_ID_MISMATCH);
//       7. REPORT_DATA equals `expectedReportData` if given (TDX_REPORT_DATA_MISMATCH);
//       8. with `collateral` only: TCB info and QE identity (and CRLs if given), see collateral.ts;
//          without it `tcbStatus` is "not-checked", never a pass.
//   expectedReportData(spki, nonce) (../report-data.ts) → SHA-512(SPKI DER ‖ nonce), Contrast's REPORT_DATA binding.
//   parseTdxQuote(bytes) (quote.ts), evaluateCollateral (collateral.ts),
//   tdxReferenceValuesSchema / checkReferenceValues (reference-values.ts),
//   createSimulatedTdxPlatform (simulated.ts: the test TEE), intelSgxRootCaPem (intel-root.ts).
import type * as x509 from "@peculiar/x509";
import { bytesEqual, concat, toHex } from "../../encoding.js";
import { sha256, subtle } from "../../crypto/provider.js";
import { AttestationError } from "../errors.js";
import { evaluateCollateral } from "./collateral.js";
import type { TcbEvaluation, TcbStatus, TdxCollateral } from "./collateral.js";
import {
  checkIssuedBy,
  checkValidAt,
  commonName,
  decodePem,
  ecdsaSha256,
  hasFingerprint,
  intelNames,
  isLeaf,
  loadRoot,
  p256,
  parseCertificate,
  verifyKeyOf,
} from "./certs.js";
import { intelSgxRootCaPem } from "./intel-root.js";
import { readPckExtensions } from "./pck.js";
import type { PckExtensions } from "./pck.js";
import { parseTdxQuote } from "./quote.js";
import type { TdxQuote } from "./quote.js";

/** Intel's QE vendor ID (939a7233-f79c-4ca9-940a-0db3957f0607), as Contrast requires it. */
export const intelQeVendorId = "939a7233f79c4ca9940a0db3957f0607";

/** How to verify a quote. */
export interface TdxVerifyOptions {
  /** The time certificates (and collateral) must be valid at. Default: the current time. */
  now?: Date;
  /** The pinned root (PEM or DER). Default: Intel SGX Root CA. Tests pin the test TEE's root here. */
  trustedRoot?: string | Uint8Array;
  /** If given, REPORT_DATA must equal these 64 bytes (see expectedReportData in ../report-data.ts). */
  expectedReportData?: Uint8Array;
  /** Offline collateral (TCB info, QE identity, optional CRLs); without it the TCB is not checked. */
  collateral?: TdxCollateral;
  /** TCB statuses accepted when collateral is given. Default: ["UpToDate"], as go-tdx-guest and Contrast. */
  acceptedTcbStatuses?: readonly TcbStatus[];
}

/** The TD report fields of a verified quote, lower-case hex in quote byte order (names as in expected.json). */
export interface TdxFields {
  tee_tcb_svn: string;
  mrseam: string;
  mrsignerseam: string;
  seam_attributes: string;
  td_attributes: string;
  xfam: string;
  mrtd: string;
  mrconfigid: string;
  mrowner: string;
  mrownerconfig: string;
  rtmr0: string;
  rtmr1: string;
  rtmr2: string;
  rtmr3: string;
  report_data: string;
  /** TD 1.5 bodies only. */
  tee_tcb_svn2?: string;
  /** TD 1.5 bodies only. */
  mrservicetd?: string;
}

/** What verifyTdxQuote established about a quote. */
export interface VerifiedTdxQuote {
  version: 4 | 5;
  /** 2 (TD 1.0) or 3 (TD 1.5). */
  bodyType: 2 | 3;
  fields: TdxFields;
  /** MRCONFIGID's first 32 bytes (hex): the policy hash that selects the manifest entry. */
  policyHash: string;
  qeVendorId: string;
  pck: {
    /** Subjects of leaf, intermediate and root. */
    chain: string[];
    /** Hex SHA-256 of the pinned root the chain ends in. */
    rootSha256: string;
    notBefore: Date;
    notAfter: Date;
    extensions: PckExtensions;
  };
  /** "not-checked" unless collateral was given and evaluated. */
  tcbStatus: "not-checked" | TcbStatus;
  /** The collateral evaluation, when collateral was given. */
  tcb?: TcbEvaluation;
  /** The parsed quote. */
  quote: TdxQuote;
}

function fieldsOf(quote: TdxQuote): TdxFields {
  const b = quote.body;
  const fields: TdxFields = {
    tee_tcb_svn: toHex(b.teeTcbSvn),
    mrseam: toHex(b.mrSeam),
    mrsignerseam: toHex(b.mrSignerSeam),
    seam_attributes: toHex(b.seamAttributes),
    td_attributes: toHex(b.tdAttributes),
    xfam: toHex(b.xfam),
    mrtd: toHex(b.mrTd),
    mrconfigid: toHex(b.mrConfigId),
    mrowner: toHex(b.mrOwner),
    mrownerconfig: toHex(b.mrOwnerConfig),
    rtmr0: toHex(b.rtmrs[0]),
    rtmr1: toHex(b.rtmrs[1]),
    rtmr2: toHex(b.rtmrs[2]),
    rtmr3: toHex(b.rtmrs[3]),
    report_data: toHex(b.reportData),
  };
  if (b.teeTcbSvn2 !== undefined) fields.tee_tcb_svn2 = toHex(b.teeTcbSvn2);
  if (b.mrServiceTd !== undefined) fields.mrservicetd = toHex(b.mrServiceTd);
  return fields;
}

/** A PCK chain that passed every check but validity (which is checked at each call's `now`). */
interface VerifiedPckChain {
  leaf: x509.X509Certificate;
  intermediate: x509.X509Certificate;
  root: x509.X509Certificate;
  /** The leaf's SGX extension; handed out as copies. */
  extensions: PckExtensions;
}

/** A pinned root and a PCK CA it signed, both checked (names, algorithms, CA flags, signatures); validity is checked per call. */
interface VerifiedPckIssuer {
  intermediate: x509.X509Certificate;
  root: x509.X509Certificate;
}

/** How many verified chains and verified issuers are kept (each map; oldest first out). */
const chainCacheSize = 32;

/**
 * PCK chains that passed, keyed by the pinned root's SHA-256 and the SHA-256 of the chain's exact
 * bytes in the quote. Only successes are stored, so a chain refused once is checked in full again.
 * A quote's own signatures, QE report and REPORT_DATA are never cached.
 */
const chainCache = new Map<string, VerifiedPckChain>();

/**
 * Issuer parts (root → PCK CA) that passed, keyed by the SHA-256 of the root's DER (which must be
 * the pinned root's) and of the PCK CA's DER: a new leaf under a known CA costs one parse and one
 * signature check. Only successes are stored.
 */
const issuerCache = new Map<string, VerifiedPckIssuer>();

function remember<T>(cache: Map<string, T>, key: string, value: T): void {
  cache.delete(key);
  cache.set(key, value);
  if (cache.size > chainCacheSize) cache.delete(cache.keys().next().value!);
}

/** Checks the PCK chain carried in the quote and returns leaf, intermediate, root and the leaf's SGX extension. */
async function verifyPckChain(quote: TdxQuote, root: { sha256: Uint8Array }, now: Date): Promise<VerifiedPckChain> {
  const chainKey = `${toHex(root.sha256)}|${toHex(await sha256(quote.pckCertChain))}`;
  const hit = chainCache.get(chainKey);
  if (hit !== undefined) {
    // The same bytes passed every other check before; validity depends on `now`.
    checkValidAt([hit.leaf, hit.intermediate, hit.root], now, "TDX_CERTIFICATE_EXPIRED", "PCK chain");
    return { ...hit, extensions: structuredClone(hit.extensions) };
  }
  const verified = await verifyPckChainUncached(quote, root, now);
  remember(chainCache, chainKey, verified);
  return { ...verified, extensions: structuredClone(verified.extensions) };
}

/** The full check of a PCK chain (the issuer part may come from issuerCache); throws the code of the first failure. */
async function verifyPckChainUncached(quote: TdxQuote, root: { sha256: Uint8Array }, now: Date): Promise<VerifiedPckChain> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(quote.pckCertChain);
  } catch (err) {
    throw new AttestationError("TDX_CERTIFICATE_MALFORMED", "the PCK certificate chain is not text", { cause: err });
  }
  const what = "the PCK certificate chain";
  const ders = decodePem(text, "TDX_CERTIFICATE_MALFORMED", what);
  if (ders.length !== 3) {
    throw new AttestationError("TDX_CERTIFICATE_MALFORMED", `the PCK certificate chain has ${ders.length} certificates, not 3`);
  }
  const [leafDer, intermediateDer, rootDer] = ders as [ArrayBuffer, ArrayBuffer, ArrayBuffer];
  const leaf = parseCertificate(leafDer, "TDX_CERTIFICATE_MALFORMED", `certificate 0 of ${what}`);
  const rootSha256 = await sha256(new Uint8Array(rootDer));
  const issuerKey = `${toHex(rootSha256)}|${toHex(await sha256(new Uint8Array(intermediateDer)))}`;
  let issuer = bytesEqual(rootSha256, root.sha256) ? issuerCache.get(issuerKey) : undefined;
  if (issuer === undefined) {
    const intermediate = parseCertificate(intermediateDer, "TDX_CERTIFICATE_MALFORMED", `certificate 1 of ${what}`);
    const rootCert = parseCertificate(rootDer, "TDX_CERTIFICATE_MALFORMED", `certificate 2 of ${what}`);
    if (!(await hasFingerprint(rootCert, root.sha256))) {
      throw new AttestationError(
        "TDX_ROOT_NOT_PINNED",
        `the PCK chain ends in a root with SHA-256 ${toHex(rootSha256)}, not the pinned root (SHA-256 ${toHex(root.sha256)})`,
      );
    }
    const intermediateName = commonName(intermediate);
    if (commonName(rootCert) !== intelNames.root || (intermediateName !== intelNames.platformCa && intermediateName !== intelNames.processorCa)) {
      throw new AttestationError("TDX_CHAIN_INVALID", "the PCK chain does not have Intel's shape (root CA, PCK platform/processor CA, PCK leaf)");
    }
    checkLeafShape(leaf);
    await checkIssuedBy(rootCert, rootCert, "TDX_CHAIN_INVALID", "root CA");
    await checkIssuedBy(intermediate, rootCert, "TDX_CHAIN_INVALID", "PCK CA");
    issuer = { intermediate, root: rootCert };
    remember(issuerCache, issuerKey, issuer);
  } else {
    checkLeafShape(leaf);
  }
  await checkIssuedBy(leaf, issuer.intermediate, "TDX_CHAIN_INVALID", "PCK certificate");
  checkValidAt([leaf, issuer.intermediate, issuer.root], now, "TDX_CERTIFICATE_EXPIRED", "PCK chain");
  const extensions = readPckExtensions(leaf);
  return { leaf, intermediate: issuer.intermediate, root: issuer.root, extensions };
}

function checkLeafShape(leaf: x509.X509Certificate): void {
  if (commonName(leaf) !== intelNames.pck || !isLeaf(leaf)) {
    throw new AttestationError("TDX_CHAIN_INVALID", "the PCK chain does not have Intel's shape (root CA, PCK platform/processor CA, PCK leaf)");
  }
}

let intelRoot: ReturnType<typeof loadRoot> | undefined;

/** Roots given as `trustedRoot`, loaded (parsed and fingerprinted) once; keyed by the PEM text or the hex DER. */
const loadedRoots = new Map<string, Promise<{ sha256: Uint8Array }>>();

function trustedRootFor(trustedRoot: string | Uint8Array): Promise<{ sha256: Uint8Array }> {
  const key = typeof trustedRoot === "string" ? `pem:${trustedRoot}` : `der:${toHex(trustedRoot)}`;
  const hit = loadedRoots.get(key);
  if (hit !== undefined) return hit;
  const pending = loadRoot(trustedRoot).then((r) => ({ sha256: r.sha256 }));
  loadedRoots.set(key, pending);
  pending.catch(() => loadedRoots.delete(key));
  if (loadedRoots.size > 8) loadedRoots.delete(loadedRoots.keys().next().value!);
  return pending;
}

async function verifySignature(publicKey: CryptoKey, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    return await subtle().verify(ecdsaSha256, publicKey, signature as BufferSource, data as BufferSource);
  } catch {
    return false;
  }
}

/**
 * Verifies a TDX quote (v4 or v5) offline; see the list at the top of this file for what is
 * checked and the code each failure throws. Returns the verified fields.
 */
export async function verifyTdxQuote(raw: Uint8Array, options: TdxVerifyOptions = {}): Promise<VerifiedTdxQuote> {
  const now = options.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new TypeError("verifyTdxQuote: `now` must be a valid Date");
  const quote = parseTdxQuote(raw);
  const root = options.trustedRoot === undefined ? await (intelRoot ??= loadRoot(intelSgxRootCaPem)) : await trustedRootFor(options.trustedRoot);

  const { leaf, intermediate, root: rootCert, extensions } = await verifyPckChain(quote, root, now);

  const pckKey = await verifyKeyOf(leaf);
  if (!(await verifySignature(pckKey, quote.qeReportSignature, quote.qeReport.raw))) {
    throw new AttestationError("TDX_QE_REPORT_SIGNATURE_INVALID", "the QE report signature does not verify with the PCK key");
  }

  const binding = concat(await sha256(concat(quote.attestationKey, quote.qeAuthData)), new Uint8Array(32));
  if (!bytesEqual(binding, quote.qeReport.reportData)) {
    throw new AttestationError(
      "TDX_QE_REPORT_DATA_MISMATCH",
      "the QE report data is not SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes",
    );
  }

  let attestationKey: CryptoKey;
  try {
    attestationKey = await subtle().importKey("raw", concat(new Uint8Array([4]), quote.attestationKey) as BufferSource, p256, false, [
      "verify",
    ]);
  } catch (err) {
    throw new AttestationError("TDX_QUOTE_SIGNATURE_INVALID", "the attestation key is not a P-256 point", { cause: err });
  }
  if (!(await verifySignature(attestationKey, quote.signature, quote.signedBytes))) {
    throw new AttestationError("TDX_QUOTE_SIGNATURE_INVALID", "the quote signature does not verify with the attestation key");
  }

  const qeVendorId = toHex(quote.header.qeVendorId);
  if (qeVendorId !== intelQeVendorId) {
    throw new AttestationError("TDX_QE_VENDOR_ID_MISMATCH", `QE vendor ID ${qeVendorId} is not Intel's`);
  }

  if (options.expectedReportData !== undefined && !bytesEqual(options.expectedReportData, quote.body.reportData)) {
    throw new AttestationError("TDX_REPORT_DATA_MISMATCH", "REPORT_DATA does not bind the expected key and nonce");
  }

  const result: VerifiedTdxQuote = {
    version: quote.version,
    bodyType: quote.bodyType,
    fields: fieldsOf(quote),
    policyHash: toHex(quote.body.mrConfigId.subarray(0, 32)),
    qeVendorId,
    pck: {
      chain: [leaf.subject, intermediate.subject, rootCert.subject],
      rootSha256: toHex(root.sha256),
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      extensions,
    },
    tcbStatus: "not-checked",
    quote,
  };

  if (options.collateral !== undefined) {
    const tcb = await evaluateCollateral(
      { quote, pck: extensions, leaf, intermediate, root: rootCert },
      options.collateral,
      { now, rootSha256: root.sha256, acceptedTcbStatuses: options.acceptedTcbStatuses ?? ["UpToDate"] },
    );
    result.tcb = tcb;
    result.tcbStatus = tcb.status;
  }
  return result;
}
