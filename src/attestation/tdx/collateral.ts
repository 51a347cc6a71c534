// Offline TCB evaluation of a TDX quote from Intel PCS collateral files: TCB info, QE identity and, optionally, the PCK and root CA CRLs; no network.
//
// The files are what Intel PCS (or a PCCS) serves, kept byte for byte:
//   tcbInfo            body of GET /tdx/certification/v4/tcb?fmspc=…   {"tcbInfo":{…},"signature":"<hex r||s>"}
//   tcbInfoIssuerChain header TCB-Info-Issuer-Chain, URL-decoded: the "Intel SGX TCB Signing" certificate, then the root (PEM)
//   qeIdentity         body of GET /tdx/certification/v4/qe/identity   {"enclaveIdentity":{…},"signature":"…"}
//   qeIdentityIssuerChain header SGX-Enclave-Identity-Issuer-Chain, the same two certificates
//   pckCrl, rootCaCrl  optional: the PCK CRL of the PCK leaf's issuer and the root CA CRL (DER or PEM)
// The signature covers the exact text of the inner object, so the body is split, never re-serialized.
//
// Evaluation (as go-tdx-guest's verify and Intel's QVL do it):
//   - both signatures verify with a TCB signing certificate issued by the pinned root, valid at `now`;
//   - issueDate ≤ now ≤ nextUpdate for both documents (TDX_COLLATERAL_EXPIRED);
//   - FMSPC and PCE-ID of the TCB info equal the PCK certificate's (TDX_COLLATERAL_MISMATCH);
//   - the TDX module: if TEE_TCB_SVN[1] (the module's major version) is 0, MRSIGNERSEAM and
//     SEAM attributes (under the mask) must match `tdxModule`; otherwise the entry
//     `tdxModuleIdentities["TDX_<version>"]`, whose first TCB level with isvsvn ≤ TEE_TCB_SVN[0]
//     gives the module's status (TDX_TDX_MODULE_MISMATCH);
//   - the first TCB level whose SGX components and PCESVN are ≤ the PCK certificate's and whose
//     TDX components are ≤ TEE_TCB_SVN (from index 2 when the module version is not 0) gives the
//     platform's status (TDX_TCB_LEVEL_NOT_FOUND if none);
//   - the QE report matches the QE identity (MISCSELECT, attributes under masks, MRSIGNER,
//     ISVPRODID) and its ISVSVN picks the QE's status (TDX_QE_IDENTITY_MISMATCH);
//   - with CRLs: each is signed by its issuer, current, and lists neither the PCK leaf nor the
//     PCK CA (TDX_CERTIFICATE_REVOKED); without them `revocation` is "not-checked";
//   - the combined status must be one of `acceptedTcbStatuses` (TDX_TCB_STATUS_NOT_ACCEPTED).
// TD 1.5 bodies are evaluated with TEE_TCB_SVN as well (TEE_TCB_SVN2 is reported, not evaluated).
import * as x509 from "@peculiar/x509";
import { z } from "zod";
import { bytesEqual, fromHex, utf8 } from "../../encoding.js";
import { subtle } from "../../crypto/provider.js";
import { AttestationError } from "../errors.js";
import { checkIssuedBy, checkValidAt, commonName, decodeCertificates, ecdsaSha256, hasFingerprint, intelNames, isLeaf, p256 } from "./certs.js";
import type { PckExtensions } from "./pck.js";
import type { TdxQuote } from "./quote.js";

/** Intel's TCB statuses. */
export const tcbStatuses = [
  "UpToDate",
  "SWHardeningNeeded",
  "ConfigurationNeeded",
  "ConfigurationAndSWHardeningNeeded",
  "OutOfDate",
  "OutOfDateConfigurationNeeded",
  "Revoked",
] as const;

/** One of Intel's TCB statuses. */
export type TcbStatus = (typeof tcbStatuses)[number];

/** Collateral files for offline evaluation (see the top of this file for what each one is). */
export interface TdxCollateral {
  tcbInfo: string;
  tcbInfoIssuerChain: string;
  qeIdentity: string;
  qeIdentityIssuerChain: string;
  pckCrl?: string | Uint8Array;
  rootCaCrl?: string | Uint8Array;
}

