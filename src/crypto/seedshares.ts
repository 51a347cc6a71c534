// Seed shares: the recovery seed (or, with a threshold t > 1, one Shamir share of it) encrypted to each owner, with commitments.
import { seedShareOwnerSpki } from "./owner-keys.js";
import { combine, split } from "shamir-secret-sharing";
import { z } from "zod";
import { concat, fromBase64, toBase64, toHex, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { domainMessage } from "./ca.js";
import { sha256, subtle } from "./provider.js";

/** The RSA-OAEP label of every seed share, as in Contrast. */
export const seedShareLabel = "seedshare";
/** The format tag of a seed-share document. */
export const seedSharesFormat = "contrast-seed-shares/v1";
/** The domain-separation tag of a share commitment. */
export const shareCommitmentTag = "CONTRAST COORDINATOR SEED SHARE v1";

/** One owner's encrypted share. `index` is 1-based; `commitment` lets the owner check the share offline. */
export const seedShareSchema = z.lazy(() =>
  z
    .object({
      index: z.number().int().min(1).max(255),
      ownerPublicKey: z.string().regex(/^([0-9a-f]{2})+$/),
      encryptedShare: z.string().min(1).max(8192),
      commitment: z.string().regex(/^[0-9a-f]{64}$/),
    })
    .strict(),
);

/**
 * What a `set` that (re)creates the recovery seed returns and the CLI keeps as `seed-shares.json`.
 * With threshold 1 every share is the whole recovery seed; with t > 1 each is a Shamir share over
 * GF(256) (the secret's bytes plus one x-coordinate byte), any t of which recombine to the seed.
 */
export const seedShareDocumentSchema = z.lazy(() =>
  z
    .object({
      format: z.literal(seedSharesFormat),
      coordinator: z.string(),
      salt: z.string().regex(/^[0-9a-f]{64}$/),
      threshold: z.number().int().min(1).max(255),
      shares: z.array(seedShareSchema).min(1).max(255),
    })
    .strict(),
);

/** A seed-share document. */
export type SeedShareDocument = z.infer<typeof seedShareDocumentSchema>;

/** The stored bytes of a seed-share document: its JSON as the CLI writes it, two-space indented with a final newline. */
export function seedShareBytes(doc: SeedShareDocument): Uint8Array {
  return utf8(JSON.stringify(doc, null, 2) + "\n");
}

const oaep = { name: "RSA-OAEP", label: utf8(seedShareLabel) as BufferSource } as const;

/** The commitment to a share: SHA-256(tag ‖ 0x00 ‖ salt ‖ share), hex. Binds the share to its deployment's salt. */
export async function shareCommitment(salt: Uint8Array, share: Uint8Array): Promise<string> {
  return toHex(await sha256(domainMessage(shareCommitmentTag, concat(salt, share))));
}

/** The shares of a recovery seed: the seed itself n times for t = 1, else n Shamir shares. */
export async function splitSeed(seed: Uint8Array, owners: number, threshold: number): Promise<Uint8Array[]> {
  if (threshold < 1 || threshold > owners || owners > 255) {
    throw new CoordinatorError("INVALID_MANIFEST", `Threshold ${threshold} needs 1 ≤ t ≤ ${owners} seed-share owners`);
  }
  if (threshold === 1) return Array.from({ length: owners }, () => seed.slice());
  return split(seed, owners, threshold);
}

/** Recombines t distinct Shamir shares (or returns the single share for t = 1). */
export async function combineShares(shares: Uint8Array[]): Promise<Uint8Array> {
  if (shares.length === 1) return shares[0]!.slice();
  return combine(shares);
}

/** Splits the recovery seed, encrypts share i to owner i (hex DER SPKI, RSA-OAEP SHA-256, label "seedshare"), and commits to each. */
export async function makeSeedShares(
  seed: Uint8Array,
  salt: Uint8Array,
  ownerKeys: readonly string[],
  threshold: number,
  coordinator: string,
): Promise<SeedShareDocument> {
  const shares = await splitSeed(seed, ownerKeys.length, threshold);
  const out: SeedShareDocument["shares"] = [];
  for (const [i, ownerPublicKey] of ownerKeys.entries()) {
    const key = await subtle().importKey(
      "spki",
      seedShareOwnerSpki(ownerPublicKey) as BufferSource,
      { name: "RSA-OAEP", hash: "SHA-256" },
      false,
      ["encrypt"],
    );
    const share = shares[i]!;
    const encrypted = new Uint8Array(await subtle().encrypt(oaep, key, share as BufferSource));
    out.push({ index: i + 1, ownerPublicKey, encryptedShare: toBase64(encrypted), commitment: await shareCommitment(salt, share) });
  }
  return { format: seedSharesFormat, coordinator, salt: toHex(salt), threshold, shares: out };
}

/** Decrypts one encrypted share with the owner's RSA-OAEP (SHA-256) private key. */
export async function decryptSeedShare(encryptedShare: string, privateKey: CryptoKey): Promise<Uint8Array> {
  try {
    return new Uint8Array(await subtle().decrypt(oaep, privateKey, fromBase64(encryptedShare) as BufferSource));
  } catch (err) {
    throw new CoordinatorError("SEED_MISMATCH", "this seed share does not decrypt with the given private key", {
      cause: err,
    });
  }
}
