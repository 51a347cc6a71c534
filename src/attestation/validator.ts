// Attestation: the validator interface, and the insecure simulated validator for development and tests.
import { z } from "zod";
import { CoordinatorError } from "../errors.js";

/** What a validator concluded from a workload's evidence. */
export interface AttestationResult {
  /** Hex SHA-256 of the runtime policy the workload runs. */
  policyHash: string;
}

/**
 * Checks a workload's attestation evidence. `binding` is the public key the certificate will be issued
 * for: a real validator checks that the evidence's report data commits to it.
 */
export interface AttestationValidator {
  /** The evidence `type` this validator accepts. */
  readonly type: string;
  /** True if this validator provides no security at all. */
  readonly insecure: boolean;
  /** Validates evidence; throws CoordinatorError("ATTESTATION_FAILED") if it does not hold. */
  validate(evidence: unknown, binding: Uint8Array): Promise<AttestationResult>;
}

const simulatedEvidence = z
  .object({
    type: z.literal("insecure-simulated"),
    policyHash: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

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
