// The attested claims a mesh certificate carries as extensions, under Contrast's OIDs: 1.3.9901.2.1 (SEV-SNP), 1.3.9901.2.2 (TDX), 1.3.9901.3.1 (workload secret ID).
import { boolean, octetString, smallInteger } from "../crypto/der.js";
import { fromHex, utf8 } from "../encoding.js";

/** One certificate extension: its OID and the DER of its value (inside the extension's OCTET STRING). */
export interface Claim {
  oid: string;
  value: Uint8Array;
}

/** The OID arc of parsed SEV-SNP report claims. */
export const snpClaimsArc = "1.3.9901.2.1";
/** The OID arc of parsed TDX quote claims. */
export const tdxClaimsArc = "1.3.9901.2.2";
/** The OID of the workload secret ID claim (UTF-8 bytes in an OCTET STRING). */
export const workloadSecretIdOid = "1.3.9901.3.1";

/** An INTEGER claim. */
export function integerClaim(oid: string, value: number): Claim {
  return { oid, value: smallInteger(value) };
}

/** An OCTET STRING claim of bytes (or of hex). */
export function bytesClaim(oid: string, value: Uint8Array | string): Claim {
  return { oid, value: octetString(typeof value === "string" ? fromHex(value) : value) };
}

/** A BOOLEAN claim. */
export function booleanClaim(oid: string, value: boolean): Claim {
  return { oid, value: boolean(value) };
}

/** The workload secret ID claim. */
export function workloadSecretIdClaim(id: string): Claim {
  return { oid: workloadSecretIdOid, value: octetString(utf8(id)) };
}
