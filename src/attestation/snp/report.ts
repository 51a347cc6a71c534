// The AMD SEV-SNP attestation report: its 1184-byte little-endian layout parsed into typed fields, strictly per the SNP ABI.
import { toHex } from "../../encoding.js";
import { AttestationError } from "../errors.js";

/** Size of an attestation report (SNP ABI, ATTESTATION_REPORT). */
export const SNP_REPORT_SIZE = 0x4a0;
/** The signature covers bytes 0x000..0x29F. */
export const SNP_SIGNED_LENGTH = 0x2a0;
/** The report versions this parser reads: 2, 3 (adds CPUID family/model/stepping) and 5 (adds the mitigation vectors). */
export const SNP_REPORT_VERSIONS = [2, 3, 5] as const;
/** SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one defined. */
export const SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1;

/** A report version this parser reads. */
export type SnpReportVersion = (typeof SNP_REPORT_VERSIONS)[number];
/** The AMD product lines whose roots can be pinned. */
export type SnpProduct = "Milan" | "Genoa" | "Turin";
/** The key that signed a report: the chip's VCEK or a cloud provider's VLEK. */
export type SnpSigningKey = "vcek" | "vlek";

/** A firmware version as the report states it. */
export interface SnpFirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

/** CPUID family (extended + base, e.g. 0x19), model (extended << 4 | base) and stepping (report v3 and later). */
export interface SnpCpuid {
  family: number;
  model: number;
  stepping: number;
}

/** A TCB_VERSION decoded per product: Milan/Genoa `[bl, tee, 0,0,0,0, snp, ucode]`, Turin `[fmc, bl, tee, snp, 0,0,0, ucode]`. */
export interface SnpTcb {
  /** FMC SPL (Turin only; null on Milan and Genoa). */
  fmc: number | null;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  /** The 8 bytes as they stand in the report. */
  raw: Uint8Array;
}

/** The guest policy bits (SNP ABI, GUEST_POLICY). */
export interface SnpGuestPolicy {
  abiMinor: number;
  abiMajor: number;
  smt: boolean;
  migrateMa: boolean;
  debug: boolean;
  singleSocket: boolean;
  cxlAllowed: boolean;
  memAes256Xts: boolean;
  raplDis: boolean;
  ciphertextHidingDram: boolean;
  pageSwapDisable: boolean;
}

/** The PLATFORM_INFO bits this verifier knows (unknown higher bits are kept in the raw value only). */
export interface SnpPlatformInfo {
  smtEnabled: boolean;
  tsmeEnabled: boolean;
  eccEnabled: boolean;
  raplDisabled: boolean;
  ciphertextHidingDramEnabled: boolean;
  aliasCheckComplete: boolean;
}

/** Every field of an attestation report, as parsed (TCBs stay raw until the product is known). */
export interface SnpReport {
  /** The 1184 report bytes (a copy). */
  bytes: Uint8Array;
  version: SnpReportVersion;
  guestSvn: number;
  policy: bigint;
  familyId: Uint8Array;
  imageId: Uint8Array;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: Uint8Array;
  platformInfo: bigint;
  /** The raw u32 at 0x048 (AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY). */
  signerInfo: number;
  authorKeyEnabled: boolean;
  maskChipKey: boolean;
  signingKey: SnpSigningKey;
  reportData: Uint8Array;
  measurement: Uint8Array;
  hostData: Uint8Array;
  idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array;
  reportId: Uint8Array;
  reportIdMa: Uint8Array;
  reportedTcb: Uint8Array;
  /** CPUID family/model/stepping (v3 and later; null on v2). */
  cpuid: SnpCpuid | null;
  chipId: Uint8Array;
  committedTcb: Uint8Array;
  currentVersion: SnpFirmwareVersion;
  committedVersion: SnpFirmwareVersion;
  launchTcb: Uint8Array;
  /** LAUNCH_MIT_VECTOR (v5; null before). */
  launchMitigationVector: bigint | null;
  /** CURRENT_MIT_VECTOR (v5; null before). */
  currentMitigationVector: bigint | null;
  /** The signature's r and s: 72-byte little-endian fields. */
  signature: { r: Uint8Array; s: Uint8Array };
}

const signingKeys: Record<number, SnpSigningKey | "none" | undefined> = { 0: "vcek", 1: "vlek", 7: "none" };

function malformed(message: string): AttestationError {
  return new AttestationError("SNP_REPORT_MALFORMED", message);
}

function mustBeZero(bytes: Uint8Array, from: number, to: number, what: string): void {
  for (let i = from; i < to; i++) {
    if (bytes[i] !== 0) {
      throw malformed(`reserved bytes 0x${from.toString(16)}..0x${(to - 1).toString(16)} (${what}) must be zero`);
    }
  }
}

/**
 * Parses an attestation report. Refuses, with a stable code: a length other than 1184
 * (SNP_REPORT_MALFORMED), a version other than 2, 3 or 5 (SNP_REPORT_VERSION_UNSUPPORTED), a
 * SIGNATURE_ALGO other than ECDSA P-384/SHA-384 (SNP_SIGNATURE_ALGORITHM_UNSUPPORTED), an unsigned
 * report (SNP_SIGNING_KEY_UNSUPPORTED), and any non-zero reserved byte or bit, VMPL above 3 or a
 * malformed guest policy (SNP_REPORT_MALFORMED). Checks no signature.
 */
