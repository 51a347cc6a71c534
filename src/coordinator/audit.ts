// Re-verification of what a ready Coordinator relies on: its head and every stored object it serves or would need after a restart.
import { bytesEqual } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { headKey, parseHead, verifyHead } from "../history/head.js";
import type { SignedHead } from "../history/head.js";
import { getObject, kinds } from "../history/objects.js";
import { StoreError } from "../storage/store.js";
import type { Store } from "../storage/store.js";
import type { Ready } from "./ready.js";

/** A stored object that no longer is what the Coordinator verified: missing, changed, or a head that went back. */
export interface Damage {
  /** The store key, e.g. `manifests:<hash>` or `heads:<name>`. */
  key: string;
  message: string;
}

/**
 * What one audit found: all well, damage, a head that moved to one this Coordinator could not
 * follow (it turned stale), a newer head it followed (loaded and now serves), or a store that did
 * not answer.
 */
export type AuditFinding =
  | { kind: "ok" }
  | { kind: "damaged"; damage: Damage }
  | { kind: "moved" }
  | { kind: "followed"; generation: number }
  | { kind: "unavailable"; message: string };

/**
 * What the head check found: the held head; damage (missing, malformed, or a validly signed head
 * that is not newer: a rollback); a newer head validly signed by this Coordinator's key (another
 * writer moved it forward); a head its key does not verify (another seed's, or changed); or no answer.
 */
export type HeadFinding =
  | { kind: "ok" }
  | { kind: "damaged"; damage: Damage }
  | { kind: "newer"; head: SignedHead; bytes: Uint8Array }
  | { kind: "unverifiable"; damage: Damage; bytes: Uint8Array }
  | { kind: "unavailable"; message: string };

/** Turns a read failure into a finding: integrity errors are damage, store failures are unavailability. */
function findingOf(err: unknown): Extract<AuditFinding, { kind: "damaged" | "unavailable" }> {
  if (err instanceof CoordinatorError && err.code === "STATE_CORRUPT") {
    return { kind: "damaged", damage: { key: err.key ?? "unknown", message: err.message } };
  }
  if (err instanceof StoreError) return { kind: "unavailable", message: err.message };
  throw err;
}

/**
 * Which objects an audit re-reads: `all` of them (the periodic re-verification, and the first one
 * after a recovery), or the `newest` state only: what the head names and the newest history entry,
 * which is what a write just added (the older objects were there before it, and the next full audit
 * re-reads them). A write's audit that re-read the whole history would cost as much as the history.
 */
export type AuditScope = "all" | "newest";

/**
 * Re-reads the immutable objects of the ready state and checks each against its hash: the CA
 * certificates, the sealed mesh CA key, the seed-share document, and the history index with the
 * transitions, manifests and policies it lists (with scope `newest`, only the index's last segment
 * and the newest entry). Stops at the first damage. Immutable objects never change, so this needs no lock.
 */
export async function auditObjects(store: Store, ready: Ready, scope: AuditScope = "all"): Promise<AuditFinding> {
  try {
    const o = ready.head.objects;
    for (const hash of [o.rootCA, o.transactionSigner, o.meshCA, o.intermediateCA]) await getObject(store, kinds.certificate, hash);
    await getObject(store, kinds.sealedKey, o.meshCAKey);
    if (o.seedShares !== undefined) await getObject(store, kinds.seedShares, o.seedShares);
    // The history index, each segment against its verified hash; the objects below against the index.
    const index = ready.index ?? [];
    // A write rewrote the last segment, or (when it holds one entry) started it and may have merged
    // the one before it.
    const written = index.at(-1)?.count === 1 ? index.slice(-2) : index.slice(-1);
    for (const segment of scope === "all" ? index : written) await getObject(store, kinds.history, segment.hash);
    const policies = new Set<string>();
    for (const entry of scope === "all" ? ready.history : ready.history.slice(-1)) {
      await getObject(store, kinds.transition, entry.transition);
      await getObject(store, kinds.manifest, entry.manifest);
      for (const policy of entry.policies) {
        if (policies.has(policy)) continue;
        policies.add(policy);
        await getObject(store, kinds.policy, policy);
      }
    }
    return { kind: "ok" };
  } catch (err) {
    return findingOf(err);
  }
}

/**
 * Checks the stored head against the one the Coordinator holds. The same bytes are fine; a newer
 * head validly signed by this Coordinator's key means another writer moved it; a head that key does
 * not verify is unverifiable; anything else (missing, malformed, or the same or an older generation
 * with other bytes) is damage. `onChanged` is called as soon as the stored bytes are read and differ
 * from the held ones, before anything is verified (the follower stops issuing under the held state
 * from that instant).
 */
export async function auditHead(store: Store, name: string, ready: Ready, onChanged?: () => void): Promise<HeadFinding> {
  const key = headKey(name);
  let stored: Uint8Array | null;
  try {
    stored = await store.get(key);
  } catch (err) {
    return findingOf(err);
  }
  if (stored !== null && bytesEqual(stored, ready.headBytes)) return { kind: "ok" };
  onChanged?.();
  if (stored === null) return { kind: "damaged", damage: { key, message: `${key} is missing from the store` } };
  let head;
  try {
    head = parseHead(stored, key);
  } catch (err) {
    return findingOf(err);
  }
  if (!(await verifyHead(head, ready.engine.transactionSigningKey.publicKey))) {
    return {
      kind: "unverifiable",
      bytes: stored,
      damage: { key, message: `${key} was replaced by a head this Coordinator's key does not verify (generation ${head.generation})` },
    };
  }
  if (head.generation > ready.head.generation) return { kind: "newer", head, bytes: stored };
  return {
    kind: "damaged",
    damage: { key, message: `${key} was replaced: generation ${head.generation} is not the verified generation ${ready.head.generation}` },
  };
}
