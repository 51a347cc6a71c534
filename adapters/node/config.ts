// The Node adapter's configuration: flags, with environment variables as fallbacks, checked once at start.
import { parseAttestationModes } from "../../src/attestation/modes.js";
import type { AttestationMode } from "../../src/attestation/modes.js";
import { parseArgs } from "node:util";
import { parseAllowedHosts } from "../../src/api/hosts.js";
import { parseDuration } from "../../src/client/retry.js";

/**
 * A Kubernetes store: every field left out comes from the in-cluster environment (the
 * ServiceAccount directory and `KUBERNETES_SERVICE_HOST`/`_PORT`).
 */
export interface KubernetesStoreConfig {
  kind: "kubernetes";
  server?: string;
  namespace?: string;
  tokenFile?: string;
  caFile?: string;
  mode: "crd" | "configmap";
  /** `insecure-http=true`: an http:// server is accepted even with a token (tests on loopback only). */
  insecureHttp?: true;
}

/** Where the Coordinator finds its peer replicas (`--peers`). */
export type PeersConfig =
  | { kind: "static"; urls: string[] }
  | { kind: "kubernetes"; service: string; port: number; scheme: "http" | "https" };

/** Where the Coordinator keeps its state. */
export type StoreConfig = { kind: "fs"; dir: string } | { kind: "memory" } | KubernetesStoreConfig;

/** The checked configuration. */
export interface Config {
  port: number;
  host: string;
  store: StoreConfig;
  name: string;
  /** The validators to run (empty: none; certificates cannot be issued). */
  attestation: AttestationMode[];
  /** A PEM bundle of roots pinned instead of AMD's and Intel's (`--attestation-roots`), or null. */
  attestationRootsFile: string | null;
  tls: { certFile: string; keyFile: string } | null;
  /** How long the shares of an unfinished threshold recovery are kept, in milliseconds. */
  recoveryTimeoutMs: number;
  /** How often the ready state is re-verified against the store, in milliseconds. */
  auditIntervalMs: number;
  /** How often the stored head is checked so the Coordinator follows other processes' writes, in milliseconds (0: it does not follow). */
  followIntervalMs: number;
  /** The Host names answered (`--allowed-hosts`); null: every Host. */
  allowedHosts: string[] | null;
  /** Where the Coordinator's own evidence comes from (`--evidence`): none, configfs-tsm, or the insecure simulated source. */
  evidence: "none" | "tsm" | "simulated";
  /** The configfs-tsm report directory (`--tsm-path`). */
  tsmPath: string;
  /** MEASUREMENT (48 bytes) of the simulated evidence (`--simulated-measurement`); absent: all zeros. Only with `--evidence simulated`. */
  simulatedMeasurement?: Uint8Array;
  /** HOST_DATA (32 bytes) of the simulated evidence (`--simulated-host-data`); absent: all zeros. Only with `--evidence simulated`. */
  simulatedHostData?: Uint8Array;
  /** A saved test TEE (tee.json) the simulated evidence is signed with (`--simulated-tee`), or null: a hierarchy made at start. Only with `--evidence simulated`. */
  simulatedTeeFile: string | null;
  /** Where the peer replicas are (`--peers`), or null: none (recovery needs the owners). */
  peers: PeersConfig | null;
  /** How often a recovery-required Coordinator asks its peers for the seed, in milliseconds (`--peer-interval`). */
  peerIntervalMs: number;
}