/** The result of a collateral evaluation. */
export interface TcbEvaluation {
  /** The combined status of the platform TCB level, the TDX module and the QE. */
  status: TcbStatus;
  platformStatus: TcbStatus;
  moduleStatus: TcbStatus;
  qeStatus: TcbStatus;
  /** The smaller tcbEvaluationDataNumber of TCB info and QE identity. */
  tcbEvaluationDataNumber: number;
  tcbDate: string;
  advisoryIds: string[];
  /** "checked" only if both CRLs were given and checked. */
  revocation: "checked" | "not-checked";
}

/** What evaluateCollateral needs from an already verified quote. */
export interface VerifiedQuoteParts {
  quote: TdxQuote;
  pck: PckExtensions;
  leaf: x509.X509Certificate;
  intermediate: x509.X509Certificate;
  root: x509.X509Certificate;
}

const hexBytes = (n: number) => z.string().regex(new RegExp(`^[0-9a-fA-F]{${2 * n}}$`));
const date = () => z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not a date");
const status = () => z.enum(tcbStatuses);
const isvLevel = () =>
  z.object({
    tcb: z.object({ isvsvn: z.number().int().min(0).max(0xffff) }),
    tcbDate: date(),
    tcbStatus: status(),
    advisoryIDs: z.array(z.string()).optional(),
  });
const component = () => z.object({ svn: z.number().int().min(0).max(255) });

const tcbInfoSchema = z.lazy(() =>
  z.object({
    id: z.literal("TDX"),
    version: z.literal(3),
    issueDate: date(),
    nextUpdate: date(),
    fmspc: hexBytes(6),
    pceId: hexBytes(2),
    tcbType: z.number().int(),
    tcbEvaluationDataNumber: z.number().int().min(0),
    tdxModule: z.object({ mrsigner: hexBytes(48), attributes: hexBytes(8), attributesMask: hexBytes(8) }),
    tdxModuleIdentities: z
      .array(
        z.object({
          id: z.string(),
          mrsigner: hexBytes(48),
          attributes: hexBytes(8),
          attributesMask: hexBytes(8),
          tcbLevels: z.array(isvLevel()),
        }),
      )
      .optional(),
    tcbLevels: z
      .array(
        z.object({
          tcb: z.object({
            sgxtcbcomponents: z.array(component()).length(16),
            pcesvn: z.number().int().min(0).max(0xffff),
            tdxtcbcomponents: z.array(component()).length(16),
          }),
          tcbDate: date(),
          tcbStatus: status(),
          advisoryIDs: z.array(z.string()).optional(),
        }),
      )
      .min(1),
  }),
);

const qeIdentitySchema = z.lazy(() =>
  z.object({
    id: z.literal("TD_QE"),
    version: z.literal(2),
    issueDate: date(),
    nextUpdate: date(),
    tcbEvaluationDataNumber: z.number().int().min(0),
    miscselect: hexBytes(4),
    miscselectMask: hexBytes(4),
    attributes: hexBytes(16),
    attributesMask: hexBytes(16),
    mrsigner: hexBytes(32),
    isvprodid: z.number().int().min(0).max(0xffff),
    tcbLevels: z.array(isvLevel()).min(1),
  }),
);

function fail(code: ConstructorParameters<typeof AttestationError>[0], message: string, cause?: unknown): never {
  throw new AttestationError(code, message, cause === undefined ? undefined : { cause });
}

/**
 * Splits `{"<name>":{…},"signature":"<128 hex>"}` into the exact signed text and the signature.
 * Intel serves exactly this shape; anything else is refused rather than re-serialized.
 */
function splitSigned(body: string, name: string): { signed: string; signature: Uint8Array } {
  const prefix = `{"${name}":`;
  const match = /,"signature":"([0-9a-fA-F]{128})"\}\s*$/.exec(body);
  if (!body.startsWith(prefix) || match === null) {
    fail("TDX_COLLATERAL_MALFORMED", `the ${name} document is not {"${name}":{…},"signature":"…"}`);
  }
  return { signed: body.slice(prefix.length, match.index), signature: fromHex(match[1]!) };
}

