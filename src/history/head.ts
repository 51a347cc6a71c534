// The head: the one mutable object per Coordinator name, signed by the transaction-signing key over a domain-separated message.
import { z } from "zod";
import { bytesEqual, fromBase64, fromUtf8, toBase64, utf8 } from "../encoding.js";
import { domainMessage, signingAlgorithm } from "../crypto/ca.js";
import { subtle } from "../crypto/provider.js";
import { CoordinatorError } from "../errors.js";

/** The format tag of heads this code writes and reads. */
export const headFormat = "contrast-coordinator-head/v1";
/** The domain-separation tag of the head signature. */
export const headSignatureTag = "CONTRAST COORDINATOR HEAD v1";

const hash = () => z.string().regex(/^[0-9a-f]{64}$/);

/** A Coordinator name: a DNS label, as Kubernetes object names are. */
export const coordinatorName = z.lazy(() =>
  z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "a lower-case DNS label (letters, digits, dashes; at most 63)"),
);

/** The recovery parameters: plain text in the head, authenticated by its signature. */
export const recoverySchema = z.lazy(() =>
  z
    .object({
      salt: hash(),
      threshold: z.number().int().min(1).max(255),
      shares: z.number().int().min(1).max(255),
      /** One commitment per share (SHA-256 of tag ‖ salt ‖ share): each share is checked on its own. */
      commitments: z.array(hash()).min(1).max(255),
      /**
       * The root seed and its salt (salt ‖ seed), AES-256-GCM under a key derived from the recovery
       * seed: the recovery seed the owners hold opens it, and a rotation re-seals it to a new one.
       */
      sealedRootSeed: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(512),
    })
    .strict()
    .refine((r) => r.commitments.length === r.shares && r.threshold <= r.shares, "threshold, shares and commitments disagree"),
);

/** The store-object hashes the head pins. */
export const headObjectsSchema = z.lazy(() =>
  z
    .object({
      rootCA: hash(),
      transactionSigner: hash(),
      meshCA: hash(),
      intermediateCA: hash(),
      meshCAKey: hash(),
      /** The seed-share document of the current recovery seed (absent in heads written before it was stored). */
      seedShares: hash().optional(),
      /** The last segment of the history index (absent in heads written before the index existed). */
      history: hash().optional(),
    })
    .strict(),
);

const headSchema = z.lazy(() =>
  z
    .object({
      format: z.literal(headFormat),
      name: coordinatorName,
      generation: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
      latestTransition: hash(),
      objects: headObjectsSchema,
      recovery: recoverySchema,
      signature: z.string().max(256),
    })
    .strict(),
);

/** The head's content without its signature. */
export interface Head {
  name: string;
  generation: number;
  latestTransition: string;
  objects: z.infer<typeof headObjectsSchema>;
  recovery: z.infer<typeof recoverySchema>;
}

/** A head with its base64 P1363 ECDSA P-384/SHA-384 signature. */
export interface SignedHead extends Head {
  signature: string;
}

/** The store key of a Coordinator's head. */
export function headKey(name: string): string {
  return `heads:${name}`;
}

/** The exact message the signature covers: tag, zero byte, a fixed-order JSON array of every field. */
export function headMessage(head: Head): Uint8Array {
  const { objects: o, recovery: r } = head;
  const fields: (string | number | string[] | null)[] = [
    headFormat,
    head.name,
    head.generation,
    head.latestTransition,
    o.rootCA,
    o.transactionSigner,
    o.meshCA,
    o.intermediateCA,
    o.meshCAKey,
    r.salt,
    r.threshold,
    r.shares,
    r.commitments,
    r.sealedRootSeed,
  ];
  // Optional fields at the end: a head without them signs exactly what it signed before they existed,
  // and the index comes after a seed-share slot (null if absent), so neither can pass for the other.
  if (o.history !== undefined) fields.push(o.seedShares ?? null, o.history);
  else if (o.seedShares !== undefined) fields.push(o.seedShares);
  return domainMessage(headSignatureTag, utf8(JSON.stringify(fields)));
}

/** The one byte encoding of a signed head: fixed key order, two-space JSON, a final newline. */
export function headBytes(signed: SignedHead): Uint8Array {
  const ordered = {
    format: headFormat,
    name: signed.name,
    generation: signed.generation,
    latestTransition: signed.latestTransition,
    objects: {
      rootCA: signed.objects.rootCA,
      transactionSigner: signed.objects.transactionSigner,
      meshCA: signed.objects.meshCA,
      intermediateCA: signed.objects.intermediateCA,
      meshCAKey: signed.objects.meshCAKey,
      ...(signed.objects.seedShares === undefined ? {} : { seedShares: signed.objects.seedShares }),
      ...(signed.objects.history === undefined ? {} : { history: signed.objects.history }),
    },
    recovery: {
      salt: signed.recovery.salt,
      threshold: signed.recovery.threshold,
      shares: signed.recovery.shares,
      commitments: signed.recovery.commitments,
      sealedRootSeed: signed.recovery.sealedRootSeed,
    },
    signature: signed.signature,
  };
  return utf8(JSON.stringify(ordered, null, 2) + "\n");
}

/** Signs a head and returns the bytes to store. */
export async function signHead(head: Head, signingKey: CryptoKey): Promise<{ head: SignedHead; bytes: Uint8Array }> {
  const signature = new Uint8Array(
    await subtle().sign(signingAlgorithm, signingKey, headMessage(head) as BufferSource),
  );
  const signed: SignedHead = { ...head, signature: toBase64(signature) };
  return { head: signed, bytes: headBytes(signed) };
}

/**
 * Parses stored head bytes; anything malformed, or bytes that are not the one encoding of their
 * content (so that served head bytes are exactly the signed ones), is STATE_CORRUPT naming the key.
 */
export function parseHead(bytes: Uint8Array, key: string): SignedHead {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    throw new CoordinatorError("STATE_CORRUPT", `${key} is not valid JSON`, { key });
  }
  const parsed = headSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CoordinatorError("STATE_CORRUPT", `${key} is malformed at ${issue?.path.join(".") || "top level"}`, { key });
  }
  const { name, generation, latestTransition, recovery, signature } = parsed.data;
  const { seedShares, history, ...required } = parsed.data.objects;
  const objects: Head["objects"] = {
    ...required,
    ...(seedShares === undefined ? {} : { seedShares }),
    ...(history === undefined ? {} : { history }),
  };
  const head = { name, generation, latestTransition, objects, recovery, signature };
  if (!bytesEqual(headBytes(head), bytes)) {
    throw new CoordinatorError("STATE_CORRUPT", `${key} is not in its canonical encoding`, { key });
  }
  return head;
}

/** True if the head's signature verifies under the transaction-signing public key. */
export async function verifyHead(head: SignedHead, publicKey: CryptoKey): Promise<boolean> {
  try {
    return await subtle().verify(
      signingAlgorithm,
      publicKey,
      fromBase64(head.signature) as BufferSource,
      headMessage(head) as BufferSource,
    );
  } catch {
    return false;
  }
}
