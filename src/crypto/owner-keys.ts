// Seed-share owner keys as manifests list them: hex DER SubjectPublicKeyInfo, or hex PKCS#1 RSAPublicKey as Contrast writes them.
import { AsnConvert } from "@peculiar/asn1-schema";
import { RSAPublicKey, id_rsaEncryption } from "@peculiar/asn1-rsa";
import { AlgorithmIdentifier, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { bytesEqual, fromHex } from "../encoding.js";

/**
 * The DER SPKI of a seed-share owner key as a manifest lists it. SPKI is taken as it is; a PKCS#1
 * RSAPublicKey (Contrast's encoding) is wrapped into an rsaEncryption SPKI. Throws on anything else.
 */
export function seedShareOwnerSpki(listed: string): Uint8Array {
  const der = fromHex(listed);
  try {
    AsnConvert.parse(der, SubjectPublicKeyInfo);
    return der;
  } catch {
    // not an SPKI: perhaps PKCS#1
  }
  AsnConvert.parse(der, RSAPublicKey);
  const spki = new SubjectPublicKeyInfo({
    algorithm: new AlgorithmIdentifier({ algorithm: id_rsaEncryption, parameters: null }),
    subjectPublicKey: der.slice().buffer,
  });
  return new Uint8Array(AsnConvert.serialize(spki));
}

/** Whether a listed seed-share owner key (SPKI or PKCS#1 hex) is the key with this DER SPKI. */
export function isSeedShareOwner(listed: string, spki: Uint8Array): boolean {
  try {
    return bytesEqual(seedShareOwnerSpki(listed), spki);
  } catch {
    return false;
  }
}
