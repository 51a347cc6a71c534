// Setting a manifest: the first set makes the root of trust; an update, once authorized, builds on the latest transition (objects first, the head last).
import { bytesEqual, fromHex, toHex } from "../encoding.js";
import { createMeshCA, createRootCertificate, createTransactionSignerCertificate, subjectKeyId } from "../crypto/ca.js";
import type { CertifiedKey } from "../crypto/ca.js";
import { randomBytes, sha256 } from "../crypto/provider.js";
import { seal } from "../crypto/sealed.js";
import { SeedEngine } from "../crypto/seedengine.js";
import { seedShareBytes } from "../crypto/seedshares.js";
import type { SeedShareDocument } from "../crypto/seedshares.js";
import { CoordinatorError } from "../errors.js";
import { headKey, signHead } from "../history/head.js";
import type { Head } from "../history/head.js";
import { writeIndex } from "../history/history-index.js";
import type { HistoryEntry, SegmentLimits } from "../history/history-index.js";
import { kinds, putObject } from "../history/objects.js";
import { encodeTransition, transitionHash, zeroHash } from "../history/transition.js";
import { keyDigest, readManifest } from "../manifest/manifest.js";
import type { ManifestDocument } from "../manifest/manifest.js";
import { StoreError, contentVersion } from "../storage/store.js";
import type { Store } from "../storage/store.js";
import { authorizeRekey, authorizeUpdate, changesRecovery } from "./authorize.js";
import type { RekeyApproval, UpdateSignature } from "./authorize.js";
import { meshKeyIdentity, sealingKey, storedCertificate } from "./ready.js";
import type { Ready } from "./ready.js";
import { freshRecoverySeed, newRecovery, recoverySeedLength, saltLength } from "./recovery.js";

/** A `set` request, decoded. */
export interface SetManifestInput {
  manifest: Uint8Array;
  /** Decodes the policies sent with the manifest; called only once an update is authorized. */
  policies: () => Uint8Array[];
  previousTransition?: string | undefined;
  /** A workload owner's signature: required for every update. */
  signature?: UpdateSignature | undefined;
  /** Current seed-share owners' approvals: required for an update that changes the owners or the threshold. */
  approvals?: readonly RekeyApproval[] | undefined;
}

/** The result of a `set`. */
export interface SetManifestResult {
  transition: string;
  generation: number;
  rootCA: string;
  meshCA: string;
  seedShares?: SeedShareDocument;
  /** True when the manifest was already the current one: nothing was written. */
  unchanged?: true;
}

/** What a set needs from the Coordinator: its store, its name and the time. */
export interface SetEnvironment {
  store: Store;
  name: string;
  now: Date;
  /** When a segment of the history index is full (default: history-index.ts's `segmentLimits`; tests make them small). */
  indexLimits?: Readonly<SegmentLimits>;
}

/**
 * Sets the first manifest (`current` null) or updates the current one, and returns the new ready
 * state. Throws STALE when the head moved under the Coordinator (nothing was changed then).
 */
