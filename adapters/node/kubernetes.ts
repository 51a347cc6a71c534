// Node side of the Kubernetes store: in-cluster configuration files, a fetch that trusts the cluster CA, and a token that is re-read as it rotates.
import { readFileSync } from "node:fs";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import type { IncomingMessage } from "node:http";
import { kubernetesDriver, type FetchFunction, type KubernetesDriver, type TokenSource } from "../../src/storage/kubernetes.js";
import { ConfigError, refusePlainHttpToken } from "./config.js";
import type { KubernetesStoreConfig } from "./config.js";

/** Where a Pod finds its ServiceAccount's token, CA certificate and namespace. */
export const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How long a token read from a file is used before the file is read again (projected tokens rotate). */
export const tokenMaxAgeMs = 60_000;

/** The resolved settings of a Kubernetes store. */
export interface KubernetesSettings {
  server: string;
  namespace: string;
  tokenFile: string | null;
  caFile: string | null;
  mode: "crd" | "configmap";
  /** Present (true) only with `insecure-http=true`: the token may go to an http:// server. */
  insecureHttp?: true;
}

/**
 * Fills what `--store kubernetes:…` leaves open from the in-cluster environment:
 * `KUBERNETES_SERVICE_HOST`/`_PORT`, and the ServiceAccount directory's `token`, `ca.crt` and `namespace`.
 */
export function resolveKubernetesSettings(
  cfg: KubernetesStoreConfig,
  env: Record<string, string | undefined>,
  saDir: string = serviceAccountDir,
): KubernetesSettings {
  let server = cfg.server;
  if (server === undefined) {
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT ?? "443";
    if (host === undefined || host === "") {
      throw new ConfigError("--store kubernetes: not inside a cluster (KUBERNETES_SERVICE_HOST is unset); give kubernetes:server=URL,namespace=NS,…");
    }
    server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }
  let namespace = cfg.namespace;
  if (namespace === undefined) {
    try {
      namespace = readFileSync(`${saDir}/namespace`, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`--store kubernetes: no namespace given and cannot read ${saDir}/namespace (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }
  const inCluster = cfg.server === undefined;
  const tokenFile = cfg.tokenFile ?? (inCluster ? `${saDir}/token` : null);
  const caFile = cfg.caFile ?? (inCluster ? `${saDir}/ca.crt` : null);
  refusePlainHttpToken(server, tokenFile !== null, cfg.insecureHttp === true);
  for (const [what, file] of [
    ["token", tokenFile],
    ["CA certificate", caFile],
  ] as const) {
    if (file === null) continue;
    try {
      readFileSync(file);
    } catch (err) {
      throw new ConfigError(`--store kubernetes: cannot read the ${what} file ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }
  return { server, namespace, tokenFile, caFile, mode: cfg.mode, ...(cfg.insecureHttp === true ? { insecureHttp: true as const } : {}) };
}

/**
 * A token read from a file, cached for `maxAgeMs` and read again after that or when the client asks
 * for a refresh (after a 401). A read failure keeps the last good token.
 */
export function fileTokenSource(file: string, maxAgeMs: number = tokenMaxAgeMs, now: () => number = Date.now): TokenSource {
  let token: string | null = null;
  let readAt = -Infinity;
  return (opts) => {
    if (token === null || opts?.refresh === true || now() - readAt >= maxAgeMs) {
      try {
        token = readFileSync(file, "utf8").trim();
        readAt = now();
      } catch (err) {
        if (token === null) throw err;
      }
    }
    return token;
  };
}

/**
 * A fetch over node:http/node:https that trusts exactly `caPem` (when given) for https URLs and
 * keeps connections alive. Only what the Kubernetes client needs: method, headers, a string body.
 * node:https (and TLS with it) is loaded by the first https request, not by every start of a
 * Coordinator that may never reach an API server.
 */
export function caFetch(caPem: string | Buffer | null): FetchFunction {
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  let https: Promise<{ agent: HttpAgent; request: typeof httpRequest }> | null = null;
  const secureTransport = () =>
    (https ??= import("node:https").then(({ Agent, request }) => ({
      agent: new Agent({ keepAlive: true, maxSockets: 16, ...(caPem === null ? {} : { ca: caPem }) }),
      request,
    })));
  return async (url, init) => {
    const target = new URL(url);
    const transport = target.protocol === "https:" ? await secureTransport() : { agent: httpAgent, request: httpRequest };
    return new Promise<Response>((resolve, reject) => {
      const headers = { ...(init.headers as Record<string, string> | undefined) };
      const body = typeof init.body === "string" ? Buffer.from(init.body, "utf8") : null;
      if (body !== null) headers["content-length"] = String(body.length);
      const req = transport.request(
        target,
        { method: init.method ?? "GET", headers, agent: transport.agent, ...(init.signal ? { signal: init.signal } : {}) },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            const responseHeaders = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              if (typeof v === "string") responseHeaders.set(k, v);
              else if (Array.isArray(v)) for (const one of v) responseHeaders.append(k, one);
            }
            const nullBody = status === 204 || status === 304;
            resolve(new Response(nullBody ? null : Buffer.concat(chunks), { status, headers: responseHeaders }));
          });
        },
      );
      req.on("error", reject);
      if (body !== null) req.write(body);
      req.end();
    });
  };
}

/** The driver for resolved settings. */
export function kubernetesStore(settings: KubernetesSettings, coordinator: string): KubernetesDriver {
  refusePlainHttpToken(settings.server, settings.tokenFile !== null, settings.insecureHttp === true);
  const ca = settings.caFile === null ? null : readFileSync(settings.caFile);
  const token: TokenSource = settings.tokenFile === null ? () => null : fileTokenSource(settings.tokenFile);
  return kubernetesDriver({
    server: settings.server,
    namespace: settings.namespace,
    token,
    fetch: caFetch(ca),
    coordinator,
    mode: settings.mode,
  });
}

/** Whether the API server is reached over plain http (the adapter logs a warning at start). */
export function plainHttp(settings: KubernetesSettings): boolean {
  return settings.server.startsWith("http:");
}

/** How the store is named in the `listening` log line. */
export function describeKubernetes(settings: KubernetesSettings): string {
  return `kubernetes:${settings.server}/namespaces/${settings.namespace}${settings.mode === "configmap" ? " (configmaps)" : ""}`;
}
