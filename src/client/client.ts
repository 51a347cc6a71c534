// The typed REST client of the Coordinator API: fetch only, runtime-neutral, one error type with stable codes.
import { z } from "zod";
import {
  historyResponse,
  meshCertificateResponse,
  recoverResponse,
  seedSharesResponse,
  setManifestResponse,
  statusResponse,
} from "../api/schemas.js";
import { formatDuration } from "./retry.js";

/** GET /v1/status */
export type StatusResponse = z.infer<typeof statusResponse>;
/** GET /v1/manifests */
export type HistoryResponse = z.infer<typeof historyResponse>;
/** POST /v1/manifest */
export type SetManifestResponse = z.infer<typeof setManifestResponse>;
/** POST /v1/recover */
export type RecoverResponse = z.infer<typeof recoverResponse>;
/** GET /v1/seedshares */
export type SeedSharesResponse = z.infer<typeof seedSharesResponse>;
/** POST /v1/mesh/certificate */
export type MeshCertificateResponse = z.infer<typeof meshCertificateResponse>;

/** The body of POST /v1/manifest (binary fields already base64). */
export interface SetManifestRequest {
  manifest: string;
  policies: string[];
  previousTransition?: string;
  signature?: { publicKey: string; value: string };
  /** On an update that changes the seed-share owners or the threshold: t current owners' rekey approvals. */
  approvals?: RekeyApproval[];
}

/** One seed-share owner's approval of a rekey, as POST /v1/manifest carries it. */
export interface RekeyApproval {
  /** Hex DER SPKI, exactly as the current manifest's SeedshareOwnerPubKeys lists it. */
  ownerPublicKey: string;
  /** Base64 RSA-PSS (SHA-256, salt 32) over rekeyApprovalStatement. */
  signature: string;
}

/** The body of DELETE /v1/recover: one current seed-share owner's signature over the attempt's nonce. */
export interface RecoveryResetRequest {
  /** Hex DER SPKI, as the stored manifest's SeedshareOwnerPubKeys lists it. */
  ownerPublicKey: string;
  /** Base64 RSA-PSS (SHA-256, salt 32) over recoveryResetStatement(name, nonce). */
  signature: string;
}

/** A seed share sealed with HPKE to the Coordinator's attested key for one recovery attempt (see src/coordinator/sealed-share.ts `sealShare`). */
export interface SealedShareBody {
  /** The attempt's nonce (status.recovery.nonce), 32 hex characters. */
  attempt: string;
  /** The HPKE encapsulated key, base64. */
  enc: string;
  /** The sealed share, base64. */
  ciphertext: string;
}

/**
 * The body of POST /v1/recover: the salt and exactly one of the share in clear (base64) and the sealed
 * share; `force` recovers even while a ready peer replica exists (else PEERS_READY), at the risk of
 * splitting the replicas.
 */
export type RecoverRequest = ({ salt: string; share: string } | { salt: string; sealedShare: SealedShareBody }) & { force?: true };

/** The body of POST /v1/mesh/certificate. */
export interface MeshCertificateRequest {
  publicKey: string;
  evidence: Record<string, unknown>;
}

/**
 * Codes the client adds to the server's own (src/errors.ts): `UNREACHABLE` (no HTTP answer at all),
 * `BAD_RESPONSE` (an answer that is not the API's), `REQUEST_TIMEOUT` (no answer in time).
 */
export type ClientErrorCode = "UNREACHABLE" | "BAD_RESPONSE" | "REQUEST_TIMEOUT";

/** Every failure of a client call: the server's error code and status, or one of the client's own codes. */
export class ClientError extends Error {
  /** The server's stable error code, or a ClientErrorCode. */
  readonly code: string;
  /** The HTTP status, or null when there was no HTTP answer. */
  readonly status: number | null;
  /** The store key an integrity error names, if any. */
  readonly key: string | undefined;
  /** For UNREACHABLE: the system error code (ECONNREFUSED, ENOTFOUND, …) if the runtime gives one. */
  readonly systemCode: string | undefined;

