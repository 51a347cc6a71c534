// Recovering from a peer replica instead of the owners: attest the ready peers, present this process's own evidence for a peer's nonce, open the root seed sealed to its HPKE key, and adopt the stored head only if no attested peer knows a newer one (freshness).
import { bytesEqual, fromBase64, fromHex, toBase64, toHex } from "../encoding.js";
import { randomBytes } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import { coordinatorNonceLength, coordinatorReportData } from "../attestation/coordinator-evidence.js";
import type { HeldState } from "../attestation/coordinator-evidence.js";
import { coordinatorReferenceOrNull, verifyCoordinatorEvidence } from "../attestation/coordinator-verify.js";
import type { CoordinatorReference } from "../attestation/coordinator-verify.js";
import type { AttestationRoots } from "../attestation/modes.js";
import { headKey, parseHead } from "../history/head.js";
import { getObject, kinds } from "../history/objects.js";
import { decodeTransition } from "../history/transition.js";
import { StoreError } from "../storage/store.js";
import type { Store } from "../storage/store.js";
import type { Coordinator, RootSeed } from "./coordinator.js";
import { peerSeedInfo } from "./peer-seed.js";
import type { PeerDirectory } from "./peers.js";
import type { Ready } from "./ready.js";
import { saltLength } from "./recovery.js";
import type { SelfAttestation } from "./self-attestation.js";

/** How long one request to a peer may take. */
export const defaultPeerRequestTimeoutMs = 5_000;

/** How long a ready peer seen in a round counts (owners' recover is PEERS_READY meanwhile, unless forced). */
export const readyPeerWindowMs = 10_000;

/** The fetch a requester uses to reach its peers (global fetch on every runtime; an app's request in tests). */
export type PeerFetch = (url: string, init: RequestInit) => Promise<Response>;

/** Why one peer could not serve this round: the peer's error code, or one of UNREACHABLE, BAD_RESPONSE, NOT_READY, WRONG_NAME, SEALED_SEED_INVALID, ATTESTATION_FAILED (its evidence did not verify here), PEERS_UNLISTED (the directory failed). */
export interface PeerFailure {
  peer: string;
  code: string;
  message: string;
  /** The verifier's reason behind ATTESTATION_FAILED. */
  reason?: string;
}

/** A ready peer last seen attested. */
export interface ReadyPeer {
  peer: string;
  /** When (ms since the epoch). */
  at: number;
  latestTransition: string;
}

/** What one round did. */
export type PeerRoundOutcome =
  /** Not recovery-required: nothing to do. */
  | { kind: "not-needed" }
  /** The stored manifest names no coordinator policy (or cannot be read), so no peer can be attested. */
  | { kind: "no-reference"; message: string }
  /** No peer answered ready with evidence that verified. */
  | { kind: "no-ready-peer"; failures: PeerFailure[] }
  /** A ready peer exists, but this process has no evidence source to present (`--evidence none`). */
  | { kind: "no-evidence"; peer: string }
  /** Recovered: ready at the stored head. */
  | { kind: "recovered"; peer: string; generation: number; latestTransition: string }
  /** The stored head was refused: an attested peer holds a transition it does not contain (a rollback). */
  | { kind: "refused"; peer: string; code: ErrorCode; message: string }
  /** Every ready peer failed to hand over a seed that verifies the stored head. */
  | { kind: "failed"; failures: PeerFailure[] };

/** What a requester needs. */
export interface PeerRecoveryDeps {
  coordinator: Coordinator;
  /** The same store the Coordinator uses (read only here: the stored manifest's coordinator reference). */
  store: Store;
  directory: PeerDirectory;
  /** This process's HPKE key and evidence source; without a source it cannot request a seed. */
  self: SelfAttestation | null;
  /** Pinned roots instead of AMD's and Intel's (`--attestation-roots`). */
  roots?: AttestationRoots;
  fetch?: PeerFetch;
  now?: () => Date;
  requestTimeoutMs?: number;
}

/** A peer whose evidence verified, with the held state it binds. */
interface AttestedPeer {
  peer: string;
  /** Informative (not bound): `ready` or `stale`. */
  state: string;
  held: HeldState;
}

class PeerFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }
}

/**
 * The coordinator reference of the newest manifest in the store: head → latest transition →
 * manifest, each checked against its hash but not verified (nothing is before recovery). Null when
 * that manifest names no coordinator policy.
 */
export async function storedCoordinatorReference(store: Store, name: string): Promise<CoordinatorReference | null> {
  return (await readStored(store, name)).reference;
}

async function readStored(store: Store, name: string): Promise<{ head: Uint8Array; reference: CoordinatorReference | null }> {
  const key = headKey(name);
  const bytes = await store.get(key);
  if (bytes === null) throw new CoordinatorError("NOT_INITIALIZED", "the store holds no head for this Coordinator");
  const head = parseHead(bytes, key);
  const { manifestHash } = decodeTransition(await getObject(store, kinds.transition, head.latestTransition));
  const hash = toHex(manifestHash);
  const reference = coordinatorReferenceOrNull(await getObject(store, kinds.manifest, hash), `the stored manifest ${hash} (unverified before recovery)`);
  return { head: bytes, reference };
}

/**
 * A replica's way back from recovery-required through its peers. Each round: the coordinator
 * reference of the stored manifest; every listed peer's evidence for a fresh nonce of this process,
 * verified to the pinned roots (a peer counts when it binds a held state under this name); then, from
 * the first ready peer, its nonce, this process's evidence for it, and the root seed sealed to this
 * process's HPKE key; finally the Coordinator verifies the stored head with that seed and loads it,
 * unless the seed does not derive the root CA the peer attested, or some attested peer holds a
 * transition the stored history does not contain (ROLLBACK_DETECTED: it stays recovery-required; while
 * the store holds the same head and the peers the same transitions, later rounds fetch no seed again).
 */
export class PeerRecovery {
  private readonly fetch: PeerFetch;
  private readonly now: () => Date;
  private readonly timeoutMs: number;
  private lastReady: ReadyPeer | null = null;
  /**
   * The last refusal of the stored head as a rollback: while the store holds the same head bytes and
   * the attested peers the same transitions, the answer is the same, so no seed is fetched again.
   */
  private lastRollback: { head: Uint8Array; peers: string; outcome: PeerRoundOutcome & { kind: "refused" } } | null = null;

  constructor(private readonly deps: PeerRecoveryDeps) {
    this.fetch = deps.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.now = deps.now ?? (() => new Date());
    this.timeoutMs = deps.requestTimeoutMs ?? defaultPeerRequestTimeoutMs;
  }

  /** The ready peer seen attested in a round within the last 10 s, or null. */
  readyPeer(): ReadyPeer | null {
    const seen = this.lastReady;
    return seen !== null && this.now().getTime() - seen.at <= readyPeerWindowMs ? seen : null;
  }

