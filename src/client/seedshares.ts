// An owner's side of a seed-share document: parsing it, finding and decrypting this owner's share, and checking it against its commitment offline.
import { isSeedShareOwner } from "../crypto/owner-keys.js";
import { sha256 } from "../crypto/provider.js";
import { decryptSeedShare, seedShareBytes, seedShareDocumentSchema, shareCommitment } from "../crypto/seedshares.js";
import type { SeedShareDocument } from "../crypto/seedshares.js";
import { fromHex, toHex } from "../encoding.js";

/**
 * Why a document or an owner's share is unusable: `DOCUMENT_INVALID` (not a consistent seed-share
 * document), `NOT_A_SEEDSHARE_OWNER` (the key owns no share in it), `SHARE_UNDECRYPTABLE` (the
 * owner's share does not decrypt with the key), `SHARE_INVALID` (it decrypts, but not to the share
 * its commitment names: the share or the document was changed).
 */
export type ShareCheckCode = "DOCUMENT_INVALID" | "NOT_A_SEEDSHARE_OWNER" | "SHARE_UNDECRYPTABLE" | "SHARE_INVALID";

/** A seed-share document or share that cannot be used, with a stable code. */
export class ShareCheckError extends Error {
  readonly code: ShareCheckCode;
  /** The 1-based index of the share concerned, if the owner's share was found. */
  readonly index: number | undefined;

  constructor(code: ShareCheckCode, message: string, index?: number) {
    super(message);
    this.name = "ShareCheckError";
    this.code = code;
    this.index = index;
  }
}

/** One share entry of a seed-share document. */
export type SeedShareEntry = SeedShareDocument["shares"][number];

/**
 * Parses a seed-share document (already JSON-decoded; undefined if the text was not JSON) and checks
 * that it is consistent: the schema, 1 ≤ threshold ≤ number of shares, and distinct indexes and owners.
 */
export function parseSeedShareDocument(json: unknown): SeedShareDocument {
  // undefined: the caller's JSON.parse failed (it never yields undefined itself).
  if (json === undefined) throw new ShareCheckError("DOCUMENT_INVALID", "it is not JSON: the file is empty, truncated or damaged");
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ShareCheckError("DOCUMENT_INVALID", "it is JSON, but not an object of the format contrast-seed-shares/v1");
  }
  const parsed = seedShareDocumentSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ShareCheckError("DOCUMENT_INVALID", `${issue?.path.join(".") || "top level"}: ${issue?.message ?? "invalid"}`);
  }
  const doc = parsed.data;
  if (doc.threshold > doc.shares.length) {
    throw new ShareCheckError("DOCUMENT_INVALID", `threshold ${doc.threshold} is more than its ${doc.shares.length} shares`);
  }
  if (new Set(doc.shares.map((s) => s.index)).size !== doc.shares.length) {
    throw new ShareCheckError("DOCUMENT_INVALID", "two shares have the same index");
  }
  if (new Set(doc.shares.map((s) => s.ownerPublicKey)).size !== doc.shares.length) {
    throw new ShareCheckError("DOCUMENT_INVALID", "two shares have the same owner");
  }
  return doc;
}

/** This owner's share: its entry in the document and the decrypted share, which matches its commitment. */
export interface OwnShare {
  entry: SeedShareEntry;
  share: Uint8Array;
}

/**
 * Finds the share of the owner whose public key is `key.spki`, decrypts it with `key.privateKey`
 * and checks it against the entry's commitment, SHA-256(tag ‖ 0x00 ‖ salt ‖ share). Needs no
 * Coordinator; throws ShareCheckError.
 */
export async function openOwnShare(doc: SeedShareDocument, key: { spki: Uint8Array; privateKey: CryptoKey }): Promise<OwnShare> {
  const entry = doc.shares.find((s) => isSeedShareOwner(s.ownerPublicKey, key.spki));
  if (entry === undefined) {
    throw new ShareCheckError("NOT_A_SEEDSHARE_OWNER", `the key is not one of the ${doc.shares.length} seed-share owners`);
  }
  let share: Uint8Array;
  try {
    share = await decryptSeedShare(entry.encryptedShare, key.privateKey);
  } catch {
    throw new ShareCheckError("SHARE_UNDECRYPTABLE", `share ${entry.index} does not decrypt with the key`, entry.index);
  }
  if ((await shareCommitment(fromHex(doc.salt), share)) !== entry.commitment) {
    share.fill(0);
    throw new ShareCheckError("SHARE_INVALID", `share ${entry.index} decrypts, but does not match its commitment`, entry.index);
  }
  return { entry, share };
}

/** The recovery parameters of a verified head that a seed-share document must match. */
export interface HeadRecovery {
  salt: string;
  threshold: number;
  shares: number;
  commitments: readonly string[];
}

/**
 * Why a seed-share document is not the one a verified head commits to (null if it is): it must name
 * the Coordinator, carry the head's salt and threshold, and have one share per owner of the manifest,
 * in order (`index` i + 1, owner i), each with the head's commitment i. Only such a document is worth
 * keeping as seed-shares.json; the head is signed, the document is not.
 */
export function seedSharesProblem(doc: SeedShareDocument, head: { name: string; recovery: HeadRecovery }, owners: readonly string[]): string | null {
  try {
    parseSeedShareDocument(doc);
  } catch (err) {
    return (err as Error).message;
  }
  const r = head.recovery;
  if (doc.coordinator !== head.name) return `it names Coordinator ${doc.coordinator}, not ${head.name}`;
  if (doc.salt !== r.salt) return `its salt ${doc.salt} is not the head's ${r.salt}`;
  if (doc.threshold !== r.threshold) return `its threshold ${doc.threshold} is not the head's ${r.threshold}`;
  if (doc.shares.length !== r.shares || r.commitments.length !== r.shares || owners.length !== r.shares) {
    return `it has ${doc.shares.length} shares, the head commits to ${r.shares} and the manifest names ${owners.length} owners`;
  }
  for (const [i, s] of doc.shares.entries()) {
    if (s.index !== i + 1) return `share ${i + 1} has index ${s.index}`;
    if (s.ownerPublicKey !== owners[i]) return `share ${i + 1} is not for seed-share owner ${i + 1} of the manifest`;
    if (s.commitment !== r.commitments[i]) return `share ${i + 1}'s commitment is not the head's`;
  }
  return null;
}

/**
 * seedSharesProblem for a document fetched from the Coordinator (GET /v1/seedshares), and, when the
 * verified head names its stored document (`objects.seedShares`), that the document's bytes as
 * stored hash to that name: then every byte of it, the encrypted shares included, is what the signed
 * head commits to.
 */
export async function storedSeedSharesProblem(
  doc: SeedShareDocument,
  head: { name: string; recovery: HeadRecovery; objects: { seedShares?: string | undefined } },
  owners: readonly string[],
): Promise<string | null> {
  const problem = seedSharesProblem(doc, head, owners);
  if (problem !== null) return problem;
  const named = head.objects.seedShares;
  if (named !== undefined && toHex(await sha256(seedShareBytes(doc))) !== named) return `it is not the document ${named} that the head names`;
  return null;
}
