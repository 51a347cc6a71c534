// The Coordinator's own evidence: the report-data layout that binds a client's nonce, the HPKE key and the held state, the EvidenceSource interface, and the simulated source (development and tests only).
import { concat, toBase64, utf8 } from "../encoding.js";
import { subtle } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import { createSimulatedAmd } from "./snp/simulated.js";
import type { SimulatedAmd, SimulatedEndorsement } from "./snp/simulated.js";
import { simulatedTcb } from "./snp/simulated.js";

/** The `format` of the answer of `GET /v1/attestation`, and the version of the report-data layout. */
export const coordinatorEvidenceFormat = "contrast-coordinator-evidence/v1";

/** The domain-separation label that opens the report-data input. */
export const coordinatorEvidenceLabel = "CONTRAST COORDINATOR EVIDENCE v1";

/** Bytes of the client's nonce. */
export const coordinatorNonceLength = 32;

/** The verified state a Coordinator holds (ready or stale), as its evidence binds it. */
export interface HeldState {
  /** The latest transition, 64 hex characters. */
  latestTransition: string;
  /** SHA-256 of the root CA certificate's DER, 64 hex characters. */
  rootCA: string;
  /** SHA-256 of the mesh CA certificate's DER, 64 hex characters. */
  meshCA: string;
}

/** What the Coordinator's report data binds. */
export interface CoordinatorEvidenceClaims {
  /** The client's 32-byte nonce. */
  nonce: Uint8Array;
  /** The serialized HPKE public key (for DHKEM(P-256): the 65-byte uncompressed point). */
  hpkePublicKey: Uint8Array;
  /** The Coordinator's name. */
  name: string;
  /** The held state, or null before the Coordinator holds one (uninitialized, recovery-required). */
  state: HeldState | null;
}

function hex32(value: string, field: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(value)) throw new TypeError(`${field} must be 64 lower-case hex characters`);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(value.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function lengthPrefixed(bytes: Uint8Array, field: string): Uint8Array {
  if (bytes.length > 0xffff) throw new RangeError(`${field} is longer than 65535 bytes`);
  return concat(new Uint8Array([bytes.length >> 8, bytes.length & 0xff]), bytes);
}

/**
 * The report-data input before hashing:
 * `"CONTRAST COORDINATOR EVIDENCE v1"` ‖ 0x00 ‖ nonce (32) ‖ u16 len ‖ HPKE public key ‖ u16 len ‖
 * name (UTF-8) ‖ 0x00, or 0x01 ‖ latest transition (32) ‖ SHA-256(root CA DER) (32) ‖
 * SHA-256(mesh CA DER) (32). Lengths are big-endian.
 */
export function coordinatorReportDataInput(claims: CoordinatorEvidenceClaims): Uint8Array {
  if (claims.nonce.length !== coordinatorNonceLength) throw new RangeError(`the nonce must have ${coordinatorNonceLength} bytes`);
  const state =
    claims.state === null
      ? new Uint8Array([0])
      : concat(
          new Uint8Array([1]),
          hex32(claims.state.latestTransition, "latestTransition"),
          hex32(claims.state.rootCA, "rootCA"),
          hex32(claims.state.meshCA, "meshCA"),
        );
  return concat(
    utf8(coordinatorEvidenceLabel),
    new Uint8Array([0]),
    claims.nonce,
    lengthPrefixed(claims.hpkePublicKey, "hpkePublicKey"),
    lengthPrefixed(utf8(claims.name), "name"),
    state,
  );
}

/** The 64 bytes of REPORT_DATA: SHA-512 of coordinatorReportDataInput. */
export async function coordinatorReportData(claims: CoordinatorEvidenceClaims): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-512", coordinatorReportDataInput(claims) as BufferSource));
}

/** SEV-SNP evidence in the workload wire shape (base64 fields), without the nonce: it is bound in REPORT_DATA. */
export interface SnpCoordinatorEvidence {
  type: "amd-sev-snp";
  /** The 1184-byte report, base64. */
  report: string;
  /** The extended report's certificate table (configfs-tsm `auxblob`), base64. */
  certTable?: string;
  /** DER certificates, base64. */
  certificates?: { vcek?: string; vlek?: string; ask?: string; asvk?: string; ark?: string };
}

