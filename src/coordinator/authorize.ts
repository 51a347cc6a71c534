// Who may change a ready Coordinator: a workload owner's signature on each update, and t current seed-share owners' approvals on a rekey.
import { seedShareOwnerSpki } from "../crypto/owner-keys.js";
import { toHex } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import type { Head } from "../history/head.js";
import { getObject, kinds, objectKey } from "../history/objects.js";
import { decodeTransition } from "../history/transition.js";
import { hasWorkloadOwners, isWorkloadOwner, parseManifest } from "../manifest/manifest.js";
import type { Manifest } from "../manifest/manifest.js";
import type { Store } from "../storage/store.js";
import {
  recoveryResetStatement,
  rekeyApprovalStatement,
  updateStatement,
  verifySeedShareOwner,
  verifyWorkloadOwner,
} from "./statements.js";
import type { CoordinatorIdentity } from "./statements.js";

/** A workload owner's signature on an update, decoded. */
export interface UpdateSignature {
  publicKey: Uint8Array;
  value: Uint8Array;
}

/** One seed-share owner's approval of a rekey, decoded: their key as the current manifest lists it (hex SPKI) and the signature. */
export interface RekeyApproval {
  ownerPublicKey: string;
  signature: Uint8Array;
}

/**
 * Checks that an update is signed by a workload owner of the current manifest over the new
 * transition of this Coordinator. Cheap (one hash, one verify), so it runs before the manifest is
 * parsed or any policy is decoded.
 */
export async function authorizeUpdate(
  current: Manifest,
  id: CoordinatorIdentity,
  newTransition: Uint8Array,
  signature: UpdateSignature | undefined,
): Promise<void> {
  if (!hasWorkloadOwners(current)) {
    throw new CoordinatorError("UPDATES_DISABLED", "the current manifest names no workload owner, so it cannot be updated");
  }
  if (signature === undefined) {
    throw new CoordinatorError("UNAUTHORIZED_UPDATE", "an update must be signed by a workload owner of the current manifest");
  }
  if (!(await isWorkloadOwner(current, signature.publicKey))) {
    throw new CoordinatorError("UNAUTHORIZED_UPDATE", "the signing key is not a workload owner of the current manifest");
  }
  if (!(await verifyWorkloadOwner(signature.publicKey, signature.value, updateStatement(id, newTransition)))) {
    throw new CoordinatorError(
      "UNAUTHORIZED_UPDATE",
      "the signature does not verify over this update of this Coordinator (its name, root CA and the new transition)",
    );
  }
}

/** Whether an update changes who can recover: other seed-share owners (or another order) or another threshold. */
export function changesRecovery(current: Manifest, next: Manifest): boolean {
  const a = current.SeedshareOwnerPubKeys;
  const b = next.SeedshareOwnerPubKeys;
  return (current.Threshold ?? 1) !== (next.Threshold ?? 1) || a.length !== b.length || a.some((k, i) => k !== b[i]);
}

/**
 * Checks a rekey: an update that changes the seed-share owners or the threshold needs the approval
 * of t current seed-share owners (t the current threshold), each an RSA-PSS signature over this
 * Coordinator's name, root CA and the new transition, so that an approval is good for exactly one
 * update of one Coordinator. Approvals by anyone else, repeated ones and invalid ones do not count.
 */
export async function authorizeRekey(
  current: Manifest,
  id: CoordinatorIdentity,
  newTransition: Uint8Array,
  approvals: readonly RekeyApproval[],
): Promise<void> {
  const threshold = current.Threshold ?? 1;
  const owners = new Set(current.SeedshareOwnerPubKeys);
  const statement = rekeyApprovalStatement(id, newTransition);
  const approved = new Set<string>();
  for (const approval of approvals) {
    if (approved.size >= threshold) break;
    if (!owners.has(approval.ownerPublicKey) || approved.has(approval.ownerPublicKey)) continue;
    if (await verifySeedShareOwner(seedShareOwnerSpki(approval.ownerPublicKey), approval.signature, statement)) {
      approved.add(approval.ownerPublicKey);
    }
  }
  if (approved.size < threshold) {
    throw new CoordinatorError(
      "REKEY_NOT_APPROVED",
      `this update changes the seed-share owners or the threshold, which needs the approval of ${threshold} of the ` +
        `${owners.size} current seed-share owner${owners.size === 1 ? "" : "s"}; ${approved.size} valid approval` +
        `${approved.size === 1 ? " was" : "s were"} given`,
    );
  }
}

/** A seed-share owner's request to discard an unfinished recovery, decoded. */
export interface ResetRequest {
  ownerPublicKey: string;
  signature: Uint8Array;
}

/**
 * Checks a recovery reset: one seed-share owner's signature over this Coordinator's name and the
 * current attempt's nonce. The owners come from the stored manifest, unverified as everything is
 * before recovery; whoever can change the store could stall a recovery anyway (by deleting the
 * state), but nobody else can.
 */
export async function authorizeReset(
  store: Store,
  head: Head,
  nonce: string,
  request: ResetRequest,
): Promise<void> {
  const owners = await storedSeedShareOwners(store, head);
  if (!owners.includes(request.ownerPublicKey)) {
    throw new CoordinatorError("RESET_UNAUTHORIZED", "the key is not a seed-share owner of the stored manifest");
  }
  if (!(await verifySeedShareOwner(seedShareOwnerSpki(request.ownerPublicKey), request.signature, recoveryResetStatement(head.name, nonce)))) {
    throw new CoordinatorError(
      "RESET_UNAUTHORIZED",
      `the signature does not verify over the reset of attempt ${nonce} of Coordinator ${head.name}`,
    );
  }
}

/** The seed-share owners of the stored latest manifest (head → transition → manifest), each object checked against its hash. */
async function storedSeedShareOwners(store: Store, head: Head): Promise<string[]> {
  const transitionKey = objectKey(kinds.transition, head.latestTransition);
  let manifestHash: string;
  try {
    manifestHash = toHex(decodeTransition(await getObject(store, kinds.transition, head.latestTransition)).manifestHash);
  } catch (err) {
    if (err instanceof CoordinatorError) throw err;
    throw new CoordinatorError("STATE_CORRUPT", `${transitionKey} is not a transition`, { key: transitionKey });
  }
  const manifestKey = objectKey(kinds.manifest, manifestHash);
  try {
    return parseManifest(await getObject(store, kinds.manifest, manifestHash)).SeedshareOwnerPubKeys;
  } catch (err) {
    if (err instanceof CoordinatorError && err.code !== "INVALID_MANIFEST") throw err;
    throw new CoordinatorError("STATE_CORRUPT", `${manifestKey} is not a valid manifest`, { key: manifestKey });
  }
}
