// The Coordinator's Node entry point: configuration, store choice, HTTP(S) server, JSON-lines logs, graceful shutdown.
import "reflect-metadata";
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { serve } from "@hono/node-server";
import { createApp } from "../../src/app.js";
import type { Log } from "../../src/app.js";
import { parseAttestationRoots, validatorsFor } from "../../src/attestation/modes.js";
import type { AttestationRoots } from "../../src/attestation/modes.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import type { FollowOutcome } from "../../src/coordinator/coordinator.js";
import { SelfAttestation } from "../../src/coordinator/self-attestation.js";
import { PeerRecovery } from "../../src/coordinator/peer-recovery.js";
import type { PeerRoundOutcome } from "../../src/coordinator/peer-recovery.js";
import { PeerSeedServer } from "../../src/coordinator/peer-seed.js";
import { staticPeers } from "../../src/coordinator/peers.js";
import type { PeerDirectory } from "../../src/coordinator/peers.js";
import { Metrics } from "../../src/api/metrics.js";
import { parseSavedTee, savedTeeEvidenceSource } from "../../src/attestation/test-tee.js";
import { simulatedEvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import type { EvidenceSource } from "../../src/attestation/coordinator-evidence.js";
import { sha256 } from "../../src/crypto/provider.js";
import { fromBase64, toHex } from "../../src/encoding.js";
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
import { kubernetesPeers } from "./peers-kubernetes.js";

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
  let damagedMessage: string | null = null;
  const report = (outcome: FollowOutcome): void => {
    const wasUnavailable = unavailable;
    unavailable = outcome.kind === "unavailable";
    // A head older than the one held (a rollback) or a missing one: said once when seen, not on every check;
    // the next audit records it as damage (writes refused, /readyz 503).
    if (outcome.kind === "damaged" && outcome.damage.message !== damagedMessage) {
      log("error", "the stored head is not one this Coordinator can follow: keeping the newer state it holds", { key: outcome.damage.key, error: outcome.damage.message });
    }
    damagedMessage = outcome.kind === "damaged" ? outcome.damage.message : null;
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

/**
 * While the Coordinator is recovery-required, asks its peer replicas for the root seed at once and
 * then every `intervalMs` (one round at a time), and logs each outcome when it differs from the last.
 */
function recoverFromPeers(recovery: PeerRecovery, intervalMs: number, metrics: Metrics): void {
  let running = false;
  let last = "";
  const report = (outcome: PeerRoundOutcome): void => {
    if (outcome.kind === "not-needed") {
      last = "";
      return;
    }
    const label = outcome.kind === "refused" ? outcome.code : outcome.kind;
    metrics.inc("coordinator_peer_recovery_rounds_total", "Rounds of recovery from peer replicas while recovery-required, by outcome.", { outcome: label });
    const failures = "failures" in outcome ? outcome.failures.map((f) => `${f.peer}: ${f.code}${f.reason === undefined ? "" : ` (${f.reason})`}`) : [];
    const key = `${label} ${"message" in outcome ? outcome.message : ""} ${failures.join(" ")}`;
    const changed = key !== last;
    last = key;
    switch (outcome.kind) {
      case "recovered":
        last = "";
        log("info", "recovered from a peer replica", {
          peer: outcome.peer,
          generation: outcome.generation,
          latestTransition: outcome.latestTransition,
          sinceProcessStartMs: Math.round(performance.now()),
        });
        break;
      case "refused":
        if (changed) log("error", "the store holds an older head than a peer: rollback refused", { code: outcome.code, peer: outcome.peer, error: outcome.message });
        break;
      case "no-evidence":
        if (changed) log("warn", "a ready peer replica exists, but this Coordinator has no evidence source to present (--evidence none): the owners must recover it", { peer: outcome.peer });
        break;
      case "no-reference":
        if (changed) log("warn", "cannot recover from peers", { error: outcome.message });
        break;
      case "no-ready-peer":
        if (changed) log("info", "no ready peer replica to recover from: waiting for one, or for the owners", { peers: failures });
        break;
      case "failed":
        if (changed) log("warn", "no ready peer replica handed over a root seed that verifies the stored head", { peers: failures });
        break;
    }
  };
  const round = (): void => {
    if (running) return;
    running = true;
    recovery
      .round()
      .then(report, (err: unknown) => log("error", "recovery from peers failed", { error: String(err) }))
      .finally(() => (running = false));
  };
  round();
  const timer = setInterval(round, intervalMs);
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
  } else if (config.evidence === "simulated" && config.simulatedTeeFile !== null) {
    let tee: ReturnType<typeof parseSavedTee>;
    try {
      tee = parseSavedTee(readFileSync(config.simulatedTeeFile, "utf8"), config.simulatedTeeFile);
    } catch (err) {
      fail(`error: --simulated-tee ${config.simulatedTeeFile}: ${oneLine(err)}`, 2);
    }
    evidenceSource = savedTeeEvidenceSource(tee, {
      ...(config.simulatedMeasurement === undefined ? {} : { measurement: config.simulatedMeasurement }),
      ...(config.simulatedHostData === undefined ? {} : { hostData: config.simulatedHostData }),
    });
    log("warn", "INSECURE: the simulated evidence source is on; the Coordinator's evidence is signed with the saved test TEE of --simulated-tee and proves nothing. Never use it in production.", {
      evidence: "simulated",
      simulatedTee: config.simulatedTeeFile,
      arkSha256: toHex(await sha256(fromBase64(tee.snp.ark))),
    });
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
  // The probe (writes that wait for the disk) runs while the Coordinator reads its head (a read of
  // other keys); the probe's verdict is taken first, so a store that cannot work still exits 2.
  const probed = probeAtStart(kubeDriver !== null ? { kubernetes: kubeDriver } : { store }, config.name).then(
    () => null,
    (err: unknown) => err,
  );
  const started = Coordinator.start({ store, name: config.name, validators, recoveryTimeoutMs: config.recoveryTimeoutMs, auditAfterWrites: true, follow: config.followIntervalMs > 0 }).then(
    (coordinator) => ({ coordinator }),
    (err: unknown) => ({ err }),
  );
  const probeFailure = await probed;
  if (probeFailure !== null) fail(`error: the store ${storeText} cannot be used: ${oneLine(probeFailure)}`, 2);
  const start = await started;
  if ("err" in start) fail(`error: cannot read the store (${storeText}): ${(start.err as Error).message}`, 1);
  const coordinator: Coordinator = start.coordinator;
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
  const metrics = new Metrics();
  // Every Coordinator serves its seed to attested peers of its current manifest; with --peers it also asks them.
  const peerSeed = new PeerSeedServer(coordinator, roots === undefined ? {} : { roots });
  let peerRecovery: PeerRecovery | null = null;
  if (config.peers !== null) {
    const directory: PeerDirectory =
      config.peers.kind === "static"
        ? staticPeers(config.peers.urls)
        : kubernetesPeers(kube!, { service: config.peers.service, port: config.peers.port, scheme: config.peers.scheme });
    peerRecovery = new PeerRecovery({
      coordinator,
      store,
      directory,
      self: selfAttestation ?? null,
      ...(roots === undefined ? {} : { roots }),
    });
    log("info", "recovers from peer replicas while recovery-required", { peers: directory.description, interval: config.peerIntervalMs, evidence: config.evidence });
    if (selfAttestation === undefined) {
      log("warn", "without an evidence source (--evidence none) this Coordinator cannot prove itself to its peers: it can serve them, but only the owners can recover it");
    }
    recoverFromPeers(peerRecovery, config.peerIntervalMs, metrics);
  }
  const readyPeerOf = peerRecovery;
  const app = createApp({
    coordinator,
    log,
    metrics,
    peers: { server: peerSeed, ...(readyPeerOf === null ? {} : { readyPeer: () => readyPeerOf.readyPeer() }) },
    ...(config.allowedHosts === null ? {} : { allowedHosts: config.allowedHosts }),
    ...(selfAttestation === undefined ? {} : { selfAttestation }),
  });

  // node:https (and TLS with it) is loaded only when it serves: loading it takes milliseconds at every start.
  const https = tls === null ? null : await import("node:https");
  const server = serve(
    {
      fetch: app.fetch,
      port: config.port,
      hostname: config.host,
      ...(tls === null || https === null ? {} : { createServer: https.createServer, serverOptions: tls }),
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
