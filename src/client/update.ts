// A workload owner's signed manifest update, and the seed-share owners' rekey approvals an update that changes the owners or the threshold needs.
import { seedShareOwnerSpki } from "../crypto/owner-keys.js";
import { z } from "zod";
import { fromBase64, fromHex, toBase64, toHex } from "../encoding.js";
import { sha256 } from "../crypto/provider.js";
import { rekeyApprovalStatement, signAsSeedShareOwner, signAsWorkloadOwner, updateStatement, verifySeedShareOwner } from "../coordinator/statements.js";
import type { CoordinatorIdentity } from "../coordinator/statements.js";
import { transitionHash } from "../history/transition.js";
import type { Manifest } from "../manifest/manifest.js";
import type { RekeyApproval, SetManifestRequest } from "./client.js";

/** The transition a manifest makes over `previousTransition` (hex): SHA-256(SHA-256(manifest) ‖ previous), hex. */
export async function nextTransition(manifest: Uint8Array, previousTransition: string): Promise<string> {
  return toHex(await transitionHash(await sha256(manifest), fromHex(previousTransition)));
}

/**
 * The body of an update: the manifest and policies (exact bytes), the transition it builds on, and the
 * owner's signature (IEEE P1363) over updateStatement(coordinator, new transition), which binds the
 * update to this Coordinator (its name and root CA) as well as to the new transition.
 */
export async function signedUpdate(opts: {
  manifest: Uint8Array;
  policies: Uint8Array[];
  previousTransition: string;
  owner: { privateKey: CryptoKey; spki: Uint8Array };
  /** The Coordinator the update is for: its name and the SHA-256 of its (verified) root CA certificate. */
  coordinator: CoordinatorIdentity;
  /** Rekey approvals to attach (an update that changes the seed-share owners or the threshold needs them). */
  approvals?: RekeyApproval[];
}): Promise<{ body: SetManifestRequest; newTransition: string }> {
  const next = await nextTransition(opts.manifest, opts.previousTransition);
  const value = await signAsWorkloadOwner(opts.owner.privateKey, updateStatement(opts.coordinator, next));
  const body: SetManifestRequest = {
    manifest: toBase64(opts.manifest),
    policies: opts.policies.map(toBase64),
    previousTransition: opts.previousTransition,
    signature: { publicKey: toBase64(opts.owner.spki), value: toBase64(value) },
  };
  if (opts.approvals !== undefined && opts.approvals.length > 0) body.approvals = opts.approvals;
  return { body, newTransition: next };
}

/** Whether an update from `current` to `next` changes the seed-share owners (their list, in order) or the threshold: a rekey. */
export function isRekey(current: Manifest, next: Manifest): boolean {
  const a = current.SeedshareOwnerPubKeys;
  const b = next.SeedshareOwnerPubKeys;
  return (current.Threshold ?? 1) !== (next.Threshold ?? 1) || a.length !== b.length || a.some((k, i) => k !== b[i]);
}

/** The format tag of an approval file. */
export const approvalFormat = "contrast-rekey-approval/v1";

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** An approval file: one seed-share owner's signed consent to one rekey (one new transition of one Coordinator). */
export const approvalFileSchema = z
  .object({
    format: z.literal(approvalFormat),
    /** The Coordinator's name. */
    coordinator: z.string(),
    /** Hex SHA-256 of the root CA certificate's DER. */
    rootCA: hex64,
    /** The latest transition the update builds on. */
    previousTransition: hex64,
    /** The new transition: SHA-256(SHA-256(manifest) ‖ previousTransition). */
    transition: hex64,
    /** Hex SHA-256 of the new manifest's exact bytes. */
    manifest: hex64,
    /** Hex DER SPKI of the approving owner, as the current manifest lists it. */
    ownerPublicKey: z.string().regex(/^([0-9a-f]{2})+$/),
    /** Base64 RSA-PSS over rekeyApprovalStatement({coordinator, rootCA}, transition). */
    signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(2048),
  })
  .strict();

/** An approval file. */
export type ApprovalFile = z.infer<typeof approvalFileSchema>;

/** Signs a rekey approval as a seed-share owner (`signingKey`: their RSA key for RSA-PSS/SHA-256). */
export async function makeApproval(opts: {
  coordinator: { name: string; rootCA: string };
  previousTransition: string;
  manifest: Uint8Array;
  owner: { signingKey: CryptoKey; spki: Uint8Array };
}): Promise<ApprovalFile> {
  const transition = await nextTransition(opts.manifest, opts.previousTransition);
  const signature = await signAsSeedShareOwner(opts.owner.signingKey, rekeyApprovalStatement(opts.coordinator, transition));
  return {
    format: approvalFormat,
    coordinator: opts.coordinator.name,
    rootCA: opts.coordinator.rootCA,
    previousTransition: opts.previousTransition,
    transition,
    manifest: toHex(await sha256(opts.manifest)),
    ownerPublicKey: toHex(opts.owner.spki),
    signature: toBase64(signature),
  };
}

/** What an approval must be for to count: this Coordinator, this rekey, one of these (current) owners. */
export interface ApprovalTarget {
  name: string;
  /** Hex SHA-256 of the root CA's DER. */
  rootCA: string;
  previousTransition: string;
  transition: string;
  /** Hex SHA-256 of the new manifest's bytes. */
  manifest: string;
  /** The current manifest's SeedshareOwnerPubKeys. */
  owners: readonly string[];
}

/**
 * Why an approval does not count (null if it does): not an approval file, for another Coordinator or
 * another manifest or base, by a key that is not a current seed-share owner, or a signature that does
 * not verify. Checked offline, exactly as the Coordinator checks it.
 */
export async function approvalProblem(json: unknown, target: ApprovalTarget): Promise<string | null> {
  const parsed = approvalFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return `not a rekey approval (${issue?.path.join(".") || "top level"}: ${issue?.message ?? "invalid"})`;
  }
  const a = parsed.data;
  if (a.coordinator !== target.name || a.rootCA !== target.rootCA) return `it is for another Coordinator (${a.coordinator}, root CA sha256 ${a.rootCA})`;
  if (a.manifest !== target.manifest || a.transition !== target.transition || a.previousTransition !== target.previousTransition) {
    return a.manifest === target.manifest
      ? `it approves this manifest over another base (${a.previousTransition}): the history moved on since, approve again`
      : `it approves another manifest (sha256 ${a.manifest})`;
  }
  if (!target.owners.includes(a.ownerPublicKey)) return "its key is not a seed-share owner of the current manifest";
  let signature: Uint8Array;
  try {
    signature = fromBase64(a.signature);
  } catch {
    return "its signature is not base64";
  }
  const statement = rekeyApprovalStatement({ name: target.name, rootCA: target.rootCA }, target.transition);
  if (!(await verifySeedShareOwner(seedShareOwnerSpki(a.ownerPublicKey), signature, statement))) return "its signature does not verify";
  return null;
}
