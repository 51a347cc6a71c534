// The Coordinator's state machine (uninitialized, recovery-required, ready, stale) and its operations.
import { bytesEqual, fromBase64, fromHex, toHex } from "../encoding.js";
import {
  createMeshCA,
  createRootCertificate,
  createTransactionSignerCertificate,
  domainMessage,
  issueLeafDer,
  subjectKeyId,
  toPem,
} from "../crypto/ca.js";
import type { CertifiedKey } from "../crypto/ca.js";
import { randomBytes, subtle } from "../crypto/provider.js";
import { seal } from "../crypto/sealed.js";
import { SeedEngine } from "../crypto/seedengine.js";
import { combineShares, shareCommitment } from "../crypto/seedshares.js";
import type { SeedShareDocument } from "../crypto/seedshares.js";
import { validatorFor } from "../attestation/validator.js";
import type { Validators } from "../attestation/validator.js";
import { CoordinatorError } from "../errors.js";
import { headKey, parseHead, signHead } from "../history/head.js";
import type { Head } from "../history/head.js";
import { getObject, kinds, putObject } from "../history/objects.js";
import { encodeTransition, transitionHash, zeroHash } from "../history/transition.js";
import { keyDigest, readManifest } from "../manifest/manifest.js";
import { generalName } from "../manifest/san.js";
import type { ManifestDocument } from "../manifest/manifest.js";
import { StoreError, contentVersion } from "../storage/store.js";
import type { Store } from "../storage/store.js";
import { loadReady, meshKeyIdentity, sealingKey, storedCertificate } from "./ready.js";
import {
  defaultRecoveryTimeoutMs,
  freshRecoverySeed,
  newRecovery,
  openRootSeed,
  RecoveryAttempt,
  recoverySeedLength,
  saltLength,
  sameOwners,
} from "./recovery.js";
import type { Ready } from "./ready.js";

/** The states of DESIGN G6. */
export type CoordinatorState = "uninitialized" | "recovery-required" | "ready" | "stale";

/** The domain-separation tag of a workload owner's update signature over the new transition hash. */
export const updateSignatureTag = "CONTRAST COORDINATOR MANIFEST UPDATE v1";

/** The message a workload owner signs to update: tag, zero byte, the 32-byte new transition hash. */
export function updateMessage(newTransition: Uint8Array): Uint8Array {
  return domainMessage(updateSignatureTag, newTransition);
}

/** What the Coordinator needs from its surroundings. */
export interface CoordinatorDeps {
  store: Store;
  name: string;
  validators: Validators;
  now?: () => Date;
  /** How long shares of an unfinished recovery are kept (default 10 minutes). */
  recoveryTimeoutMs?: number;
}

/** A `set` request, decoded. */
export interface SetManifestInput {
  manifest: Uint8Array;
  policies: Uint8Array[];
  previousTransition?: string | undefined;
  signature?: { publicKey: Uint8Array; value: Uint8Array } | undefined;
}

/** The result of a `set`. */
export interface SetManifestResult {
  transition: string;
  generation: number;
  rootCA: string;
  meshCA: string;
  seedShares?: SeedShareDocument;
}

/** Recovery progress, as status and recover report it; `nonce` names the current attempt (null: none yet). */
export interface RecoveryProgress {
  threshold: number;
  received: number;
  nonce: string | null;
}

/** The Coordinator's status. */
export interface Status {
  state: CoordinatorState;
  name: string;
  generation: number | null;
  latestTransition: string | null;
  recovery: RecoveryProgress | null;
}

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

/** A mesh certificate and what comes with it. */
export interface MeshCertificate {
  certChain: string;
  meshCA: string;
  rootCA: string;
  workloadSecret: string;
  workloadSecretID: string;
  policyHash: string;
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
  private readonly recoveryTimeoutMs: number;
  private state: CoordinatorState;
  private ready: Ready | null = null;
  /** The threshold of the head last read while not ready (unverified: for display). */
  private threshold: number;
  private attempt: RecoveryAttempt | null = null;

  private constructor(deps: CoordinatorDeps, state: CoordinatorState, threshold: number) {
    this.name = deps.name;
    this.store = deps.store;
    this.validators = deps.validators;
    this.now = deps.now ?? (() => new Date());
    this.recoveryTimeoutMs = deps.recoveryTimeoutMs ?? defaultRecoveryTimeoutMs;
    this.state = state;
    this.threshold = threshold;
  }