/** A configuration mistake; the adapter prints its message on one line and exits non-zero. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** The usage text of `--help`. */
export const usage = `Usage: node coordinator.mjs [options]

Options (environment variable in brackets):
  --port N                  port to listen on, default 1313                 [CONTRAST_PORT]
  --host ADDR               address to listen on, default 0.0.0.0           [CONTRAST_HOST]
  --store fs:DIR | memory | kubernetes[:OPTIONS]
                            where state lives, default fs:./data            [CONTRAST_STORE]
                            kubernetes: in-cluster (ServiceAccount token, CA, namespace);
                            kubernetes:server=URL,namespace=NS,token-file=F,ca-file=F,mode=crd|configmap
                            sets any of them explicitly; an http:// server with a token is
                            refused unless insecure-http=true is added (tests only)
  --name NAME               Coordinator name (a DNS label), default coordinator [CONTRAST_NAME]
  --attestation MODES       none (default), or a list of sev-snp, tdx and insecure-simulated
                                                                            [CONTRAST_ATTESTATION]
  --attestation-roots FILE  PEM roots pinned instead of AMD's and Intel's (a test TEE, a private CA)
                                                                            [CONTRAST_ATTESTATION_ROOTS]
  --recovery-timeout DUR    how long shares of an unfinished recovery are kept, default 10m [CONTRAST_RECOVERY_TIMEOUT]
  --audit-interval DUR      how often the stored state is re-verified, default 60s [CONTRAST_AUDIT_INTERVAL]
  --follow-interval DUR     how often the head is checked to follow other processes on the store,
                            default 500ms; 0: do not follow (a moved head makes it stale)
                                                                            [CONTRAST_FOLLOW_INTERVAL]
  --tls-cert FILE           serve HTTPS with this PEM certificate chain     [CONTRAST_TLS_CERT]
  --tls-key FILE            and this PEM private key                        [CONTRAST_TLS_KEY]
  --allowed-hosts H1,H2     answer only requests for these host names (name, name:port, IP,
                            [ipv6]:port); others get 421 HOST_NOT_ALLOWED, probes excepted;
                            default: any host                               [CONTRAST_ALLOWED_HOSTS]
  --evidence none|tsm|simulated
                            where the Coordinator's own evidence comes from, default none;
                            simulated proves nothing (development and tests only) [CONTRAST_EVIDENCE]
  --tsm-path DIR            the configfs-tsm report directory, default /sys/kernel/config/tsm/report
                                                                            [CONTRAST_TSM_PATH]
  --simulated-measurement HEX
                            MEASUREMENT (48 bytes) of the simulated evidence, default zeros;
                            only with --evidence simulated                  [CONTRAST_SIMULATED_MEASUREMENT]
  --simulated-host-data HEX HOST_DATA (32 bytes) of the simulated evidence, default zeros;
                            only with --evidence simulated                  [CONTRAST_SIMULATED_HOST_DATA]
  --simulated-tee FILE      sign the simulated evidence with this saved test TEE (tee.json) instead of
                            a hierarchy made at start, so several processes share its roots.pem;
                            only with --evidence simulated                  [CONTRAST_SIMULATED_TEE]
  --peers URL,URL | kubernetes:service=NAME[,port=N][,scheme=http|https]
                            the peer replicas a recovery-required Coordinator gets the seed from
                            (after mutual attestation) instead of the owners; default none
                                                                            [CONTRAST_PEERS]
  --peer-interval DUR       how often it asks its peers while recovery-required, default 2s
                                                                            [CONTRAST_PEER_INTERVAL]
  --version                 print the version and exit
  --help                    print this help
`;

const namePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Parses flags and environment; throws ConfigError with a one-line message on any mistake. */
export function parseConfig(argv: string[], env: Record<string, string | undefined>): Config | "help" | "version" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        store: { type: "string" },
        name: { type: "string" },
        attestation: { type: "string" },
        "attestation-roots": { type: "string" },
        "recovery-timeout": { type: "string" },
        "audit-interval": { type: "string" },
        "follow-interval": { type: "string" },
        "tls-cert": { type: "string" },
        "tls-key": { type: "string" },
        "allowed-hosts": { type: "string" },
        evidence: { type: "string" },
        "tsm-path": { type: "string" },
        "simulated-measurement": { type: "string" },
        "simulated-host-data": { type: "string" },
        "simulated-tee": { type: "string" },
        peers: { type: "string" },
        "peer-interval": { type: "string" },
        help: { type: "boolean" },
        version: { type: "boolean" },
      },
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message.split("\n")[0]} (see --help)`);
  }
  if (values.help === true) return "help";
  if (values.version === true) return "version";
  const pick = (flag: string, variable: string, fallback: string): string => {
    const v = values[flag];
    return typeof v === "string" ? v : (env[variable] ?? fallback);
  };

  const portText = pick("port", "CONTRAST_PORT", "1313");
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 0 || port > 65535) {
    throw new ConfigError(`--port must be a number from 0 to 65535, not ${JSON.stringify(portText)}`);
  }

  const storeText = pick("store", "CONTRAST_STORE", "fs:./data");
  let store: StoreConfig;
  if (storeText === "memory") store = { kind: "memory" };
  else if (storeText.startsWith("fs:") && storeText.length > 3) store = { kind: "fs", dir: storeText.slice(3) };
  else if (storeText === "kubernetes" || storeText.startsWith("kubernetes:")) store = parseKubernetesStore(storeText);
  else throw new ConfigError(`--store must be fs:DIR, memory or kubernetes[:OPTIONS], not ${JSON.stringify(storeText)}`);

  const name = pick("name", "CONTRAST_NAME", "coordinator");
  if (!namePattern.test(name)) {
    throw new ConfigError(`--name must be a lower-case DNS label (letters, digits, dashes; at most 63), not ${JSON.stringify(name)}`);
  }

  let attestation: AttestationMode[];
  try {
    attestation = parseAttestationModes(pick("attestation", "CONTRAST_ATTESTATION", "none"));
  } catch (err) {
    throw new ConfigError(`--attestation ${(err as Error).message}`);
  }
  const rootsFile = pick("attestation-roots", "CONTRAST_ATTESTATION_ROOTS", "");

  const certFile = pick("tls-cert", "CONTRAST_TLS_CERT", "");
  const keyFile = pick("tls-key", "CONTRAST_TLS_KEY", "");
  if ((certFile === "") !== (keyFile === "")) throw new ConfigError("--tls-cert and --tls-key go together: give both or neither");

  /** A duration flag from 1s to 24h. */
  const duration = (flag: string, envName: string, fallback: string): number => {
    const text = pick(flag, envName, fallback);
    let ms: number;
    try {
      ms = parseDuration(text);
    } catch {
      ms = 0;
    }
    if (ms < 1000 || ms > 24 * 3600 * 1000) {
      throw new ConfigError(`--${flag} must be a duration from 1s to 24h (e.g. ${fallback}), not ${JSON.stringify(text)}`);
    }
    return ms;
  };
  const recoveryTimeoutMs = duration("recovery-timeout", "CONTRAST_RECOVERY_TIMEOUT", "10m");
  const auditIntervalMs = duration("audit-interval", "CONTRAST_AUDIT_INTERVAL", "60s");
  const followText = pick("follow-interval", "CONTRAST_FOLLOW_INTERVAL", "500ms");
  let followIntervalMs: number;
  try {
    followIntervalMs = parseDuration(followText);
  } catch {
    followIntervalMs = -1;
  }
  if (followIntervalMs !== 0 && (followIntervalMs < 100 || followIntervalMs > 3600 * 1000)) {
    throw new ConfigError(`--follow-interval must be 0 (off) or a duration from 100ms to 1h (e.g. 500ms), not ${JSON.stringify(followText)}`);
  }

  // Unset: every Host is answered. Set but empty is a mistake (fail closed), not "unset".
  const allowedFlag = values["allowed-hosts"];
  const allowedText = typeof allowedFlag === "string" ? allowedFlag : env.CONTRAST_ALLOWED_HOSTS;
  let allowedHosts: string[] | null = null;
  if (allowedText !== undefined) {
    try {
      allowedHosts = parseAllowedHosts(allowedText);
    } catch (err) {
      throw new ConfigError(`--allowed-hosts ${(err as Error).message}`);
    }
  }

  const evidence = pick("evidence", "CONTRAST_EVIDENCE", "none");
  if (evidence !== "none" && evidence !== "tsm" && evidence !== "simulated") {
    throw new ConfigError(`--evidence must be none, tsm or simulated, not ${JSON.stringify(evidence)}`);
  }
  const tsmPath = pick("tsm-path", "CONTRAST_TSM_PATH", "/sys/kernel/config/tsm/report");
  if (tsmPath === "") throw new ConfigError("--tsm-path must name a directory");
  /** A fixed-length hex field of the simulated reports: only with --evidence simulated. */
  const simulatedField = (flag: string, variable: string, bytes: number): Uint8Array | null => {
    const text = pick(flag, variable, "");
    if (text === "") return null;
    if (evidence !== "simulated") throw new ConfigError(`--${flag} sets a field of the simulated evidence, so it needs --evidence simulated (not ${evidence})`);
    if (!new RegExp(`^[0-9a-fA-F]{${2 * bytes}}$`).test(text)) {
      throw new ConfigError(`--${flag} must be ${bytes} bytes in hex (${2 * bytes} characters), not ${JSON.stringify(text)}`);
    }
    return Uint8Array.from(text.match(/../g)!, (pair) => parseInt(pair, 16));
  };
  const simulatedMeasurement = simulatedField("simulated-measurement", "CONTRAST_SIMULATED_MEASUREMENT", 48);
  const simulatedHostData = simulatedField("simulated-host-data", "CONTRAST_SIMULATED_HOST_DATA", 32);
  const simulatedTeeFile = pick("simulated-tee", "CONTRAST_SIMULATED_TEE", "");
  if (simulatedTeeFile !== "" && evidence !== "simulated") {
    throw new ConfigError(`--simulated-tee signs the simulated evidence, so it needs --evidence simulated (not ${evidence})`);
  }

  const peersText = pick("peers", "CONTRAST_PEERS", "");
  const peers = peersText === "" ? null : parsePeers(peersText);
  if (peers?.kind === "kubernetes" && store.kind !== "kubernetes") {
    throw new ConfigError("--peers kubernetes:… lists the peers through the Kubernetes API, so it needs the Kubernetes store (--store kubernetes[:…])");
  }
  const peerIntervalText = pick("peer-interval", "CONTRAST_PEER_INTERVAL", "2s");
  let peerIntervalMs: number;
  try {
    peerIntervalMs = parseDuration(peerIntervalText);
  } catch {
    peerIntervalMs = -1;
  }
  if (peerIntervalMs < 100 || peerIntervalMs > 3600 * 1000) {
    throw new ConfigError(`--peer-interval must be a duration from 100ms to 1h (e.g. 2s), not ${JSON.stringify(peerIntervalText)}`);
  }

  return {
    port,
    host: pick("host", "CONTRAST_HOST", "0.0.0.0"),
    store,
    name,
    attestation,
    attestationRootsFile: rootsFile === "" ? null : rootsFile,
    tls: certFile === "" ? null : { certFile, keyFile },
    recoveryTimeoutMs,
    auditIntervalMs,
    followIntervalMs,
    allowedHosts,
    evidence,
    tsmPath,
    ...(simulatedMeasurement === null ? {} : { simulatedMeasurement }),
    ...(simulatedHostData === null ? {} : { simulatedHostData }),
    simulatedTeeFile: simulatedTeeFile === "" ? null : simulatedTeeFile,
    peers,
    peerIntervalMs,
  };
}

/** Parses `--peers`: `URL,URL,…` (http or https base URLs) or `kubernetes:service=NAME[,port=N][,scheme=http|https]`. */
function parsePeers(text: string): PeersConfig {
  if (text.startsWith("kubernetes:") || text === "kubernetes") {
    const out: { service?: string; port: number; scheme: "http" | "https" } = { port: 1313, scheme: "http" };
    const seen = new Set<string>();
    for (const part of text.slice("kubernetes:".length).split(",")) {
      const eq = part.indexOf("=");
      const key = eq < 0 ? part : part.slice(0, eq);
      const value = eq < 0 ? "" : part.slice(eq + 1);
      if (key !== "service" && key !== "port" && key !== "scheme") {
        throw new ConfigError(`--peers kubernetes: unknown option ${JSON.stringify(key)} (service, port, scheme)`);
      }
      if (value === "") throw new ConfigError(`--peers kubernetes: ${key} needs a value (${key}=…)`);
      if (seen.has(key)) throw new ConfigError(`--peers kubernetes: ${key} is given twice`);
      seen.add(key);
      if (key === "service") {
        if (!namePattern.test(value)) throw new ConfigError(`--peers kubernetes: service must be a DNS label, not ${JSON.stringify(value)}`);
        out.service = value;
      } else if (key === "port") {
        const port = Number(value);
        if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new ConfigError(`--peers kubernetes: port must be a number from 1 to 65535, not ${JSON.stringify(value)}`);
        out.port = port;
      } else {
        if (value !== "http" && value !== "https") throw new ConfigError(`--peers kubernetes: scheme must be http or https, not ${JSON.stringify(value)}`);
        out.scheme = value;
      }
    }
    if (out.service === undefined) throw new ConfigError("--peers kubernetes: service=NAME is required (the headless Service of the replicas)");
    return { kind: "kubernetes", service: out.service, port: out.port, scheme: out.scheme };
  }
  const urls: string[] = [];
  for (const item of text.split(",")) {
    let url: URL;
    try {
      url = new URL(item);
    } catch {
      throw new ConfigError(`--peers must be a comma-separated list of http(s) base URLs or kubernetes:service=NAME, not ${JSON.stringify(item)}`);
    }
    if ((url.protocol !== "http:" && url.protocol !== "https:") || (url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "") {
      throw new ConfigError(`--peers: ${JSON.stringify(item)} must be an http:// or https:// base URL without a path, query or credentials`);
    }
    const base = `${url.protocol}//${url.host}`;
    if (!urls.includes(base)) urls.push(base);
  }
  return { kind: "static", urls };
}