export async function setManifest(
env: SetEnvironment,
current: Ready | null,
input: SetManifestInput,
): Promise<{ ready: Ready; result: SetManifestResult }> {
const { store, name } = env;
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
  // The cheap checks first: an update's signature covers the manifest's hash, so it is checked
  // before the manifest is parsed and before any policy is decoded or hashed.
  const newTransition = await transitionHash(await sha256(input.manifest), previous);
  if (current !== null) await authorizeUpdate(current.manifest, { name, rootCA: current.rootCA.hash }, newTransition, input.signature);
  const doc = await readManifest(input.manifest);
  const rekey = current !== null && changesRecovery(current.manifest, doc.manifest);
  if (rekey) {
    await authorizeRekey(current.manifest, { name, rootCA: current.rootCA.hash }, newTransition, input.approvals ?? []);
  }
  const policies = await checkPolicies(doc, input.policies());
  if (current !== null && toHex(doc.hash) === current.history[current.history.length - 1]!.manifest) {
    // The manifest that is already current (same bytes, so the same policies): nothing to change.
    return {
      ready: current,
      result: {
        transition: current.head.latestTransition,
        generation: current.head.generation,
        rootCA: current.rootCA.pem,
        meshCA: current.meshCA.pem,
        unchanged: true,
      },
    };
  }

  const now = env.now;
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
    rootCA = storedCertificate(rootCert, await putObject(store, kinds.certificate, new Uint8Array(rootCert.rawData)));
    transactionSigner = storedCertificate(
      signerCert,
      await putObject(store, kinds.certificate, new Uint8Array(signerCert.rawData)),
    );
    // The first recovery seed is the root seed itself: with threshold 1 every owner holds exactly
    // the seed Contrast would hand out.
    ({ recovery, seedShares } = await newRecovery(engine, seed, salt, owners, threshold, name));
  } else {
    ({ engine, root, rootCA, transactionSigner } = current);
    recovery = current.head.recovery;
    if (rekey) {
      // Rotation: a new recovery seed for the new owners; the old shares no longer open the root seed.
      const fresh = freshRecoverySeed();
      ({ recovery, seedShares } = await newRecovery(engine, fresh.seed, fresh.salt, owners, threshold, name));
    }
  }

  const mesh = await createMeshCA(root, now);
  const meshCAHash = await putObject(store, kinds.certificate, new Uint8Array(mesh.meshCA.rawData));
  const intermediateHash = await putObject(store, kinds.certificate, new Uint8Array(mesh.intermediate.rawData));
  const sealing = current?.sealingKey ?? (await sealingKey(engine));
  const sealed = await seal(sealing, mesh.pkcs8, meshKeyIdentity(meshCAHash));
  const meshKeyHash = await putObject(store, kinds.sealedKey, sealed);
  for (const [, bytes] of policies) await putObject(store, kinds.policy, bytes);
  await putObject(store, kinds.manifest, doc.bytes);
  await putObject(store, kinds.transition, encodeTransition(doc.hash, previous));
  // The seed-share document is encrypted to its owners, so it may be stored; stored before the head
  // that needs it, it survives a crash that loses the answer (nobody is ever left without shares).
  const seedSharesHash =
    seedShares === undefined ? current?.head.objects.seedShares : await putObject(store, kinds.seedShares, seedShareBytes(seedShares));
  // The history index of the new head: the new entry extends its tail segment, or starts a new tail
  // (history-index.ts); a head written before the index existed gets the whole index now, from the
  // history its recovery verified.
  const history: HistoryEntry[] = [
    ...(current?.history ?? []),
    { transition: toHex(newTransition), manifest: toHex(doc.hash), policies: [...policies.keys()].sort() },
  ];
  const index = await writeIndex(store, current?.index ?? null, history, env.indexLimits);

  const head: Head = {
    name: name,
    generation: (current?.head.generation ?? 0) + 1,
    latestTransition: toHex(newTransition),
    objects: {
      rootCA: rootCA.hash,
      transactionSigner: transactionSigner.hash,
      meshCA: meshCAHash,
      intermediateCA: intermediateHash,
      meshCAKey: meshKeyHash,
      ...(seedSharesHash === undefined ? {} : { seedShares: seedSharesHash }),
      history: index[index.length - 1]!.hash,
    },
    recovery,
  };
  const signed = await signHead(head, engine.transactionSigningKey.privateKey);
  let headVersion: string;
  try {
    headVersion = await store.compareAndSwap(headKey(name), signed.bytes, current?.headVersion ?? null);
  } catch (err) {
    if (err instanceof StoreError && err.code === "CONFLICT") {
      throw new CoordinatorError("STALE", "the stored state moved under this Coordinator; nothing was changed", {
        cause: err,
      });
    }
    // The write may have reached the store before the failure was reported: then the set happened,
    // and (on a first set) the seed shares must reach the caller, or nobody could recover.
    const landed = await store.get(headKey(name)).catch(() => null);
    if (landed === null || !bytesEqual(landed, signed.bytes)) throw err;
    headVersion = await contentVersion(signed.bytes);
  }

  const meshPublic = mesh.keys.publicKey;
  const ready: Ready = {
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
    history,
    index,
  };
  const result: SetManifestResult = {
    transition: head.latestTransition,
    generation: head.generation,
    rootCA: rootCA.pem,
    meshCA: ready.meshCA.pem,
  };
  if (seedShares !== undefined) result.seedShares = seedShares;
  return { ready, result };
}

/** Hashes the policies sent with a manifest: every referenced one present, no stray ones. */
async function checkPolicies(doc: ManifestDocument, sent: Uint8Array[]): Promise<Map<string, Uint8Array>> {
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