  /** Starts a Coordinator: recovery-required if a head exists for its name, else uninitialized. */
  static async start(deps: CoordinatorDeps): Promise<Coordinator> {
    const stored = await deps.store.get(headKey(deps.name));
    if (stored === null) return new Coordinator(deps, "uninitialized", 1);
    return new Coordinator(deps, "recovery-required", Coordinator.thresholdOf(stored, deps.name));
  }

  /** The threshold of an unverified head, for display only; a malformed head shows 1. */
  private static thresholdOf(stored: Uint8Array, name: string): number {
    try {
      return parseHead(stored, headKey(name)).recovery.threshold;
    } catch {
      return 1;
    }
  }

  /** The current attempt, dropped once it has expired. */
  private currentAttempt(): RecoveryAttempt | null {
    if (this.attempt?.expired(this.now().getTime())) this.dropAttempt();
    return this.attempt;
  }

  private progress(): RecoveryProgress {
    const attempt = this.currentAttempt();
    return { threshold: this.threshold, received: attempt?.shares.size ?? 0, nonce: attempt?.nonce ?? null };
  }

  /** The current state. */
  get currentState(): CoordinatorState {
    return this.state;
  }

  /** State, generation, latest transition and recovery progress. */
  status(): Status {
    const head = this.ready?.head ?? null;
    return {
      state: this.state,
      name: this.name,
      generation: head?.generation ?? null,
      latestTransition: head?.latestTransition ?? null,
      recovery: this.state === "recovery-required" || this.state === "stale" ? this.progress() : null,
    };
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
    const doc = await readManifest(input.manifest);
    const policies = await this.checkPolicies(doc, input.policies);
    const current = this.state === "ready" ? this.ready! : null;

    const previous = current === null ? zeroHash : fromHex(current.head.latestTransition);
    if (current === null && input.previousTransition !== undefined) {
      throw new CoordinatorError("STALE_BASE", "the Coordinator has no manifest yet; the first set names no previous transition");
    }
    if (current !== null && input.previousTransition !== current.head.latestTransition) {
      throw new CoordinatorError(
        "STALE_BASE",
        input.previousTransition === undefined
          ? `the Coordinator already has a manifest; an update must name the transition it builds on (${current.head.latestTransition})`
          : `the update builds on ${input.previousTransition}, but the latest transition is ${current.head.latestTransition}`,
      );
    }
    const newTransition = await transitionHash(doc.hash, previous);
    if (current !== null) await this.authorizeUpdate(current, newTransition, input.signature);

    const now = this.now();
    let engine: SeedEngine;
    let root: CertifiedKey;
    let rootCA: Ready["rootCA"];
    let transactionSigner: Ready["transactionSigner"];
    let seedShares: SeedShareDocument | undefined;
    const threshold = doc.manifest.Threshold ?? 1;
    const owners = doc.manifest.SeedshareOwnerPubKeys;
    let recovery: Head["recovery"];
    if (current === null) {
      const seed = randomBytes(recoverySeedLength);
      const salt = randomBytes(saltLength);
      engine = await SeedEngine.create(seed, salt);
      const rootKeys = { privateKey: engine.rootCAKey.privateKey, publicKey: engine.rootCAKey.publicKey };
      const rootCert = await createRootCertificate(rootKeys, now);
      root = { privateKey: rootKeys.privateKey, certificate: rootCert, keyId: await subjectKeyId(rootKeys.publicKey) };
      const signerCert = await createTransactionSignerCertificate(root, engine.transactionSigningKey.publicKey, now);
      rootCA = storedCertificate(rootCert, await putObject(this.store, kinds.certificate, new Uint8Array(rootCert.rawData)));
      transactionSigner = storedCertificate(
        signerCert,
        await putObject(this.store, kinds.certificate, new Uint8Array(signerCert.rawData)),
      );
      // The first recovery seed is the root seed itself: with threshold 1 every owner holds exactly
      // the seed Contrast would hand out.
      ({ recovery, seedShares } = await newRecovery(engine, seed, salt, owners, threshold, this.name));
    } else {
      ({ engine, root, rootCA, transactionSigner } = current);
      recovery = current.head.recovery;
      if (!sameOwners(current.manifest.SeedshareOwnerPubKeys, current.manifest.Threshold ?? 1, owners, threshold)) {
        // Rotation: a new recovery seed for the new owners; the old shares no longer open the root seed.
        const fresh = freshRecoverySeed();
        ({ recovery, seedShares } = await newRecovery(engine, fresh.seed, fresh.salt, owners, threshold, this.name));
      }
    }

    const mesh = await createMeshCA(root, now);
    const meshCAHash = await putObject(this.store, kinds.certificate, new Uint8Array(mesh.meshCA.rawData));
    const intermediateHash = await putObject(this.store, kinds.certificate, new Uint8Array(mesh.intermediate.rawData));
    const sealing = current?.sealingKey ?? (await sealingKey(engine));
    const sealed = await seal(sealing, mesh.pkcs8, meshKeyIdentity(meshCAHash));
    const meshKeyHash = await putObject(this.store, kinds.sealedKey, sealed);
    for (const [, bytes] of policies) await putObject(this.store, kinds.policy, bytes);
    await putObject(this.store, kinds.manifest, doc.bytes);
    await putObject(this.store, kinds.transition, encodeTransition(doc.hash, previous));

    const head: Head = {
      name: this.name,
      generation: (current?.head.generation ?? 0) + 1,
      latestTransition: toHex(newTransition),
      objects: {
        rootCA: rootCA.hash,
        transactionSigner: transactionSigner.hash,
        meshCA: meshCAHash,
        intermediateCA: intermediateHash,
        meshCAKey: meshKeyHash,
      },
      recovery,
    };
    const signed = await signHead(head, engine.transactionSigningKey.privateKey);
    let headVersion: string;
    try {
      headVersion = await this.store.compareAndSwap(headKey(this.name), signed.bytes, current?.headVersion ?? null);
    } catch (err) {
      if (err instanceof StoreError && err.code === "CONFLICT") {
        this.becomeStale(current);
        throw new CoordinatorError("STALE", "the stored state moved under this Coordinator; nothing was changed", {
          cause: err,
        });
      }
      // The write may have reached the store before the failure was reported: then the set happened,
      // and (on a first set) the seed shares must reach the caller, or nobody could recover.
      const landed = await this.store.get(headKey(this.name)).catch(() => null);
      if (landed === null || !bytesEqual(landed, signed.bytes)) throw err;
      headVersion = await contentVersion(signed.bytes);
    }

    const meshPublic = mesh.keys.publicKey;
    this.ready = {
      engine,
      sealingKey: sealing,
      root,
      rootCA,
      transactionSigner,
      mesh: { privateKey: mesh.keys.privateKey, certificate: mesh.intermediate, keyId: await subjectKeyId(meshPublic) },
      meshCA: storedCertificate(mesh.meshCA, meshCAHash),
      intermediateCA: storedCertificate(mesh.intermediate, intermediateHash),
      head: signed.head,
      headBytes: signed.bytes,
      headVersion,
      manifest: doc.manifest,
      history: [
        ...(current?.history ?? []),
        { transition: head.latestTransition, manifest: toHex(doc.hash), policies: [...policies.keys()].sort() },
      ],
    };
    this.state = "ready";
    const result: SetManifestResult = {
      transition: head.latestTransition,
      generation: head.generation,
      rootCA: rootCA.pem,
      meshCA: this.ready.meshCA.pem,
    };
    if (seedShares !== undefined) result.seedShares = seedShares;
    return result;
  }

