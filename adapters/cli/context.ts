// What every command gets: the parsed flags, the output (stdout results, TTY-only progress) and a client that waits with backoff (trusting --ca's private CA over https).
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import { connect as tlsConnect, rootCertificates } from "node:tls";
import { ClientError, CoordinatorClient, normalizeBaseUrl } from "../../src/client/client.js";
import { RetryTimeout, formatDuration, retrying } from "../../src/client/retry.js";
import { CliError, usageError } from "./errors.js";

/** Flag values as node:util parseArgs returns them. */
export type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Results on stdout (text or one JSON document), progress on stderr only when it is a terminal. */
export class Output {
  readonly json: boolean;
  private progressShown = false;

  constructor(json: boolean) {
    this.json = json;
  }

  /** A line of human output (suppressed with --json). */
  line(text = ""): void {
    if (!this.json) process.stdout.write(text + "\n");
  }

  /** The machine-readable result (only with --json). */
  result(value: unknown): void {
    if (this.json) process.stdout.write(JSON.stringify(value, null, 2) + "\n");
  }

  /** One updating progress line on stderr, only if stderr is a terminal. */
  progress(text: string): void {
    if (!process.stderr.isTTY) return;
    process.stderr.write(`\r\x1b[K${text}`);
    this.progressShown = true;
  }

  /** Clears the progress line. */
  clearProgress(): void {
    if (this.progressShown) process.stderr.write("\r\x1b[K");
    this.progressShown = false;
  }
}

/** One command's context. */
export interface Context {
  /** The workspace directory as given (default "."). */
  workspace: string;
  /** The Coordinator URL as given by -c or CONTRAST_COORDINATOR, if any. */
  coordinator: string | undefined;
  /** --timeout in milliseconds (default 3 minutes). */
  timeoutMs: number;
  /** True if --timeout was given: then the command also waits for states only people end (recovery, a first set). */
  timeoutGiven: boolean;
  /** When the command stops waiting (epoch milliseconds): its start plus timeoutMs. */
  deadline: number;
  out: Output;
  /** The command's own flags. */
  flags: FlagValues;
}

/**
 * Connection failures that waiting can cure: nobody listening yet, a reset, a timeout, a network
 * or name service not up yet. Others (a misspelt host name, a port fetch refuses, TLS errors) fail at once.
 */
const transientSystemCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** True for failures that waiting can cure: no answer yet, a 503, or one of `codes` (e.g. RECOVERY_REQUIRED). */
export function isTransient(err: unknown, codes: ReadonlySet<string>): boolean {
  if (!(err instanceof ClientError)) return false;
  if (err.code === "UNREACHABLE") return err.systemCode !== undefined && transientSystemCodes.has(err.systemCode);
  if (err.code === "REQUEST_TIMEOUT") return true;
  if (err.code === "BAD_RESPONSE") return err.status === 502 || err.status === 503 || err.status === 504;
  if (err.status === 503) return true;
  return codes.has(err.code);
}

/** The Coordinator's URL (normalized), or a usage error if none or a malformed one was given. */
export function coordinatorUrl(ctx: Context): URL {
  if (ctx.coordinator === undefined || ctx.coordinator === "") {
    throw usageError("no Coordinator given", "pass -c URL (e.g. -c http://127.0.0.1:1313) or set CONTRAST_COORDINATOR");
  }
  try {
    return new URL(normalizeBaseUrl(ctx.coordinator));
  } catch (err) {
    const message = (err as Error).message;
    // The message of a URL with the API path already names the base URL to use.
    throw usageError(`--coordinator: ${message}`, message.includes("use the base URL") ? "" : "pass -c URL, e.g. -c http://127.0.0.1:1313");
  }
}

/** The PEM certificates of --ca FILE: read, and checked to hold at least one certificate. */
function privateCA(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(code === "ENOENT" ? "FILE_MISSING" : "FILE_UNREADABLE", `--ca ${path}: ${code === "ENOENT" ? "does not exist" : (err as Error).message}`, "pass the PEM file of the CA that issued the Coordinator's TLS certificate");
  }
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new CliError("FILE_INVALID", `--ca ${path}: no PEM certificate in it`, "pass the CA certificate as PEM (-----BEGIN CERTIFICATE-----)");
  return blocks.join("\n") + "\n";
}