export function parseSnpReport(input: Uint8Array): SnpReport {
  if (!(input instanceof Uint8Array)) throw malformed("the report must be bytes");
  if (input.length !== SNP_REPORT_SIZE) {
    throw malformed(`an SNP report has ${SNP_REPORT_SIZE} bytes, not ${input.length}`);
  }
  const bytes = input.slice();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (at: number): number => view.getUint32(at, true);
  const u64 = (at: number): bigint => view.getBigUint64(at, true);
  const field = (at: number, length: number): Uint8Array => bytes.slice(at, at + length);

  const version = u32(0x000);
  if (!(SNP_REPORT_VERSIONS as readonly number[]).includes(version)) {
    throw new AttestationError("SNP_REPORT_VERSION_UNSUPPORTED", `report version ${version} is not supported (2, 3 or 5)`);
  }
  const signatureAlgo = u32(0x034);
  if (signatureAlgo !== SNP_SIGNATURE_ALGO_ECDSA_P384_SHA384) {
    throw new AttestationError(
      "SNP_SIGNATURE_ALGORITHM_UNSUPPORTED",
      `SIGNATURE_ALGO ${signatureAlgo} is not ECDSA P-384 with SHA-384`,
    );
  }

  const policy = u64(0x008);
  decodeGuestPolicy(policy); // refuses reserved bits
  const vmpl = u32(0x030);
  if (vmpl > 3) throw malformed(`VMPL ${vmpl} is not 0..3`);

  const signerInfo = u32(0x048);
  if (signerInfo >>> 5 !== 0) throw malformed("bits 31:5 of the signer info must be zero");
  const signingKey = signingKeys[(signerInfo >>> 2) & 7];
  if (signingKey === undefined) throw malformed(`SIGNING_KEY ${(signerInfo >>> 2) & 7} is reserved`);
  if (signingKey === "none") {
    throw new AttestationError("SNP_SIGNING_KEY_UNSUPPORTED", "the report says it is not signed (SIGNING_KEY 7)");
  }
  mustBeZero(bytes, 0x04c, 0x050, "after signer info");

  let cpuid: SnpCpuid | null = null;
  if (version >= 3) {
    cpuid = { family: bytes[0x188]!, model: bytes[0x189]!, stepping: bytes[0x18a]! };
    mustBeZero(bytes, 0x18b, 0x1a0, "after CPUID");
  } else {
    mustBeZero(bytes, 0x188, 0x1a0, "after REPORTED_TCB");
  }
  mustBeZero(bytes, 0x1eb, 0x1ec, "after CURRENT_VERSION");
  mustBeZero(bytes, 0x1ef, 0x1f0, "after COMMITTED_VERSION");
  let launchMitigationVector: bigint | null = null;
  let currentMitigationVector: bigint | null = null;
  if (version >= 5) {
    launchMitigationVector = u64(0x1f8);
    currentMitigationVector = u64(0x200);
    mustBeZero(bytes, 0x208, SNP_SIGNED_LENGTH, "after CURRENT_MIT_VECTOR");
  } else {
    mustBeZero(bytes, 0x1f8, SNP_SIGNED_LENGTH, "after LAUNCH_TCB");
  }
  mustBeZero(bytes, SNP_SIGNED_LENGTH + 144, SNP_REPORT_SIZE, "after the signature's r and s");

  return {
    bytes,
    version: version as SnpReportVersion,
    guestSvn: u32(0x004),
    policy,
    familyId: field(0x010, 16),
    imageId: field(0x020, 16),
    vmpl,
    signatureAlgo,
    currentTcb: field(0x038, 8),
    platformInfo: u64(0x040),
    signerInfo,
    authorKeyEnabled: (signerInfo & 1) !== 0,
    maskChipKey: (signerInfo & 2) !== 0,
    signingKey,
    reportData: field(0x050, 64),
    measurement: field(0x090, 48),
    hostData: field(0x0c0, 32),
    idKeyDigest: field(0x0e0, 48),
    authorKeyDigest: field(0x110, 48),
    reportId: field(0x140, 32),
    reportIdMa: field(0x160, 32),
    reportedTcb: field(0x180, 8),
    cpuid,
    chipId: field(0x1a0, 64),
    committedTcb: field(0x1e0, 8),
    currentVersion: { build: bytes[0x1e8]!, minor: bytes[0x1e9]!, major: bytes[0x1ea]! },
    committedVersion: { build: bytes[0x1ec]!, minor: bytes[0x1ed]!, major: bytes[0x1ee]! },
    launchTcb: field(0x1f0, 8),
    launchMitigationVector,
    currentMitigationVector,
    signature: { r: field(SNP_SIGNED_LENGTH, 72), s: field(SNP_SIGNED_LENGTH + 72, 72) },
  };
}

/** The signed part of a report: bytes 0x000..0x29F. */
export function signedPart(report: SnpReport): Uint8Array {
  return report.bytes.subarray(0, SNP_SIGNED_LENGTH);
}

