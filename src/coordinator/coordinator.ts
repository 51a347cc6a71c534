// The Coordinator's state holder: its state machine (uninitialized, recovery-required, ready, stale), one write at a time, and recovery; each other operation lives in a module of its own.
import type { HeldState } from "../attestation/coordinator-evidence.js";
import { bytesEqual, fromBase64, fromHex } from "../encoding.js";
import { SeedEngine } from "../crypto/seedengine.js";
import { combineShares, shareCommitment } from "../crypto/seedshares.js";
import type { SeedShareDocument } from "../crypto/seedshares.js";
import { NonceBook } from "../attestation/nonces.js";
import type { Validators } from "../attestation/validator.js";
import { CoordinatorError } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import { headKey, parseHead } from "../history/head.js";
import type { SignedHead } from "../history/head.js";
import type { Store } from "../storage/store.js";
import { auditHead, auditObjects } from "./audit.js";
import type { AuditFinding, AuditScope, Damage } from "./audit.js";
import { auditFindingOf, Follower } from "./follow.js";
import { Collector } from "./collect.js";
import type { CollectOptions, CollectOutcome } from "./collect.js";
import type { FollowFinding, FollowOutcome } from "./follow.js";
import { authorizeReset } from "./authorize.js";
import type { ResetRequest } from "./authorize.js";
import { historyView } from "./history.js";
import type { HistoryView } from "./history.js";
import { issueMeshCertificate } from "./issue.js";
import type { IssuingState, MeshCertificate } from "./issue.js";
import { loadReady } from "./ready.js";
import type { Ready } from "./ready.js";
import { defaultRecoveryTimeoutMs, openRootSeed, RecoveryAttempt, storedSeedShares } from "./recovery.js";
import { setManifest } from "./set.js";
import type { SetManifestInput, SetManifestResult } from "./set.js";

export type { AuditFinding, AuditScope, Damage } from "./audit.js";
export type { FollowOutcome } from "./follow.js";
export type { HistoryView } from "./history.js";
export type { MeshCertificate } from "./issue.js";
export type { SetManifestInput, SetManifestResult } from "./set.js";

/** The states of docs/design.md §3. */
export type CoordinatorState = "uninitialized" | "recovery-required" | "ready" | "stale";

/** What the Coordinator needs from its surroundings. */
export interface CoordinatorDeps {
  store: Store;
  name: string;
  validators: Validators;
  now?: () => Date;
  /** How long shares of an unfinished recovery are kept (default 10 minutes). */
  recoveryTimeoutMs?: number;
  /** Re-verify the stored state in the background after each write (adapters switch it on; default off). */
  auditAfterWrites?: boolean;
  /**
   * Follow the head when another process on the store moves it (see follow.ts): a lost
   * compare-and-swap and an audit load the newer head instead of turning stale, and `follow()`
   * checks it (adapters switch it on and poll; default off: a moved head makes the Coordinator stale).
   */
  follow?: boolean;
  /**
   * Collect store objects no head needs after audits (collect.ts; stores that cannot ignore it):
   * default on, with a grace period of an hour, at most every 10 minutes; false: only when
   * `collect()` is called.
   */
  collect?: CollectOptions | false;
}

/** Recovery progress, as status and recover report it; `nonce` names the current attempt (it exists before the first share: shares are sealed for it). */
export interface RecoveryProgress {
  threshold: number;
  received: number;
  nonce: string;
}

/**
 * A seed share sealed to this process's HPKE key for one recovery attempt: `attempt` is the nonce it
 * was sealed for, and `open` opens it (SEALED_SHARE_INVALID when it does not). The Coordinator
 * opens it only after `attempt` matched the current attempt, under the same lock that keeps shares.
 */
export interface SealedShareInput {
  attempt: string;
  open(): Promise<Uint8Array>;
}

/** One share for recover: in clear (`share`) or sealed (`sealed`), with the salt of its seed-share document. */
export type RecoverInput = { share: Uint8Array; salt: Uint8Array } | { sealed: SealedShareInput; salt: Uint8Array };

/** The Coordinator's status. */
export interface Status {
  state: CoordinatorState;
  name: string;
  generation: number | null;
  latestTransition: string | null;
  recovery: RecoveryProgress | null;
  /** Damage the last audit found (ready only); absent when all is well. */
  damage?: Damage;
  /** Why the last recovery from a peer refused the stored head (recovery-required only), e.g. ROLLBACK_DETECTED. */
  refusedHead?: RefusedHead;
}

