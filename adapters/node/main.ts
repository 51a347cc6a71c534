// The Coordinator's Node entry point: configuration, store choice, HTTP(S) server, JSON-lines logs, graceful shutdown.
import "reflect-metadata";
import { readFileSync, statSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { resolve } from "node:path";
import { serve } from "@hono/node-server";
import { createApp } from "../../src/app.js";
import type { Log } from "../../src/app.js";
import { parseAttestationRoots, validatorsFor } from "../../src/attestation/modes.js";
import type { AttestationRoots } from "../../src/attestation/modes.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import type { FollowOutcome } from "../../src/coordinator/coordinator.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import type { EvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { sha256 } from "../../src/crypto/provider.js";
import { toHex } from "../../src/encoding.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import packageJson from "../../package.json" with { type: "json" };
import { ConfigError, parseConfig, usage } from "./config.js";
import type { Config } from "./config.js";
import { fsDriver } from "./fs-driver.js";
import { describeKubernetes, kubernetesStore, plainHttp, resolveKubernetesSettings } from "./kubernetes.js";
import type { KubernetesSettings } from "./kubernetes.js";
import { probeAtStart } from "./probe.js";
import { tsmEvidenceSource } from "./tsm.js";

const startedAt = performance.now();

/** Writes one JSON line per event to stdout. */
const log: Log = (level, message, fields = {}) => {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields }) + "\n");
};

function fail(message: string, code: number): never {
  process.stderr.write(`contrast-coordinator: ${message}\n`);
  process.exit(code);
}

/** An error's message on one line. */
function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
}

/** Why the server could not listen, in words that say what to do (a configuration error: status 2). */
function listenProblem(err: NodeJS.ErrnoException, host: string, port: number): string {
  const where = `${host}:${port}`;
  switch (err.code) {
    case "EADDRINUSE":
      return `cannot listen on ${where}: another process already holds port ${port} (EADDRINUSE; an earlier Coordinator still running?); stop it or choose another --port`;
    case "EACCES":
      return `cannot listen on ${where}: not allowed to bind port ${port} (EACCES; ports below 1024 need privileges); choose another --port`;
    case "EADDRNOTAVAIL":
      return `cannot listen on ${where}: ${host} is not an address of this machine (EADDRNOTAVAIL); check --host`;
    default:
      return `cannot listen on ${where}: ${err.code ?? oneLine(err)}`;
  }
}

function readTls(config: Config): { cert: Buffer; key: Buffer } | null {
  if (config.tls === null) return null;
  try {
    return { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) };
  } catch (err) {
    throw new ConfigError(`cannot read the TLS files: ${(err as Error).message}`);
  }
}

/**
 * Checks the stored head every `intervalMs` (one check at a time) so that the Coordinator follows
 * what other processes on the same store write, and logs what changed.
 */
function followHead(coordinator: Coordinator, intervalMs: number): void {
  let checking = false;
  let unavailable = false;
  const report = (outcome: FollowOutcome): void => {
    const wasUnavailable = unavailable;
    unavailable = outcome.kind === "unavailable";
    if (wasUnavailable && !unavailable) log("info", "the store answers again: following the head");
    switch (outcome.kind) {
      case "followed":
        log("info", "followed the head another process wrote", { generation: outcome.generation, latestTransition: outcome.latestTransition });
        break;
      case "restored":
        log("info", "the store holds the verified head again: ready");
        break;
      case "stale":
        log("warn", "the stored head cannot be verified with this Coordinator's keys: stale until it can be followed or recovered", {
          key: outcome.damage.key,
          error: outcome.damage.message,
        });
        break;
      case "initialized":
        log("info", "another Coordinator initialized the store: recovery required");
        break;
      case "unavailable":
        // Once per outage, not on every check.
        if (wasUnavailable) break;
        log("warn", "cannot read the head to follow it", { error: outcome.message });
        break;
      default:
        break;
    }
  };
  coordinator.onAudit((finding) => {
    if (finding.kind === "followed") log("info", "followed the head another process wrote (found by re-verification)", { generation: finding.generation });
  });
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    coordinator
      .follow()
      .then(report, (err: unknown) => log("error", "following the head failed", { error: String(err) }))
      .finally(() => (checking = false));
  }, intervalMs);
  timer.unref();
}

