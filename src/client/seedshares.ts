// An owner's side of a seed-share document: parsing it, finding and decrypting this owner's share, and checking it against its commitment offline.
import { decryptSeedShare, seedShareDocumentSchema, shareCommitment } from "../crypto/seedshares.js";
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
 * Parses a seed-share document (already JSON-decoded) and checks that it is consistent: the
 * schema, 1 ≤ threshold ≤ number of shares, and distinct indexes and owners.
 */
export function parseSeedShareDocument(json: unknown): SeedShareDocument {
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
  const ownerHex = toHex(key.spki);
  const entry = doc.shares.find((s) => s.ownerPublicKey === ownerHex);
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