/** A stored head that a recovery from a peer refused to adopt, and why. */
export interface RefusedHead {
  code: ErrorCode;
  message: string;
}

/** A root seed and its salt, as the sealed root seed of a head holds them. */
export interface RootSeed {
  seed: Uint8Array;
  salt: Uint8Array;
}

/** Runs async critical sections one at a time. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** The Coordinator: one instance per process and Coordinator name. */
export class Coordinator {
  readonly name: string;
  private readonly store: Store;
  private readonly validators: Validators;
  private readonly now: () => Date;
  private readonly writes = new Mutex();
  private readonly nonces: NonceBook;
  private readonly recoveryTimeoutMs: number;
  private readonly auditAfterWrites: boolean;
  /** Follows the head (null: following is off). */
  private readonly follower: Follower | null;
  private state: CoordinatorState;
  private ready: Ready | null = null;
  /**
   * The threshold of the head last read while not ready (unverified: for display), or that head's
   * bytes until the threshold is first shown (parsing the head is not part of a start).
   */
  private threshold: number | Uint8Array;
  private attempt: RecoveryAttempt | null = null;
  /** Damage the last audit found in the ready state; writes are refused while it lasts. */
  private damage: Damage | null = null;
  /** Why the last recovery from a peer refused the stored head; cleared once ready. */
  private refusedHead: RefusedHead | null = null;
  private readonly auditListeners: ((finding: AuditFinding, damage: Damage | null) => void)[] = [];
  /** Collects unreferenced store objects (after audits unless switched off). */
  private readonly collector: Collector;
  private readonly collectAfterAudits: boolean;

  private constructor(deps: CoordinatorDeps, state: CoordinatorState, threshold: number | Uint8Array) {
    this.name = deps.name;
    this.store = deps.store;
    this.validators = deps.validators;
    this.now = deps.now ?? (() => new Date());
    this.recoveryTimeoutMs = deps.recoveryTimeoutMs ?? defaultRecoveryTimeoutMs;
    this.auditAfterWrites = deps.auditAfterWrites ?? false;
    this.follower = deps.follow === true ? new Follower(deps.store, deps.name) : null;
    this.collector = new Collector(deps.collect === false ? {} : deps.collect);
    this.collectAfterAudits = deps.collect !== false;
    this.nonces = new NonceBook({ now: () => this.now().getTime() });
    this.state = state;
    this.threshold = threshold;
  }

  /** Starts a Coordinator: recovery-required if a head exists for its name, else uninitialized. */
  static async start(deps: CoordinatorDeps): Promise<Coordinator> {
    const stored = await deps.store.get(headKey(deps.name));
    if (stored === null) return new Coordinator(deps, "uninitialized", 1);
    return new Coordinator(deps, "recovery-required", stored);
  }

  /** The threshold of an unverified head, for display only; a malformed head shows 1. */
  private static thresholdOf(stored: Uint8Array, name: string): number {
    try {
      return parseHead(stored, headKey(name)).recovery.threshold;
    } catch {
      return 1;
    }
  }

  /**
   * The current attempt while recovery is needed (recovery-required or stale), else null: an expired
   * one is dropped, and a new one (with a new nonce) begins at once.
   */
  private currentAttempt(): RecoveryAttempt | null {
    if (this.attempt?.expired(this.now().getTime())) this.dropAttempt();
    if (this.state !== "recovery-required" && this.state !== "stale") return null;
    this.attempt ??= new RecoveryAttempt(this.recoveryTimeoutMs);
    return this.attempt;
  }

  /** Progress of the current attempt; only while recovery is needed. */
  private progress(): RecoveryProgress {
    const attempt = this.currentAttempt()!;
    if (typeof this.threshold !== "number") this.threshold = Coordinator.thresholdOf(this.threshold, this.name);
    return { threshold: this.threshold, received: attempt.shares.size, nonce: attempt.nonce };
  }

  /** The current state. */
  get currentState(): CoordinatorState {
    return this.state;
  }

  /** State, generation, latest transition, recovery progress and any damage an audit found. */
  status(): Status {
    const head = this.ready?.head ?? null;
    return {
      state: this.state,
      name: this.name,
      generation: head?.generation ?? null,
      latestTransition: head?.latestTransition ?? null,
      recovery: this.state === "recovery-required" || this.state === "stale" ? this.progress() : null,
      ...(this.state === "ready" && this.damage !== null ? { damage: this.damage } : {}),
      ...(this.state === "recovery-required" && this.refusedHead !== null ? { refusedHead: this.refusedHead } : {}),
    };
  }

