// The Coordinator's trusted in-memory state once it holds the seed: keys, CA certificates, head and verified history.
import type * as x509 from "@peculiar/x509";
import { bytesEqual, toHex } from "../encoding.js";
import { certificateDer, importMeshKey, parseCertificate, signingAlgorithm, subjectKeyId, toPem } from "../crypto/ca.js";
import type { CertifiedKey } from "../crypto/ca.js";
import { subtle, webcrypto } from "../crypto/provider.js";
import { importSealingKey, open } from "../crypto/sealed.js";
import type { SeedEngine } from "../crypto/seedengine.js";
import { CoordinatorError } from "../errors.js";
import { readIndex } from "../history/history-index.js";
import type { HistoryEntry, HistoryIndex } from "../history/history-index.js";
import { getObject, kinds, objectKey } from "../history/objects.js";
import { decodeTransition, zeroHash } from "../history/transition.js";
import { verifyHead } from "../history/head.js";
import type { SignedHead } from "../history/head.js";
import { parseManifest, policyHashes } from "../manifest/manifest.js";
import type { Manifest } from "../manifest/manifest.js";
import type { Store } from "../storage/store.js";

/** HKDF label of the key that seals secrets at rest (AES-256-GCM). */
export const sealingKeyLabel = "COORDINATOR STATE SEALING KEY";

export type { HistoryEntry, HistoryIndex } from "../history/history-index.js";

/** A certificate with its stored DER, PEM and store hash. */
export interface StoredCertificate {
  certificate: x509.X509Certificate;
  der: Uint8Array;
  pem: string;
  hash: string;
}

/** Everything a ready Coordinator serves from. Immutable: an update builds a new one. */
export interface Ready {
  engine: SeedEngine;
  sealingKey: CryptoKey;
  root: CertifiedKey;
  rootCA: StoredCertificate;
  transactionSigner: StoredCertificate;
  mesh: CertifiedKey;
  meshCA: StoredCertificate;
  intermediateCA: StoredCertificate;
  head: SignedHead;
  headBytes: Uint8Array;
  headVersion: string;
  manifest: Manifest;
  /** Every link of the history, oldest first, as the head's index (or, for a head without one, the walk) verified it. */
  history: HistoryEntry[];
  /** The segments of the history index the head names; null for a head written before the index existed (the next set writes one). */
  index: HistoryIndex | null;
}

/** The identity a mesh CA key is sealed to: its certificate's store hash. */
export function meshKeyIdentity(meshCAHash: string): string {
  return `contrast-coordinator/mesh-ca-key/v1 ${meshCAHash}`;
}

/** The sealing key of a seed. */
export async function sealingKey(engine: SeedEngine): Promise<CryptoKey> {
  return importSealingKey(await engine.deriveSecret(sealingKeyLabel, 32));
}

/** Describes a stored certificate. */
export function storedCertificate(certificate: x509.X509Certificate, hash: string): StoredCertificate {
  const der = certificateDer(certificate);
  return { certificate, der, pem: toPem(der), hash };
}

async function loadCertificate(store: Store, hash: string): Promise<StoredCertificate> {
  const der = await getObject(store, kinds.certificate, hash);
  try {
    return storedCertificate(parseCertificate(der), hash);
  } catch {
    const key = objectKey(kinds.certificate, hash);
    throw new CoordinatorError("STATE_CORRUPT", `${key} is not a certificate`, { key });
  }
}

async function rawPublicKey(cert: x509.X509Certificate): Promise<Uint8Array> {
  return new Uint8Array(await subtle().exportKey("raw", await cert.publicKey.export(webcrypto())));
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto());
  } catch {
    return false;
  }
}

function corrupt(hash: string, why: string): never {
  const key = objectKey(kinds.certificate, hash);
  throw new CoordinatorError("STATE_CORRUPT", `${key} ${why}`, { key });
}

/**
 * Verifies the stored state against the seed and returns it as a Ready state: the head's signature,
 * every CA object and the sealed mesh CA key, the history index the head names (every transition
 * recomputed from its manifest hashes up to the head's latest transition), and the active state:
 * the latest transition, the latest manifest and its policies, each hashed against its name. Older
 * manifests and policies are not read here: each is checked against the index when it is served
 * (history.ts) and by the background re-verification (audit.ts). A head without an index (written
 * before it existed) is verified by walking and reading the whole history, as before. Nothing read
 * is trusted before this returns; the number of reads does not depend on the history's length.
 */
