// Finds the Coordinator's peer replicas through the Kubernetes API: the endpoint addresses of the EndpointSlices of a (headless) Service in the Coordinator's namespace.
import { readFileSync } from "node:fs";
import type { PeerDirectory } from "../../src/coordinator/peers.js";
import { CoordinatorError } from "../../src/errors.js";
import { KubernetesClient, KubernetesStoreError, type FetchFunction, type KubernetesErrorCode, type TokenSource } from "../../src/storage/kubernetes.js";
import { ConfigError, refusePlainHttpToken } from "./config.js";
import { caFetch, fileTokenSource, type KubernetesSettings } from "./kubernetes.js";

/** The label the EndpointSlice controller puts on every slice of a Service. */
export const serviceNameLabel = "kubernetes.io/service-name";
/** The peers' port when none is given (the Coordinator's default port). */
export const defaultPeerPort = 1313;
/** At most this many peer URLs are returned (the rest are dropped, in sorted order). */
export const maxPeerAddresses = 64;
/** How long one list request may take before the round counts as failed. */
export const defaultPeerListTimeoutMs = 5_000;
/** At most this many EndpointSlices are read per round (one request, no continuation). */
const sliceLimit = 32;
/** Requests that timed out but have not settled yet; beyond this no new request is started. */
const maxOutstanding = 4;
/** The versions of discovery.k8s.io tried, newest first (v1 since Kubernetes 1.21; v1beta1 until 1.24). */
const versions = ["v1", "v1beta1"] as const;
/** Answers that mean the configuration (RBAC, token, cluster) is wrong, not that the server is busy. */
const configFailures: ReadonlySet<KubernetesErrorCode> = new Set(["K8S_FORBIDDEN", "K8S_UNAUTHORIZED", "K8S_NOT_FOUND", "K8S_BAD_REQUEST"]);

/** What `kubernetes:service=NAME[,port=N][,scheme=http|https]` says. */
export interface KubernetesPeersOptions {
  /** The Service whose EndpointSlices list the peers (a DNS-1035 label), e.g. `coordinator-peers`. */
  service: string;
  /** The peers' port (default 1313). */
  port?: number;
  /** The peers' scheme (default http). */
  scheme?: "http" | "https";
  /** Bound of one list request in ms (default 5 s); for tests. */
  timeoutMs?: number;
}

/** A fetch that gives up after `timeoutMs` and starts nothing while `maxOutstanding` earlier requests hang. */
function boundedFetch(inner: FetchFunction, timeoutMs: number): FetchFunction {
  let outstanding = 0;
  return (url, init) => {
    if (outstanding >= maxOutstanding) {
      return Promise.reject(new Error(`${outstanding} earlier requests to the API server have not finished`));
    }
    outstanding++;
    const controller = new AbortController();
    const request = inner(url, { ...init, signal: controller.signal });
    void request.then(
      () => outstanding--,
      () => outstanding--,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
    });
    return Promise.race([request, timeout]).finally(() => clearTimeout(timer));
  };
}

const ipv4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const dnsSubdomain = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

/** The URL host of an endpoint address of the slice's address type, or null if it is not one. */
function hostOf(addressType: unknown, address: unknown): string | null {
  if (typeof address !== "string") return null;
  if (addressType === "IPv4") return ipv4.test(address) ? address : null;
  if (addressType === "IPv6") {
    if (!/^[0-9a-fA-F:.]+$/.test(address) || !address.includes(":")) return null;
    try {
      return new URL(`http://[${address}]/`).hostname;
    } catch {
      return null;
    }
  }
  if (addressType === "FQDN") return address.length <= 253 && dnsSubdomain.test(address) ? address : null;
  return null;
}

interface SliceList {
  items?: unknown;
}
interface Slice {
  metadata?: { labels?: Record<string, unknown> };
  addressType?: unknown;
  endpoints?: unknown;
}

