// The Coordinator's Node entry point: configuration, store choice, HTTP(S) server, JSON-lines logs, graceful shutdown.
import "reflect-metadata";
import { readFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { resolve } from "node:path";
import { serve } from "@hono/node-server";
import { createApp } from "../../src/app.js";
import type { Log } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import type { AttestationValidator } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import { ConfigError, parseConfig, usage } from "./config.js";
import type { Config } from "./config.js";
import { fsDriver } from "./fs-driver.js";
import { describeKubernetes, kubernetesStore, resolveKubernetesSettings } from "./kubernetes.js";
import type { KubernetesSettings } from "./kubernetes.js";

const startedAt = performance.now();

/** Writes one JSON line per event to stdout. */
const log: Log = (level, message, fields = {}) => {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields }) + "\n");
};

function fail(message: string, code: number): never {
  process.stderr.write(`contrast-coordinator: ${message}\n`);
  process.exit(code);
}

function readTls(config: Config): { cert: Buffer; key: Buffer } | null {
  if (config.tls === null) return null;
  try {
    return { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) };
  } catch (err) {
    throw new ConfigError(`cannot read the TLS files: ${(err as Error).message}`);
  }
}

async function main(): Promise<void> {
  let config: Config | "help";
  let tls: ReturnType<typeof readTls>;
  let kube: KubernetesSettings | null = null;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
    if (config === "help") {
      process.stdout.write(usage);
      return;
    }
    tls = readTls(config);
    if (config.store.kind === "kubernetes") kube = resolveKubernetesSettings(config.store, process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(`error: ${err.message}`, 2);
    throw err;
  }

  const driver =
    kube !== null
      ? kubernetesStore(kube, config.name)
      : config.store.kind === "fs"
        ? fsDriver({ base: resolve(config.store.dir) })
        : memoryDriver();
  const storeText =
    kube !== null ? describeKubernetes(kube) : config.store.kind === "fs" ? `fs:${resolve(config.store.dir)}` : "memory";
  const store = createStore(driver);
  const validators = new Map<string, AttestationValidator>();
  if (config.attestation === "insecure-simulated") {
    validators.set(simulatedValidator.type, simulatedValidator);
    log("warn", "INSECURE: the simulated attestation validator is on; any caller can claim any policy. Never use it in production.", {
      attestation: config.attestation,
    });
  }

  let coordinator: Coordinator;
  try {
    coordinator = await Coordinator.start({ store, name: config.name, validators, recoveryTimeoutMs: config.recoveryTimeoutMs });
  } catch (err) {
    fail(`error: cannot read the store (${storeText}): ${(err as Error).message}`, 1);
  }
  const app = createApp({ coordinator, log });

  const server = serve(
    {
      fetch: app.fetch,
      port: config.port,
      hostname: config.host,
      ...(tls === null ? {} : { createServer: createHttpsServer, serverOptions: tls }),
    },
    (info) => {
      log("info", "listening", {
        address: info.address,
        port: info.port,
        tls: tls !== null,
        store: storeText,
        name: config.name,
        state: coordinator.currentState,
        // From the entry's own code (modules loaded), and from the process's start (Node boot included).
        startupMs: Math.round(performance.now() - startedAt),
        sinceProcessStartMs: Math.round(performance.now()),
      });
    },
  );
  server.on("error", (err: NodeJS.ErrnoException) => fail(`error: cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`, 1));

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "shutting down", { signal });
    const force = setTimeout(() => process.exit(0), 10_000);
    force.unref();
    server.close(() => {
      log("info", "stopped");
      process.exit(0);
    });
    if ("closeIdleConnections" in server) (server as { closeIdleConnections(): void }).closeIdleConnections();
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err: unknown) => fail(`error: ${(err as Error).stack ?? String(err)}`, 1));