/** Decodes the guest policy; refuses reserved bit 17 unset or any of bits 63:26 set (SNP_REPORT_MALFORMED). */
export function decodeGuestPolicy(policy: bigint): SnpGuestPolicy {
  if ((policy & (1n << 17n)) === 0n) throw malformed("guest policy bit 17 is reserved and must be one");
  if (policy >> 26n !== 0n) throw malformed("guest policy bits 63:26 are reserved and must be zero");
  const bit = (n: bigint): boolean => (policy & (1n << n)) !== 0n;
  return {
    abiMinor: Number(policy & 0xffn),
    abiMajor: Number((policy >> 8n) & 0xffn),
    smt: bit(16n),
    migrateMa: bit(18n),
    debug: bit(19n),
    singleSocket: bit(20n),
    cxlAllowed: bit(21n),
    memAes256Xts: bit(22n),
    raplDis: bit(23n),
    ciphertextHidingDram: bit(24n),
    pageSwapDisable: bit(25n),
  };
}

/** Decodes the PLATFORM_INFO bits this verifier knows. */
export function decodePlatformInfo(platformInfo: bigint): SnpPlatformInfo {
  const bit = (n: bigint): boolean => (platformInfo & (1n << n)) !== 0n;
  return {
    smtEnabled: bit(0n),
    tsmeEnabled: bit(1n),
    eccEnabled: bit(2n),
    raplDisabled: bit(3n),
    ciphertextHidingDramEnabled: bit(4n),
    aliasCheckComplete: bit(5n),
  };
}

/** The product line a CPUID names: family 19h models 0xh Milan, 1xh and Axh Genoa; family 1Ah models 0xh–1xh Turin. */
export function productFromCpuid(cpuid: SnpCpuid): SnpProduct | null {
  if (cpuid.family === 0x19) {
    if (cpuid.model <= 0x0f) return "Milan";
    if ((cpuid.model >= 0x10 && cpuid.model <= 0x1f) || (cpuid.model >= 0xa0 && cpuid.model <= 0xaf)) return "Genoa";
  }
  if (cpuid.family === 0x1a && cpuid.model <= 0x1f) return "Turin";
  return null;
}

/** Decodes a raw 8-byte TCB_VERSION in the product's layout (Turin's differs). */
export function decodeTcb(raw: Uint8Array, product: SnpProduct): SnpTcb {
  if (raw.length !== 8) throw malformed("a TCB_VERSION has 8 bytes");
  if (product === "Turin") {
    return { fmc: raw[0]!, bootloader: raw[1]!, tee: raw[2]!, snp: raw[3]!, microcode: raw[7]!, raw: raw.slice() };
  }
  return { fmc: null, bootloader: raw[0]!, tee: raw[1]!, snp: raw[6]!, microcode: raw[7]!, raw: raw.slice() };
}

/** The TCB components a TCB_VERSION is made of, as the VCEK states them (reserved ones default to zero). */
export interface SnpTcbParts {
  fmc?: number | null;
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  /** Reserved SPLs 4..7 (Milan/Genoa bytes 2..5; Turin bytes 4..6 take SPLs 5..7). */
  spl4?: number | null;
  spl5?: number | null;
  spl6?: number | null;
  spl7?: number | null;
}

/** Encodes TCB components into the 8 raw bytes of the product's layout. */
export function encodeTcb(parts: SnpTcbParts, product: SnpProduct): Uint8Array {
  const b = (v: number | null | undefined): number => {
    const n = v ?? 0;
    if (!Number.isInteger(n) || n < 0 || n > 255) throw new RangeError("a TCB component is a byte");
    return n;
  };
  if (product === "Turin") {
    return new Uint8Array([
      b(parts.fmc),
      b(parts.bootloader),
      b(parts.tee),
      b(parts.snp),
      b(parts.spl5),
      b(parts.spl6),
      b(parts.spl7),
      b(parts.microcode),
    ]);
  }
  return new Uint8Array([
    b(parts.bootloader),
    b(parts.tee),
    b(parts.spl4),
    b(parts.spl5),
    b(parts.spl6),
    b(parts.spl7),
    b(parts.snp),
    b(parts.microcode),
  ]);
}

/** True if every component of `low` is at most the same component of `high` (FMC counts on Turin only). */
export function tcbAtMost(low: SnpTcb, high: SnpTcb): boolean {
  return (
    (low.fmc ?? 0) <= (high.fmc ?? 0) &&
    low.bootloader <= high.bootloader &&
    low.tee <= high.tee &&
    low.snp <= high.snp &&
    low.microcode <= high.microcode
  );
}

/** "major.minor.build", as firmware versions are usually written. */
export function formatFirmwareVersion(v: SnpFirmwareVersion): string {
  return `${v.major}.${v.minor}.${v.build}`;
}

/** The little-endian u64 of a raw TCB as `0x…` hex (the form tools print). */
export function tcbHex(raw: Uint8Array): string {
  return `0x${BigInt(`0x${toHex(raw.slice().reverse())}`).toString(16)}`;
}