  constructor(
    code: string,
    message: string,
    opts: { status?: number | null; key?: string; systemCode?: string; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "ClientError";
    this.code = code;
    this.status = opts.status ?? null;
    this.key = opts.key;
    this.systemCode = opts.systemCode;
  }
}

/** Client options. */
export interface ClientOptions {
  /** The Coordinator's base URL, e.g. `http://127.0.0.1:1313`. */
  baseUrl: string;
  /** The fetch to use (default: the global one); tests can pass an in-process app's, the CLI one that trusts a private CA. */
  fetch?: (input: string, init?: RequestInit) => Promise<Response>;
  /**
   * Per-request timeout in milliseconds (default 60 s), or a function of the method asked before
   * each request (the CLI bounds requests by what is left of its --timeout).
   */
  requestTimeoutMs?: number | ((method: string) => number);
}

/**
 * Checks a base URL: http or https, no query or fragment, and no API path (`/v1…`, which the client
 * adds itself; the message names the base URL to use). Throws TypeError with a readable message.
 */
export function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TypeError(`${JSON.stringify(raw)} is not a URL (expected e.g. http://127.0.0.1:1313)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`${JSON.stringify(raw)} is not an http:// or https:// URL`);
  }
  if (url.search !== "" || url.hash !== "") throw new TypeError(`${JSON.stringify(raw)} must not have a query or fragment`);
  const api = /(?:^|\/)v1(?:\/.*)?$/.exec(url.pathname);
  if (api !== null) {
    const base = url.href.slice(0, url.href.length - url.pathname.length) + url.pathname.slice(0, api.index);
    throw new TypeError(`${JSON.stringify(raw)} includes the API path ${url.pathname.slice(api.index)}, which is added to every request: use the base URL ${base.replace(/\/+$/, "")}`);
  }
  return url.href.replace(/\/+$/, "");
}

/**
 * True if a failed https request met a server that answered in plain http: OpenSSL reads the
 * answer's first bytes as a TLS record ("wrong version number", "packet length too long").
 */
