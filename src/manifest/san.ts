// Subject alternative names: strict parsing of DNS names and IP addresses, and the one form each is certified in.

const dnsName = /^(\*\.)?[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?)*$/;

function parseIPv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

function parseGroups(text: string): number[] | null {
  if (text === "") return [];
  const groups: number[] = [];
  for (const group of text.split(":")) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
    groups.push(parseInt(group, 16));
  }
  return groups;
}

/** The eight 16-bit groups of an IPv6 address (with `::` and a trailing dotted IPv4 allowed), or null. */
function parseIPv6(text: string): number[] | null {
  let rest = text;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 === null) return null;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    rest = text.slice(0, lastColon);
    if (rest.endsWith(":")) rest += ":";
  }
  const halves = rest.split("::");
  if (halves.length > 2) return null;
  const want = 8 - tail.length;
  if (halves.length === 2) {
    const head = parseGroups(halves[0]!);
    const back = parseGroups(halves[1]!);
    if (head === null || back === null || head.length + back.length >= want) return null;
    return [...head, ...new Array<number>(want - head.length - back.length).fill(0), ...back, ...tail];
  }
  const groups = parseGroups(rest);
  if (groups === null || groups.length !== want) return null;
  return [...groups, ...tail];
}

/** The form an IP SAN is certified in (dotted IPv4, or eight hex groups for IPv6), or null if `san` is no IP address. */
export function canonicalIp(san: string): string | null {
  const v4 = parseIPv4(san);
  if (v4 !== null) return v4.join(".");
  if (!san.includes(":")) return null;
  const v6 = parseIPv6(san);
  return v6 === null ? null : v6.map((g) => g.toString(16)).join(":");
}

/** The canonical forms of the unspecified addresses (`0.0.0.0`, `::`, and `::ffff:0.0.0.0`): no certificate may name them. */
const unspecified = new Set(["0.0.0.0", "0:0:0:0:0:0:0:0", "0:0:0:0:0:ffff:0:0"]);

/**
 * True if a name's last label would make a URL parser read the whole name as an IPv4 address
 * (WHATWG URL "ends in a number"): all decimal digits, or `0x` and hex digits. `127.1`, `0177.0.0.1`
 * and `0x7f.1` are such names.
 */
function endsInNumber(name: string): boolean {
  const last = name.slice(name.lastIndexOf(".") + 1);
  return /^[0-9]+$/.test(last) || /^0[xX][0-9a-fA-F]*$/.test(last);
}

/**
 * True if `san` is a valid SAN: an IP address in its usual form (dotted-quad IPv4, or IPv6) other
 * than an unspecified address, or a DNS name whose last label does not read as a number. A wildcard
 * is allowed as the whole first label only, with at least two labels after it (`*.example.com`, not `*.com`).
 */
export function isValidSan(san: string): boolean {
  if (san.length === 0 || san.length > 253) return false;
  const ip = canonicalIp(san);
  if (ip !== null) return !unspecified.has(ip);
  if (!dnsName.test(san) || endsInNumber(san)) return false;
  if (san.startsWith("*.") && san.split(".").length < 3) return false;
  return true;
}

/** A SAN as the certificate carries it. */
export type GeneralName = { type: "dns" | "ip"; value: string };

/** The certificate form of a valid SAN. */
export function generalName(san: string): GeneralName {
  const ip = canonicalIp(san);
  return ip === null ? { type: "dns", value: san } : { type: "ip", value: ip };
}
