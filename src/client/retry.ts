// Retrying a client call with capped exponential backoff until a deadline, and parsing durations like `30s` or `3m`.

/** What a retry loop reports before each wait. */
export interface RetryProgress {
  /** The attempt that just failed, from 1. */
  attempt: number;
  /** Milliseconds since the first attempt. */
  elapsedMs: number;
  /** How long the loop waits now. */
  delayMs: number;
  /** The error of the failed attempt. */
  error: unknown;
}

/** Options of `retrying`. */
export interface RetryOptions {
  /** Give up (re-throwing the last error) once this many milliseconds have passed; 0 tries once. */
  timeoutMs: number;
  /** Whether an error is worth waiting for (the rest are thrown at once). */
  retryable: (err: unknown) => boolean;
  /** Called before each wait, e.g. to show progress. */
  onRetry?: (progress: RetryProgress) => void;
  /** First delay (default 250 ms); doubles up to `maxDelayMs` (default 5 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Clock and sleep, replaceable in tests. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Thrown when the deadline passed while the error was still retryable; `last` is the last error. */
export class RetryTimeout extends Error {
  readonly last: unknown;
  readonly attempts: number;
  readonly elapsedMs: number;

  constructor(last: unknown, attempts: number, elapsedMs: number) {
    super(`gave up after ${attempts} attempts in ${formatDuration(elapsedMs)}`);
    this.name = "RetryTimeout";
    this.last = last;
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
  }
}

/**
 * Runs `op` until it succeeds, a non-retryable error occurs (thrown as is) or the deadline passes
 * with a retryable error (thrown as RetryTimeout, so callers can say "gave up waiting").
 */
export async function retrying<T>(op: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const now = opts.now ?? (() => Date.now());
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((done) => setTimeout(done, ms)));
  const maxDelay = opts.maxDelayMs ?? 5_000;
  const start = now();
  let delay = opts.initialDelayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!opts.retryable(err)) throw err;
      const elapsed = now() - start;
      const left = opts.timeoutMs - elapsed;
      if (left <= 0) throw new RetryTimeout(err, attempt, elapsed);
      const wait = Math.min(delay, left);
      opts.onRetry?.({ attempt, elapsedMs: elapsed, delayMs: wait, error: err });
      await sleep(wait);
      delay = Math.min(delay * 2, maxDelay);
    }
  }
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: one or more `<number><unit>` parts with unit ms, s, m or h (`30s`, `3m`,
 * `1m30s`, `1.5s`), or `0`. Returns milliseconds; throws TypeError on anything else.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (trimmed === "0") return 0;
  if (trimmed.startsWith("-")) throw new TypeError(`${JSON.stringify(text)} is negative: a duration is 0 or more`);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < trimmed.length) {
    part.lastIndex = at;
    const match = part.exec(trimmed);
    if (match === null) break;
    total += Number(match[1]) * units[match[2]!]!;
    at = part.lastIndex;
  }
  if (trimmed === "" || at !== trimmed.length || !Number.isFinite(total)) {
    throw new TypeError(`${JSON.stringify(text)} is not a duration (examples: 30s, 3m, 1m30s, 500ms)`);
  }
  return Math.round(total);
}

/** A short human form of milliseconds: `850ms`, `12s`, `3m`, `1m30s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return rest === 0 ? `${m}m` : `${m}m${rest}s`;
}