export async function loadReady(
  store: Store,
  engine: SeedEngine,
  head: SignedHead,
  headBytes: Uint8Array,
  headVersion: string,
  headKey: string,
): Promise<Ready> {
  if (!(await verifyHead(head, engine.transactionSigningKey.publicKey))) {
    throw new CoordinatorError("STATE_CORRUPT", `${headKey}: the signature does not verify under the seed's key`, {
      key: headKey,
    });
  }
  const o = head.objects;
  const [rootCA, transactionSigner, meshCA, intermediateCA] = await Promise.all([
    loadCertificate(store, o.rootCA),
    loadCertificate(store, o.transactionSigner),
    loadCertificate(store, o.meshCA),
    loadCertificate(store, o.intermediateCA),
  ]);
  if (!bytesEqual(await rawPublicKey(rootCA.certificate), engine.rootCAKey.publicPoint)) {
    corrupt(o.rootCA, "does not certify the seed's root CA key");
  }
  if (!(await signedBy(rootCA.certificate, rootCA.certificate))) corrupt(o.rootCA, "is not validly self-signed");
  if (!bytesEqual(await rawPublicKey(transactionSigner.certificate), engine.transactionSigningKey.publicPoint)) {
    corrupt(o.transactionSigner, "does not certify the seed's transaction-signing key");
  }
  if (!(await signedBy(transactionSigner.certificate, rootCA.certificate))) {
    corrupt(o.transactionSigner, "is not signed by the root CA");
  }
  if (!(await signedBy(intermediateCA.certificate, rootCA.certificate))) {
    corrupt(o.intermediateCA, "is not signed by the root CA");
  }
  const meshPoint = await rawPublicKey(meshCA.certificate);
  if (!bytesEqual(meshPoint, await rawPublicKey(intermediateCA.certificate))) {
    corrupt(o.intermediateCA, "does not certify the mesh CA's key");
  }
  if (!(await signedBy(meshCA.certificate, meshCA.certificate))) corrupt(o.meshCA, "is not validly self-signed");

  const sealing = await sealingKey(engine);
  const sealedKeyName = objectKey(kinds.sealedKey, o.meshCAKey);
  const pkcs8 = await open(
    sealing,
    await getObject(store, kinds.sealedKey, o.meshCAKey),
    meshKeyIdentity(o.meshCA),
    sealedKeyName,
  );
  const meshPublic = await meshCA.certificate.publicKey.export(webcrypto());
  let meshKeys: CryptoKeyPair;
  try {
    meshKeys = await importMeshKey(pkcs8, meshPublic);
    const probe = new Uint8Array(32);
    const signature = await subtle().sign(signingAlgorithm, meshKeys.privateKey, probe);
    if (!(await subtle().verify(signingAlgorithm, meshPublic, signature, probe))) throw new Error("key mismatch");
  } catch (err) {
    throw new CoordinatorError("STATE_CORRUPT", `${sealedKeyName} does not hold the mesh CA's private key`, {
      key: sealedKeyName,
      cause: err,
    });
  }

  const { history, index, manifest } = head.objects.history === undefined ? await loadWholeHistory(store, head) : await loadIndexedHistory(store, head);
  return {
    engine,
    sealingKey: sealing,
    root: { privateKey: engine.rootCAKey.privateKey, certificate: rootCA.certificate, keyId: await subjectKeyId(engine.rootCAKey.publicKey) },
    rootCA,
    transactionSigner,
    mesh: { privateKey: meshKeys.privateKey, certificate: intermediateCA.certificate, keyId: await subjectKeyId(meshPublic) },
    meshCA,
    intermediateCA,
    head,
    headBytes,
    headVersion,
    manifest,
    history,
    index,
  };
}

/** The verified history with its index (null when read by the walk) and the parsed latest manifest. */
interface LoadedHistory {
  history: HistoryEntry[];
  index: HistoryIndex | null;
  manifest: Manifest;
}

/**
 * The history through the index the head names (readIndex checks it against the head), and the
 * active state: the latest transition object, the latest manifest (whose policies must be the ones
 * the index lists for it) and its policies. A fixed number of reads for any history length.
 */