  /** One round (see the class); never throws for a peer's failure, only reports it. */
  async round(): Promise<PeerRoundOutcome> {
    const { coordinator } = this.deps;
    if (coordinator.currentState !== "recovery-required") return { kind: "not-needed" };
    let reference: CoordinatorReference | null;
    let storedHead: Uint8Array;
    try {
      ({ reference, head: storedHead } = await readStored(this.deps.store, coordinator.name));
    } catch (err) {
      return { kind: "no-reference", message: `the stored manifest cannot be read: ${(err as Error).message}` };
    }
    if (reference === null) {
      return { kind: "no-reference", message: 'the stored manifest names no policy with Role "coordinator", so no peer can be attested' };
    }
    let urls: string[];
    try {
      urls = await this.deps.directory.list();
    } catch (err) {
      return { kind: "no-ready-peer", failures: [{ peer: this.deps.directory.description, code: "PEERS_UNLISTED", message: (err as Error).message }] };
    }
    const failures: PeerFailure[] = [];
    const attested: AttestedPeer[] = [];
    await Promise.all(
      urls.map(async (peer) => {
        try {
          const found = await this.attest(peer, reference);
          if (found !== null) attested.push(found);
        } catch (err) {
          failures.push(failureOf(peer, err));
        }
      }),
    );
    const ready = urls.map((u) => attested.find((a) => a.peer === u && a.state === "ready")).filter((a) => a !== undefined);
    if (ready.length === 0) return { kind: "no-ready-peer", failures };
    this.lastReady = { peer: ready[0]!.peer, at: this.now().getTime(), latestTransition: ready[0]!.held.latestTransition };
    const self = this.deps.self;
    if (self === null || self.source === null) return { kind: "no-evidence", peer: ready[0]!.peer };
    const known = attested.map((a) => `${a.held.rootCA}:${a.held.latestTransition}`).sort().join(" ");
    const memo = this.lastRollback;
    if (memo !== null && memo.peers === known && bytesEqual(memo.head, storedHead)) return memo.outcome;
    this.lastRollback = null;

    for (const peer of ready) {
      let rootSeed: RootSeed;
      try {
        rootSeed = await this.fetchSeed(peer.peer, self);
      } catch (err) {
        failures.push(failureOf(peer.peer, err));
        continue;
      }
      try {
        const adopted = await coordinator.adoptRootSeed(rootSeed, (loaded) => acceptFresh(loaded, peer, attested));
        if (!adopted) return { kind: "not-needed" };
        const status = coordinator.status();
        return { kind: "recovered", peer: peer.peer, generation: status.generation ?? 0, latestTransition: status.latestTransition ?? "" };
      } catch (err) {
        if (err instanceof CoordinatorError && err.code === "ROLLBACK_DETECTED") {
          const outcome = { kind: "refused" as const, peer: peer.peer, code: err.code, message: err.message };
          this.lastRollback = { head: storedHead, peers: known, outcome };
          return outcome;
        }
        if (err instanceof StoreError) return { kind: "failed", failures: [...failures, { peer: peer.peer, code: "STORE_UNAVAILABLE", message: err.message }] };
        failures.push(failureOf(peer.peer, err));
      } finally {
        rootSeed.seed.fill(0);
      }
    }
    return { kind: "failed", failures };
  }

  /** GET /v1/attestation for a fresh nonce, verified; null for this process itself. */
  private async attest(peer: string, reference: CoordinatorReference): Promise<AttestedPeer | null> {
    const nonce = randomBytes(coordinatorNonceLength);
    const { status, body } = await this.request(peer, "GET", `/v1/attestation?nonce=${toHex(nonce)}`);
    if (status !== 200) throw peerError(peer, status, body);
    const verified = await verifyCoordinatorEvidence(body, {
      nonce,
      reference,
      ...(this.deps.roots === undefined ? {} : { roots: this.deps.roots }),
      now: this.now(),
    });
    const self = this.deps.self;
    if (self !== null && bytesEqual(verified.hpkePublicKey, self.hpke.publicKey)) return null;
    if (verified.name !== this.deps.coordinator.name) {
      throw new PeerFailed("WRONG_NAME", `${peer} is Coordinator ${JSON.stringify(verified.name)}, not ${JSON.stringify(this.deps.coordinator.name)}`);
    }
    const state = (body as { state: string }).state;
    if (verified.state === null) throw new PeerFailed("NOT_READY", `${peer} holds no state (${state})`);
    return { peer, state, held: verified.state };
  }

