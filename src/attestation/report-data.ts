// The binding of evidence to the key it certifies and a fresh nonce, as Contrast makes it: REPORT_DATA = SHA-512(SPKI DER ‖ nonce).
import { concat } from "../encoding.js";
import { subtle } from "../crypto/provider.js";

/** The 64-byte REPORT_DATA that evidence for this key (DER SPKI) and nonce must carry, on SEV-SNP and TDX alike. */
export async function expectedReportData(spki: Uint8Array, nonce: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-512", concat(spki, nonce) as BufferSource));
}