  private becomeStale(current: Ready | null): void {
    if (current === null) {
      this.state = "recovery-required";
    } else {
      this.state = "stale";
    }
  }

  /** Hashes the policies sent with a manifest: every referenced one present, no stray ones. */
  private async checkPolicies(doc: ManifestDocument, sent: Uint8Array[]): Promise<Map<string, Uint8Array>> {
    const byHash = new Map<string, Uint8Array>();
    for (const bytes of sent) byHash.set(await keyDigest(bytes), bytes);
    for (const hash of byHash.keys()) {
      if (!(hash in doc.manifest.Policies)) {
        throw new CoordinatorError("POLICY_NOT_REFERENCED", `policy ${hash} was sent but the manifest does not reference it`);
      }
    }
    for (const hash of Object.keys(doc.manifest.Policies)) {
      if (!byHash.has(hash)) {
        throw new CoordinatorError("POLICY_MISSING", `the manifest references policy ${hash}, but it was not sent`);
      }
    }
    return byHash;
  }

  private async authorizeUpdate(
    current: Ready,
    newTransition: Uint8Array,
    signature: SetManifestInput["signature"],
  ): Promise<void> {
    const owners = current.manifest.WorkloadOwnerKeyDigests;
    if (owners.length === 0) {
      throw new CoordinatorError("UPDATES_DISABLED", "the current manifest names no workload owner, so it cannot be updated");
    }
    if (signature === undefined) {
      throw new CoordinatorError("UNAUTHORIZED_UPDATE", "an update must be signed by a workload owner of the current manifest");
    }
    if (!owners.includes(await keyDigest(signature.publicKey))) {
      throw new CoordinatorError("UNAUTHORIZED_UPDATE", "the signing key is not a workload owner of the current manifest");
    }
    let valid: boolean;
    try {
      const key = await subtle().importKey(
        "spki",
        signature.publicKey as BufferSource,
        { name: "ECDSA", namedCurve: "P-384" },
        false,
        ["verify"],
      );
      valid = await subtle().verify(
        { name: "ECDSA", hash: "SHA-384" },
        key,
        signature.value as BufferSource,
        updateMessage(newTransition) as BufferSource,
      );
    } catch {
      valid = false;
    }
    if (!valid) {
      throw new CoordinatorError("UNAUTHORIZED_UPDATE", "the signature does not verify over the new transition");
    }
  }

