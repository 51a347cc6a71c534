// The manifest: its zod schema, semantic validation and hashing over the exact bytes received.
import { seedShareOwnerSpki } from "../crypto/owner-keys.js";
import { z } from "zod";
import { fromHex, fromUtf8, toHex } from "../encoding.js";
import { sha256, subtle } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";
import { isValidSan } from "./san.js";
import { snpReferenceValuesSchema } from "../attestation/snp/reference-values.js";
import { tdxReferenceValuesSchema } from "../attestation/tdx/reference-values.js";

/** A lower-case hex SHA-256 digest. */
export const sha256Hex = z.lazy(() => z.string().regex(/^[0-9a-f]{64}$/, "a lower-case hex SHA-256 digest"));

/**
 * A subject alternative name: a DNS name (a wildcard only as the whole first label, over two or more
 * labels; the last label not a number) or an IP address (dotted-quad IPv4 or IPv6, not unspecified).
 */
export const subjectAltName = z.lazy(() =>
  z
    .string()
    .refine(
      isValidSan,
      "a DNS name (a wildcard only as the first label over at least two more; the last label not a number) or an IP address (dotted-quad IPv4 or IPv6; not 0.0.0.0 or ::)",
    ),
);

/** One workload the manifest admits, keyed by the SHA-256 of its policy. */
export const policyEntrySchema = z.lazy(() =>
  z
    .object({
      SANs: z.array(subjectAltName).max(64),
      /** Names the workload secret; absent, the policy hash names it (Contrast omits it when empty). */
      WorkloadSecretID: z.string().min(1).max(256).optional(),
      /** Contrast's role of the workload: `coordinator` marks the Coordinator's own policy. */
      Role: z.enum(["", "coordinator"]).optional(),
    })
    .strict(),
);

/**
 * The workload-independent reference values, in Contrast's shape: a list per platform; evidence
 * passes if it satisfies any one entry of its platform. Absent or empty: that platform admits nothing.
 */
export const referenceValuesSchema = z.lazy(() =>
  z
    .object({
      snp: z.array(snpReferenceValuesSchema).max(64).nullable().optional(),
      tdx: z.array(tdxReferenceValuesSchema).max(64).nullable().optional(),
    })
    .strict(),
);

/** The manifest's reference values. */
export type ReferenceValues = z.infer<typeof referenceValuesSchema>;

/** The manifest document, with Contrast's field names. */
export const manifestSchema = z.lazy(() =>
  z
    .object({
      Policies: z.record(sha256Hex, policyEntrySchema),
      ReferenceValues: referenceValuesSchema.optional(),
      WorkloadOwnerKeyDigests: z.array(sha256Hex).max(32),
      /** Workload owners by their public key (hex DER SPKI, ECDSA P-384), as newer Contrast manifests list them, beside the digests. */
      WorkloadOwnerPubKeys: z.array(z.string().regex(/^([0-9a-f]{2})+$/, "hex-encoded DER SubjectPublicKeyInfo").max(1024)).max(32).optional(),
      SeedshareOwnerPubKeys: z
        .array(z.string().regex(/^([0-9a-f]{2})+$/, "hex-encoded DER SubjectPublicKeyInfo or PKCS#1 RSAPublicKey").max(8192))
        .min(1, "at least one seed-share owner is needed, or the Coordinator could never be recovered")
        .max(32),
      Threshold: z
        .number()
        .int()
        .min(1)
        .max(255)
        .optional()
        .describe("how many seed-share owners recovery needs; absent or 1: each owner alone"),
    })
    .strict(),
);

/** A parsed, validated manifest. */
export type Manifest = z.infer<typeof manifestSchema>;

/** A manifest together with the exact bytes it was parsed from and their hash. */
export interface ManifestDocument {
  bytes: Uint8Array;
  hash: Uint8Array;
  manifest: Manifest;
}

/** Smallest RSA modulus a seed-share owner may use. */
export const minSeedShareOwnerBits = 3072;

