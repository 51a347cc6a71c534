// Loads the real SEV-SNP test vectors of test/fixtures/attestation and turns verified reports into expected.json's shape.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { concat, fromHex, toHex } from "../../src/encoding.js";
import { pemCertificates } from "../../src/attestation/snp/certificates.js";
import type { SnpCertificates } from "../../src/attestation/snp/certificates.js";
import { formatFirmwareVersion, tcbHex } from "../../src/attestation/snp/report.js";
import type { SnpTcb } from "../../src/attestation/snp/report.js";
import type { SnpEvidence, SnpVerifiedReport } from "../../src/attestation/snp/verify.js";

/** The fixtures folder. */
export const fixtures = fileURLToPath(new URL("../fixtures/attestation/", import.meta.url));

/** Bytes of a fixture file. */
export function fixture(path: string): Uint8Array {
  return new Uint8Array(readFileSync(join(fixtures, path)));
}

/** Text of a fixture file. */
export function fixtureText(path: string): string {
  return readFileSync(join(fixtures, path), "utf8");
}

/** One vector's entry in expected.json. */
export interface ExpectedVector {
  report: string;
  report_sha256: string;
  signer_cert: string;
  product: "milan" | "genoa" | "turin";
  signer: "vcek" | "vlek";
  cert_extensions: Record<string, unknown>;
  cert_not_before: string;
  cert_not_after: string;
  fields: Record<string, unknown>;
  azure_hcl?: Record<string, unknown>;
}

/** expected.json. */
export const expected = JSON.parse(fixtureText("expected.json")) as { vectors: Record<string, ExpectedVector> };

/** The SNP vectors by folder name (e.g. "milan-v2-gsg"). */
export const vectorNames = Object.keys(expected.vectors).map((k) => k.replace(/^snp\//, ""));

/** The DER of the VCEK/VLEK file named in expected.json (PEM, DER or a PEM chain whose first certificate it is). */
export function signerCertificate(path: string): Uint8Array {
  const bytes = fixture(path);
  if (path.endsWith(".der")) return bytes;
  return pemCertificates(new TextDecoder().decode(bytes))[0]!;
}

/** A vector's evidence: its report and its VCEK/VLEK, nothing else (AMD's ASK/ASVK come from the pinned anchors). */
export function vectorEvidence(name: string): SnpEvidence {
  const v = expected.vectors[`snp/${name}`]!;
  const leaf = signerCertificate(v.signer_cert);
  const certificates: SnpCertificates = v.signer === "vcek" ? { vcek: leaf } : { vlek: leaf };
  return { report: fixture(v.report), certificates };
}

/** A time at which the vector's VCEK/VLEK is valid: a day after it was issued. */
export function validTime(name: string): Date {
  const v = expected.vectors[`snp/${name}`]!;
  return new Date(new Date(v.cert_not_before).getTime() + 24 * 3600 * 1000);
}

function tcb(t: SnpTcb): Record<string, unknown> {
  return { bl: t.bootloader, tee: t.tee, snp: t.snp, ucode: t.microcode, raw: tcbHex(t.raw) };
}

const hex0x = (n: bigint | number): string => `0x${n.toString(16)}`;

/** A verified report's fields in expected.json's `fields` shape. */
export function asExpectedFields(v: SnpVerifiedReport): Record<string, unknown> {
  const r = v.report;
  const out: Record<string, unknown> = {
    version: r.version,
    guest_svn: r.guestSvn,
    policy: hex0x(r.policy),
    family_id: toHex(r.familyId),
    image_id: toHex(r.imageId),
    vmpl: r.vmpl,
    sig_algo: r.signatureAlgo,
  };
  if (r.cpuid !== null) out.cpuid_fam_mod_step = [hex0x(r.cpuid.family), hex0x(r.cpuid.model), hex0x(r.cpuid.stepping)];
  Object.assign(out, {
    turin_tcb_layout: v.product === "Turin",
    current_tcb: tcb(v.tcb.current),
    platform_info: hex0x(r.platformInfo),
    signer_info: hex0x(r.signerInfo),
    author_key_en: r.authorKeyEnabled ? 1 : 0,
    mask_chip_key: r.maskChipKey ? 1 : 0,
    signing_key: r.signingKey === "vcek" ? 0 : 1,
    report_data: toHex(r.reportData),
    measurement: toHex(r.measurement),
    host_data: toHex(r.hostData),
    id_key_digest: toHex(r.idKeyDigest),
    author_key_digest: toHex(r.authorKeyDigest),
    report_id: toHex(r.reportId),
    report_id_ma: toHex(r.reportIdMa),
    reported_tcb: tcb(v.tcb.reported),
    chip_id: toHex(r.chipId),
    committed_tcb: tcb(v.tcb.committed),
    current_version: formatFirmwareVersion(r.currentVersion),
    committed_version: formatFirmwareVersion(r.committedVersion),
    launch_tcb: tcb(v.tcb.launch),
  });
  return out;
}

/** A verified report's certificate extensions in expected.json's `cert_extensions` shape. */
export function asExpectedExtensions(v: SnpVerifiedReport): Record<string, unknown> {
  const e = v.endorsement.extensions;
  const out: Record<string, unknown> = {
    structVersion: e.structVersion,
    productName: e.productName,
    blSPL: e.blSpl,
    teeSPL: e.teeSpl,
    spl4: e.spl4,
    spl5: e.spl5,
    spl6: e.spl6,
    spl7: e.spl7,
    snpSPL: e.snpSpl,
    ucodeSPL: e.ucodeSpl,
  };
  if (e.fmcSpl !== null) out.fmcSPL = e.fmcSpl;
  if (e.hwid !== null) {
    out.hwid = toHex(e.hwid);
    out.hwidEncoding = e.hwidEncoding === "raw" ? "raw" : "octetstring";
  }
  if (e.cspId !== null) out.cspId = e.cspId;
  return out;
}

/** The extended report's certificate table: 24-byte GUID/offset/length entries, an all-zero one, then the DERs. */
export function certTable(entries: [string, Uint8Array][]): Uint8Array {
  const header = new Uint8Array(24 * (entries.length + 1));
  const view = new DataView(header.buffer);
  let offset = header.length;
  entries.forEach(([guid, der], i) => {
    header.set(fromHex(guid.replaceAll("-", "")), 24 * i);
    view.setUint32(24 * i + 16, offset, true);
    view.setUint32(24 * i + 20, der.length, true);
    offset += der.length;
  });
  return concat(header, ...entries.map(([, der]) => der));
}