/**
 * Peers from the EndpointSlices of `opts.service` in `settings.namespace`: one list request per
 * call (label selector `kubernetes.io/service-name=SERVICE`, `limit` 32, discovery.k8s.io v1, or
 * v1beta1 where v1 is not served), with the Kubernetes store's ServiceAccount token, CA and
 * refusal of a token over plain http. Every endpoint's addresses count, ready or not; the answer
 * is `scheme://ADDRESS:port`, sorted, without duplicates, at most 64.
 *
 * `list()` never throws for a failure that may pass (timeout, connection error, 5xx, 429, a
 * malformed answer): it answers `[]` and the caller tries again next round; requests are not
 * retried within one call. A refusal that needs an operator (403, 401 after a token re-read, 404:
 * no EndpointSlice API, 400) throws a CONFIG_INVALID CoordinatorError whose `reason` is the
 * Kubernetes code, once; the same refusal again answers `[]` until a list succeeds.
 * Throws a ConfigError at once for a bad service name, port or scheme, or a token over plain http.
 */
export function kubernetesPeers(settings: KubernetesSettings, opts: KubernetesPeersOptions): PeerDirectory {
  const { service } = opts;
  const port = opts.port ?? defaultPeerPort;
  const scheme = opts.scheme ?? "http";
  if (!/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(service) || service.length > 63) {
    throw new ConfigError(`--peers kubernetes: service must be a Service name (a DNS-1035 label), not ${JSON.stringify(service)}`);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`--peers kubernetes: port must be 1 to 65535, not ${String(port)}`);
  }
  if (scheme !== "http" && scheme !== "https") {
    throw new ConfigError(`--peers kubernetes: scheme must be http or https, not ${JSON.stringify(scheme)}`);
  }
  refusePlainHttpToken(settings.server, settings.tokenFile !== null, settings.insecureHttp === true);
  const ca = settings.caFile === null ? null : readFileSync(settings.caFile);
  const token: TokenSource = settings.tokenFile === null ? () => null : fileTokenSource(settings.tokenFile);
  const client = new KubernetesClient({
    server: settings.server,
    token,
    fetch: boundedFetch(caFetch(ca), opts.timeoutMs ?? defaultPeerListTimeoutMs),
    retry: { attempts: 1 },
  });
  const ns = settings.namespace;
  let version: (typeof versions)[number] = versions[0];
  let reported = false;

  const listOnce = (v: (typeof versions)[number]) =>
    client.send({
      method: "GET",
      path: `/apis/discovery.k8s.io/${v}/namespaces/${ns}/endpointslices`,
      query: { labelSelector: `${serviceNameLabel}=${service}`, limit: String(sliceLimit) },
      verb: "list",
      resource: "endpointslices.discovery.k8s.io",
      namespace: ns,
    });

  /** The slices, trying the other API version once when this one is not served (404). */
  async function slices(): Promise<unknown> {
    let answer = await listOnce(version);
    if (answer.status === 404) {
      const other = version === "v1" ? "v1beta1" : "v1";
      answer = await listOnce(other);
      if (answer.status === 404) {
        throw new KubernetesStoreError("K8S_NOT_FOUND", "the API server serves no EndpointSlices (discovery.k8s.io v1 or v1beta1)", {
          status: 404,
          verb: "list",
          resource: "endpointslices.discovery.k8s.io",
        });
      }
      version = other;
    }
    return answer.body;
  }

  function urlsOf(body: unknown): string[] {
    const items = (body as SliceList | null)?.items;
    if (!Array.isArray(items)) return [];
    const urls = new Set<string>();
    for (const item of items as Slice[]) {
      if (item?.metadata?.labels?.[serviceNameLabel] !== service || !Array.isArray(item.endpoints)) continue;
      for (const endpoint of item.endpoints as { addresses?: unknown }[]) {
        if (!Array.isArray(endpoint?.addresses)) continue;
        for (const address of endpoint.addresses as unknown[]) {
          const host = hostOf(item.addressType, address);
          if (host !== null) urls.add(`${scheme}://${host}:${port}`);
        }
      }
    }
    return [...urls].sort().slice(0, maxPeerAddresses);
  }

  return {
    description: `EndpointSlices of ${service} in ${ns} (${scheme}, port ${port})`,
    async list() {
      let body: unknown;
      try {
        body = await slices();
      } catch (err) {
        if (err instanceof KubernetesStoreError && configFailures.has(err.apiCode)) {
          if (reported) return [];
          reported = true;
          throw new CoordinatorError("CONFIG_INVALID", `peer discovery: ${err.message}`, { cause: err, reason: err.apiCode });
        }
        return [];
      }
      reported = false;
      return urlsOf(body);
    },
  };
}