async function loadIndexedHistory(store: Store, head: SignedHead): Promise<LoadedHistory> {
  const { index, entries } = await readIndex(store, head);
  const latest = entries[entries.length - 1]!;
  const manifestKey = objectKey(kinds.manifest, latest.manifest);
  // Read at once; every read settles before this returns or throws, and the first failure in this order is the one named.
  const reads = await Promise.allSettled([
    getObject(store, kinds.manifest, latest.manifest),
    getObject(store, kinds.transition, latest.transition),
    ...latest.policies.map((policy) => getObject(store, kinds.policy, policy)),
  ]);
  for (const read of reads) if (read.status === "rejected") throw read.reason;
  const manifest = parseStoredManifest((reads[0] as PromiseFulfilledResult<Uint8Array>).value, manifestKey);
  const named = policyHashes(manifest);
  if (named.length !== latest.policies.length || named.some((p, i) => p !== latest.policies[i])) {
    const key = objectKey(kinds.history, index[index.length - 1]!.hash);
    throw new CoordinatorError("STATE_CORRUPT", `${key} lists other policies for ${manifestKey} than the manifest names`, { key });
  }
  return { history: entries, index, manifest };
}

/** The history of a head without an index: the walk over every transition, manifest and policy. */
async function loadWholeHistory(store: Store, head: SignedHead): Promise<LoadedHistory> {
  const history = await loadHistory(store, head);
  const latest = history[history.length - 1]!;
  const manifestKey = objectKey(kinds.manifest, latest.manifest);
  const manifest = parseStoredManifest(await getObject(store, kinds.manifest, latest.manifest), manifestKey);
  return { history, index: null, manifest };
}

function parseStoredManifest(bytes: Uint8Array, key: string): Manifest {
  try {
    return parseManifest(bytes);
  } catch (err) {
    throw new CoordinatorError("STATE_CORRUPT", `${key} is not a valid manifest: ${(err as Error).message}`, { key });
  }
}

/**
 * Walks the transitions from the head back to the first, checking every transition, manifest and
 * policy. The walk itself is sequential (each transition names the one before), so each manifest and
 * its policies are checked in the background as soon as their transition is read.
 */
async function loadHistory(store: Store, head: SignedHead): Promise<HistoryEntry[]> {
  const policyChecks = new Map<string, Promise<unknown>>();
  const checkManifest = async (manifestHash: string): Promise<string[]> => {
    const key = objectKey(kinds.manifest, manifestHash);
    const policies = policyHashes(parseStoredManifest(await getObject(store, kinds.manifest, manifestHash), key));
    for (const policy of policies) {
      if (!policyChecks.has(policy)) policyChecks.set(policy, getObject(store, kinds.policy, policy));
    }
    await Promise.all(policies.map((policy) => policyChecks.get(policy)));
    return policies;
  };

  const links: { transition: string; manifest: string; policies: Promise<string[]> }[] = [];
  let current = head.latestTransition;
  const zero = toHex(zeroHash);
  try {
    while (current !== zero) {
      if (links.length >= head.generation) {
        const key = objectKey(kinds.transition, current);
        throw new CoordinatorError("STATE_CORRUPT", `${key}: the history is longer than the head's generation`, { key });
      }
      const { manifestHash, previousTransition } = decodeTransitionAt(
        await getObject(store, kinds.transition, current),
        current,
      );
      const manifest = toHex(manifestHash);
      const policies = checkManifest(manifest);
      policies.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
      links.push({ transition: current, manifest, policies });
      current = toHex(previousTransition);
    }
    if (links.length !== head.generation) {
      const key = objectKey(kinds.transition, head.latestTransition);
      throw new CoordinatorError("STATE_CORRUPT", `${key}: the history has ${links.length} transitions, the head says ${head.generation}`, { key });
    }
  } finally {
    // Let the background checks settle before returning or throwing, so none outlives the call.
    await Promise.allSettled(links.map((l) => l.policies));
  }
  links.reverse();
  const entries: HistoryEntry[] = [];
  for (const link of links) entries.push({ transition: link.transition, manifest: link.manifest, policies: await link.policies });
  return entries;
}

function decodeTransitionAt(bytes: Uint8Array, hash: string): ReturnType<typeof decodeTransition> {
  try {
    return decodeTransition(bytes);
  } catch (err) {
    const key = objectKey(kinds.transition, hash);
    throw new CoordinatorError("STATE_CORRUPT", `${key}: ${(err as Error).message}`, { key });
  }
}
