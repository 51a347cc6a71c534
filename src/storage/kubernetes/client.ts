// A small fetch-based Kubernetes REST client: bearer token, bounded retries of transient failures, and API errors mapped to stable codes.
import { StoreError, type StoreErrorCode } from "../store.js";

/** The `fetch` the client calls; the Node adapter passes one that trusts the cluster CA. */
export type FetchFunction = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Supplies the bearer token for each request. `refresh: true` asks for a fresh read (after a 401:
 * projected ServiceAccount tokens rotate). Null sends no Authorization header.
 */
export type TokenSource = (opts?: { refresh?: boolean }) => string | null | Promise<string | null>;

/** Stable codes of Kubernetes API failures, one per class of answer. */
export type KubernetesErrorCode =
  | "K8S_NOT_FOUND"
  | "K8S_CONFLICT"
  | "K8S_ALREADY_EXISTS"
  | "K8S_INVALID"
  | "K8S_FORBIDDEN"
  | "K8S_UNAUTHORIZED"
  | "K8S_TOO_LARGE"
  | "K8S_BAD_REQUEST"
  | "K8S_EXPIRED"
  | "K8S_UNAVAILABLE"
  | "K8S_MALFORMED_OBJECT";

/** The RBAC verb of a request: what a Role must grant for it. */
export type Verb = "get" | "list" | "create" | "update" | "delete";

/**
 * A Kubernetes API failure. `code` is the Store's code (CONFLICT for conflicts, INVALID_KEY for a
 * name the API cannot hold, UNAVAILABLE otherwise); `apiCode` is the finer, stable Kubernetes code.
 */
export class KubernetesStoreError extends StoreError {
  /** The stable Kubernetes-level code. */
  readonly apiCode: KubernetesErrorCode;
  /** The HTTP status, if the server answered. */
  readonly status: number | undefined;
  /** The RBAC verb of the failed request. */
  readonly verb: Verb;
  /** The resource, as `plural.group` (or `plural` for the core group). */
  readonly resource: string;
  /** For K8S_INVALID: the field errors the server named (`field: message`). */
  readonly causes: string[];

  constructor(
    apiCode: KubernetesErrorCode,
    message: string,
    details: { status?: number; verb: Verb; resource: string; causes?: string[]; cause?: unknown; code?: StoreErrorCode },
  ) {
    super(details.code ?? storeCodeOf(apiCode), message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "KubernetesStoreError";
    this.apiCode = apiCode;
    this.status = details.status;
    this.verb = details.verb;
    this.resource = details.resource;
    this.causes = details.causes ?? [];
  }
}

function storeCodeOf(apiCode: KubernetesErrorCode): StoreErrorCode {
  return apiCode === "K8S_CONFLICT" || apiCode === "K8S_ALREADY_EXISTS" ? "CONFLICT" : "UNAVAILABLE";
}

/** Bounded exponential backoff for transient failures. */
export interface RetryPolicy {
  /** Attempts in all, the first included (default 5). */
  attempts: number;
  /** Delay before the first retry in ms (default 100), doubled each time. */
  baseDelayMs: number;
  /** Upper bound of one delay in ms (default 2000). */
  maxDelayMs: number;
}

/** Settings of a client. */
export interface ClientOptions {
  /** The API server's base URL, e.g. `https://10.0.0.1:443`. */
  server: string;
  token: TokenSource;
  fetch: FetchFunction;
  retry?: Partial<RetryPolicy>;
  /** Waits `ms`; injectable so tests need not wait. */
  sleep?: (ms: number) => Promise<void>;
}

/** One request: method, path under the server, what it is (for RBAC messages), and an optional JSON body. */
export interface ApiRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  verb: Verb;
  /** `plural.group` or `plural`. */
  resource: string;
  namespace: string;
  /** The object name, if the request is about one object. */
  name?: string;
}

/** A successful (2xx) or a mapped failing answer. */
export interface ApiAnswer {
  status: number;
  body: unknown;
  /**
   * True if an earlier attempt of this request failed in a way that leaves its effect unknown (a
   * connection error or a 5xx): a later 409 may then be this request's own earlier success.
   */
  ambiguous: boolean;
}

/** The subset of a Kubernetes `Status` body the client reads. */
interface Status {
  kind?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: { field?: string; message?: string; reason?: string }[] };
}

