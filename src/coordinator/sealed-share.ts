// Seed shares sealed with HPKE to the Coordinator's attested in-memory key, bound to its name, the recovery attempt and the salt, so only that process can open them and only in that attempt.
import { concat, fromBase64, fromHex, toBase64, utf8 } from "../encoding.js";
import { sealTo } from "../crypto/hpke.js";
import type { HpkeRecipient } from "../crypto/hpke.js";
import { CoordinatorError } from "../errors.js";
import { attemptNonceBytes, saltLength } from "./recovery.js";

/** The label that opens the HPKE `info` of a sealed seed share. */
export const shareSealingLabel = "contrast-coordinator/seed-share/v1";

/** Bytes of the encapsulated key of DHKEM(P-256): an uncompressed point. */
export const encLength = 65;

/** A sealed seed share in its wire form (the `sealedShare` of `POST /v1/recover`). */
export interface SealedShare {
  /** The recovery attempt's nonce it is sealed for: 32 lower-case hex characters. */
  attempt: string;
  /** The HPKE encapsulated key, base64 (65 bytes). */
  enc: string;
  /** The HPKE ciphertext of the share, base64. */
  ciphertext: string;
}

function attemptBytes(attemptHex: string): Uint8Array {
  if (!new RegExp(`^[0-9a-f]{${2 * attemptNonceBytes}}$`).test(attemptHex)) {
    throw new CoordinatorError("INVALID_REQUEST", `the attempt must be ${attemptNonceBytes} bytes in lower-case hex (${2 * attemptNonceBytes} characters)`);
  }
  return fromHex(attemptHex);
}

function saltOf(salt: Uint8Array | string): Uint8Array {
  const valid = typeof salt === "string" ? new RegExp(`^[0-9a-f]{${2 * saltLength}}$`).test(salt) : salt.length === saltLength;
  if (!valid) throw new CoordinatorError("INVALID_REQUEST", `the salt must be ${saltLength} bytes (${2 * saltLength} lower-case hex characters)`);
  return typeof salt === "string" ? fromHex(salt) : salt;
}

/**
 * The HPKE `info` of a sealed share: `"contrast-coordinator/seed-share/v1"` ‖ 0x00 ‖ u16 length
 * (big-endian) ‖ name (UTF-8) ‖ the attempt's 16-byte nonce.
 */
export function shareSealingInfo(name: string, attemptHex: string): Uint8Array {
  const nameBytes = utf8(name);
  if (nameBytes.length > 0xffff) throw new RangeError("the name is longer than 65535 bytes");
  return concat(utf8(shareSealingLabel), new Uint8Array([0, nameBytes.length >> 8, nameBytes.length & 0xff]), nameBytes, attemptBytes(attemptHex));
}

/**
 * Seals a share (single-shot HPKE, base mode) to the Coordinator's attested HPKE public key for the
 * Coordinator `name`, the recovery attempt `attempt` (its nonce, hex) and the recovery `salt` (bytes
 * or hex; the additional data).
 */
export async function sealShare(
  hpkePublicKey: Uint8Array,
  share: Uint8Array,
  context: { name: string; attempt: string; salt: Uint8Array | string },
): Promise<SealedShare> {
  const sealed = await sealTo(hpkePublicKey, share, shareSealingInfo(context.name, context.attempt), saltOf(context.salt));
  return { attempt: context.attempt, enc: toBase64(sealed.enc), ciphertext: toBase64(sealed.ciphertext) };
}

/**
 * Opens a sealed share with the Coordinator's HPKE key for its `name` and the `salt` the request
 * names. It does not decide whether `sealed.attempt` is the current attempt (the Coordinator does,
 * before opening); a share sealed for another attempt, name, salt or key does not open. Anything that
 * does not open is SEALED_SHARE_INVALID.
 */
export async function openSealedShare(recipient: HpkeRecipient, sealed: SealedShare, context: { name: string; salt: Uint8Array | string }): Promise<Uint8Array> {
  const info = shareSealingInfo(context.name, sealed.attempt);
  const aad = saltOf(context.salt);
  let enc: Uint8Array;
  let ciphertext: Uint8Array;
  try {
    enc = fromBase64(sealed.enc);
    ciphertext = fromBase64(sealed.ciphertext);
  } catch {
    throw new CoordinatorError("INVALID_REQUEST", "sealedShare.enc and sealedShare.ciphertext must be standard base64");
  }
  const invalid = (why: string, cause?: unknown) =>
    new CoordinatorError("SEALED_SHARE_INVALID", `the sealed share does not open with this Coordinator's HPKE key: ${why}`, cause === undefined ? undefined : { cause });
  if (enc.length !== encLength) throw invalid(`enc has ${enc.length} bytes, ${encLength} expected`);
  try {
    return await recipient.open(enc, ciphertext, info, aad);
  } catch (err) {
    throw invalid("it was sealed to another key (another Coordinator process), for another Coordinator name or salt, or changed on the way", err);
  }
}
