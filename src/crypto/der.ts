// A minimal DER encoder (and element reader) for the few ASN.1 types a workload certificate needs.
import { CoordinatorError } from "../errors.js";

/** Universal and context-specific tag bytes used by the certificate code. */
export const tags = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function derError(message: string): CoordinatorError {
  return new CoordinatorError("INTERNAL", `DER: ${message}`);
}

/** The DER length octets of `n`: short form below 128, else the minimal long form. */
export function encodeLength(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw derError(`invalid length ${n}`);
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  if (bytes.length > 4) throw derError(`length ${n} is too large`);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** One tag-length-value: a single-byte tag (low tag numbers only) around the concatenated contents. */
export function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) throw derError(`unsupported tag ${tag}`);
  let length = 0;
  for (const c of contents) length += c.length;
  const header = encodeLength(length);
  const out = new Uint8Array(1 + header.length + length);
  out[0] = tag;
  out.set(header, 1);
  let at = 1 + header.length;
  for (const c of contents) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** SEQUENCE of already-encoded elements, in the given order. */
export function sequence(...elements: Uint8Array[]): Uint8Array {
  return tlv(tags.sequence, ...elements);
}

/** SET OF already-encoded elements, sorted by their encodings as DER requires (X.690 §11.6). */
export function setOf(...elements: Uint8Array[]): Uint8Array {
  return tlv(tags.set, ...[...elements].sort(compareBytes));
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** An explicitly tagged element: constructed context tag [n] around the encodings. */
export function explicit(n: number, ...elements: Uint8Array[]): Uint8Array {
  if (n < 0 || n > 30) throw derError(`unsupported context tag ${n}`);
  return tlv(0xa0 | n, ...elements);
}

/** An implicitly tagged primitive: context tag [n] with the given content octets. */
export function implicit(n: number, content: Uint8Array): Uint8Array {
  if (n < 0 || n > 30) throw derError(`unsupported context tag ${n}`);
  return tlv(0x80 | n, content);
}

/** BOOLEAN (DER: TRUE is 0xff). */
export function boolean(value: boolean): Uint8Array {
  return Uint8Array.of(tags.boolean, 1, value ? 0xff : 0x00);
}

/** The minimal two's-complement content octets of the non-negative integer with big-endian magnitude `magnitude`. */
export function unsignedIntegerContent(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const rest = magnitude.subarray(start);
  if (rest.length === 0) return Uint8Array.of(0);
  if (rest[0]! & 0x80) {
    const out = new Uint8Array(rest.length + 1);
    out.set(rest, 1);
    return out;
  }
  return rest.slice();
}

/** INTEGER of a non-negative number given as its big-endian magnitude (leading zeros dropped, 0x00 added if the top bit is set). */
export function integer(magnitude: Uint8Array): Uint8Array {
  return tlv(tags.integer, unsignedIntegerContent(magnitude));
}

/** INTEGER of a small non-negative safe integer. */
export function smallInteger(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw derError(`invalid small integer ${n}`);
  const bytes: number[] = [];
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return integer(Uint8Array.from(bytes));
}

/** OBJECT IDENTIFIER of a dotted-decimal string. */
export function oid(dotted: string): Uint8Array {
  if (!/^[0-2](\.(0|[1-9]\d*))+$/.test(dotted)) throw derError(`invalid OID ${dotted}`);
  const arcs = dotted.split(".").map(Number);
  const first = arcs[0]!;
  const second = arcs[1]!;
  if ((first < 2 && second > 39) || arcs.some((a) => !Number.isSafeInteger(a))) throw derError(`invalid OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...arcs.slice(2)]) {
    const groups: number[] = [arc % 128];
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) groups.unshift((rest % 128) | 0x80);
    out.push(...groups);
  }
  return tlv(tags.oid, Uint8Array.from(out));
}

const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** True if `text` fits PrintableString's alphabet (X.680 §41.4). */
export function isPrintable(text: string): boolean {
  return printable.test(text);
}

/** UTF8String. */
export function utf8String(text: string): Uint8Array {
  return tlv(tags.utf8String, new TextEncoder().encode(text));
}

/** PrintableString; throws if a character is outside its alphabet. */
export function printableString(text: string): Uint8Array {
  if (!isPrintable(text)) throw derError("text is not a PrintableString");
  return tlv(tags.printableString, asciiBytes(text));
}

/** The content octets of an IA5String (ASCII); throws on a character above 0x7f. */
export function ia5Bytes(text: string): Uint8Array {
  const out = asciiBytes(text);
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) throw derError("text is not an IA5String");
  return out;
}

/** IA5String (ASCII); throws on a character above 0x7f. */
export function ia5String(text: string): Uint8Array {
  return tlv(tags.ia5String, ia5Bytes(text));
}

function asciiBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function timeDigits(date: Date): string {
  if (Number.isNaN(date.getTime())) throw derError("invalid date");
  return (
    pad(date.getUTCMonth() + 1, 2) +
    pad(date.getUTCDate(), 2) +
    pad(date.getUTCHours(), 2) +
    pad(date.getUTCMinutes(), 2) +
    pad(date.getUTCSeconds(), 2) +
    "Z"
  );
}

/** UTCTime YYMMDDHHMMSSZ (seconds always present, fractions dropped); years 1950 to 2049 only. */
export function utcTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  if (!(year >= 1950 && year <= 2049)) throw derError(`year ${year} does not fit UTCTime`);
  return tlv(tags.utcTime, asciiBytes(pad(year % 100, 2) + timeDigits(date)));
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (no fractional seconds, as RFC 5280 §4.1.2.5.2 requires); years 0 to 9999. */
export function generalizedTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) throw derError(`year ${year} does not fit GeneralizedTime`);
  return tlv(tags.generalizedTime, asciiBytes(pad(year, 4) + timeDigits(date)));
}

/** A certificate Time by RFC 5280 §4.1.2.5: UTCTime for 1950 through 2049, GeneralizedTime otherwise. */
export function time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  return year >= 1950 && year <= 2049 ? utcTime(date) : generalizedTime(date);
}

/** BIT STRING of whole bytes, or with `unusedBits` (0 to 7) zero bits at the end of the last byte. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw derError(`invalid unused bit count ${unusedBits}`);
  }
  if (unusedBits > 0 && (bytes[bytes.length - 1]! & ((1 << unusedBits) - 1)) !== 0) {
    throw derError("unused bits must be zero");
  }
  return tlv(tags.bitString, Uint8Array.of(unusedBits), bytes);
}

/**
 * A named-bit BIT STRING (such as KeyUsage) from bit numbers (bit 0 is the most significant bit of
 * the first byte), with trailing zero bits removed as DER requires (X.690 §11.2.2).
 */
export function namedBits(bits: readonly number[]): Uint8Array {
  const highest = bits.length === 0 ? -1 : Math.max(...bits);
  const bytes = new Uint8Array(highest < 0 ? 0 : (highest >> 3) + 1);
  for (const bit of bits) {
    if (!Number.isInteger(bit) || bit < 0) throw derError(`invalid bit number ${bit}`);
    bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  }
  return bitString(bytes, highest < 0 ? 0 : 7 - (highest & 7));
}

/** OCTET STRING. */
export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(tags.octetString, bytes);
}

/**
 * The DER Ecdsa-Sig-Value (RFC 3279 §2.2.3: SEQUENCE { r INTEGER, s INTEGER }) of a WebCrypto
 * ECDSA signature in IEEE P1363 form (r and s, each the curve's byte length, concatenated).
 */
export function ecdsaSignatureDer(p1363: Uint8Array): Uint8Array {
  if (p1363.length === 0 || p1363.length % 2 !== 0) throw derError(`invalid P1363 signature length ${p1363.length}`);
  const half = p1363.length / 2;
  return sequence(integer(p1363.subarray(0, half)), integer(p1363.subarray(half)));
}

/** One DER element in a byte array: its tag and where its header, content and end are. */
export interface DerElement {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the element. */
  end: number;
}

/** Reads the DER element at `offset` (single-byte tags, definite minimal lengths); throws if it does not fit in `bytes`. */
export function readElement(bytes: Uint8Array, offset = 0, limit = bytes.length): DerElement {
  if (offset + 2 > limit) throw derError("truncated element");
  const tag = bytes[offset]!;
  if ((tag & 0x1f) === 0x1f) throw derError("multi-byte tags are not supported");
  let length = bytes[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || contentStart + count > limit) throw derError("invalid length");
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[contentStart + i]!;
    if (bytes[contentStart] === 0 || length < 0x80) throw derError("non-minimal length");
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw derError("truncated element");
  return { tag, start: offset, contentStart, end };
}

/** The elements inside a constructed element, in order. */
export function children(bytes: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let at = parent.contentStart; at < parent.end; ) {
    const child = readElement(bytes, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}
