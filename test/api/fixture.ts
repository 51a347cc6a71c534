// Shared setup of the in-process API tests: owner keys, and a Coordinator with its app in a chosen state.
import type { Hono } from "hono";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import type { Validators } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import type { Store } from "../../src/storage/store.js";
import type { Storage } from "unstorage";
import { firstSetBody, manifestBytes, policy, post, recoverBody, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";

/** The Coordinator name every fixture uses. */
export const coordinatorName = "test-coordinator";

/** The states a fixture can be put in. */
export type FixtureState = "uninitialized" | "ready" | "recovery-required" | "stale";

/** The owner keys one test file shares (RSA generation is slow: make them once, in beforeAll). */
export interface Owners {
  seed: Awaited<ReturnType<typeof seedShareOwner>>;
  workload: Awaited<ReturnType<typeof workloadOwner>>;
}

/** Makes one seed-share owner and one workload owner. */
export async function makeOwners(): Promise<Owners> {
  const [seed, workload] = await Promise.all([seedShareOwner(), workloadOwner()]);
  return { seed, workload };
}

/** A policy with the name its manifest entry uses (SANs `name`, `name.default.svc`; WorkloadSecretID `name`). */
export interface NamedPolicy {
  name: string;
  bytes: Uint8Array;
  hash: string;
}

/** A named policy. */
export async function namedPolicy(name: string, text = `policy of ${name}`): Promise<NamedPolicy> {
  return { name, ...(await policy(text)) };
}

/** Manifest bytes over named policies, with the fixture's owners unless overridden. */
export function manifestOf(
  owners: Owners,
  policies: NamedPolicy[],
  opts: { workloadOwners?: string[]; seedShareOwners?: string[] } = {},
): Uint8Array {
  return manifestBytes({
    policies,
    workloadOwners: opts.workloadOwners ?? [owners.workload.digest],
    seedShareOwners: opts.seedShareOwners ?? [owners.seed.publicHex],
  });
}

/** A JSON answer of the app. */
export interface Answer {
  status: number;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  headers: Headers;
}

/** Sends a request to the app and reads the answer (json is undefined if the body is not JSON). */
export async function call(app: Hono, path: string, init?: RequestInit): Promise<Answer> {
  const res = await app.request(path, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

/** GET path. */
export function get(app: Hono, path: string): Promise<Answer> {
  return call(app, path);
}

/** POST a JSON body to path. */
export function postJson(app: Hono, path: string, body: unknown): Promise<Answer> {
  return call(app, path, post(body));
}

/** What the outside can see of a Coordinator: status, history answer (or its error) and the store's keys. */
export interface Snapshot {
  status: string;
  manifests: { status: number; text: string };
  keys: string[];
}

/** Takes a snapshot of an app and its store. */
export async function snapshot(app: Hono, store?: Store & { storage: Storage }): Promise<Snapshot> {
  const status = await get(app, "/v1/status");
  const manifests = await get(app, "/v1/manifests");
  const keys = store === undefined ? [] : (await store.storage.getKeys()).sort();
  return { status: status.text, manifests: { status: manifests.status, text: manifests.text }, keys };
}

/** A Coordinator with its app, store and what it took to get there. */
export interface Fixture {
  state: FixtureState;
  store: Store & { storage: Storage };
  coordinator: Coordinator;
  app: Hono;
  owners: Owners;
  policies: NamedPolicy[];
  /** The manifest of the first set (absent when uninitialized). */
  manifest: Uint8Array | undefined;
  /** The seed-share document of the first set (absent when uninitialized). */
  seedShares: SeedShareDocument | undefined;
  /** The recover body with the right seed (absent when uninitialized). */
  recover: { share: string; salt: string } | undefined;
  /** The latest transition this fixture's app knows (absent when uninitialized). */
  transition: string | undefined;
  /** What owners' statements name (absent when uninitialized). */
  ref: CoordinatorRef | undefined;
  /** In state stale: the second Coordinator on the same store, which moved the head. */
  peer: { coordinator: Coordinator; app: Hono; transition: string } | undefined;
}

/** Options of a fixture. */
export interface FixtureOptions {
  validators?: Validators;
  workloadOwners?: string[];
  policies?: NamedPolicy[];
}

/** The validators the fixtures enable by default: only the insecure simulated one. */
export function simulated(): Validators {
  return new Map([["insecure-simulated", simulatedValidator]]);
}

/** Starts a Coordinator (and its app) on a store, as a process restart would. */
export async function start(store: Store, validators: Validators = simulated()): Promise<{ coordinator: Coordinator; app: Hono }> {
  const coordinator = await Coordinator.start({ store, name: coordinatorName, validators });
  return { coordinator, app: createApp({ coordinator }) };
}

function expectOk(answer: Answer, what: string): void {
  if (answer.status !== 200) throw new Error(`fixture: ${what} answered ${answer.status} ${answer.text}`);
}

/**
 * A Coordinator in the chosen state on a fresh memory store:
 * uninitialized (nothing set); ready (first set done); recovery-required (first set, then a new
 * Coordinator.start on the same store); stale (two Coordinators on one store: the second recovers and
 * updates, then the first one's update hits the compare-and-swap conflict).
 */
export async function fixture(state: FixtureState, owners: Owners, opts: FixtureOptions = {}): Promise<Fixture> {
  const validators = opts.validators ?? simulated();
  const store = createStore(memoryDriver());
  const policies = opts.policies ?? [await namedPolicy("web"), await namedPolicy("db")];
  const first = await start(store, validators);
  const base: Fixture = {
    state,
    store,
    ...first,
    owners,
    policies,
    manifest: undefined,
    seedShares: undefined,
    recover: undefined,
    transition: undefined,
    ref: undefined,
    peer: undefined,
  };
  if (state === "uninitialized") return base;

  const manifest = manifestOf(owners, policies, opts.workloadOwners === undefined ? {} : { workloadOwners: opts.workloadOwners });
  const set = await postJson(first.app, "/v1/manifest", firstSetBody(manifest, policies.map((p) => p.bytes)));
  expectOk(set, "first set");
  const seedShares = set.json.seedShares as SeedShareDocument;
  const recover = await recoverBody(seedShares, owners.seed.keys.privateKey);
  const ref: CoordinatorRef = { name: coordinatorName, rootCA: set.json.rootCA as string };
  const ready: Fixture = { ...base, manifest, seedShares, recover, transition: set.json.transition as string, ref };
  if (state === "ready") return ready;

  const second = await start(store, validators);
  if (state === "recovery-required") return { ...ready, ...second };

  // stale: the second Coordinator recovers and updates; the first one's update then conflicts.
  expectOk(await postJson(second.app, "/v1/recover", recover), "peer recovery");
  const extra = await namedPolicy("cache");
  const next = manifestOf(owners, [...policies, extra]);
  const peerUpdate = await postJson(
    second.app,
    "/v1/manifest",
    await updateBody(next, [...policies, extra].map((p) => p.bytes), ready.transition!, owners.workload, ref),
  );
  expectOk(peerUpdate, "peer update");
  const other = manifestOf(owners, policies.slice(0, 1));
  const conflicting = await postJson(
    first.app,
    "/v1/manifest",
    await updateBody(other, policies.slice(0, 1).map((p) => p.bytes), ready.transition!, owners.workload, ref),
  );
  if (conflicting.status !== 409 || conflicting.json?.error?.code !== "STALE") {
    throw new Error(`fixture: the conflicting update answered ${conflicting.status} ${conflicting.text}`);
  }
  return { ...ready, peer: { ...second, transition: peerUpdate.json.transition as string } };
}