async function verifySignedDocument<T>(
  body: string,
  issuerChain: string,
  name: string,
  schema: z.ZodType<T>,
  rootSha256: Uint8Array,
  now: Date,
): Promise<T> {
  if (typeof body !== "string" || typeof issuerChain !== "string") fail("TDX_COLLATERAL_MALFORMED", `${name}: files must be text`);
  const { signed, signature } = splitSigned(body, name);
  const chain = decodeCertificates(issuerChain, "TDX_COLLATERAL_MALFORMED", `the ${name} issuer chain`, { canonical: false });
  if (chain.length !== 2) fail("TDX_COLLATERAL_MALFORMED", `the ${name} issuer chain must be the signing certificate and the root`);
  const [signer, root] = chain as [x509.X509Certificate, x509.X509Certificate];
  if (!(await hasFingerprint(root, rootSha256))) fail("TDX_ROOT_NOT_PINNED", `the ${name} issuer chain does not end in the pinned root`);
  if (commonName(signer) !== intelNames.tcbSigning || !isLeaf(signer)) {
    fail("TDX_COLLATERAL_SIGNATURE_INVALID", `the ${name} signer is not an "${intelNames.tcbSigning}" certificate`);
  }
  await checkIssuedBy(signer, root, "TDX_COLLATERAL_SIGNATURE_INVALID", `${name} signer`);
  checkValidAt([signer, root], now, "TDX_COLLATERAL_EXPIRED", `${name} issuer chain`);
  const key = await signer.publicKey.export(p256, ["verify"]);
  let valid: boolean;
  try {
    valid = await subtle().verify(ecdsaSha256, key, signature as BufferSource, utf8(signed) as BufferSource);
  } catch {
    valid = false;
  }
  if (!valid) fail("TDX_COLLATERAL_SIGNATURE_INVALID", `the ${name} signature does not verify`);
  let json: unknown;
  try {
    json = JSON.parse(signed);
  } catch (err) {
    fail("TDX_COLLATERAL_MALFORMED", `${name} is not JSON`, err);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) fail("TDX_COLLATERAL_MALFORMED", `${name} is not in Intel's format: ${parsed.error.issues[0]?.message ?? ""}`);
  return parsed.data;
}

function checkCurrent(doc: { issueDate: string; nextUpdate: string }, now: Date, name: string): void {
  if (!(now.getTime() >= Date.parse(doc.issueDate) && now.getTime() <= Date.parse(doc.nextUpdate))) {
    fail("TDX_COLLATERAL_EXPIRED", `${name} is valid ${doc.issueDate}..${doc.nextUpdate}, not at ${now.toISOString()}`);
  }
}

function masked(value: Uint8Array, mask: Uint8Array): Uint8Array {
  return value.map((b, i) => b & (mask[i] ?? 0));
}

function matchesMasked(value: Uint8Array, expectedHex: string, maskHex: string): boolean {
  return bytesEqual(masked(value, fromHex(maskHex)), masked(fromHex(expectedHex), fromHex(maskHex)));
}

const flagsOf: Record<TcbStatus, { revoked?: true; outOfDate?: true; config?: true; sw?: true }> = {
  UpToDate: {},
  SWHardeningNeeded: { sw: true },
  ConfigurationNeeded: { config: true },
  ConfigurationAndSWHardeningNeeded: { config: true, sw: true },
  OutOfDate: { outOfDate: true },
  OutOfDateConfigurationNeeded: { outOfDate: true, config: true },
  Revoked: { revoked: true },
};

/** The status of several components together: the worst of them, with configuration and hardening needs kept. */
export function combineTcbStatuses(statuses: TcbStatus[]): TcbStatus {
  const f = statuses.map((s) => flagsOf[s]);
  const any = (k: "revoked" | "outOfDate" | "config" | "sw"): boolean => f.some((x) => x[k] === true);
  if (any("revoked")) return "Revoked";
  if (any("outOfDate")) return any("config") ? "OutOfDateConfigurationNeeded" : "OutOfDate";
  if (any("config")) return any("sw") ? "ConfigurationAndSWHardeningNeeded" : "ConfigurationNeeded";
  return any("sw") ? "SWHardeningNeeded" : "UpToDate";
}

