// A workload owner's signed manifest update: the new transition over the base it builds on, signed ECDSA P-384/SHA-384.
import { fromHex, toBase64, toHex } from "../encoding.js";
import { sha256, subtle } from "../crypto/provider.js";
import { signingAlgorithm } from "../crypto/ca.js";
import { updateMessage } from "../coordinator/coordinator.js";
import { transitionHash } from "../history/transition.js";
import type { SetManifestRequest } from "./client.js";

/**
 * The body of an update: the manifest and policies (exact bytes), the transition it builds on, and the
 * owner's signature (IEEE P1363) over "CONTRAST COORDINATOR MANIFEST UPDATE v1" ‖ 0x00 ‖ the new transition.
 */
export async function signedUpdate(opts: {
  manifest: Uint8Array;
  policies: Uint8Array[];
  previousTransition: string;
  owner: { privateKey: CryptoKey; spki: Uint8Array };
}): Promise<{ body: SetManifestRequest; newTransition: string }> {
  const next = await transitionHash(await sha256(opts.manifest), fromHex(opts.previousTransition));
  const value = new Uint8Array(await subtle().sign(signingAlgorithm, opts.owner.privateKey, updateMessage(next) as BufferSource));
  return {
    body: {
      manifest: toBase64(opts.manifest),
      policies: opts.policies.map(toBase64),
      previousTransition: opts.previousTransition,
      signature: { publicKey: toBase64(opts.owner.spki), value: toBase64(value) },
    },
    newTransition: toHex(next),
  };
}