function asStatus(body: unknown): Status {
  return typeof body === "object" && body !== null ? (body as Status) : {};
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** True for answers worth another attempt: overload, a gateway or server failure that is not about the request itself. */
function transient(status: number, st: Status): boolean {
  if (status === 429 || status === 502 || status === 503 || status === 504) return true;
  if (status === 500) return !tooLarge(status, st);
  return false;
}

function tooLarge(status: number, st: Status): boolean {
  if (status === 413 || st.reason === "RequestEntityTooLarge") return true;
  // etcd refuses an object over its request limit; the API server answers 500 with this text.
  return status === 500 && /too large/i.test(st.message ?? "");
}

/** A fetch-based Kubernetes API client. */
export class KubernetesClient {
  readonly server: string;
  private readonly token: TokenSource;
  private readonly fetchFn: FetchFunction;
  private readonly retry: RetryPolicy;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Requests sent (every attempt), for the figures tests and benchmarks report. */
  requests = 0;

  constructor(opts: ClientOptions) {
    this.server = opts.server.replace(/\/+$/, "");
    this.token = opts.token;
    this.fetchFn = opts.fetch;
    this.retry = { attempts: 5, baseDelayMs: 100, maxDelayMs: 2000, ...opts.retry };
    this.sleep = opts.sleep ?? defaultSleep;
  }

  /**
   * Sends a request. Answers 2xx and 404 (the caller decides what absence means); throws a
   * KubernetesStoreError for everything else, after retrying transient failures with bounded backoff.
   * A 409 comes back as an answer too, so callers can tell AlreadyExists from Conflict.
   */
  async send(req: ApiRequest): Promise<ApiAnswer> {
    let url = this.server + req.path;
    const params = Object.entries(req.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    if (params.length > 0) url += "?" + new URLSearchParams(params).toString();
    const payload = req.body === undefined ? undefined : JSON.stringify(req.body);

    let ambiguous = false;
    let refreshed = false;
    let lastFailure: KubernetesStoreError | null = null;
    for (let attempt = 1; attempt <= this.retry.attempts; attempt++) {
      if (attempt > 1) {
        const delay = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 2));
        await this.sleep(delay / 2 + Math.random() * (delay / 2));
      }
      const token = await this.token(refreshed ? { refresh: true } : undefined);
      const headers: Record<string, string> = { accept: "application/json" };
      if (token !== null && token !== "") headers.authorization = `Bearer ${token}`;
      if (payload !== undefined) headers["content-type"] = "application/json";

      let response: Response;
      let body: unknown;
      this.requests++;
      try {
        response = await this.fetchFn(url, { method: req.method, headers, body: payload });
        const text = await response.text();
        body = text === "" ? null : parseJson(text);
      } catch (err) {
        // Connection refused or reset, TLS or a cut-off body: transient, and the effect of a write is unknown.
        if (req.method !== "GET") ambiguous = true;
        lastFailure = new KubernetesStoreError(
          "K8S_UNAVAILABLE",
          `kubernetes: ${req.method} ${req.path} failed: ${err instanceof Error ? err.message : String(err)}${causeText(err)}`,
          { verb: req.verb, resource: req.resource, cause: err },
        );
        continue;
      }
      const status = response.status;
      if ((status >= 200 && status < 300) || status === 404 || status === 409) return { status, body, ambiguous };
      const st = asStatus(body);
      if (status === 401 && !refreshed) {
        // The token may have rotated under us: read it again once, right away.
        refreshed = true;
        attempt--;
        continue;
      }
      if (transient(status, st)) {
        if (req.method !== "GET") ambiguous = true;
        lastFailure = this.failure(req, status, st);
        continue;
      }
      throw this.failure(req, status, st);
    }
    throw lastFailure ?? new KubernetesStoreError("K8S_UNAVAILABLE", "kubernetes: no attempt made", { verb: req.verb, resource: req.resource });
  }

  /** The domain error for a failing answer. */
  failure(req: ApiRequest, status: number, st: Status): KubernetesStoreError {
    const what = req.name === undefined ? `${req.resource}` : `${req.resource} "${req.name}"`;
    const server = st.message ? ` (kubernetes: ${st.message})` : "";
    const details = { status, verb: req.verb, resource: req.resource };
    if (tooLarge(status, st)) {
      return new KubernetesStoreError("K8S_TOO_LARGE", `${what} is too large for the API server${server}`, details);
    }
    switch (status) {
      case 400:
        return new KubernetesStoreError("K8S_BAD_REQUEST", `bad request: ${req.verb} ${what}${server}`, details);
      case 401:
        return new KubernetesStoreError(
          "K8S_UNAUTHORIZED",
          `unauthorized: the API server does not accept the ServiceAccount token (${req.verb} ${what})${server}`,
          details,
        );
      case 403:
        return new KubernetesStoreError(
          "K8S_FORBIDDEN",
          `forbidden: the ServiceAccount may not "${req.verb}" ${req.resource} in namespace "${req.namespace}"; its Role must grant that verb on that resource${server}`,
          details,
        );
      case 404:
        return new KubernetesStoreError("K8S_NOT_FOUND", `not found: ${what}${server}`, details);
      case 409:
        return st.reason === "AlreadyExists"
          ? new KubernetesStoreError("K8S_ALREADY_EXISTS", `already exists: ${what}${server}`, details)
          : new KubernetesStoreError("K8S_CONFLICT", `conflict: ${what} has changed${server}`, details);
      case 410:
        return new KubernetesStoreError("K8S_EXPIRED", `expired: the list of ${req.resource} must start again${server}`, details);
      case 422: {
        const causes = (st.details?.causes ?? []).map((c) => `${c.field ?? "?"}: ${c.message ?? c.reason ?? "invalid"}`);
        return new KubernetesStoreError(
          "K8S_INVALID",
          `invalid ${what}: ${causes.length > 0 ? causes.join("; ") : (st.message ?? "rejected by validation")}`,
          { ...details, causes },
        );
      }
      default:
        return new KubernetesStoreError("K8S_UNAVAILABLE", `the API server answered ${status} to ${req.method} ${req.path}${server}`, details);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 200) };
  }
}

function causeText(err: unknown): string {
  const cause = err instanceof Error ? (err as { cause?: unknown }).cause : undefined;
  if (cause instanceof Error) return `: ${cause.message}`;
  return "";
}
