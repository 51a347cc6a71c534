// A saved test TEE (`contrast-test-tee/v1`, the tee.json of test/attestation/make-evidence.ts): its format, its loader, SEV-SNP reports signed with it, and an evidence source that signs with it so several Coordinator processes share pinned roots. Tests and development only: the "hardware" keys sit in a file.
import { z } from "zod";
import { concat, fromBase64, fromHex, toBase64 } from "../encoding.js";
import { subtle } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import type { EvidenceSource, SnpCoordinatorEvidence } from "./coordinator-evidence.js";
import type { SnpProduct, SnpTcbParts } from "./snp/report.js";
import { buildSnpReport, signSnpReport } from "./snp/simulated.js";

/** The `format` of a saved test TEE. */
export const testTeeFormat = "contrast-test-tee/v1";

/** SNP guest policy bits of test evidence: bit 16 SMT allowed, bit 17 reserved (must be 1), bit 19 DEBUG. */
export const testSnpPolicy = { default: 0x30000n, debug: 1n << 19n } as const;

const tcbSchema = z.lazy(() =>
  z.looseObject({
    fmc: z.number().int().nullable().optional(),
    bootloader: z.number().int(),
    tee: z.number().int(),
    snp: z.number().int(),
    microcode: z.number().int(),
  }),
);

const endorsementSchema = z.lazy(() =>
  z.object({
    /** The VCEK certificate, base64 DER. */
    certificate: z.string(),
    /** Its P-384 private key, base64 PKCS#8. */
    privateKey: z.string(),
    tcb: tcbSchema,
    /** The chip's hardware ID, hex. */
    hwid: z.string().regex(/^([0-9a-f]{2})+$/),
  }),
);

const savedTeeSchema = z.lazy(() =>
  z.object({
    format: z.literal(testTeeFormat),
    snp: z.object({
      product: z.enum(["Milan", "Genoa", "Turin"]),
      ark: z.string(),
      ask: z.string(),
      asvk: z.string().nullable(),
      vceks: z.object({ current: endorsementSchema, outdated: endorsementSchema }),
    }),
    tdx: z.object({ quote: z.string(), attestationKey: z.string() }),
  }),
);

/** One saved VCEK: certificate and private key (base64 DER, PKCS#8), the TCB it certifies and the chip's hardware ID (hex). */
export interface SavedEndorsement {
  certificate: string;
  privateKey: string;
  tcb: SnpTcbParts;
  hwid: string;
}

/** tee.json: the private side of a test TEE (base64 DER, PKCS#8 keys). */
export interface SavedTee {
  format: typeof testTeeFormat;
  snp: {
    product: SnpProduct;
    ark: string;
    ask: string;
    asvk: string | null;
    /** VCEKs by name: `current` certifies the default TCB, `outdated` one below it. */
    vceks: { current: SavedEndorsement; outdated: SavedEndorsement };
  };
  tdx: {
    /** A v4 quote of the platform (its QE report and PCK chain are reused; header and body are re-signed). */
    quote: string;
    /** The attestation key (P-256, PKCS#8) that signs header and body. */
    attestationKey: string;
  };
}

/** Parses the text of a tee.json; throws an Error naming `source` and what is wrong. */
export function parseSavedTee(text: string, source: string): SavedTee {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source} is not JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = savedTeeSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue !== undefined && issue.path.length > 0 ? issue.path.join(".") : "top level";
    throw new Error(`${source} is not a saved test TEE (${testTeeFormat}): ${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data as SavedTee;
}

/** What a report of the saved TEE carries. */
export interface SavedTeeReportFields {
  /** REPORT_DATA, 64 bytes. */
  reportData: Uint8Array;
  /** MEASUREMENT, 48 bytes. */
  measurement: Uint8Array;
  /** HOST_DATA, 32 bytes (the policy hash). */
  hostData: Uint8Array;
  /** A debuggable guest (policy bit 19). */
  debug?: boolean;
  /** Sign with the VCEK of the TCB below the reference values' minimum. */
  outdatedTcb?: boolean;
}

/** A SEV-SNP report of the saved TEE, signed by its VCEK, with the VCEK, ASK and ARK (base64 DER). */
export async function savedTeeSnpReport(
  tee: SavedTee,
  fields: SavedTeeReportFields,
): Promise<{ report: Uint8Array; certificates: { vcek: string; ask: string; ark: string } }> {
  const endorsement = fields.outdatedTcb === true ? tee.snp.vceks.outdated : tee.snp.vceks.current;
  const key = await subtle().importKey("pkcs8", fromBase64(endorsement.privateKey) as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, false, ["sign"]);
  const hwid = fromHex(endorsement.hwid);
  const unsigned = buildSnpReport(tee.snp.product, {
    reportedTcb: endorsement.tcb,
    chipId: concat(hwid, new Uint8Array(64 - hwid.length)),
    policy: fields.debug === true ? testSnpPolicy.default | testSnpPolicy.debug : testSnpPolicy.default,
    measurement: fields.measurement,
    hostData: fields.hostData,
    reportData: fields.reportData,
  });
  return { report: await signSnpReport(unsigned, key), certificates: { vcek: endorsement.certificate, ask: tee.snp.ask, ark: tee.snp.ark } };
}

/**
 * An evidence source (kind `simulated`) that signs SEV-SNP reports with a saved test TEE's current
 * VCEK, so that several processes started with the same tee.json share the roots its roots.pem pins.
 * It proves nothing: anyone with the file can sign. `measurement` (48 bytes) and `hostData` (32
 * bytes) go into every report (default: all zeros).
 */
export function savedTeeEvidenceSource(tee: SavedTee, options: { measurement?: Uint8Array; hostData?: Uint8Array } = {}): EvidenceSource {
  if (options.measurement !== undefined && options.measurement.length !== 48) throw new RangeError("the simulated measurement must have 48 bytes");
  if (options.hostData !== undefined && options.hostData.length !== 32) throw new RangeError("the simulated host data must have 32 bytes");
  const measurement = options.measurement?.slice() ?? new Uint8Array(48);
  const hostData = options.hostData?.slice() ?? new Uint8Array(32);
  return {
    kind: "simulated",
    insecure: true,
    async evidence(reportData): Promise<SnpCoordinatorEvidence> {
      if (reportData.length !== 64) throw new RangeError("report data must have 64 bytes");
      try {
        const { report, certificates } = await savedTeeSnpReport(tee, { reportData, measurement, hostData });
        return { type: "amd-sev-snp", report: toBase64(report), certificates };
      } catch (err) {
        throw new CoordinatorError("EVIDENCE_FAILED", `the saved test TEE could not sign a report: ${(err as Error).message}`, { cause: err });
      }
    },
  };
}
