// What every command gets: the parsed flags, the output (stdout results, TTY-only progress) and a client that waits with backoff.
import { ClientError, CoordinatorClient, normalizeBaseUrl } from "../../src/client/client.js";
import { formatDuration, retrying } from "../../src/client/retry.js";
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
  timeoutMs: number;
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

/** The Coordinator client, or a usage error if no URL was given. */
export function clientOf(ctx: Context): CoordinatorClient {
  if (ctx.coordinator === undefined || ctx.coordinator === "") {
    throw usageError("no Coordinator given", "pass -c URL (e.g. -c http://127.0.0.1:1313) or set CONTRAST_COORDINATOR");
  }
  let baseUrl: string;
  try {
    baseUrl = normalizeBaseUrl(ctx.coordinator);
  } catch (err) {
    throw usageError(`--coordinator: ${(err as Error).message}`, "pass -c URL, e.g. -c http://127.0.0.1:1313");
  }
  return new CoordinatorClient({ baseUrl });
}

/** Why a retry is waiting, for the progress line. */
function reason(err: unknown): string {
  if (err instanceof ClientError) {
    if (err.code === "UNREACHABLE") return "not reachable yet";
    if (err.code === "RECOVERY_REQUIRED") return "waiting for it to be recovered (contrast recover)";
    if (err.code === "NOT_INITIALIZED") return "waiting for a manifest (contrast set)";
    if (err.code === "STALE") return "stale, waiting for a recover";
    return `${err.code}`;
  }
  return String(err);
}

/**
 * Runs a client call, retrying with backoff while it fails in a way waiting can cure (see
 * isTransient) until --timeout; shows progress on a terminal.
 */
export async function patiently<T>(ctx: Context, url: string, op: () => Promise<T>, codes: readonly string[] = []): Promise<T> {
  const set = new Set(codes);
  const total = formatDuration(ctx.timeoutMs);
  try {
    return await retrying(op, {
      timeoutMs: ctx.timeoutMs,
      retryable: (err) => isTransient(err, set),
      onRetry: ({ elapsedMs, error }) =>
        ctx.out.progress(`contrast: ${url}: ${reason(error)} (${formatDuration(elapsedMs)} of ${total})`),
    });
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
