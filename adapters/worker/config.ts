// The Worker's configuration from its vars and bindings (Coordinator name, attestation mode, allowed hosts), checked with the Node adapter's rules.
import { parseAttestationModes, parseAttestationRoots } from "../../src/attestation/modes.js";
import type { AttestationMode, AttestationRoots } from "../../src/attestation/modes.js";
import { parseAllowedHosts } from "../../src/api/hosts.js";
import type { DurableObjectNamespace } from "./types.js";

/** The vars and bindings the Worker reads (wrangler.toml names them). */
export interface WorkerEnv {
  /** The Durable Object namespace that holds one Coordinator per name. */
  COORDINATOR?: DurableObjectNamespace;
  /** The Coordinator's name, a lower-case DNS label; default `coordinator`. */
  COORDINATOR_NAME?: unknown;
  /** `none` (default) or `insecure-simulated`. */
  ATTESTATION?: unknown;
  /** Host names answered, comma-separated (like `--allowed-hosts`); unset: every Host. */
  ALLOWED_HOSTS?: unknown;
  ATTESTATION_ROOTS?: unknown;
  /** Where the Coordinator's own evidence comes from: `none` (default) or `simulated` (proves nothing; a Worker has no TEE). */
  EVIDENCE?: unknown;
}

/** The checked configuration. */
export interface WorkerConfig {
  name: string;
  /** The validators to run (empty: none). */
  attestation: AttestationMode[];
  /** Roots pinned instead of AMD's and Intel's (the ATTESTATION_ROOTS var, PEM), or null. */
  attestationRoots: AttestationRoots | null;
  /** The Host names answered; null: every Host. */
  allowedHosts: string[] | null;
  /** The Coordinator's own evidence: none, or the insecure simulated source. */
  evidence: "none" | "simulated";
}

/** A configuration mistake: every request answers 500 `CONFIG_INVALID` with this one-line message. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The stable code of the answer. */
  readonly code = "CONFIG_INVALID";
}

/** The same rule as the Node adapter's `--name`. */
const namePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function text(value: unknown, variable: string, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "string") throw new ConfigError(`${variable} must be a string var, not ${typeof value}`);
  return value;
}

/** The last ATTESTATION_ROOTS text parsed and its roots: the config is read on every request, the PEM parsed once. */
let parsedRoots: { text: string; roots: AttestationRoots } | null = null;

function rootsOf(pem: string): AttestationRoots {
  if (parsedRoots?.text !== pem) {
    try {
      parsedRoots = { text: pem, roots: parseAttestationRoots(pem) };
    } catch (err) {
      throw new ConfigError(`ATTESTATION_ROOTS ${(err as Error).message}`);
    }
  }
  return parsedRoots.roots;
}

/** Reads and checks the vars; throws ConfigError with a one-line message on any mistake. */
export function parseWorkerConfig(env: WorkerEnv): WorkerConfig {
  const name = text(env.COORDINATOR_NAME, "COORDINATOR_NAME", "coordinator");
  if (!namePattern.test(name)) {
    throw new ConfigError(
      `COORDINATOR_NAME must be a lower-case DNS label (letters, digits, dashes; at most 63), not ${JSON.stringify(name)}`,
    );
  }
  let attestation: AttestationMode[];
  try {
    attestation = parseAttestationModes(text(env.ATTESTATION, "ATTESTATION", "none"));
  } catch (err) {
    throw new ConfigError(`ATTESTATION ${(err as Error).message}`);
  }
  let attestationRoots: AttestationRoots | null = null;
  if (env.ATTESTATION_ROOTS !== undefined && env.ATTESTATION_ROOTS !== null) {
    attestationRoots = rootsOf(text(env.ATTESTATION_ROOTS, "ATTESTATION_ROOTS", ""));
  }
  let allowedHosts: string[] | null = null;
  if (env.ALLOWED_HOSTS !== undefined && env.ALLOWED_HOSTS !== null) {
    // A string var (`"a,b"`) or a JSON array var (`["a", "b"]`) in wrangler.toml.
    const raw = env.ALLOWED_HOSTS;
    if (typeof raw !== "string" && !(Array.isArray(raw) && raw.every((e) => typeof e === "string"))) {
      throw new ConfigError("ALLOWED_HOSTS must be a comma-separated string or an array of strings");
    }
    try {
      allowedHosts = parseAllowedHosts(typeof raw === "string" ? raw : (raw as string[]).join(","));
    } catch (err) {
      throw new ConfigError(`ALLOWED_HOSTS ${(err as Error).message}`);
    }
  }
  const evidence = text(env.EVIDENCE, "EVIDENCE", "none");
  if (evidence !== "none" && evidence !== "simulated") {
    throw new ConfigError(`EVIDENCE must be none or simulated (a Worker has no TEE), not ${JSON.stringify(evidence)}`);
  }
  return { name, attestation, attestationRoots, allowedHosts, evidence };
}

/** The Durable Object namespace binding, or a ConfigError naming what is missing. */
export function coordinatorNamespace(env: WorkerEnv): DurableObjectNamespace {
  const ns = env.COORDINATOR;
  if (ns === undefined || ns === null || typeof (ns as Partial<DurableObjectNamespace>).idFromName !== "function") {
    throw new ConfigError("the Durable Object binding COORDINATOR (class CoordinatorObject) is missing; see wrangler.toml");
  }
  return ns;
}