  /**
   * Takes one seed share (with threshold 1: the recovery seed itself). Each share is checked on its
   * own against the head's commitments before it is kept; once `threshold` distinct shares are in,
   * they are combined, the root seed is unsealed, and the whole stored state is verified against it.
   */
  recover(input: { share: Uint8Array; salt: Uint8Array }): Promise<{ state: CoordinatorState; recovery: RecoveryProgress }> {
    return this.writes.run(async () => {
      if (this.state === "uninitialized" || this.state === "ready") {
        throw new CoordinatorError("NOT_IN_RECOVERY", `the Coordinator is ${this.state} and needs no recovery`);
      }
      const key = headKey(this.name);
      const stored = await this.store.getVersioned(key);
      if (stored === null) {
        this.state = "uninitialized";
        this.ready = null;
        this.dropAttempt();
        throw new CoordinatorError("NOT_IN_RECOVERY", "the store holds no state for this Coordinator any more");
      }
      const head = parseHead(stored.value, key);
      if (head.name !== this.name) {
        throw new CoordinatorError("STATE_CORRUPT", `${key} belongs to Coordinator ${JSON.stringify(head.name)}`, { key });
      }
      const r = head.recovery;
      this.threshold = r.threshold;
      let attempt = this.currentAttempt();
      if (attempt !== null && attempt.headVersion !== stored.version) {
        this.dropAttempt();
        attempt = null;
      }

      const corruptHead = (why: string) => new CoordinatorError("STATE_CORRUPT", `${key}: ${why}`, { key });
      // With threshold 1 the share is the recovery seed: if it opens the sealed root seed although the
      // salt or commitment disagree, the owner is right and the head was changed.
      const opensRoot = async () =>
        r.threshold === 1 && (await openRootSeed(input.share, input.salt, r.sealedRootSeed, this.name)) !== null;
      if (!bytesEqual(input.salt, fromHex(r.salt))) {
        if (await opensRoot()) throw corruptHead("the recovery parameters were changed");
        throw new CoordinatorError(
          "SALT_MISMATCH",
          "this share belongs to another deployment, or to seed-share owners that a manifest update replaced",
        );
      }
      const commitment = await shareCommitment(input.salt, input.share);
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
      attempt ??= new RecoveryAttempt(stored.version, this.recoveryTimeoutMs, this.now().getTime());
      if (attempt.shares.has(commitment)) {
        throw new CoordinatorError("SHARE_REPEATED", `this share was already received in attempt ${attempt.nonce}`);
      }
      attempt.shares.set(commitment, input.share.slice());
      this.attempt = attempt;
      if (attempt.shares.size < r.threshold) return { state: this.state, recovery: this.progress() };

      const received = { threshold: r.threshold, received: attempt.shares.size, nonce: attempt.nonce };
      const recoverySeed = await combineShares([...attempt.shares.values()]).catch(() => null);
      this.dropAttempt();
      const rootSeed = recoverySeed && (await openRootSeed(recoverySeed, input.salt, r.sealedRootSeed, this.name));
      if (!rootSeed) throw corruptHead("the shares match their commitments but do not open the sealed root seed");
      const engine = await SeedEngine.create(rootSeed.seed, rootSeed.salt);
      this.ready = await loadReady(this.store, engine, head, stored.value, stored.version, key);
      this.state = "ready";
      return { state: this.state, recovery: received };
    });
  }

