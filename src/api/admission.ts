// Admission control for large request bodies: only a few are read into memory at once; the rest wait unread, briefly, or get 503 BUSY.
import type { MiddlewareHandler } from "hono";
import { CoordinatorError } from "../errors.js";
import { errorResponse } from "./respond.js";

/** How many large bodies may be in memory at once, and how long and how many others may wait. */
export interface AdmissionOptions {
  /** A body whose declared content-length is at most this many bytes is small and never waits. */
  smallBytes: number;
  /** How many large bodies may be read and handled at once. */
  slots: number;
  /** How many large requests may wait for a slot; beyond that they get 503 BUSY at once. */
  queue: number;
  /** How long a large request may wait for a slot, in milliseconds, before it gets 503 BUSY. */
  maxWaitMs: number;
  /** The Retry-After of a 503 BUSY, in seconds. */
  retryAfterSeconds: number;
}

/**
 * The defaults: one large body in memory at a time, four more waiting at most 10 s. Measured on the
 * Node Coordinator: one 32 MiB manifest request alone takes it from about 70 to 210 MiB resident (the
 * bytes, their text, the parsed JSON, the decoded policies, garbage not yet collected); a flood of 100
 * at once peaks at about 300 MiB (uninitialized) and 360 MiB (ready) with one slot, and about 100 MiB
 * more with two, against the 512 MiB memory limit of deploy/coordinator.yaml. Manifest sets are
 * serialized by the Coordinator anyway, so a second slot would buy little. See the "flood peak RSS"
 * figure of bench/coordinator.bench.ts.
 */
export const defaultAdmission: AdmissionOptions = {
  smallBytes: 64 * 1024,
  slots: 1,
  queue: 4,
  maxWaitMs: 10_000,
  retryAfterSeconds: 5,
};

function check(name: keyof AdmissionOptions, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new CoordinatorError("CONFIG_INVALID", `admission: ${name} must be an integer from ${min} to ${max}, not ${String(value)}`);
  }
}

/** Whether a request's body counts as large: declared above `smallBytes`, or not declared at all (chunked). */
function isLarge(contentLength: string | undefined, transferEncoding: string | undefined, smallBytes: number): boolean {
  if (transferEncoding !== undefined || contentLength === undefined) return true;
  const trimmed = contentLength.trim();
  if (!/^\d+$/.test(trimmed)) return true;
  return Number(trimmed) > smallBytes;
}

interface Waiter {
  admit(): void;
}

/**
 * Middleware that bounds how many large request bodies are in memory at once. A request with a large
 * (or undeclared) body takes one of `slots` before it goes on; it gives the slot back when the rest of
 * the chain has answered, also on error. Without a free slot it waits, its body unread, in a FIFO of at
 * most `queue` requests for at most `maxWaitMs`; when the queue is full or the wait runs out, it gets
 * 503 BUSY with a Retry-After header (its body still unread; the server discards it or closes the
 * connection). A waiter whose client goes away leaves the queue. Put it before anything that reads the
 * body (the body limit included: without a content-length, that one reads it).
 */
export function admission(options: Partial<AdmissionOptions> = {}): MiddlewareHandler {
  const opts: AdmissionOptions = { ...defaultAdmission, ...options };
  check("smallBytes", opts.smallBytes, 0, 2 ** 40);
  check("slots", opts.slots, 1, 1024);
  check("queue", opts.queue, 0, 65_536);
  check("maxWaitMs", opts.maxWaitMs, 0, 600_000);
  check("retryAfterSeconds", opts.retryAfterSeconds, 1, 3600);

  let inUse = 0;
  const waiting: Waiter[] = [];

  /** Hands the slot to the first waiter, or frees it. */
  function release(): void {
    const next = waiting.shift();
    if (next === undefined) inUse--;
    else next.admit();
  }

  /** Resolves true with a slot taken, false when the wait ran out or the client went away. */
  function waitForSlot(signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const leave = () => {
        const at = waiting.indexOf(waiter);
        if (at >= 0) waiting.splice(at, 1);
        clearTimeout(timer);
        signal.removeEventListener("abort", leave);
        resolve(false);
      };
      const waiter: Waiter = {
        admit() {
          clearTimeout(timer);
          signal.removeEventListener("abort", leave);
          resolve(true);
        },
      };
      const timer = setTimeout(leave, opts.maxWaitMs);
      signal.addEventListener("abort", leave);
      waiting.push(waiter);
    });
  }

  return async function admitLargeBody(c, next) {
    if (!isLarge(c.req.header("content-length"), c.req.header("transfer-encoding"), opts.smallBytes)) return next();
    let admitted = false;
    if (inUse < opts.slots) {
      inUse++;
      admitted = true;
    } else if (waiting.length < opts.queue && !c.req.raw.signal.aborted) {
      admitted = await waitForSlot(c.req.raw.signal);
    }
    if (!admitted) {
      c.header("Retry-After", String(opts.retryAfterSeconds));
      return errorResponse(
        c,
        new CoordinatorError("BUSY", `too many large requests at once; try again in ${opts.retryAfterSeconds} s`),
      );
    }
    try {
      await next();
    } finally {
      release();
    }
  };
}
