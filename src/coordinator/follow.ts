// Following the head: a Coordinator notices when another process on its store moved its head, verifies the new head with the keys it holds and loads it, and tells issuance whether its state is still the newest it has seen.
import { bytesEqual } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { headKey } from "../history/head.js";
import { contentVersion, StoreError } from "../storage/store.js";
import type { Store } from "../storage/store.js";
import { auditHead } from "./audit.js";
import type { AuditFinding, Damage } from "./audit.js";
import { loadReady } from "./ready.js";
import type { Ready } from "./ready.js";

/** What one check of the stored head found, before the Coordinator applies it. */
export type FollowFinding =
  /** The head is the held one (or one already refused, or none while uninitialized). */
  | { kind: "unchanged" }
  /** A newer head, verified with the held keys, and the whole state it pins: the Coordinator serves it from now on. */
  | { kind: "followed"; ready: Ready }
  /** While stale: the store holds the verified head again. */
  | { kind: "restored" }
  /** A head the held keys do not verify, or whose objects do not verify: the Coordinator turns stale. */
  | { kind: "unverifiable"; damage: Damage }
  /** A missing or malformed head, or an older one (a rollback): damage, which the audit records. */
  | { kind: "damaged"; damage: Damage }
  /** While uninitialized: another Coordinator initialized the store (`head` are the stored bytes, unverified). */
  | { kind: "initialized"; head: Uint8Array }
  /** The store did not answer. */
  | { kind: "unavailable"; message: string };

/** What following did, as the Coordinator reports it (logs, audit listeners). */
export type FollowOutcome =
  | { kind: "unchanged" }
  | { kind: "followed"; generation: number; latestTransition: string }
  | { kind: "restored" }
  | { kind: "stale"; damage: Damage }
  | { kind: "damaged"; damage: Damage }
  | { kind: "initialized" }
  | { kind: "unavailable"; message: string };

/** The audit's view of a follow outcome: a head it could not follow is `moved` (the Coordinator is stale). */
export function auditFindingOf(outcome: FollowOutcome): AuditFinding {
  switch (outcome.kind) {
    case "followed":
      return { kind: "followed", generation: outcome.generation };
    case "stale":
      return { kind: "moved" };
    case "damaged":
    case "unavailable":
      return outcome;
    default:
      return { kind: "ok" };
  }
}

/**
 * Watches one Coordinator's head for it. Each check reads the head once and compares its bytes
 * with the held head's (the content version is their SHA-256, so this is the version comparison);
 * only a head that differs is verified and, when newer and validly signed, loaded. From the instant
 * a differing head is read until the Coordinator has applied what it found, `quiet` is false, and a
 * newer head that could not be loaded (the store failed meanwhile) keeps it false until it is:
 * issuance hands out a certificate only while `quiet` holds and its state is the held one.
 */
export class Follower {
  /** Settles when the head being verified has been applied; null while none is. */
  private settling: Promise<void> | null = null;
  /** A newer, validly signed head was read but not loaded yet (the store failed while loading it). */
  private behindHead = false;
  /** The bytes of the last head refused as unverifiable: while stale they are not loaded again. */
  private refused: Uint8Array | null = null;

  constructor(
    private readonly store: Store,
    private readonly name: string,
  ) {}

  /** True while no head that differs from the held one is being verified, and none newer is left unloaded. */
  get quiet(): boolean {
    return this.settling === null && !this.behindHead;
  }

  /** True if a newer head was read that could not be loaded yet. */
  get behind(): boolean {
    return this.behindHead;
  }

  /** Resolves once no head that was read is still being verified, loaded or applied. */
  async settled(): Promise<void> {
    while (this.settling !== null) await this.settling;
  }

  /** While uninitialized: whether a head appeared for this name (one read, nothing verified). */
  async appeared(): Promise<FollowFinding> {
    let stored: Uint8Array | null;
    try {
      stored = await this.store.get(headKey(this.name));
    } catch (err) {
      if (err instanceof StoreError) return { kind: "unavailable", message: err.message };
      throw err;
    }
    return stored === null ? { kind: "unchanged" } : { kind: "initialized", head: stored };
  }

  /**
   * Checks the stored head against `held` (the audit's head check) and, if another writer moved it
   * forward, verifies the whole new state with the held keys (loadReady). `apply` is called with
   * what was found before this check stops counting as in progress, with no await in between: the
   * state swap and the end of the check are one step, so issuance never sees a gap between them.
   * Call under the Coordinator's write lock.
   */
  async check<T>(held: Ready, stale: boolean, apply: (finding: FollowFinding) => T): Promise<T> {
    let release!: () => void;
    const settling = new Promise<void>((resolve) => (release = resolve));
    try {
      const finding = await this.judge(held, stale, () => (this.settling = settling));
      return apply(finding);
    } finally {
      if (this.settling === settling) this.settling = null;
      release();
    }
  }

  private async judge(held: Ready, stale: boolean, onChanged: () => void): Promise<FollowFinding> {
    const key = headKey(this.name);
    const head = await auditHead(this.store, this.name, held, onChanged);
    switch (head.kind) {
      case "ok":
        this.behindHead = false;
        this.refused = null;
        return stale ? { kind: "restored" } : { kind: "unchanged" };
      case "unavailable":
      case "damaged":
        return head;
      case "unverifiable":
        if (stale && this.refused !== null && bytesEqual(this.refused, head.bytes)) return { kind: "unchanged" };
        this.behindHead = false;
        this.refused = head.bytes;
        return { kind: "unverifiable", damage: head.damage };
      case "newer": {
        if (stale && this.refused !== null && bytesEqual(this.refused, head.bytes)) return { kind: "unchanged" };
        try {
          const ready = await loadReady(this.store, held.engine, head.head, head.bytes, await contentVersion(head.bytes), key);
          this.behindHead = false;
          this.refused = null;
          return { kind: "followed", ready };
        } catch (err) {
          if (err instanceof CoordinatorError && err.code === "STATE_CORRUPT") {
            this.behindHead = false;
            this.refused = head.bytes;
            return { kind: "unverifiable", damage: { key: err.key ?? key, message: err.message } };
          }
          if (err instanceof StoreError) {
            this.behindHead = true;
            return { kind: "unavailable", message: err.message };
          }
          throw err;
        }
      }
    }
  }
}
