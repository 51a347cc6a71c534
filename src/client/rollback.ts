// The rollback memory: the newest generation and transition a client has seen verified, and the check that a Coordinator never goes back or forks.
import { z } from "zod";

/** The format tag of the memory document. */
export const memoryFormat = "contrast-cli-state/v1";

const hash = z.string().regex(/^[0-9a-f]{64}$/);

/** What a workspace remembers about its Coordinator: the newest verified generation and its transition. */
export const memorySchema = z
  .object({
    format: z.literal(memoryFormat),
    /** The Coordinator's name. */
    name: z.string(),
    /** Hex SHA-256 of the root CA certificate's DER. */
    rootCA: hash,
    generation: z.number().int().min(1),
    latestTransition: hash,
  })
  .strict();

/** A rollback memory. */
export type Memory = z.infer<typeof memorySchema>;

/** What the Coordinator shows now: from a verified history, or from a status (no root CA then). */
export interface Observed {
  name: string;
  rootCA?: string;
  generation: number;
  latestTransition: string;
  /**
   * The offline-verified history's transitions, oldest first (generation g is `transitions[g - 1]`).
   * Only with them can a newer generation be checked to descend from the remembered transition, so
   * only an observation that carries them (and a root CA) moves the memory forward.
   */
  transitions?: readonly string[];
}

/** `ROLLBACK`: an older generation than seen before; `FORK`: the same generation with another transition; `ROOT_CA_MISMATCH`. */
export type RollbackCode = "ROLLBACK" | "FORK" | "ROOT_CA_MISMATCH";

/** The Coordinator went back in time, forked, or is another one. */
export class RollbackError extends Error {
  readonly code: RollbackCode;
  constructor(code: RollbackCode, message: string) {
    super(message);
    this.name = "RollbackError";
    this.code = code;
  }
}

/**
 * Checks what the Coordinator shows against the memory and returns the memory to keep: the
 * observed state if it is newer and verified (a root CA hash and the transitions), else the old
 * memory. Throws RollbackError on an older generation, on a history in which the remembered
 * transition is not at the remembered generation (a fork, even one that moved past it), or on a
 * different root CA. A throw means the caller keeps the old memory: it is the evidence.
 */
export function checkMemory(memory: Memory | null, observed: Observed): Memory | null {
  if (memory !== null) {
    if (observed.rootCA !== undefined && observed.rootCA !== memory.rootCA) {
      throw new RollbackError(
        "ROOT_CA_MISMATCH",
        `the Coordinator's root CA (sha256 ${observed.rootCA}) is not the one this workspace has seen (sha256 ${memory.rootCA})`,
      );
    }
    if (observed.generation < memory.generation) {
      throw new RollbackError(
        "ROLLBACK",
        `the Coordinator shows generation ${observed.generation}, but this workspace has seen generation ${memory.generation} ` +
          `(${memory.latestTransition}): its state was rolled back`,
      );
    }
    if (observed.generation === memory.generation && observed.latestTransition !== memory.latestTransition) {
      throw new RollbackError(
        "FORK",
        `the Coordinator shows transition ${observed.latestTransition} at generation ${observed.generation}, but this workspace ` +
          `has seen ${memory.latestTransition} there: its history was replaced`,
      );
    }
    const transitions = observed.transitions;
    if (transitions !== undefined) {
      if (transitions.length !== observed.generation || transitions[observed.generation - 1] !== observed.latestTransition) {
        throw new RollbackError(
          "FORK",
          `the Coordinator's history (${transitions.length} transitions) does not end at its generation ${observed.generation} (${observed.latestTransition})`,
        );
      }
      const atRemembered = transitions[memory.generation - 1];
      if (atRemembered !== memory.latestTransition) {
        throw new RollbackError(
          "FORK",
          `the Coordinator's history has ${atRemembered === undefined ? "no transition" : `transition ${atRemembered}`} at generation ${memory.generation}, ` +
            `but this workspace has seen ${memory.latestTransition} there: its history was replaced (now at generation ${observed.generation})`,
        );
      }
    }
    if (observed.generation === memory.generation || observed.rootCA === undefined || transitions === undefined) return memory;
  }
  if (observed.rootCA === undefined) return memory;
  return {
    format: memoryFormat,
    name: observed.name,
    rootCA: observed.rootCA,
    generation: observed.generation,
    latestTransition: observed.latestTransition,
  };
}
