// The Coordinator's self-attestation: its in-memory HPKE key and evidence source, and the answer of `GET /v1/attestation` in every state.
import { fromHex, toBase64 } from "../encoding.js";
import { HpkeRecipient } from "../crypto/hpke.js";
import { CoordinatorError } from "../errors.js";
import { coordinatorEvidenceFormat, coordinatorNonceLength, coordinatorReportData } from "../attestation/coordinator-evidence.js";
import type { CoordinatorEvidence, EvidenceSource } from "../attestation/coordinator-evidence.js";
import type { Coordinator, CoordinatorState } from "./coordinator.js";

/** The answer of `GET /v1/attestation`. */
export interface AttestationAnswer {
  format: typeof coordinatorEvidenceFormat;
  name: string;
  /** Informative: only whether a state is held (and which) is bound. */
  state: CoordinatorState;
  latestTransition: string | null;
  /** SHA-256 of the root CA certificate's DER (hex), or null. */
  rootCA: string | null;
  /** SHA-256 of the mesh CA certificate's DER (hex), or null. */
  meshCA: string | null;
  /** The HPKE public key bound in the evidence, base64. */
  hpkePublicKey: string;
  evidence: CoordinatorEvidence;
}

/** How many evidence requests may be in flight at once; more are 503 BUSY (the endpoint is anonymous, each one a TEE call). */
export const maxEvidenceInFlight = 8;

/** The HPKE key and evidence source of one Coordinator process. */
export class SelfAttestation {
  /** The HPKE recipient; its private key never leaves memory. */
  readonly hpke: HpkeRecipient;
  /** Where evidence comes from; null: this Coordinator serves none (EVIDENCE_UNAVAILABLE). */
  readonly source: EvidenceSource | null;
  private inFlight = 0;

  private constructor(hpke: HpkeRecipient, source: EvidenceSource | null) {
    this.hpke = hpke;
    this.source = source;
  }

  /** Makes a fresh HPKE key pair for a Coordinator with the given evidence source. */
  static async create(source: EvidenceSource | null): Promise<SelfAttestation> {
    return new SelfAttestation(await HpkeRecipient.generate(), source);
  }

  /**
   * Evidence for a client's nonce (64 hex characters): no source is EVIDENCE_UNAVAILABLE (whatever
   * the nonce), a bad nonce INVALID_REQUEST. The bound name, state and CA hashes are one snapshot, taken before the
   * (slow) TEE call, and the answer shows exactly that snapshot.
   */
  async answer(coordinator: Coordinator, nonceHex: string | undefined): Promise<AttestationAnswer> {
    if (this.source === null) {
      throw new CoordinatorError("EVIDENCE_UNAVAILABLE", "this Coordinator serves no evidence of its own (started with --evidence none)");
    }
    if (nonceHex === undefined || !new RegExp(`^[0-9a-fA-F]{${2 * coordinatorNonceLength}}$`).test(nonceHex)) {
      throw new CoordinatorError("INVALID_REQUEST", `nonce must be ${coordinatorNonceLength} bytes in hex (${2 * coordinatorNonceLength} characters)`);
    }
    if (this.inFlight >= maxEvidenceInFlight) {
      throw new CoordinatorError("BUSY", `${maxEvidenceInFlight} evidence requests are in flight; try again in a few seconds`);
    }
    this.inFlight++;
    try {
      return await this.make(coordinator, nonceHex);
    } finally {
      this.inFlight--;
    }
  }

  private async make(coordinator: Coordinator, nonceHex: string): Promise<AttestationAnswer> {
    const source = this.source!;
    const nonce = fromHex(nonceHex);
    const snapshot = coordinator.attestedState();
    const held = snapshot.held;
    const reportData = await coordinatorReportData({ nonce, hpkePublicKey: this.hpke.publicKey, name: snapshot.name, state: held });
    const evidence = await source.evidence(reportData);
    return {
      format: coordinatorEvidenceFormat,
      name: snapshot.name,
      state: snapshot.state,
      latestTransition: held?.latestTransition ?? null,
      rootCA: held?.rootCA ?? null,
      meshCA: held?.meshCA ?? null,
      hpkePublicKey: toBase64(this.hpke.publicKey),
      evidence,
    };
  }
}