  /** Steps 2–5 of the protocol with one attested ready peer: its nonce, this process's evidence, the sealed root seed, opened. */
  private async fetchSeed(peer: string, self: SelfAttestation): Promise<RootSeed> {
    const name = this.deps.coordinator.name;
    const challenge = await this.request(peer, "POST", "/v1/peers/seed", {});
    const nonceHex = (challenge.body as { nonce?: unknown } | undefined)?.nonce;
    if (challenge.status !== 401 || typeof nonceHex !== "string" || !/^[0-9a-f]{64}$/.test(nonceHex)) throw peerError(peer, challenge.status, challenge.body);
    const nonce = fromHex(nonceHex);
    const reportData = await coordinatorReportData({ nonce, hpkePublicKey: self.hpke.publicKey, name, state: null });
    const evidence = await self.source!.evidence(reportData);
    const answer = await this.request(peer, "POST", "/v1/peers/seed", { nonce: nonceHex, hpkePublicKey: toBase64(self.hpke.publicKey), evidence });
    if (answer.status !== 200) throw peerError(peer, answer.status, answer.body);
    const { enc, ciphertext } = (answer.body ?? {}) as { enc?: unknown; ciphertext?: unknown };
    if (typeof enc !== "string" || typeof ciphertext !== "string") throw new PeerFailed("BAD_RESPONSE", `${peer} answered without enc and ciphertext`);
    let plain: Uint8Array;
    try {
      plain = await self.hpke.open(fromBase64(enc), fromBase64(ciphertext), peerSeedInfo(name, nonce));
    } catch {
      throw new PeerFailed("SEALED_SEED_INVALID", `the root seed from ${peer} does not open with this process's HPKE key (changed on the way, or sealed for another nonce or name)`);
    }
    if (plain.length < saltLength + 32) throw new PeerFailed("SEALED_SEED_INVALID", `the root seed from ${peer} has ${plain.length} bytes`);
    const rootSeed = { salt: plain.slice(0, saltLength), seed: plain.slice(saltLength) };
    plain.fill(0);
    return rootSeed;
  }

  private async request(peer: string, method: "GET" | "POST", path: string, payload?: unknown): Promise<{ status: number; body: unknown }> {
    let res: Response;
    try {
      res = await this.fetch(peer + path, {
        method,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(payload === undefined ? {} : { body: JSON.stringify(payload), headers: { "content-type": "application/json" } }),
      });
    } catch (err) {
      throw new PeerFailed("UNREACHABLE", `${peer}: ${(err as Error).message}`);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    return { status: res.status, body };
  }
}

/** The peer's error answer as a failure. */
function peerError(peer: string, status: number, body: unknown): PeerFailed {
  const error = (body as { error?: { code?: unknown; message?: unknown; reason?: unknown } } | undefined)?.error;
  if (typeof error?.code === "string") {
    return new PeerFailed(error.code, `${peer} answered ${status}: ${String(error.message)}`, typeof error.reason === "string" ? error.reason : undefined);
  }
  return new PeerFailed("BAD_RESPONSE", `${peer} answered ${status} without an error code`);
}

function failureOf(peer: string, err: unknown): PeerFailure {
  if (err instanceof PeerFailed) return { peer, code: err.code, message: err.message, ...(err.reason === undefined ? {} : { reason: err.reason }) };
  if (err instanceof CoordinatorError) return { peer, code: err.code, message: err.message, ...(err.reason === undefined ? {} : { reason: err.reason }) };
  return { peer, code: "INTERNAL", message: String(err) };
}

/**
 * The checks before a state loaded with a peer's seed is served: the seed must derive the root CA
 * the serving peer attested (else someone else's seed was sealed to this process's key), and every
 * attested peer of the same root CA must hold a transition of the loaded history: a peer that holds
 * one the store's history lacks has seen a newer head than the store holds (a rollback).
 */
function acceptFresh(loaded: Ready, from: AttestedPeer, attested: readonly AttestedPeer[]): void {
  if (loaded.rootCA.hash !== from.held.rootCA) {
    throw new CoordinatorError(
      "ATTESTATION_FAILED",
      `the seed from ${from.peer} derives root CA ${loaded.rootCA.hash}, but the peer attested root CA ${from.held.rootCA}: not the peer's seed`,
      { reason: "PEER_SEED_MISMATCH" },
    );
  }
  const transitions = new Set(loaded.history.map((entry) => entry.transition));
  for (const peer of attested) {
    if (peer.held.rootCA !== loaded.rootCA.hash || transitions.has(peer.held.latestTransition)) continue;
    throw new CoordinatorError(
      "ROLLBACK_DETECTED",
      `the store holds an older head than a peer: rollback refused (the stored head is generation ${loaded.head.generation}, transition ` +
        `${loaded.head.latestTransition}; ${peer.peer} holds transition ${peer.held.latestTransition}, which the stored history does not contain)`,
    );
  }
}
