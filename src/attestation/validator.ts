// Attestation: the validator interface, and the insecure simulated validator for development and tests.
import { z } from "zod";
import { fromBase64 } from "../encoding.js";
import { CoordinatorError } from "../errors.js";
import type { ReferenceValues } from "../manifest/manifest.js";
import type { Claim } from "./claims.js";
import { AttestationError } from "./errors.js";

/** What a validator concluded from a workload's evidence. */
export interface AttestationResult {
  /** Hex SHA-256 of the runtime policy the workload runs. */
  policyHash: string;
  /** The attested claims, to be carried as certificate extensions (none for simulated evidence). */
  claims?: Claim[];
}

/** What a validator checks evidence against. */
export interface AttestationContext {
  /** The public key the certificate will be issued for (DER SPKI): real evidence must bind it. */
  publicKey: Uint8Array;
  /** The current manifest's reference values. */
  referenceValues: ReferenceValues | undefined;
  /** The time at which certificates must be valid. */
  now: Date;
  /** Accepts the evidence's nonce once (NONCE_INVALID, NONCE_EXPIRED, NONCE_REPLAYED otherwise) and returns its bytes. */
  consumeNonce(hex: string): Promise<Uint8Array>;
}

/** Checks a workload's attestation evidence against the manifest's reference values and the key to certify. */
export interface AttestationValidator {
  /** The evidence `type` this validator accepts. */
  readonly type: string;
  /** True if this validator provides no security at all. */
  readonly insecure: boolean;
  /** Validates evidence; throws CoordinatorError (ATTESTATION_FAILED with a `reason`, or a NONCE_ code) if it does not hold. */
  validate(evidence: unknown, context: AttestationContext): Promise<AttestationResult>;
}

/** Parses a validator's evidence with its schema; a mismatch is ATTESTATION_FAILED with reason ATTESTATION_EVIDENCE_INVALID. */
export function parseEvidence<S extends z.ZodType>(schema: S, evidence: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(evidence);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `evidence.${issue.path.join(".")}` : "evidence";
    throw new CoordinatorError("ATTESTATION_FAILED", `${what} evidence: ${where}: ${issue?.message ?? "invalid"}`, {
      reason: "ATTESTATION_EVIDENCE_INVALID",
    });
  }
  return parsed.data;
}

/** Decodes a base64 evidence field; bad base64 is ATTESTATION_FAILED with reason ATTESTATION_EVIDENCE_INVALID. */
export function evidenceBytes(value: string, field: string): Uint8Array {
  try {
    return fromBase64(value);
  } catch {
    throw new CoordinatorError("ATTESTATION_FAILED", `evidence.${field} is not valid base64`, { reason: "ATTESTATION_EVIDENCE_INVALID" });
  }
}

/** Runs a verifier, turning its AttestationError into ATTESTATION_FAILED with the verifier's code as the reason. */
export async function verifying<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof AttestationError) {
      throw new CoordinatorError("ATTESTATION_FAILED", `${err.code}: ${err.message}`, { reason: err.code, cause: err });
    }
    throw err;
  }
}

const simulatedEvidence = z.lazy(() =>
  z
    .object({
      type: z.literal("insecure-simulated"),
      policyHash: z.string().regex(/^[0-9a-f]{64}$/),
    })
    .strict(),
);

/** Evidence that merely claims a policy hash. Anyone can forge it: development and tests only. */
export const simulatedValidator: AttestationValidator = {
  type: "insecure-simulated",
  insecure: true,
  async validate(evidence) {
    const parsed = simulatedEvidence.safeParse(evidence);
    if (!parsed.success) {
      throw new CoordinatorError("ATTESTATION_FAILED", "insecure-simulated evidence must be { type, policyHash }");
    }
    return { policyHash: parsed.data.policyHash };
  },
};

/** The validators a Coordinator accepts, by evidence type. */
export type Validators = ReadonlyMap<string, AttestationValidator>;

/** Picks the validator for a piece of evidence by its `type` field. */
export function validatorFor(validators: Validators, evidence: unknown): AttestationValidator {
  const type =
    typeof evidence === "object" && evidence !== null && "type" in evidence ? (evidence as { type: unknown }).type : undefined;
  const validator = typeof type === "string" ? validators.get(type) : undefined;
  if (validator === undefined) {
    const enabled = [...validators.keys()];
    throw new CoordinatorError(
      "ATTESTATION_UNSUPPORTED",
      `evidence type ${JSON.stringify(type ?? null)} is not enabled on this Coordinator` +
        (enabled.length > 0 ? ` (enabled: ${enabled.join(", ")})` : " (no attestation validator is enabled)"),
    );
  }
  return validator;
}
