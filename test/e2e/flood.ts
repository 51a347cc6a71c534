// A flood of large anonymous POST /v1/manifest requests against a real Coordinator process, and its peak memory from /proc.
import { request } from "node:http";
import { readFileSync } from "node:fs";
import { toBase64, toHex } from "../../src/encoding.js";
import { sha256 } from "../../src/crypto/provider.js";
import { manifestBytes } from "../helpers.js";

/** The shape of the flood: how many requests at once, and the policies each body carries. */
export const floodShape = { requests: 100, policies: 1024, policyBytes: 23 * 1024 } as const;

/** What one flood request ended with: an HTTP answer (status, error code, Retry-After), or the socket error that ended it. */
export type FloodOutcome =
  | { kind: "answer"; status: number; code: string | undefined; retryAfter: string | undefined }
  | { kind: "refused"; error: string };

/** The random policies of the flood bodies, made once, with their hashes. */
export interface FloodPolicies {
  bytes: Uint8Array[];
  hashes: string[];
}

/** `floodShape.policies` random policies of `floodShape.policyBytes` each. */
export async function floodPolicies(): Promise<FloodPolicies> {
  const bytes = Array.from({ length: floodShape.policies }, () => crypto.getRandomValues(new Uint8Array(floodShape.policyBytes)));
  const hashes = await Promise.all(bytes.map(async (b) => toHex(await sha256(b))));
  return { bytes, hashes };
}

/**
 * The bytes of one flood body near the 32 MiB limit: every flood policy, and a manifest over them with
 * the given owners. `referenced: "all"` makes a manifest that references every policy (a well-formed
 * set; what keeps it out is something else, e.g. a missing signature); `"all-but-last"` one that
 * references every policy but the last, plus one hash nobody sent, so the Coordinator reads, parses
 * and hashes all of it before it refuses it (POLICY_NOT_REFERENCED): it can never be set.
 */
export function floodBody(
  policies: FloodPolicies,
  opts: { workloadOwners: string[]; seedShareOwners: string[]; referenced: "all" | "all-but-last"; extra?: Record<string, unknown> },
): Buffer {
  const referenced = policies.hashes.map((hash, i) => ({ hash, name: `w${i}` }));
  if (opts.referenced === "all-but-last") {
    referenced.pop();
    referenced.push({ hash: toHex(crypto.getRandomValues(new Uint8Array(32))), name: "missing" });
  }
  const manifest = manifestBytes({ policies: referenced, workloadOwners: opts.workloadOwners, seedShareOwners: opts.seedShareOwners });
  return Buffer.from(JSON.stringify({ manifest: toBase64(manifest), policies: policies.bytes.map(toBase64), ...opts.extra }));
}

/**
 * Sends one POST, with a content-length or (`chunked`) without one; a socket error (the server refused
 * to read the rest and closed the connection) is an outcome too.
 */
export function postOnce(url: string, body: Buffer, timeoutMs: number, chunked = false): Promise<FloodOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (outcome: FloodOutcome) => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    const req = request(url, {
      method: "POST",
      headers: { "content-type": "application/json", connection: "close", ...(chunked ? {} : { "content-length": String(body.length) }) },
      timeout: timeoutMs,
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: { code?: string } }).error?.code;
        } catch {
          code = undefined;
        }
        const retryAfter = res.headers["retry-after"];
        done({ kind: "answer", status: res.statusCode ?? 0, code, retryAfter: typeof retryAfter === "string" ? retryAfter : undefined });
      });
      res.on("error", (err: NodeJS.ErrnoException) => done({ kind: "refused", error: err.code ?? err.message }));
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => done({ kind: "refused", error: err.code ?? err.message }));
    if (chunked) {
      // Several chunks, so the body really is sent with transfer-encoding: chunked.
      const step = 1024 * 1024;
      for (let at = 0; at < body.length; at += step) req.write(body.subarray(at, at + step));
      req.end();
    } else req.end(body);
  });
}

/** Sends `n` copies of `body` at once to POST /v1/manifest (every other one chunked, if asked) and waits for every outcome. */
export function flood(
  base: string,
  body: Buffer,
  opts: { n?: number; timeoutMs?: number; chunked?: "none" | "half" | "all" } = {},
): Promise<FloodOutcome[]> {
  const n = opts.n ?? floodShape.requests;
  const chunked = (i: number) => opts.chunked === "all" || (opts.chunked === "half" && i % 2 === 1);
  return Promise.all(Array.from({ length: n }, (_, i) => postOnce(`${base}/v1/manifest`, body, opts.timeoutMs ?? 120_000, chunked(i))));
}

/** A process's peak resident set (VmHWM) or current one (VmRSS), in MiB, from /proc (Linux). */
export function memoryMiB(pid: number, field: "VmHWM" | "VmRSS" = "VmHWM"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

/** Counts outcomes by "status code" or "refused error", for messages and reports. */
export function tally(outcomes: FloodOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    const key = o.kind === "answer" ? `${o.status} ${o.code ?? "-"}` : `refused ${o.error}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