async function main(): Promise<void> {
  let config: Config | "help" | "version";
  let tls: ReturnType<typeof readTls>;
  let kube: KubernetesSettings | null = null;
  try {
    config = parseConfig(process.argv.slice(2), process.env);
    if (config === "help") {
      process.stdout.write(usage);
      return;
    }
    if (config === "version") {
      // Inlined by the bundler: dist/coordinator.mjs needs no package.json beside it.
      process.stdout.write(`contrast-coordinator ${packageJson.version}\n`);
      return;
    }
    tls = readTls(config);
    if (config.store.kind === "kubernetes") kube = resolveKubernetesSettings(config.store, process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(`error: ${err.message}`, 2);
    throw err;
  }

  const kubeDriver = kube !== null ? kubernetesStore(kube, config.name) : null;
  const driver = kubeDriver ?? (config.store.kind === "fs" ? fsDriver({ base: resolve(config.store.dir) }) : memoryDriver());
  const storeText =
    kube !== null ? describeKubernetes(kube) : config.store.kind === "fs" ? `fs:${resolve(config.store.dir)}` : "memory";
  const store = createStore(driver);
  let roots: AttestationRoots | undefined;
  if (config.attestationRootsFile !== null) {
    try {
      roots = parseAttestationRoots(readFileSync(config.attestationRootsFile, "utf8"));
    } catch (err) {
      fail(`error: --attestation-roots ${config.attestationRootsFile}: ${(err as Error).message}`, 2);
    }
    log("warn", "the attestation roots of --attestation-roots replace AMD's and Intel's: only for a test TEE or a private CA", {
      file: config.attestationRootsFile,
      snp: roots.snp.map((a) => a.product),
      tdx: roots.tdx !== undefined,
    });
  }
  const validators = validatorsFor(config.attestation, roots);
  // The Coordinator's own evidence; the simulated hierarchy is made in the background (a few seconds).
  let evidenceSource: EvidenceSource | null = null;
  if (config.evidence === "tsm") {
    if (!statSync(config.tsmPath, { throwIfNoEntry: false })?.isDirectory()) {
      fail(`error: --tsm-path ${config.tsmPath} is not a directory (configfs-tsm needs configfs mounted and Linux 6.7 or later in an SEV-SNP or TDX guest)`, 2);
    }
    evidenceSource = tsmEvidenceSource({ path: config.tsmPath });
  } else if (config.evidence === "simulated") {
    const simulated = simulatedEvidenceSource({
      ...(config.simulatedMeasurement === undefined ? {} : { measurement: config.simulatedMeasurement }),
      ...(config.simulatedHostData === undefined ? {} : { hostData: config.simulatedHostData }),
    });
    evidenceSource = simulated;
    log("warn", "INSECURE: the simulated evidence source is on; the Coordinator's evidence is signed by a key made at start and proves nothing. Never use it in production.", {
      evidence: "simulated",
    });
    simulated.amd.then(
      async (amd) => log("warn", "the simulated evidence source is ready; its ARK proves nothing", { arkSha256: toHex(await sha256(amd.ark.certificate)) }),
      (err: unknown) => log("error", "the simulated evidence source could not start", { error: String(err) }),
    );
  }
  const selfAttestation = evidenceSource === null ? undefined : await SelfAttestation.create(evidenceSource);
  if (config.attestation.includes("insecure-simulated")) {
    log("warn", "INSECURE: the simulated attestation validator is on; any caller can claim any policy. Never use it in production.", {
      attestation: config.attestation,
    });
  }

  if (kube !== null && plainHttp(kube)) {
    log("warn", "INSECURE: the Kubernetes API server is reached over plain http; the token (if any) and every store object travel unencrypted. Only for a test server on loopback.", {
      server: kube.server,
      token: kube.tokenFile !== null,
    });
  }

  // A store that cannot work (unwritable, not a directory, no RBAC, no CRDs) is a configuration error.
  try {
    await probeAtStart(kubeDriver !== null ? { kubernetes: kubeDriver } : { store }, config.name);
  } catch (err) {
    fail(`error: the store ${storeText} cannot be used: ${oneLine(err)}`, 2);
  }

  let coordinator: Coordinator;
  try {
    coordinator = await Coordinator.start({ store, name: config.name, validators, recoveryTimeoutMs: config.recoveryTimeoutMs, auditAfterWrites: true, follow: config.followIntervalMs > 0 });
  } catch (err) {
    fail(`error: cannot read the store (${storeText}): ${(err as Error).message}`, 1);
  }
  // Re-verify the stored state in the background; one audit at a time, never overlapping.
  let auditing = false;
  const audits = setInterval(() => {
    if (auditing) return;
    auditing = true;
    coordinator
      .audit()
      .catch((err: unknown) => log("error", "re-verification failed", { error: String(err) }))
      .finally(() => (auditing = false));
  }, config.auditIntervalMs);
  audits.unref();
  if (config.followIntervalMs > 0) followHead(coordinator, config.followIntervalMs);
  const app = createApp({
    coordinator,
    log,
    ...(config.allowedHosts === null ? {} : { allowedHosts: config.allowedHosts }),
    ...(selfAttestation === undefined ? {} : { selfAttestation }),
  });

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
        ...(config.allowedHosts === null ? {} : { allowedHosts: config.allowedHosts }),
        name: config.name,
        evidence: config.evidence,
        state: coordinator.currentState,
        // From the entry's own code (modules loaded), and from the process's start (Node boot included).
        startupMs: Math.round(performance.now() - startedAt),
        sinceProcessStartMs: Math.round(performance.now()),
      });
    },
  );
  // A slow sender must not hold the one large-body slot for Node's default 5 minutes.
  (server as { requestTimeout: number }).requestTimeout = 120_000;
  server.on("error", (err: NodeJS.ErrnoException) => fail(`error: ${listenProblem(err, config.host, config.port)}`, 2));

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
