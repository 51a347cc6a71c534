// Serving the root seed to a peer replica (`POST /v1/peers/seed`): a ready Coordinator hands it, HPKE-sealed, only to a requester whose evidence binds this Coordinator's nonce and the requester's key and satisfies a coordinator policy of the current manifest.
import { concat, toBase64, utf8 } from "../encoding.js";
import { sealTo } from "../crypto/hpke.js";
import { CoordinatorError } from "../errors.js";
import { coordinatorEvidenceFormat } from "../attestation/coordinator-evidence.js";
import { coordinatorRole, verifyCoordinatorEvidence } from "../attestation/coordinator-verify.js";
import type { CoordinatorReference, VerifiedCoordinator } from "../attestation/coordinator-verify.js";
import type { AttestationRoots } from "../attestation/modes.js";
import { NonceBook, nonceLength } from "../attestation/nonces.js";
import type { Manifest } from "../manifest/manifest.js";
import type { Coordinator } from "./coordinator.js";
import type { Ready } from "./ready.js";

/** The label that opens the HPKE `info` of a sealed root seed. */
export const peerSeedLabel = "contrast-coordinator/peer-seed/v1";

/** How many requests with evidence may be verified at once; more are 503 BUSY (the endpoint is anonymous). */
export const maxPeerSeedInFlight = 8;

/**
 * The HPKE `info` of a root seed sealed for a peer: `"contrast-coordinator/peer-seed/v1"` ‖ 0x00 ‖
 * u16 length (big-endian) ‖ name (UTF-8) ‖ the serving Coordinator's 32-byte nonce.
 */
export function peerSeedInfo(name: string, nonce: Uint8Array): Uint8Array {
  const nameBytes = utf8(name);
  if (nameBytes.length > 0xffff) throw new RangeError("the name is longer than 65535 bytes");
  if (nonce.length !== nonceLength) throw new RangeError(`the nonce must have ${nonceLength} bytes`);
  return concat(utf8(peerSeedLabel), new Uint8Array([0, nameBytes.length >> 8, nameBytes.length & 0xff]), nameBytes, nonce);
}

/** The plaintext of a sealed root seed: the root salt (32 bytes) ‖ the root seed. */
export function rootSeedMaterial(ready: Ready): Uint8Array {
  return concat(ready.engine.salt, ready.engine.seed);
}

/** A request for the root seed: this Coordinator's nonce (hex), the requester's HPKE key (base64) and its evidence (the workload wire shape, no nonce). */
export interface PeerSeedRequest {
  nonce: string;
  hpkePublicKey: string;
  evidence: unknown;
}

/** The answer: the sealed root seed, and (informative, not bound) the transition and generation of the state it came from. */
export interface PeerSeedAnswer {
  enc: string;
  ciphertext: string;
  latestTransition: string;
  generation: number;
}

/** What was served, for logs. */
export interface PeerSeedServed {
  answer: PeerSeedAnswer;
  requester: VerifiedCoordinator;
}

/** The coordinator reference of a verified manifest: its policies with Role "coordinator" and its ReferenceValues; null if it names none. */
export function coordinatorReferenceOf(manifest: Manifest, source: string): CoordinatorReference | null {
  const policyHashes = [
    ...new Set(
      Object.entries(manifest.Policies)
        .filter(([, entry]) => entry.Role === coordinatorRole)
        .map(([hash]) => hash.toLowerCase()),
    ),
  ].sort();
  return policyHashes.length === 0 ? null : { policyHashes, referenceValues: manifest.ReferenceValues ?? {}, source };
}

/** Serves the root seed to attested peer replicas of one Coordinator. */
export class PeerSeedServer {
  /** Nonces for peers only: a workload's nonce is not one, nor the other way round. */
  private readonly nonces: NonceBook;
  private readonly now: () => Date;
  private inFlight = 0;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly options: { roots?: AttestationRoots; now?: () => Date } = {},
  ) {
    this.now = options.now ?? (() => new Date());
    this.nonces = new NonceBook({ now: () => this.now().getTime() });
  }

  /** A fresh nonce for a requester's evidence (good for 5 minutes, once); only when ready. */
  challenge(): Promise<string> {
    this.coordinator.readyState();
    return this.nonces.issue();
  }

  /**
   * Seals the root seed to the requester's key, once its evidence verified: it must be a
   * Coordinator's evidence (REPORT_DATA over this nonce, its key, this Coordinator's name and no
   * held state) that satisfies a coordinator policy and the reference values of the current verified
   * manifest, to the pinned roots. Only when ready (else the usual 409); the nonce is spent first, so
   * a refused request cannot be retried with it. Refusals: NONCE_*, ATTESTATION_FAILED (with the
   * verifier's reason), BUSY, INVALID_REQUEST.
   */
  async serve(request: PeerSeedRequest): Promise<PeerSeedServed> {
    this.coordinator.readyState();
    if (this.inFlight >= maxPeerSeedInFlight) {
      throw new CoordinatorError("BUSY", `${maxPeerSeedInFlight} peer seed requests are being verified; try again in a few seconds`);
    }
    this.inFlight++;
    try {
      return await this.verifyAndSeal(request);
    } finally {
      this.inFlight--;
    }
  }

  private async verifyAndSeal(request: PeerSeedRequest): Promise<PeerSeedServed> {
    const nonce = await this.nonces.consume(request.nonce);
    // The state whose manifest decides, and whose seed is sealed: one snapshot.
    const ready = this.coordinator.readyState();
    const latest = ready.history[ready.history.length - 1]!;
    const reference = coordinatorReferenceOf(ready.manifest, `the current manifest ${latest.manifest}`);
    if (reference === null) {
      throw new CoordinatorError(
        "ATTESTATION_FAILED",
        "the current manifest names no policy with Role \"coordinator\", so no peer can be attested and the seed is never served",
        { reason: "COORDINATOR_POLICY_MISSING" },
      );
    }
    // The requester answers as a Coordinator that holds no state, under this Coordinator's name.
    const answer = {
      format: coordinatorEvidenceFormat,
      name: this.coordinator.name,
      state: "recovery-required",
      latestTransition: null,
      rootCA: null,
      meshCA: null,
      hpkePublicKey: request.hpkePublicKey,
      evidence: request.evidence,
    };
    const requester = await verifyCoordinatorEvidence(answer, {
      nonce,
      reference,
      ...(this.options.roots === undefined ? {} : { roots: this.options.roots }),
      now: this.now(),
    });
    const plaintext = rootSeedMaterial(ready);
    try {
      const sealed = await sealTo(requester.hpkePublicKey, plaintext, peerSeedInfo(this.coordinator.name, nonce));
      return {
        answer: {
          enc: toBase64(sealed.enc),
          ciphertext: toBase64(sealed.ciphertext),
          latestTransition: ready.head.latestTransition,
          generation: ready.head.generation,
        },
        requester,
      };
    } finally {
      plaintext.fill(0);
    }
  }
}
