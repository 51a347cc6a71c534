// Collection of store objects no head needs (left by a set that crashed or lost its compare-and-swap, or superseded by a later set), run after the background audit.
/*
 * What is kept: every object the current head references, as the ready state holds it: the head's
 * objects (certificates, sealed mesh CA key, seed-share document, last index segment), every
 * segment of the history index, and every transition, manifest and policy of the history. Anything
 * else of the object kinds below is garbage: the mesh CA material and index segments of earlier
 * heads, and whatever a set wrote before a head it never wrote. Only stores that can (the fs
 * store, `Store.collectObjects`) collect; on the others this does nothing.
 *
 * How (the store does it, see adapters/node/fs-driver.ts): an object not written for the grace
 * period and not referenced is moved aside, where a read still finds it and moves it back; one that
 * was moved aside a grace period ago and is still not referenced is deleted. `referenced` is asked
 * after the ages were read, and answers only when this Coordinator holds exactly the head that is
 * stored (else nothing happens this time).
 *
 * Why no head ever misses an object, although a set in another process writes its objects first and
 * its head last. Assumption: a set writes, or reads (putObject finds it stored), every object its
 * head references less than a grace period before its head lands, except the objects its base head
 * references (the head stored until its compare-and-swap succeeds; if that head moved, the set writes
 * nothing). A delete runs like this: at t0 the cutoff t0 − grace is fixed; trashed files with a
 * stamp ≤ cutoff are listed; at t2 ≥ t0 the stored head is read and o is not referenced; at t3 the
 * trash entry is renamed away and deleted only if the renamed file's stamp is still ≤ cutoff.
 *  - The head stored at t2 does not reference o. By induction over the heads that land after t2, the
 *    first one to reference o (its base does not) belongs to a set that wrote or read o at some
 *    t_s > t2 − grace ≥ cutoff.
 *  - A write at t_s put a new file in place; a read at t_s either found o in place or moved the trashed
 *    file back (the same inode, so deleting the trash name later removes only a spare name). A file
 *    trashed after t_s is stamped after t_s > cutoff, so the rename-and-check at t3 puts it back.
 *  - Hence the file deleted at t3 is never the one that head reads.
 * A set that stalls for longer than the grace period between its objects and its head (a process
 * frozen mid-set for an hour) is what the assumption excludes; a set takes milliseconds.
 */
import { bytesEqual } from "../encoding.js";
import { headKey } from "../history/head.js";
import { kinds } from "../history/objects.js";
import type { CollectReport, Store } from "../storage/store.js";
import type { Ready } from "./ready.js";

/** The object kinds collected: those whose references a ready state knows all of. */
export const collectedKinds: readonly string[] = [
  kinds.certificate,
  kinds.sealedKey,
  kinds.seedShares,
  kinds.policy,
  kinds.manifest,
  kinds.transition,
  kinds.history,
];

/** Default grace period: an object younger than this is never set aside, one set aside for less is never deleted. */
export const defaultCollectGraceMs = 60 * 60 * 1000;
/** Default time between two collections run after audits. */
export const defaultCollectIntervalMs = 10 * 60 * 1000;

/** Settings of collection after audits (CoordinatorDeps.collect). */
export interface CollectOptions {
  graceMs?: number;
  intervalMs?: number;
}

/** What a collection did, or why it did nothing. */
export type CollectOutcome =
  | { kind: "collected"; report: CollectReport }
  | { kind: "skipped"; reason: "unsupported" | "not-ready" | "behind" | "not-due" | "running" }
  | { kind: "failed"; message: string };

/** The hashes of every object a ready state references (an object key `kind:hash` is kept iff its hash is here). */
export function referencedHashes(ready: Ready): Set<string> {
  const hashes = new Set<string>();
  for (const hash of Object.values(ready.head.objects)) if (typeof hash === "string") hashes.add(hash);
  for (const segment of ready.index ?? []) hashes.add(segment.hash);
  for (const entry of ready.history) {
    hashes.add(entry.transition);
    hashes.add(entry.manifest);
    for (const policy of entry.policies) hashes.add(policy);
  }
  return hashes;
}

/**
 * Collects the objects of `store` that no head needs (see the top of this file). `ready` is asked for
 * the Coordinator's ready state when the references are needed; it must hold the stored head then,
 * else nothing is collected ("behind").
 */
export async function collectGarbage(
  store: Store,
  name: string,
  ready: () => Ready | null,
  options: { graceMs: number; now?: number },
): Promise<CollectOutcome> {
  if (store.collectObjects === undefined) return { kind: "skipped", reason: "unsupported" };
  let behind = false;
  try {
    const report = await store.collectObjects({
      kinds: collectedKinds,
      graceMs: options.graceMs,
      ...(options.now === undefined ? {} : { now: options.now }),
      referenced: async () => {
        const held = ready();
        const stored = await store.get(headKey(name));
        if (held === null || stored === null || !bytesEqual(stored, held.headBytes)) {
          behind = true;
          return null;
        }
        const hashes = referencedHashes(held);
        return (key) => hashes.has(key.slice(key.indexOf(":") + 1));
      },
    });
    if (report.skipped) return { kind: "skipped", reason: behind ? "behind" : "not-ready" };
    return { kind: "collected", report };
  } catch (err) {
    return { kind: "failed", message: err instanceof Error ? err.message : String(err) };
  }
}

/** Runs collections after audits, at most one at a time and one per interval. */
export class Collector {
  private readonly graceMs: number;
  private readonly intervalMs: number;
  private last = Number.NEGATIVE_INFINITY;
  private running = false;

  constructor(options: CollectOptions = {}) {
    this.graceMs = options.graceMs ?? defaultCollectGraceMs;
    this.intervalMs = options.intervalMs ?? defaultCollectIntervalMs;
  }

  /** Collects if the interval has passed since the last collection (`force`: regardless, with `graceMs`/`now` if given). */
  async run(
    store: Store,
    name: string,
    ready: () => Ready | null,
    now: number,
    force?: { graceMs?: number; now?: number },
  ): Promise<CollectOutcome> {
    if (this.running) return { kind: "skipped", reason: "running" };
    if (force === undefined && now - this.last < this.intervalMs) return { kind: "skipped", reason: "not-due" };
    this.running = true;
    try {
      const outcome = await collectGarbage(store, name, ready, {
        graceMs: force?.graceMs ?? this.graceMs,
        ...(force?.now === undefined ? {} : { now: force.now }),
      });
      if (outcome.kind !== "failed") this.last = now;
      return outcome;
    } finally {
      this.running = false;
    }
  }
}