/** TDX evidence in the workload wire shape: the quote, base64. */
export interface TdxCoordinatorEvidence {
  type: "intel-tdx";
  quote: string;
}

/** The Coordinator's evidence. */
export type CoordinatorEvidence = SnpCoordinatorEvidence | TdxCoordinatorEvidence;

/** Where the Coordinator's evidence comes from: the TEE (configfs-tsm) or the simulated source. */
export interface EvidenceSource {
  /** `tsm` or `simulated`. */
  readonly kind: string;
  /** True if the evidence proves nothing (the simulated source). */
  readonly insecure: boolean;
  /** Evidence whose report data is exactly `reportData` (64 bytes); throws CoordinatorError EVIDENCE_FAILED if the TEE fails. */
  evidence(reportData: Uint8Array): Promise<CoordinatorEvidence>;
}

/** The simulated source: its hierarchy, to pin its ARK in tests (`anchor`), and the source itself. */
export interface SimulatedEvidenceSource extends EvidenceSource {
  /** Resolves to the generated AMD hierarchy once it is made (RSA-4096 keys: a few seconds). */
  readonly amd: Promise<SimulatedAmd>;
}

/**
 * An evidence source that signs SEV-SNP reports of the real format with a generated AMD hierarchy
 * (ARK, ASK, one VCEK). It proves nothing: anyone can make one. Development and tests only; the
 * adapters switch it on only when asked by name and log that it is insecure. The hierarchy is made
 * in the background at once (or given, for tests); `evidence()` waits for it. `measurement` (48
 * bytes) and `hostData` (32 bytes) go into every report (default: all zeros), so tests can make a
 * genuine Coordinator and an impostor with another measurement or policy.
 */
export function simulatedEvidenceSource(
  options: { amd?: SimulatedAmd | Promise<SimulatedAmd>; measurement?: Uint8Array; hostData?: Uint8Array } = {},
): SimulatedEvidenceSource {
  if (options.measurement !== undefined && options.measurement.length !== 48) throw new RangeError("the simulated measurement must have 48 bytes");
  if (options.hostData !== undefined && options.hostData.length !== 32) throw new RangeError("the simulated host data must have 32 bytes");
  const measurement = options.measurement?.slice() ?? new Uint8Array(48);
  const hostData = options.hostData?.slice() ?? new Uint8Array(32);
  const amd = Promise.resolve(options.amd ?? createSimulatedAmd({ product: "Milan", asvk: false }));
  const vcek: Promise<SimulatedEndorsement> = amd.then((a) => a.issueEndorsement("vcek", { tcb: simulatedTcb }));
  // A failure surfaces on each evidence() call; it must not be an unhandled rejection meanwhile.
  vcek.catch(() => undefined);
  return {
    kind: "simulated",
    insecure: true,
    amd,
    async evidence(reportData) {
      if (reportData.length !== 64) throw new RangeError("report data must have 64 bytes");
      let hierarchy: SimulatedAmd;
      let endorsement: SimulatedEndorsement;
      try {
        [hierarchy, endorsement] = await Promise.all([amd, vcek]);
      } catch (err) {
        throw new CoordinatorError("EVIDENCE_FAILED", `the simulated evidence source could not start: ${(err as Error).message}`, { cause: err });
      }
      const evidence = await hierarchy.attest({ reportData, measurement, hostData }, endorsement);
      const certs = evidence.certificates ?? {};
      const certificates: NonNullable<SnpCoordinatorEvidence["certificates"]> = {};
      for (const [k, v] of Object.entries(certs)) {
        if (v instanceof Uint8Array) certificates[k as keyof typeof certificates] = toBase64(v);
      }
      return { type: "amd-sev-snp", report: toBase64(evidence.report), certificates };
    },
  };
}