  /** Calls `listener` after every audit with what it found and the damage now recorded. */
  onAudit(listener: (finding: AuditFinding, damage: Damage | null) => void): void {
    this.auditListeners.push(listener);
  }

  /**
   * Re-verifies what the ready state relies on (every stored object, then the head). Damage is
   * recorded and refuses writes until a later audit finds the object restored; a head that another
   * writer moved forward is followed (with following on), else it makes the Coordinator stale. Does
   * nothing unless ready. With scope `newest` (after a write) only what the write added is re-read,
   * and a clean finding leaves recorded damage in place: only a full audit clears it.
   */
  async audit(scope: AuditScope = "all"): Promise<AuditFinding> {
    const ready = this.ready;
    if (this.state !== "ready" || ready === null) return { kind: "ok" };
    let finding = await auditObjects(this.store, ready, scope);
    if (finding.kind === "ok") {
      finding = await this.writes.run(async () => {
        if (this.state !== "ready" || this.ready === null) return { kind: "ok" } as const;
        if (this.follower !== null) return auditFindingOf(await this.followLocked());
        const head = await auditHead(this.store, this.name, this.ready);
        if (head.kind === "newer") {
          this.state = "stale";
          return { kind: "moved" } as const;
        }
        return head.kind === "unverifiable" ? ({ kind: "damaged", damage: head.damage } as const) : head;
      });
    }
    if (finding.kind === "ok" && scope === "all") this.damage = null;
    if (finding.kind === "damaged") this.damage = finding.damage;
    for (const listener of this.auditListeners) listener(finding, this.damage);
    // A clean audit of the stored head: collect what no head needs, when due (at most one per interval).
    if (finding.kind === "ok" && this.collectAfterAudits) await this.collect();
    return finding;
  }

  /**
   * Collects store objects no head needs (collect.ts) if due, or now with `force` (its `graceMs` and
   * `now`, for tests and the bench). Only when ready and holding the stored head; never throws.
   */
  collect(force?: { graceMs?: number; now?: number }): Promise<CollectOutcome> {
    const ready = (): Ready | null => (this.state === "ready" ? this.ready : null);
    if (ready() === null) return Promise.resolve({ kind: "skipped", reason: "not-ready" });
    return this.collector.run(this.store, this.name, ready, this.now().getTime(), force);
  }

  private requireReady(): Ready {
    switch (this.state) {
      case "ready":
        return this.ready!;
      case "uninitialized":
        throw new CoordinatorError("NOT_INITIALIZED", "no manifest has been set yet");
      case "recovery-required":
        throw new CoordinatorError("RECOVERY_REQUIRED", "the Coordinator restarted and must be recovered with the seed first");
      case "stale":
        throw new CoordinatorError("STALE", "the stored state moved under this Coordinator; recover to reload it");
    }
  }

  /** Sets the first manifest, or updates it (signed by a workload owner, naming the transition it builds on). */
  setManifest(input: SetManifestInput): Promise<SetManifestResult> {
    return this.writes.run(() => this.setManifestLocked(input));
  }

  private async setManifestLocked(input: SetManifestInput): Promise<SetManifestResult> {
    if (this.state === "recovery-required" || this.state === "stale") this.requireReady();
    if (this.state === "ready" && this.damage !== null) {
      throw new CoordinatorError(
        "STATE_CORRUPT",
        `${this.damage.message}; writes are refused until it is restored`,
        { key: this.damage.key },
      );
    }
    const current = this.state === "ready" ? this.ready! : null;
    try {
      const { ready, result } = await setManifest({ store: this.store, name: this.name, now: this.now() }, current, input);
      this.ready = ready;
      this.state = "ready";
      // Re-verify what the write added, in the background: the answer does not wait for it.
      if (this.auditAfterWrites && result.unchanged !== true) this.audit("newest").catch(() => undefined);
      return result;
    } catch (err) {
      if (err instanceof CoordinatorError && err.code === "STALE") {
        // Following: the head that won is loaded if this Coordinator can verify it; the answer stays STALE.
        const followed = current !== null && this.follower !== null ? await this.followLocked().catch(() => null) : null;
        if (followed?.kind !== "followed") this.becomeStale(current);
      }
      throw err;
    }
  }