/** Parses manifest bytes: strict UTF-8 JSON that matches the schema. Throws INVALID_MANIFEST. */
export function parseManifest(bytes: Uint8Array): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch (err) {
    throw new CoordinatorError("INVALID_MANIFEST", `manifest is not UTF-8 JSON: ${(err as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join(".") : "manifest";
    throw new CoordinatorError("INVALID_MANIFEST", `${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** The only RSA public exponent a seed-share owner key may have (F4): with e = 1 the "encrypted" share is readable by anyone. */
export const seedShareOwnerExponent = 65537;

/** The RSA public exponent as a number (big-endian bytes, leading zeros allowed), or null if it exceeds 2^53. */
export function rsaExponentValue(bytes: Uint8Array): number | null {
  let value = 0;
  for (const b of bytes) {
    value = value * 256 + b;
    if (!Number.isSafeInteger(value)) return null;
  }
  return value;
}

/** The exponent of an imported RSA key as text for messages, e.g. `1` or `3`. */
function exponentText(bytes: Uint8Array): string {
  const value = rsaExponentValue(bytes);
  if (value !== null) return String(value);
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return `0x${toHex(bytes.subarray(start))}`;
}

/**
 * Checks that an imported RSA key has public exponent exactly 65537, twice over: the value
 * WebCrypto reports in `algorithm.publicExponent`, and the exponent of its JWK export (`AQAB`).
 * Returns null if it does, else the exponent found (for the caller's message).
 */
export async function weakExponent(key: CryptoKey): Promise<string | null> {
  const raw: unknown = (key.algorithm as Partial<RsaHashedKeyAlgorithm>).publicExponent;
  // Compared by value: another realm's (or WebCrypto shim's) Uint8Array is no `instanceof` this one's.
  if (!ArrayBuffer.isView(raw)) return "unknown";
  const reported = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
  if (rsaExponentValue(reported) !== seedShareOwnerExponent) return exponentText(reported);
  const jwk = await subtle().exportKey("jwk", key);
  if (jwk.e !== "AQAB") return jwk.e === undefined ? "unknown" : `base64url ${jwk.e}`;
  return null;
}

/** Imports a seed-share owner key for RSA-OAEP with SHA-256; throws INVALID_MANIFEST if unsuitable. */
export async function importSeedShareOwnerKey(hexSpki: string): Promise<CryptoKey> {
  let key: CryptoKey;
  try {
    key = await subtle().importKey(
      "spki",
      seedShareOwnerSpki(hexSpki) as BufferSource,
      { name: "RSA-OAEP", hash: "SHA-256" },
      true,
      ["encrypt"],
    );
  } catch {
    throw new CoordinatorError("INVALID_MANIFEST", "SeedshareOwnerPubKeys: not an RSA public key (hex DER SPKI)");
  }
  const bits = (key.algorithm as RsaHashedKeyAlgorithm).modulusLength;
  if (bits < minSeedShareOwnerBits) {
    throw new CoordinatorError(
      "INVALID_MANIFEST",
      `SeedshareOwnerPubKeys: RSA key of ${bits} bits, at least ${minSeedShareOwnerBits} needed`,
    );
  }
  const weak = await weakExponent(key);
  if (weak !== null) {
    throw new CoordinatorError(
      "INVALID_MANIFEST",
      `SeedshareOwnerPubKeys: RSA key with public exponent ${weak}; only ${seedShareOwnerExponent} is accepted`,
    );
  }
  return key;
}

/** Parses and fully validates manifest bytes, including the seed-share owner keys, and hashes them. */
export async function readManifest(bytes: Uint8Array): Promise<ManifestDocument> {
  const manifest = parseManifest(bytes);
  for (const key of manifest.SeedshareOwnerPubKeys) await importSeedShareOwnerKey(key);
  // The same key listed twice (also once as SPKI and once as PKCS#1) would get two shares.
  const owners = new Set(manifest.SeedshareOwnerPubKeys.map((k) => toHex(seedShareOwnerSpki(k))));
  if (owners.size !== manifest.SeedshareOwnerPubKeys.length) {
    throw new CoordinatorError("INVALID_MANIFEST", "SeedshareOwnerPubKeys: the same key is listed twice");
  }
  const ownerKeys = manifest.WorkloadOwnerPubKeys ?? [];
  if (new Set(ownerKeys).size !== ownerKeys.length) {
    throw new CoordinatorError("INVALID_MANIFEST", "WorkloadOwnerPubKeys: the same key is listed twice");
  }
  for (const [i, key] of ownerKeys.entries()) {
    try {
      await subtle().importKey("spki", fromHex(key) as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, false, ["verify"]);
    } catch {
      throw new CoordinatorError("INVALID_MANIFEST", `WorkloadOwnerPubKeys.${i}: not an ECDSA P-384 public key (hex DER SPKI)`);
    }
  }
  const coordinators = Object.values(manifest.Policies).filter((p) => p.Role === "coordinator").length;
  if (coordinators > 1) {
    throw new CoordinatorError("INVALID_MANIFEST", `Policies: ${coordinators} policies have the role coordinator; at most one may`);
  }
  if (new Set(manifest.WorkloadOwnerKeyDigests).size !== manifest.WorkloadOwnerKeyDigests.length) {
    throw new CoordinatorError("INVALID_MANIFEST", "WorkloadOwnerKeyDigests: the same digest is listed twice");
  }
  const threshold = manifest.Threshold ?? 1;
  if (threshold > manifest.SeedshareOwnerPubKeys.length) {
    throw new CoordinatorError(
      "INVALID_MANIFEST",
      `Threshold: ${threshold} is more than the ${manifest.SeedshareOwnerPubKeys.length} seed-share owners`,
    );
  }
  return { bytes, hash: await sha256(bytes), manifest };
}

/** The policy hashes a manifest references, sorted. */
export function policyHashes(manifest: Manifest): string[] {
  return Object.keys(manifest.Policies).sort();
}

/** Whether a manifest names any workload owner (by digest or by key); none makes it final. */
export function hasWorkloadOwners(manifest: Manifest): boolean {
  return manifest.WorkloadOwnerKeyDigests.length > 0 || (manifest.WorkloadOwnerPubKeys ?? []).length > 0;
}

/** Whether the key with this DER SPKI is a workload owner of a manifest: its digest, or the key itself, is listed. */
export async function isWorkloadOwner(manifest: Manifest, spki: Uint8Array): Promise<boolean> {
  return manifest.WorkloadOwnerKeyDigests.includes(await keyDigest(spki)) || (manifest.WorkloadOwnerPubKeys ?? []).includes(toHex(spki));
}

/** The hex SHA-256 of a public key's DER SPKI: how the manifest names workload-owner keys. */
export async function keyDigest(spki: Uint8Array): Promise<string> {
  return toHex(await sha256(spki));
}
