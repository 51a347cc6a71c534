// Transitions: the 64-byte link `manifestHash ‖ previousTransitionHash` and its SHA-256 name.
import { concat } from "../encoding.js";
import { sha256 } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";

/** The previous-transition hash of the first transition. */
export const zeroHash = new Uint8Array(32);

/** The stored bytes of a transition. */
export function encodeTransition(manifestHash: Uint8Array, previousTransition: Uint8Array): Uint8Array {
  if (manifestHash.length !== 32 || previousTransition.length !== 32) {
    throw new CoordinatorError("INVALID_REQUEST", "transition parts must be 32-byte hashes");
  }
  return concat(manifestHash, previousTransition);
}

/** Splits stored transition bytes into its manifest hash and previous transition hash. */
export function decodeTransition(bytes: Uint8Array): { manifestHash: Uint8Array; previousTransition: Uint8Array } {
  if (bytes.length !== 64) throw new CoordinatorError("STATE_CORRUPT", `transition is ${bytes.length} bytes, not 64`);
  return { manifestHash: bytes.slice(0, 32), previousTransition: bytes.slice(32) };
}

/** transitionHash = SHA-256(manifestHash ‖ previousTransitionHash). */
export async function transitionHash(manifestHash: Uint8Array, previousTransition: Uint8Array): Promise<Uint8Array> {
  return sha256(encodeTransition(manifestHash, previousTransition));
}