  /**
   * Checks the stored head once and follows it (follow.ts): in ready (or stale), a newer head that
   * the held keys verify is loaded and served, one they do not verify makes the Coordinator stale,
   * and the verified head found again ends a stale; in uninitialized, a head another Coordinator
   * wrote makes it recovery-required. One read when nothing moved. Does nothing with following off.
   */
  follow(): Promise<FollowOutcome> {
    return this.writes.run(() => this.followLocked());
  }

  private async followLocked(): Promise<FollowOutcome> {
    const follower = this.follower;
    if (follower === null) return { kind: "unchanged" };
    if (this.state === "uninitialized") return this.adopt(await follower.appeared());
    if ((this.state !== "ready" && this.state !== "stale") || this.ready === null) return { kind: "unchanged" };
    return follower.check(this.ready, this.state === "stale", (finding) => this.adopt(finding));
  }

  /** Applies what following found; synchronous, so the swap and the end of the check are one step. */
  private adopt(finding: FollowFinding): FollowOutcome {
    switch (finding.kind) {
      case "followed":
        this.ready = finding.ready;
        this.state = "ready";
        this.damage = null;
        this.dropAttempt();
        return { kind: "followed", generation: finding.ready.head.generation, latestTransition: finding.ready.head.latestTransition };
      case "restored":
        this.state = "ready";
        this.dropAttempt();
        return finding;
      case "unverifiable":
        this.state = "stale";
        return { kind: "stale", damage: finding.damage };
      case "initialized":
        this.state = "recovery-required";
        this.threshold = Coordinator.thresholdOf(finding.head, this.name);
        return { kind: "initialized" };
      default:
        return finding;
    }
  }

  private becomeStale(current: Ready | null): void {
    if (current === null) {
      this.state = "recovery-required";
    } else {
      this.state = "stale";
    }
  }

  /**
   * Takes one seed share (with threshold 1: the recovery seed itself). Each share is checked on its
   * own against the head's commitments before it is kept; once `threshold` distinct shares are in,
   * they are combined, the root seed is unsealed, and the whole stored state is verified against it.
   * A sealed share must be sealed for the current attempt (ATTEMPT_CHANGED otherwise) and open
   * (SEALED_SHARE_INVALID); a refused share changes nothing.
   */
  recover(input: RecoverInput): Promise<{ state: CoordinatorState; recovery: RecoveryProgress }> {
    return this.writes.run(async () => {
      if (this.state === "uninitialized" || this.state === "ready") {
        throw new CoordinatorError("NOT_IN_RECOVERY", `the Coordinator is ${this.state} and needs no recovery`);
      }
      const { key, stored, head } = await this.storedHead();
      const r = head.recovery;
      this.threshold = r.threshold;
      let attempt = this.currentAttempt()!;
      if (!attempt.isFor(stored.version)) {
        // The state the shares were for is gone: a new attempt, with a new nonce, begins.
        this.dropAttempt();
        attempt = this.currentAttempt()!;
      }
      const sealed = "sealed" in input ? input.sealed : null;
      const attemptChanged = (current: RecoveryAttempt) =>
        new CoordinatorError(
          "ATTEMPT_CHANGED",
          `this share was sealed for recovery attempt ${sealed?.attempt}, but the current attempt is ${current.nonce}: read the status and seal it again`,
        );
      if (sealed !== null && sealed.attempt !== attempt.nonce) throw attemptChanged(attempt);
      const share = "sealed" in input ? await input.sealed.open() : input.share;
      if (share.length < 32) throw new CoordinatorError("INVALID_REQUEST", `share: ${share.length} bytes, at least 32 expected`);

      const corruptHead = (why: string) => new CoordinatorError("STATE_CORRUPT", `${key}: ${why}`, { key });
      // With threshold 1 the share is the recovery seed: if it opens the sealed root seed although the
      // salt or commitment disagree, the owner is right and the head was changed.
      const opensRoot = async () =>
        r.threshold === 1 && (await openRootSeed(share, input.salt, r.sealedRootSeed, this.name)) !== null;
      if (!bytesEqual(input.salt, fromHex(r.salt))) {
        if (await opensRoot()) throw corruptHead("the recovery parameters were changed");
        throw new CoordinatorError(
          "SALT_MISMATCH",
          "this share belongs to another deployment, or to seed-share owners that a manifest update replaced",
        );
      }
      const commitment = await shareCommitment(input.salt, share);
      if (!r.commitments.includes(commitment)) {
        if (await opensRoot()) throw corruptHead("the share commitments were changed");
        if (r.threshold === 1) {
          throw new CoordinatorError("SEED_MISMATCH", "the seed is not the one this Coordinator's state was made with");
        }
        throw new CoordinatorError(
          "SHARE_INVALID",
          "this share matches none of the Coordinator's share commitments: it is corrupted or not one of its shares",
        );
      }
      // The attempt may have expired while the share was checked (status reads it outside the lock).
      const current = this.currentAttempt()!;
      if (current !== attempt) {
        if (sealed !== null) throw attemptChanged(current);
        attempt = current;
      }
      if (attempt.shares.has(commitment)) {
        throw new CoordinatorError("SHARE_REPEATED", `this share was already received in attempt ${attempt.nonce}`);
      }
      attempt.keep(commitment, share, stored.version, this.now().getTime());
      if (attempt.shares.size < r.threshold) return { state: this.state, recovery: this.progress() };

      const received = { threshold: r.threshold, received: attempt.shares.size, nonce: attempt.nonce };
      const recoverySeed = await combineShares([...attempt.shares.values()]).catch(() => null);
      this.dropAttempt();
      const rootSeed = recoverySeed && (await openRootSeed(recoverySeed, input.salt, r.sealedRootSeed, this.name));
      if (!rootSeed) throw corruptHead("the shares match their commitments but do not open the sealed root seed");
      await this.loadWithRootSeed(rootSeed, { key, stored, head });
      return { state: this.state, recovery: received };
    });
  }