export function isPlainHttpAnswer(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === "object" && depth < 4; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === "string" && /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG)$/.test(code)) return true;
    if (typeof message === "string" && /wrong version number|packet length too long|record layer failure/.test(message)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The system error code behind a failed fetch, as Node's undici reports it (cause.code), if any. */
function systemCodeOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === "object" && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[A-Z][A-Z0-9_]+$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message !== "") return cause.message;
  if (cause !== null && typeof cause === "object" && "errors" in cause) {
    const errors = (cause as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors[0] instanceof Error) return errors[0].message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A typed client for one Coordinator. */
export class CoordinatorClient {
  /** The normalized base URL. */
  readonly baseUrl: string;
  private readonly fetchFn: (input: string, init?: RequestInit) => Promise<Response>;
  private readonly requestTimeoutMs: number | ((method: string) => number);

  constructor(opts: ClientOptions) {
    this.baseUrl = normalizeBaseUrl(opts.baseUrl);
    this.fetchFn = opts.fetch ?? ((input, init) => fetch(input, init));
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
  }

  /** GET /v1/status */
  status(): Promise<StatusResponse> {
    return this.call("GET", "/v1/status", undefined, statusResponse);
  }

  /** GET /v1/manifests: the history, unverified (see verifyHistory). */
  history(): Promise<HistoryResponse> {
    return this.call("GET", "/v1/manifests", undefined, historyResponse);
  }

  /**
   * GET /v1/seedshares: the stored seed-share document of the current recovery seed, in every state
   * but uninitialized; `verified` is false before recovery (it comes from the stored, unverified head).
   */
  seedShares(): Promise<SeedSharesResponse> {
    return this.call("GET", "/v1/seedshares", undefined, seedSharesResponse);
  }

  /** POST /v1/manifest */
  setManifest(body: SetManifestRequest): Promise<SetManifestResponse> {
    return this.call("POST", "/v1/manifest", body, setManifestResponse);
  }

  /** POST /v1/recover: one share, in clear or sealed (a Coordinator with an evidence source takes only sealed ones: SHARE_NOT_SEALED). */
  recover(body: RecoverRequest): Promise<RecoverResponse> {
    return this.call("POST", "/v1/recover", body, recoverResponse);
  }

  /** DELETE /v1/recover: discard the shares of an unfinished recovery, signed by a seed-share owner. */
  resetRecovery(body: RecoveryResetRequest): Promise<RecoverResponse> {
    return this.call("DELETE", "/v1/recover", body, recoverResponse);
  }

  /** POST /v1/mesh/certificate */
  meshCertificate(body: MeshCertificateRequest): Promise<MeshCertificateResponse> {
    return this.call("POST", "/v1/mesh/certificate", body, meshCertificateResponse);
  }

  /**
   * GET /v1/attestation?nonce=…: the Coordinator's own evidence for a 32-byte nonce (hex), as raw
   * JSON for verifyCoordinatorEvidence (src/attestation/coordinator-verify.ts) to check; a
   * Coordinator without an evidence source answers EVIDENCE_UNAVAILABLE.
   */
  attestation(nonceHex: string): Promise<unknown> {
    return this.call("GET", `/v1/attestation?nonce=${encodeURIComponent(nonceHex)}`, undefined, z.unknown());
  }

  private async call<S extends z.ZodType>(method: string, path: string, body: unknown, schema: S): Promise<z.infer<S>> {
    const url = this.baseUrl + path;
    const limit = typeof this.requestTimeoutMs === "function" ? this.requestTimeoutMs(method) : this.requestTimeoutMs;
    const init: RequestInit = { method, signal: AbortSignal.timeout(limit) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { "content-type": "application/json" };
    }
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(url, init);
      text = await res.text();
    } catch (err) {
      if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) {
        throw new ClientError("REQUEST_TIMEOUT", `${method} ${url} got no answer within ${formatDuration(limit)}`, {
          cause: err,
        });
      }
      const systemCode = systemCodeOf(err);
      const opts: { cause: unknown; systemCode?: string } = { cause: err };
      if (systemCode !== undefined) opts.systemCode = systemCode;
      if (this.baseUrl.startsWith("https:") && isPlainHttpAnswer(err)) {
        throw new ClientError(
          "UNREACHABLE",
          `the Coordinator at ${this.baseUrl} does not speak https: it answered in plain http (${describeCause(err).replace(/^.*SSL routines:[^:]*:([^:]+):.*$/s, "$1")}): ` +
            `use http://${this.baseUrl.slice("https://".length)}`,
          opts,
        );
      }
      throw new ClientError("UNREACHABLE", `cannot reach the Coordinator at ${this.baseUrl}: ${describeCause(err)}`, opts);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ClientError(
        "BAD_RESPONSE",
        `${method} ${url} answered ${res.status} with something that is not JSON; is this a Coordinator?`,
        { status: res.status },
      );
    }
    if (!res.ok) {
      const error = (json as { error?: { code?: unknown; message?: unknown; key?: unknown } } | null)?.error;
      if (error === undefined || typeof error.code !== "string") {
        throw new ClientError("BAD_RESPONSE", `${method} ${url} answered ${res.status} without an API error body`, {
          status: res.status,
        });
      }
      const opts: { status: number; key?: string } = { status: res.status };
      if (typeof error.key === "string") opts.key = error.key;
      throw new ClientError(error.code, typeof error.message === "string" ? error.message : error.code, opts);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ClientError(
        "BAD_RESPONSE",
        `${method} ${url}: the answer does not match the API at ${issue?.path.join(".") || "top level"}: ${issue?.message ?? ""}`,
        { status: res.status },
      );
    }
    return parsed.data as z.infer<S>;
  }
}