/**
 * A fetch over node:https that trusts the public CAs and also `ca` (PEM), verifying the server's
 * certificate and name as fetch does. Node's global fetch takes no CA per request, hence this one;
 * it covers what the client needs (a method, JSON headers, a string body, an abort signal).
 */
export function fetchTrusting(ca: string): (input: string, init?: RequestInit) => Promise<Response> {
  const trusted = [...rootCertificates, ca];
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(input);
      if (url.protocol !== "https:") {
        reject(new TypeError(`--ca is for https:// URLs, not ${url.protocol}//`));
        return;
      }
      const signal = init.signal ?? undefined;
      if (signal?.aborted === true) {
        reject(signal.reason);
        return;
      }
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => (headers[name] = value));
      const body = typeof init.body === "string" ? init.body : undefined;
      if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body));
      const req = httpsRequest(url, { method: init.method ?? "GET", headers, ca: trusted }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const answer = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (typeof value === "string") answer.set(name, value);
            else if (Array.isArray(value)) for (const v of value) answer.append(name, v);
          }
          const status = res.statusCode ?? 502;
          const noBody = status === 204 || status === 304;
          resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? "", headers: answer }));
        });
      });
      req.on("error", reject);
      signal?.addEventListener("abort", () => req.destroy(signal.reason as Error), { once: true });
      req.end(body);
    });
}

/** The longest a single request may take, and the least one is given when --timeout is nearly used up. */
const requestLimitMs = 60_000;
const requestFloorMs = 1_000;

/**
 * How long one request may take: what is left of --timeout (at least 1 s, at most 60 s). A request
 * that changes state (it is never resent) gets the full 60 s unless --timeout was given explicitly,
 * and with `--timeout 0` (try once) every request gets 60 s.
 */
export function requestTimeout(ctx: Context, method: string, now: number = Date.now()): number {
  if (ctx.timeoutMs === 0 || (method !== "GET" && !ctx.timeoutGiven)) return requestLimitMs;
  return Math.min(requestLimitMs, Math.max(requestFloorMs, ctx.deadline - now));
}

/** The Coordinator client, or a usage error if no URL was given; `--ca FILE` adds a private CA for https. */
export function clientOf(ctx: Context): CoordinatorClient {
  const url = coordinatorUrl(ctx);
  const baseUrl = url.href.replace(/\/+$/, "");
  const requestTimeoutMs = (method: string) => requestTimeout(ctx, method);
  const ca = stringFlag(ctx.flags, "ca");
  if (ca === undefined) return new CoordinatorClient({ baseUrl, requestTimeoutMs });
  if (url.protocol !== "https:") {
    throw usageError(`--ca is for an https:// Coordinator, but ${baseUrl} is plain http`, "pass -c https://…, or leave out --ca");
  }
  return new CoordinatorClient({ baseUrl, fetch: fetchTrusting(privateCA(ca)), requestTimeoutMs });
}

/**
 * True if something at `url` (an http:// URL) completes a TLS handshake: a Coordinator that serves
 * https closes a plain http request without a word, which looks like a server restarting.
 */
function speaksTls(url: URL): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: url.hostname, port: Number(url.port || 80), servername: isIP(url.hostname) === 0 ? url.hostname : undefined, rejectUnauthorized: false });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** The error for a state that only people end (a recover, a first set), with what to do. */
function stateError(err: ClientError, url: string, timeoutGiven: boolean): CliError {
  const tag = `[${err.status ?? 409} ${err.code}]`;
  const wait = timeoutGiven ? "" : "; or pass --timeout DURATION (e.g. --timeout 10m) to wait until that is done";
  switch (err.code) {
    case "RECOVERY_REQUIRED":
      return new CliError(
        err.code,
        `the Coordinator at ${url} needs recovery: it restarted and waits for its seed-share owners ${tag}`,
        `each seed-share owner runs contrast recover (contrast status shows how many shares it has)${wait}`,
      );
    case "STALE":
      return new CliError(
        err.code,
        `the Coordinator at ${url} is stale: another writer changed its store, so it serves nothing until it reloads ${tag}`,
        `a seed-share owner runs contrast recover to reload its state${wait}`,
      );
    case "NOT_INITIALIZED":
      return new CliError(err.code, `the Coordinator at ${url} has no manifest yet ${tag}`, `the workload owner runs contrast set first${wait}`);
    default:
      return new CliError(err.code, `${err.message} ${tag}`);
  }
}