  /** The stored head, read for a recovery: none left makes the Coordinator uninitialized (NOT_IN_RECOVERY). */
  private async storedHead(): Promise<{ key: string; stored: { value: Uint8Array; version: string }; head: SignedHead }> {
    const key = headKey(this.name);
    const stored = await this.store.getVersioned(key);
    if (stored === null) {
      this.state = "uninitialized";
      this.ready = null;
      this.refusedHead = null;
      this.dropAttempt();
      throw new CoordinatorError("NOT_IN_RECOVERY", "the store holds no state for this Coordinator any more");
    }
    const head = parseHead(stored.value, key);
    if (head.name !== this.name) {
      throw new CoordinatorError("STATE_CORRUPT", `${key} belongs to Coordinator ${JSON.stringify(head.name)}`, { key });
    }
    return { key, stored, head };
  }

  /**
   * The last step of every recovery, once the root seed is known: verifies the stored head with the
   * seed's keys, loads the whole state it pins (loadReady), lets `accept` refuse it (by throwing), and
   * serves it. Call under the write lock.
   */
  private async loadWithRootSeed(
    rootSeed: RootSeed,
    at: { key: string; stored: { value: Uint8Array; version: string }; head: SignedHead },
    accept?: (ready: Ready) => void,
  ): Promise<void> {
    const engine = await SeedEngine.create(rootSeed.seed, rootSeed.salt);
    const ready = await loadReady(this.store, engine, at.head, at.stored.value, at.stored.version, at.key);
    accept?.(ready);
    this.ready = ready;
    this.damage = null;
    this.refusedHead = null;
    this.dropAttempt();
    this.state = "ready";
    // Recovery read the head's index and the active state only: re-verify every older object of the
    // history at once, in the background, instead of at the next interval.
    if (this.auditAfterWrites) this.audit().catch(() => undefined);
  }

  /**
   * Recovers with a root seed a ready peer replica sent (peer-recovery.ts), exactly as a recovery
   * with shares ends: the stored head is verified with the seed's keys and the whole state loaded;
   * `accept` sees it before it is served and refuses it by throwing (ROLLBACK_DETECTED when the store
   * holds an older head than a peer), which is remembered and shown in the status. Only while
   * recovery-required: otherwise it returns false and changes nothing.
   */
  adoptRootSeed(rootSeed: RootSeed, accept: (ready: Ready) => void): Promise<boolean> {
    return this.writes.run(async () => {
      if (this.state !== "recovery-required") return false;
      try {
        await this.loadWithRootSeed(rootSeed, await this.storedHead(), accept);
      } catch (err) {
        if (err instanceof CoordinatorError && this.state === "recovery-required") this.refusedHead = { code: err.code, message: err.message };
        throw err;
      }
      return true;
    });
  }

  /** The verified state it serves from, for serving peers (peer-seed.ts); only when ready (else NOT_INITIALIZED, RECOVERY_REQUIRED or STALE). */
  readyState(): Ready {
    return this.requireReady();
  }