async function checkCrl(
  crlData: string | Uint8Array,
  issuer: x509.X509Certificate,
  subject: x509.X509Certificate,
  now: Date,
  name: string,
): Promise<void> {
  let crl: x509.X509Crl;
  try {
    crl = new x509.X509Crl(typeof crlData === "string" ? crlData : crlData.slice().buffer);
  } catch (err) {
    fail("TDX_COLLATERAL_MALFORMED", `${name} is not a CRL`, err);
  }
  let valid: boolean;
  try {
    valid = crl.issuer === issuer.subject && (await crl.verify({ publicKey: issuer.publicKey }));
  } catch {
    valid = false;
  }
  if (!valid) fail("TDX_COLLATERAL_SIGNATURE_INVALID", `${name} is not signed by "${commonName(issuer) ?? issuer.subject}"`);
  if (crl.nextUpdate === undefined || !(now.getTime() >= crl.thisUpdate.getTime() && now.getTime() <= crl.nextUpdate.getTime())) {
    fail("TDX_COLLATERAL_EXPIRED", `${name} is not current at ${now.toISOString()}`);
  }
  const serial = subject.serialNumber.toLowerCase().replace(/^(00)+/, "");
  if (crl.entries.some((e) => e.serialNumber.toLowerCase().replace(/^(00)+/, "") === serial)) {
    fail("TDX_CERTIFICATE_REVOKED", `"${commonName(subject) ?? subject.subject}" (serial ${serial}) is revoked by ${name}`);
  }
}

/**
 * Evaluates offline collateral for a quote whose signatures and PCK chain are already verified.
 * Throws AttestationError (codes at the top of this file); returns the combined TCB status.
 */
