// SEC1 'EC PRIVATE KEY' DER encoding (RFC 5915) of P-384 keys, byte for byte as Go's x509.MarshalECPrivateKey.
import { CoordinatorError } from "../errors.js";
import { concat } from "../encoding.js";
import { tlv } from "./der.js";

/** DER of the secp384r1 OID, 1.3.132.0.34. */
const secp384r1Oid = Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22);

/** Byte length of a P-384 private scalar. */
const scalarLength = 48;
/** Byte length of an uncompressed P-384 point. */
const pointLength = 1 + 2 * scalarLength;

/**
 * SEC1 ECPrivateKey DER (RFC 5915) with the named curve and the public point, exactly as Go's
 * x509.MarshalECPrivateKey writes it: version 1, the scalar as 48 bytes, [0] secp384r1, [1] the point.
 */
export function ecPrivateKeyDer(key: { d: Uint8Array; publicPoint: Uint8Array }): Uint8Array {
  if (key.d.length !== scalarLength) {
    throw new CoordinatorError("INVALID_REQUEST", `P-384 private scalar is ${key.d.length} bytes, not ${scalarLength}`);
  }
  if (key.publicPoint.length !== pointLength || key.publicPoint[0] !== 0x04) {
    throw new CoordinatorError("INVALID_REQUEST", `P-384 public point must be ${pointLength} bytes, uncompressed`);
  }
  return tlv(
    0x30,
    concat(
      tlv(0x02, Uint8Array.of(1)),
      tlv(0x04, key.d),
      tlv(0xa0, secp384r1Oid),
      tlv(0xa1, tlv(0x03, concat(Uint8Array.of(0), key.publicPoint))),
    ),
  );
}