  /**
   * Discards the shares of an unfinished recovery, at the request of one seed-share owner who signed
   * this attempt's nonce; the next share starts a new attempt. Expiry drops attempts on its own.
   */
  resetRecovery(request: ResetRequest): Promise<RecoveryProgress> {
    return this.writes.run(async () => {
      if (this.state === "uninitialized" || this.state === "ready") {
        throw new CoordinatorError("NOT_IN_RECOVERY", `the Coordinator is ${this.state} and needs no recovery`);
      }
      const attempt = this.currentAttempt()!;
      if (attempt.shares.size === 0) {
        throw new CoordinatorError("NO_RECOVERY_ATTEMPT", "no shares have been received in this attempt, so there is nothing to reset");
      }
      const key = headKey(this.name);
      const stored = await this.store.getVersioned(key);
      if (stored === null || !attempt.isFor(stored.version)) {
        // The state the shares were for is gone: the attempt is void anyway.
        this.dropAttempt();
        return this.progress();
      }
      await authorizeReset(this.store, parseHead(stored.value, key), attempt.nonce, request);
      this.dropAttempt();
      return this.progress();
    });
  }

  private dropAttempt(): void {
    this.attempt?.discard();
    this.attempt = null;
  }

  /**
   * The stored seed-share document of the current recovery seed, in every state but uninitialized:
   * the verified head's when ready, else the stored head's (unverified; each owner checks their share).
   */
  async seedShares(): Promise<{ seedShares: SeedShareDocument; verified: boolean }> {
    if (this.state === "uninitialized") throw new CoordinatorError("NOT_INITIALIZED", "no manifest has been set yet");
    const ready = this.state === "ready" ? this.ready : null;
    if (ready !== null) return { seedShares: await storedSeedShares(this.store, ready.head), verified: true };
    const key = headKey(this.name);
    const stored = await this.store.get(key);
    if (stored === null) throw new CoordinatorError("NOT_INITIALIZED", "the store holds no state for this Coordinator");
    return { seedShares: await storedSeedShares(this.store, parseHead(stored, key)), verified: false };
  }

  /** The verified history with exact bytes; every object is re-read and checked against its hash. */
  history(): Promise<HistoryView> {
    return historyView(this.store, this.name, this.requireReady());
  }

  /**
   * What issuance takes its state from: the newest ready state once every head read is settled (a
   * newer head read but not loaded is loaded first), and whether a state is still the newest seen.
   */
  private readonly issuing: IssuingState = {
    newest: async () => {
      if (this.follower !== null) {
        await this.follower.settled();
        if (this.follower.behind) await this.follow();
        if (this.follower.behind) {
          throw new CoordinatorError("STORE_UNAVAILABLE", "a newer head was read from the store but could not be loaded yet; retry");
        }
      }
      return this.requireReady();
    },
    isNewest: (ready) => this.state === "ready" && this.ready === ready && (this.follower?.quiet ?? true),
  };

  /** Issues a mesh certificate to an attested workload whose policy is in the current manifest. */
  issueMeshCertificate(input: { publicKey: Uint8Array; evidence: unknown }): Promise<MeshCertificate> {
    return issueMeshCertificate(this.issuing, this.validators, input, this.now(), this.nonces);
  }

  /**
   * A fresh attestation nonce for a workload (good for 5 minutes, once); only when ready, since
   * nothing could be issued otherwise.
   */
  attestationNonce(): Promise<string> {
    this.requireReady();
    return this.nonces.issue();
  }

  /** One snapshot for the Coordinator's own evidence: name, state and the verified state it holds (ready or stale), else null. */
  attestedState(): { name: string; state: CoordinatorState; held: HeldState | null } {
    const ready = this.state === "ready" || this.state === "stale" ? this.ready : null;
    // The CA objects are stored under the SHA-256 of their DER: their store hashes are what is bound.
    const held = ready === null ? null : { latestTransition: ready.head.latestTransition, rootCA: ready.rootCA.hash, meshCA: ready.meshCA.hash };
    return { name: this.name, state: this.state, held };
  }
}

/** Decodes base64 request fields, mapping failures to INVALID_REQUEST. */
export function decodeBase64Field(value: string, field: string): Uint8Array {
  try {
    return fromBase64(value);
  } catch {
    throw new CoordinatorError("INVALID_REQUEST", `${field} is not valid base64`);
  }
}
