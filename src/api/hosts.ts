// Host allow-listing against DNS rebinding: requests naming any other host are refused with 421 HOST_NOT_ALLOWED, the probes stay open.
import type { MiddlewareHandler } from "hono";
import { CoordinatorError } from "../errors.js";
import { errorResponse } from "./respond.js";

/** One allowed host: a normalised host name (IPv6 in brackets) and, if the entry names one, a port. */
export interface HostPattern {
  host: string;
  port: number | null;
}

/** The paths the platform probes; they answer any Host (kubelet and Prometheus use the Pod's IP). */
export const probePaths: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

/** `name[:port]` or `[ipv6][:port]`, as in a Host header (RFC 9110 §7.2): ASCII only, no user info. */
const hostSyntax = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+))(?::([0-9]{1,5}))?$/;

/** Parses `host[:port]` into a HostPattern, or null if it is not a valid authority. */
function parseAuthority(text: string): HostPattern | null {
  const m = hostSyntax.exec(text);
  if (m === null) return null;
  const [, v6, name, portText] = m;
  let host: string;
  try {
    // The WHATWG URL parser lower-cases, canonicalises IPv6 (`[0:0::1]` → `[::1]`) and IPv4 (`127.1` → `127.0.0.1`).
    host = new URL(`http://${v6 !== undefined ? `[${v6}]` : name!}/`).hostname;
  } catch {
    return null;
  }
  if (host.length > 1 && host.endsWith(".")) host = host.slice(0, -1); // `name.` is the same DNS name as `name`
  if (host === "" || host === ".") return null;
  let port: number | null = null;
  if (portText !== undefined) {
    port = Number(portText);
    if (port > 65535) return null;
  }
  return { host, port };
}

/**
 * Parses one allowed-hosts entry: `name`, `name:port`, an IPv4 address, `[ipv6]`, `[ipv6]:port`,
 * or a bare IPv6 address (so that a Pod IP can be put in as it is). Case does not matter; without a
 * port the entry matches every port. Throws a one-line Error on anything else.
 */
export function parseHostPattern(entry: string): HostPattern {
  const text = entry.trim();
  const bareV6 = !text.startsWith("[") && (text.match(/:/g)?.length ?? 0) >= 2;
  const parsed = parseAuthority(bareV6 ? `[${text}]` : text);
  if (parsed === null) throw new Error(`${JSON.stringify(entry)} is not a host name, host:port, IP address or [IPv6]:port`);
  return parsed;
}

/**
 * Parses a comma-separated allowed-hosts list (`coordinator,coordinator.ns.svc,localhost:1313`).
 * Blanks around entries are ignored; an empty list or an empty entry is an error (a one-line Error).
 */
export function parseAllowedHosts(text: string): string[] {
  const entries = text.split(",").map((e) => e.trim());
  if (entries.every((e) => e === "")) throw new Error("needs at least one host name");
  for (const e of entries) {
    if (e === "") throw new Error(`has an empty entry in ${JSON.stringify(text)}`);
    parseHostPattern(e);
  }
  return entries;
}

/**
 * Whether an authority (a Host header's value, or a URL's host) is allowed by the patterns.
 * `defaultPort` is the port a Host without one means (80 for http, 443 for https).
 */
export function hostAllowed(patterns: readonly HostPattern[], authority: string, defaultPort: number): boolean {
  const got = parseAuthority(authority);
  if (got === null) return false;
  const port = got.port ?? defaultPort;
  return patterns.some((p) => p.host === got.host && (p.port === null || p.port === port));
}

/**
 * The middleware: unless the request is a GET or HEAD of a probe path, the host of the request's
 * URL must be allowed; otherwise the answer is 421 HOST_NOT_ALLOWED and nothing else runs. The
 * runtime builds that URL from the Host header (HTTP/2: `:authority`), which a browser always sets
 * to the name it resolved, so a page that rebound its own name to this address is refused. (The
 * Host header itself is not read: workerd behind a local proxy rewrites it, never the URL.)
 */
export function allowedHostsMiddleware(allowedHosts: readonly string[]): MiddlewareHandler {
  const patterns = allowedHosts.map(parseHostPattern);
  return async function checkHost(c, next) {
    const method = c.req.method;
    if ((method === "GET" || method === "HEAD") && probePaths.has(c.req.path)) return next();
    const url = new URL(c.req.url);
    if (!hostAllowed(patterns, url.host, url.protocol === "https:" ? 443 : 80)) {
      return errorResponse(c, new CoordinatorError("HOST_NOT_ALLOWED", `this Coordinator does not answer for host ${JSON.stringify(url.host.slice(0, 100))}`));
    }
    return next();
  };
}
