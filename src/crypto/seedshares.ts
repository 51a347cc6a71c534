// Seed shares: the seed (or, with a threshold, one Shamir share of it) encrypted to each seed-share owner.
import { z } from "zod";
import { fromBase64, fromHex, toBase64, toHex, utf8 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import { subtle } from "./provider.js";

/** The RSA-OAEP label of every seed share, as in Contrast. */
export const seedShareLabel = "seedshare";
/** The format tag of a seed-share document. */
export const seedSharesFormat = "contrast-seed-shares/v1";

/** One owner's encrypted share. `index` is 1-based and names the share for threshold recovery. */
export const seedShareSchema = z
  .object({
    index: z.number().int().min(1).max(255),
    ownerPublicKey: z.string().regex(/^([0-9a-f]{2})+$/),
    encryptedShare: z.string().min(1).max(8192),
  })
  .strict();

/**
 * What the first `set` returns and the CLI keeps as `seed-shares.json`. With threshold 1 every share
 * is the whole seed; a later threshold t > 1 makes each share a Shamir share, in the same format.
 */
export const seedShareDocumentSchema = z
  .object({
    format: z.literal(seedSharesFormat),
    coordinator: z.string(),
    salt: z.string().regex(/^[0-9a-f]{64}$/),
    threshold: z.number().int().min(1).max(255),
    shares: z.array(seedShareSchema).min(1).max(255),
  })
  .strict();

/** A seed-share document. */
export type SeedShareDocument = z.infer<typeof seedShareDocumentSchema>;

const oaep = { name: "RSA-OAEP", label: utf8(seedShareLabel) as BufferSource } as const;

/** Encrypts the seed to every owner key (hex DER SPKI, RSA) with RSA-OAEP SHA-256, label "seedshare". */
export async function encryptSeedShares(
  seed: Uint8Array,
  salt: Uint8Array,
  ownerKeys: readonly string[],
  coordinator: string,
): Promise<SeedShareDocument> {
  const shares = [];
  for (const [i, ownerPublicKey] of ownerKeys.entries()) {
    const key = await subtle().importKey(
      "spki",
      fromHex(ownerPublicKey) as BufferSource,
      { name: "RSA-OAEP", hash: "SHA-256" },
      false,
      ["encrypt"],
    );
    const encrypted = new Uint8Array(await subtle().encrypt(oaep, key, seed as BufferSource));
    shares.push({ index: i + 1, ownerPublicKey, encryptedShare: toBase64(encrypted) });
  }
  return { format: seedSharesFormat, coordinator, salt: toHex(salt), threshold: 1, shares };
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