  /** Discards the shares of an unfinished recovery; the next share starts a new attempt. */
  resetRecovery(): Promise<RecoveryProgress> {
    return this.writes.run(async () => {
      if (this.state === "uninitialized" || this.state === "ready") {
        throw new CoordinatorError("NOT_IN_RECOVERY", `the Coordinator is ${this.state} and needs no recovery`);
      }
      this.dropAttempt();
      return this.progress();
    });
  }

  private dropAttempt(): void {
    this.attempt?.discard();
    this.attempt = null;
  }

  /** The verified history with exact bytes; every object is re-read and checked against its hash. */
  async history(): Promise<HistoryView> {
    const ready = this.requireReady();
    const manifests: Uint8Array[] = [];
    const policies = new Map<string, Uint8Array>();
    for (const entry of ready.history) {
      manifests.push(await getObject(this.store, kinds.manifest, entry.manifest));
      for (const policy of entry.policies) {
        if (!policies.has(policy)) policies.set(policy, await getObject(this.store, kinds.policy, policy));
      }
    }
    return {
      name: this.name,
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

  /** Issues a mesh certificate to an attested workload whose policy is in the current manifest. */
  async issueMeshCertificate(input: { publicKey: Uint8Array; evidence: unknown }): Promise<MeshCertificate> {
    const ready = this.requireReady();
    const validator = validatorFor(this.validators, input.evidence);
    const publicKey = await importWorkloadKey(input.publicKey);
    const { policyHash } = await validator.validate(input.evidence, input.publicKey);
    const entry = ready.manifest.Policies[policyHash];
    if (entry === undefined) {
      throw new CoordinatorError("POLICY_NOT_IN_MANIFEST", `policy ${policyHash} is not in the current manifest`);
    }
    const leaf = await issueLeafDer(
      ready.mesh,
      {
        publicKey,
        subjectPublicKeyInfo: input.publicKey,
        sans: entry.SANs.map(generalName),
        commonName: entry.SANs[0] ?? policyHash,
      },
      this.now(),
    );
    const secret = await workloadSecret(ready.engine, entry.WorkloadSecretID);
    return {
      certChain: toPem(leaf) + ready.intermediateCA.pem,
      meshCA: ready.meshCA.pem,
      rootCA: ready.rootCA.pem,
      workloadSecret: secret,
      workloadSecretID: entry.WorkloadSecretID,
      policyHash,
    };
  }
}

const curveOids: [string, Uint8Array][] = [
  ["P-384", Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22)],
  ["P-256", Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07)],
];

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Imports a workload's public key (DER SPKI, ECDSA P-256 or P-384); anything else is INVALID_REQUEST. */
async function importWorkloadKey(spki: Uint8Array): Promise<CryptoKey> {
  // The curve's OID picks the import parameters; the import itself checks the whole structure.
  const namedCurve = curveOids.find(([, oid]) => contains(spki.subarray(0, 32), oid))?.[0];
  if (namedCurve !== undefined) {
    try {
      return await subtle().importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve }, true, ["verify"]);
    } catch {
      // fall through to the error below
    }
  }
  throw new CoordinatorError("INVALID_REQUEST", "publicKey must be a DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key");
}

/** Workload secrets by root seed and WorkloadSecretID: deterministic, so derived once. */
const workloadSecrets = new WeakMap<SeedEngine, Map<string, string>>();

async function workloadSecret(engine: SeedEngine, id: string): Promise<string> {
  let cache = workloadSecrets.get(engine);
  if (cache === undefined) workloadSecrets.set(engine, (cache = new Map()));
  let secret = cache.get(id);
  if (secret === undefined) cache.set(id, (secret = toHex(await engine.workloadSecret(id))));
  return secret;
}

/** Decodes base64 request fields, mapping failures to INVALID_REQUEST. */
export function decodeBase64Field(value: string, field: string): Uint8Array {
  try {
    return fromBase64(value);
  } catch {
    throw new CoordinatorError("INVALID_REQUEST", `${field} is not valid base64`);
  }
}