export async function evaluateCollateral(
  parts: VerifiedQuoteParts,
  collateral: TdxCollateral,
  options: { now: Date; rootSha256: Uint8Array; acceptedTcbStatuses: readonly TcbStatus[] },
): Promise<TcbEvaluation> {
  const { now, rootSha256 } = options;
  const { quote, pck } = parts;
  const body = quote.body;
  if (typeof collateral !== "object" || collateral === null) fail("TDX_COLLATERAL_MALFORMED", "collateral must be an object");

  const tcbInfo = await verifySignedDocument(collateral.tcbInfo, collateral.tcbInfoIssuerChain, "tcbInfo", tcbInfoSchema, rootSha256, now);
  const qeIdentity = await verifySignedDocument(
    collateral.qeIdentity,
    collateral.qeIdentityIssuerChain,
    "enclaveIdentity",
    qeIdentitySchema,
    rootSha256,
    now,
  );
  checkCurrent(tcbInfo, now, "the TCB info");
  checkCurrent(qeIdentity, now, "the QE identity");

  if (tcbInfo.fmspc.toLowerCase() !== pck.fmspc || tcbInfo.pceId.toLowerCase() !== pck.pceId) {
    fail("TDX_COLLATERAL_MISMATCH", `the TCB info is for FMSPC ${tcbInfo.fmspc}/PCE-ID ${tcbInfo.pceId}, the PCK for ${pck.fmspc}/${pck.pceId}`);
  }

  // The TDX module.
  const teeTcbSvn = body.teeTcbSvn;
  const moduleVersion = teeTcbSvn[1]!;
  let moduleStatus: TcbStatus = "UpToDate";
  const moduleAdvisories: string[] = [];
  if (moduleVersion === 0) {
    const m = tcbInfo.tdxModule;
    if (!bytesEqual(fromHex(m.mrsigner), body.mrSignerSeam) || !matchesMasked(body.seamAttributes, m.attributes, m.attributesMask)) {
      fail("TDX_TDX_MODULE_MISMATCH", "MRSIGNERSEAM or SEAM attributes do not match the TCB info's TDX module");
    }
  } else {
    const id = `TDX_${moduleVersion.toString(16).toUpperCase().padStart(2, "0")}`;
    const identity = tcbInfo.tdxModuleIdentities?.find((m) => m.id.toUpperCase() === id);
    if (identity === undefined) fail("TDX_TDX_MODULE_MISMATCH", `the TCB info has no TDX module identity ${id}`);
    if (
      !bytesEqual(fromHex(identity.mrsigner), body.mrSignerSeam) ||
      !matchesMasked(body.seamAttributes, identity.attributes, identity.attributesMask)
    ) {
      fail("TDX_TDX_MODULE_MISMATCH", `MRSIGNERSEAM or SEAM attributes do not match TDX module identity ${id}`);
    }
    const level = identity.tcbLevels.find((l) => l.tcb.isvsvn <= teeTcbSvn[0]!);
    if (level === undefined) fail("TDX_TCB_LEVEL_NOT_FOUND", `no TCB level of ${id} covers module SVN ${teeTcbSvn[0]}`);
    moduleStatus = level.tcbStatus;
    moduleAdvisories.push(...(level.advisoryIDs ?? []));
  }

  // The platform TCB level.
  const tdxFrom = moduleVersion === 0 ? 0 : 2;
  const level = tcbInfo.tcbLevels.find(
    (l) =>
      l.tcb.sgxtcbcomponents.every((c, i) => pck.tcb.components[i]! >= c.svn) &&
      pck.tcb.pceSvn >= l.tcb.pcesvn &&
      l.tcb.tdxtcbcomponents.every((c, i) => i < tdxFrom || teeTcbSvn[i]! >= c.svn),
  );
  if (level === undefined) fail("TDX_TCB_LEVEL_NOT_FOUND", "no TCB level of the TCB info covers this platform");

  // The Quoting Enclave.
  const qe = quote.qeReport;
  const miscSelect = new Uint8Array(4);
  new DataView(miscSelect.buffer).setUint32(0, qe.miscSelect, true);
  if (
    !matchesMasked(miscSelect, qeIdentity.miscselect, qeIdentity.miscselectMask) ||
    !matchesMasked(qe.attributes, qeIdentity.attributes, qeIdentity.attributesMask) ||
    !bytesEqual(fromHex(qeIdentity.mrsigner), qe.mrSigner) ||
    qe.isvProdId !== qeIdentity.isvprodid
  ) {
    fail("TDX_QE_IDENTITY_MISMATCH", "the QE report does not match the QE identity");
  }
  const qeLevel = qeIdentity.tcbLevels.find((l) => l.tcb.isvsvn <= qe.isvSvn);
  if (qeLevel === undefined) fail("TDX_TCB_LEVEL_NOT_FOUND", `no QE identity TCB level covers QE SVN ${qe.isvSvn}`);

  // Revocation.
  let revocation: TcbEvaluation["revocation"] = "not-checked";
  if (collateral.rootCaCrl !== undefined) await checkCrl(collateral.rootCaCrl, parts.root, parts.intermediate, now, "the root CA CRL");
  if (collateral.pckCrl !== undefined) await checkCrl(collateral.pckCrl, parts.intermediate, parts.leaf, now, "the PCK CRL");
  if (collateral.rootCaCrl !== undefined && collateral.pckCrl !== undefined) revocation = "checked";

  const combined = combineTcbStatuses([level.tcbStatus, moduleStatus, qeLevel.tcbStatus]);
  const evaluation: TcbEvaluation = {
    status: combined,
    platformStatus: level.tcbStatus,
    moduleStatus,
    qeStatus: qeLevel.tcbStatus,
    tcbEvaluationDataNumber: Math.min(tcbInfo.tcbEvaluationDataNumber, qeIdentity.tcbEvaluationDataNumber),
    tcbDate: level.tcbDate,
    advisoryIds: [...new Set([...(level.advisoryIDs ?? []), ...moduleAdvisories, ...(qeLevel.advisoryIDs ?? [])])],
    revocation,
  };
  if (!options.acceptedTcbStatuses.includes(combined)) {
    fail("TDX_TCB_STATUS_NOT_ACCEPTED", `TCB status ${combined} is not accepted (accepted: ${options.acceptedTcbStatuses.join(", ")})`);
  }
  return evaluation;
}
