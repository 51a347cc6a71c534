// The history as data owners verify it: every manifest and policy with its exact bytes, re-read and checked against the hash the verified history index lists for it.
import { getObject, kinds } from "../history/objects.js";
import type { Store } from "../storage/store.js";
import type { Ready } from "./ready.js";

/** The history as `GET /v1/manifests` returns it: exact bytes, oldest first. */
export interface HistoryView {
  name: string;
  generation: number;
  latestTransition: string;
  transitions: string[];
  manifests: Uint8Array[];
  policies: Map<string, Uint8Array>;
  rootCA: string;
  meshCA: string;
  intermediateCA: string;
  transactionSigner: string;
  head: Uint8Array;
}

/**
 * The verified history with exact bytes; every manifest and policy is re-read and checked against the
 * hash the ready state holds (from the head's index, which recovery verified), so a missing or changed
 * one is STATE_CORRUPT naming its key and never served. Transitions are served as those hashes.
 */
export async function historyView(store: Store, name: string, ready: Ready): Promise<HistoryView> {
  const manifests: Uint8Array[] = [];
  const policies = new Map<string, Uint8Array>();
  for (const entry of ready.history) {
    manifests.push(await getObject(store, kinds.manifest, entry.manifest));
    for (const policy of entry.policies) {
      if (!policies.has(policy)) policies.set(policy, await getObject(store, kinds.policy, policy));
    }
  }
  return {
    name: name,
    generation: ready.head.generation,
    latestTransition: ready.head.latestTransition,
    transitions: ready.history.map((e) => e.transition),
    manifests,
    policies: new Map([...policies.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    rootCA: ready.rootCA.pem,
    meshCA: ready.meshCA.pem,
    intermediateCA: ready.intermediateCA.pem,
    transactionSigner: ready.transactionSigner.pem,
    head: ready.headBytes,
  };
}