const kubernetesOptions = new Map([
  ["server", "server"],
  ["namespace", "namespace"],
  ["token-file", "tokenFile"],
  ["ca-file", "caFile"],
  ["mode", "mode"],
  ["insecure-http", "insecureHttp"],
] as const);

/** Parses `kubernetes` or `kubernetes:key=value,…` (keys: server, namespace, token-file, ca-file, mode, insecure-http). */
function parseKubernetesStore(text: string): KubernetesStoreConfig {
  const out: KubernetesStoreConfig = { kind: "kubernetes", mode: "crd" };
  const rest = text.slice("kubernetes".length + 1);
  if (text === "kubernetes" || rest === "") return out;
  const seen = new Set<string>();
  for (const part of rest.split(",")) {
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : part.slice(eq + 1);
    const field = kubernetesOptions.get(key as never);
    if (field === undefined) {
      throw new ConfigError(`--store kubernetes: unknown option ${JSON.stringify(key)} (server, namespace, token-file, ca-file, mode, insecure-http)`);
    }
    if (value === "") throw new ConfigError(`--store kubernetes: ${key} needs a value (${key}=…)`);
    if (seen.has(key)) throw new ConfigError(`--store kubernetes: ${key} is given twice`);
    seen.add(key);
    if (field === "mode") {
      if (value !== "crd" && value !== "configmap") throw new ConfigError(`--store kubernetes: mode must be crd or configmap, not ${JSON.stringify(value)}`);
      out.mode = value;
    } else if (field === "insecureHttp") {
      if (value !== "true" && value !== "false") throw new ConfigError(`--store kubernetes: insecure-http must be true or false, not ${JSON.stringify(value)}`);
      if (value === "true") out.insecureHttp = true;
    } else if (field === "server") {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new ConfigError(`--store kubernetes: server must be a URL, not ${JSON.stringify(value)}`);
      }
      if ((url.protocol !== "https:" && url.protocol !== "http:") || (url.pathname !== "/" && url.pathname !== "") || url.search !== "") {
        throw new ConfigError(`--store kubernetes: server must be an https:// URL without a path, not ${JSON.stringify(value)}`);
      }
      // http:// is accepted here; resolveKubernetesSettings refuses it when a token would be sent (unless insecure-http=true).
      out.server = `${url.protocol}//${url.host}`;
    } else if (field === "namespace") {
      if (!namePattern.test(value)) throw new ConfigError(`--store kubernetes: namespace must be a DNS label, not ${JSON.stringify(value)}`);
      out.namespace = value;
    } else {
      out[field] = value;
    }
  }
  refusePlainHttpToken(out.server, out.tokenFile !== undefined, out.insecureHttp === true);
  return out;
}

/**
 * Refuses to send a bearer token over plain http: a ConfigError when `server` is an http:// URL and
 * a token is configured, unless `insecure-http=true` was given (tests against a loopback API server).
 */
export function refusePlainHttpToken(server: string | undefined, hasToken: boolean, insecureHttp: boolean): void {
  if (server === undefined || !server.startsWith("http:") || !hasToken || insecureHttp) return;
  throw new ConfigError(
    `--store kubernetes: refusing to send the token to ${server} over plain http (use https://, or add insecure-http=true for a test server on loopback)`,
  );
}