/** Why a retry is waiting, for the progress line. */
function reason(err: unknown): string {
  if (err instanceof ClientError) {
    if (err.code === "UNREACHABLE") return `not reachable yet (${err.systemCode ?? "no answer"})`;
    if (err.code === "REQUEST_TIMEOUT") return "no answer in time";
    if (err.code === "RECOVERY_REQUIRED") return "waiting for it to be recovered (contrast recover)";
    if (err.code === "NOT_INITIALIZED") return "waiting for a manifest (contrast set)";
    if (err.code === "STALE") return "stale, waiting for a recover";
    return `${err.code}`;
  }
  return String(err);
}

/**
 * Runs a client call, retrying with backoff while it fails in a way waiting can cure (see
 * isTransient) until the command's --timeout deadline; shows progress on a terminal.
 *
 * `codes` are the states (RECOVERY_REQUIRED, STALE, NOT_INITIALIZED) in which the call cannot
 * succeed until a person acts (a recover, a first set). They end the command at once with what to
 * do, unless --timeout was given explicitly: then the command waits for them too, e.g. while the
 * seed-share owners recover. Nobody waits minutes in silence for something waiting cannot change.
 */
export async function patiently<T>(ctx: Context, url: string, op: () => Promise<T>, codes: readonly string[] = []): Promise<T> {
  const waitFor = new Set(ctx.timeoutGiven ? codes : []);
  const people = new Set(codes);
  const total = formatDuration(ctx.timeoutMs);
  const target = new URL(url);
  let probed = false;
  const attempt = async (): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      // An https Coordinator closes a plain http request at once: say so rather than wait for it.
      if (!probed && target.protocol === "http:" && err instanceof ClientError && err.systemCode === "UND_ERR_SOCKET") {
        probed = true;
        if (await speaksTls(target)) {
          throw new CliError(
            "UNREACHABLE",
            `the Coordinator at ${url} speaks https, not plain http: it closed the http request`,
            `use https://${url.slice("http://".length)} (with --ca FILE if a private CA issued its certificate)`,
          );
        }
      }
      throw err;
    }
  };
  try {
    return await retrying(attempt, {
      timeoutMs: ctx.timeoutMs === 0 ? 0 : Math.max(0, ctx.deadline - Date.now()),
      retryable: (err) => isTransient(err, waitFor),
      onRetry: ({ error }) =>
        ctx.out.progress(`contrast: ${url}: ${reason(error)} (${formatDuration(ctx.timeoutMs - Math.max(0, ctx.deadline - Date.now()))} of ${total})`),
    });
  } catch (err) {
    const last = err instanceof RetryTimeout ? err.last : err;
    const state = last instanceof ClientError && people.has(last.code) ? stateError(last, url, ctx.timeoutGiven) : null;
    // --timeout 0 tries once: its failure is the error itself, not "gave up after 3ms".
    if (err instanceof RetryTimeout && ctx.timeoutMs === 0) throw state ?? last;
    // How long the command waited, from its start (where --timeout starts), not from this call's.
    if (err instanceof RetryTimeout) throw new RetryTimeout(state ?? err.last, err.attempts, Date.now() - (ctx.deadline - ctx.timeoutMs));
    throw state ?? err;
  } finally {
    ctx.out.clearProgress();
  }
}

/** A string flag's value, or undefined. */
export function stringFlag(flags: FlagValues, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable string flag's values. */
export function listFlag(flags: FlagValues, name: string): string[] {
  const v = flags[name];
  return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
}

/** A required string flag. */
export function requiredFlag(flags: FlagValues, name: string, hint: string): string {
  const v = stringFlag(flags, name);
  if (v === undefined || v === "") throw usageError(`--${name} is required`, hint);
  return v;
}

export { CliError };
