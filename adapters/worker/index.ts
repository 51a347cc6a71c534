// The Coordinator as a Worker: the fetch handler routes every request to the Durable Object of the configured name, which runs the app over its own storage.
import "reflect-metadata";
import type { Hono } from "hono";
import { createApp } from "../../src/app.js";
import type { Log } from "../../src/app.js";
import { validatorsFor } from "../../src/attestation/modes.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { createStore } from "../../src/storage/store.js";
import { ConfigError, coordinatorNamespace, parseWorkerConfig } from "./config.js";
import type { WorkerConfig, WorkerEnv } from "./config.js";
import { durableObjectDriver } from "./sql-driver.js";
import type { DurableObjectState, DurableObjectStub } from "./types.js";

/** Writes one JSON line per event to the Worker's log (`wrangler tail`, Workers Logs, workerd's stdout). */
const log: Log = (level, message, fields = {}) => {
  const line = JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields });
  if (level === "error") console.error(line);
  else console.log(line);
};

/** An error answer in the core's shape, for failures outside the app (configuration, an unreachable object). */
function errorAnswer(status: number, code: string, message: string): Response {
  return new Response(JSON.stringify({ error: { code, message } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Configuration mistakes already logged by this isolate, so a bad deployment logs each once, not per request. */
const loggedConfigErrors = new Set<string>();

function configError(err: ConfigError): Response {
  if (!loggedConfigErrors.has(err.message)) {
    loggedConfigErrors.add(err.message);
    log("error", "invalid configuration", { code: err.code, error: err.message });
  }
  return errorAnswer(500, err.code, err.message);
}

/**
 * The Durable Object that is one Coordinator. The runtime keeps at most one instance per name
 * worldwide, so the Coordinator's in-memory state (the recovered seed and the verified history)
 * lives here, next to the storage it guards. When the runtime evicts the object (idle, redeploy,
 * host move), that state is gone and the next request finds the Coordinator in `recovery-required`.
 */
export class CoordinatorObject {
  private readonly state: DurableObjectState;
  private readonly env: WorkerEnv;
  private app: Promise<Hono> | null = null;
  private coordinator: Coordinator | null = null;
  private lastAudit = performance.now();

  constructor(state: DurableObjectState, env: WorkerEnv) {
    this.state = state;
    this.env = env;
  }

  /** Starts the Coordinator once per instance; a failed start is retried by the next request. */
  private start(config: WorkerConfig): Promise<Hono> {
    if (this.app === null) {
      const started = performance.now();
      const validators = validatorsFor(config.attestation, config.attestationRoots ?? undefined);
      this.app = (async () => {
        const store = createStore(durableObjectDriver(this.state.storage));
        const coordinator = await Coordinator.start({ store, name: config.name, validators, auditAfterWrites: true });
        this.coordinator = coordinator;
        let selfAttestation: SelfAttestation | undefined;
        if (config.evidence === "simulated") {
          selfAttestation = await SelfAttestation.create(simulatedEvidenceSource());
          log("warn", "INSECURE: the simulated evidence source is on; the Coordinator's evidence is signed by a key made at start and proves nothing. Never use it in production.", {
            evidence: "simulated",
          });
        }
        if (config.attestation.includes("insecure-simulated")) {
          log("warn", "INSECURE: the simulated attestation validator is on; any caller can claim any policy. Never use it in production.", {
            attestation: config.attestation,
          });
        }
        log("info", "started", {
          name: config.name,
          store: "durable-object",
          object: this.state.id.toString(),
          state: coordinator.currentState,
          startupMs: Math.round(performance.now() - started),
        });
        return createApp({
          coordinator,
          log,
          ...(config.allowedHosts === null ? {} : { allowedHosts: config.allowedHosts }),
          ...(selfAttestation === undefined ? {} : { selfAttestation }),
        });
      })();
      this.app.catch(() => {
        this.app = null;
      });
    }
    return this.app;
  }

  /** Serves one request of the Coordinator's API. */
  async fetch(request: Request): Promise<Response> {
    let config: WorkerConfig;
    try {
      config = parseWorkerConfig(this.env);
    } catch (err) {
      if (err instanceof ConfigError) return configError(err);
      throw err;
    }
    let app: Hono;
    try {
      app = await this.start(config);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log("error", "cannot read the store", { error: message });
      return errorAnswer(503, "STORE_UNAVAILABLE", `cannot read the store: ${message}`);
    }
    this.auditNow();
    return app.fetch(request);
  }

  /**
   * Re-verifies the stored state at most once per interval, when requests come: an object has no
   * timers of its own while idle, and its storage changes only through the object itself.
   */
  private auditNow(): void {
    const now = performance.now();
    if (this.coordinator === null || now - this.lastAudit < auditIntervalMs) return;
    this.lastAudit = now;
    const audit = this.coordinator.audit().catch((err: unknown) => log("error", "re-verification failed", { error: String(err) }));
    this.state.waitUntil?.(audit);
  }
}

/** How often, at most, a Coordinator object re-verifies its stored state. */
const auditIntervalMs = 60_000;

/** The Worker: checks the configuration, then hands the request to the Coordinator's Durable Object. */
export default {
  async fetch(request: Request, env: WorkerEnv): Promise<Response> {
    let config: WorkerConfig;
    let stub: DurableObjectStub;
    try {
      config = parseWorkerConfig(env);
      const namespace = coordinatorNamespace(env);
      stub = namespace.get(namespace.idFromName(config.name));
    } catch (err) {
      if (err instanceof ConfigError) return configError(err);
      throw err;
    }
    try {
      return await stub.fetch(request);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log("error", "the Coordinator's Durable Object is unreachable", { name: config.name, error: message });
      return errorAnswer(503, "STORE_UNAVAILABLE", `the Coordinator's Durable Object is unreachable: ${message}`);
    }
  },
};
