// Key files as openssl writes them: PEM or DER parsing, SEC1/PKCS#1 wrapped into PKCS#8/SPKI, import, generation and export.
import { concat, fromBase64, toHex } from "../encoding.js";
import { toPem } from "../crypto/ca.js";
import { tlv } from "../crypto/der.js";
import { sha256, subtle } from "../crypto/provider.js";
import { seedShareOwnerExponent, weakExponent } from "../manifest/manifest.js";

/**
 * Why a key file was refused; the CLI shows the message and the code. `KEY_WEAK`: an RSA
 * seed-share owner key whose public exponent is not 65537.
 */
export type KeyErrorCode = "KEY_INVALID" | "KEY_WRONG_TYPE" | "KEY_ENCRYPTED" | "KEY_WEAK";

/** A key file's content: its text (PEM), or its bytes (PEM or DER: PKCS#8, SPKI, PKCS#1 or SEC1). */
export type KeyFileContent = string | Uint8Array;

/** A key file that cannot be used, with a message that says what it is and what was expected. */
export class KeyError extends Error {
  readonly code: KeyErrorCode;
  constructor(code: KeyErrorCode, message: string) {
    super(message);
    this.name = "KeyError";
    this.code = code;
  }
}

/** One PEM block: its label (e.g. `PRIVATE KEY`) and DER bytes. */
export interface PemBlock {
  label: string;
  der: Uint8Array;
}

/** The PEM blocks of a text, in order; headers such as `Proc-Type: 4,ENCRYPTED` mark an encrypted block. */
export function pemBlocks(text: string): (PemBlock & { encrypted: boolean })[] {
  const out: (PemBlock & { encrypted: boolean })[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const label = m[1]!;
    const lines = m[2]!.split(/\r?\n/);
    const headers = lines.filter((l) => l.includes(":"));
    const body = lines.filter((l) => !l.includes(":")).join("").replace(/\s+/g, "");
    let der: Uint8Array;
    try {
      der = fromBase64(body);
    } catch {
      throw new KeyError("KEY_INVALID", `the PEM block "${label}" is not valid base64`);
    }
    out.push({ label, der, encrypted: headers.some((h) => /^Proc-Type:.*ENCRYPTED/i.test(h)) });
  }
  return out;
}

/** PEM text of DER bytes. */
export function pem(der: Uint8Array, label: string): string {
  return toPem(der, label);
}

// --- a minimal DER reader and writer, enough for the key containers ---

interface Tlv {
  tag: number;
  /** The content bytes. */
  value: Uint8Array;
  /** The whole encoding (tag, length, content). */
  raw: Uint8Array;
}

function readTlv(bytes: Uint8Array, at: number): Tlv & { next: number } {
  const tag = bytes[at];
  let lengthByte = bytes[at + 1];
  if (tag === undefined || lengthByte === undefined) throw new KeyError("KEY_INVALID", "truncated DER");
  let length = 0;
  let start = at + 2;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    const n = lengthByte & 0x7f;
    if (n === 0 || n > 4) throw new KeyError("KEY_INVALID", "unsupported DER length");
    for (let i = 0; i < n; i++) {
      lengthByte = bytes[start + i];
      if (lengthByte === undefined) throw new KeyError("KEY_INVALID", "truncated DER");
      length = length * 256 + lengthByte;
    }
    start += n;
  }
  const end = start + length;
  if (end > bytes.length) throw new KeyError("KEY_INVALID", "truncated DER");
  return { tag, value: bytes.subarray(start, end), raw: bytes.subarray(at, end), next: end };
}

/** The TLVs inside a constructed value. */
function children(value: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < value.length; ) {
    const t = readTlv(value, at);
    out.push(t);
    at = t.next;
  }
  return out;
}

/** Parses one whole DER SEQUENCE and returns its elements. */
function sequence(der: Uint8Array): Tlv[] {
  const outer = readTlv(der, 0);
  if (outer.tag !== 0x30 || outer.next !== der.length) throw new KeyError("KEY_INVALID", "not a DER SEQUENCE");
  return children(outer.value);
}

/** The PEM label of the key container a DER encoding holds, judged by its structure, or null. */
function derLabel(der: Uint8Array): string | null {
  let fields: Tlv[];
  try {
    fields = sequence(der);
  } catch {
    return null;
  }
  const t = fields.map((f) => f.tag);
  if (t.length === 2 && t[0] === 0x30 && t[1] === 0x03) return "PUBLIC KEY";
  if (t.length === 2 && t[0] === 0x30 && t[1] === 0x04) return "ENCRYPTED PRIVATE KEY";
  if (t.length >= 3 && t[0] === 0x02 && t[1] === 0x30 && t[2] === 0x04) return "PRIVATE KEY";
  if (t.every((tag) => tag === 0x02)) {
    if (t.length === 2) return "RSA PUBLIC KEY";
    if (t.length >= 9) return "RSA PRIVATE KEY";
    return null;
  }
  const version = fields[0]?.value;
  if (t[0] === 0x02 && version?.length === 1 && version[0] === 1 && t[1] === 0x04) return "EC PRIVATE KEY";
  return null;
}

/** The byte sequence `-----BEGIN ` that marks PEM. */
const pemMarker = [0x2d, 0x2d, 0x2d, 0x2d, 0x2d, 0x42, 0x45, 0x47, 0x49, 0x4e, 0x20];

function containsPemMarker(bytes: Uint8Array): boolean {
  outer: for (let i = 0; i + pemMarker.length <= bytes.length; i++) {
    for (let j = 0; j < pemMarker.length; j++) if (bytes[i + j] !== pemMarker[j]) continue outer;
    return true;
  }
  return false;
}

/**
 * The key blocks of a key file: its PEM blocks, or for a DER file one block labelled as the PEM of
 * that container would be. A file that is neither is KEY_INVALID, naming `what` and the formats.
 */
function keyBlocks(content: KeyFileContent, what: string): (PemBlock & { encrypted: boolean })[] {
  if (typeof content === "string") return pemBlocks(content);
  if (containsPemMarker(content)) return pemBlocks(new TextDecoder("utf-8").decode(content));
  const label = content[0] === 0x30 ? derLabel(content) : null;
  if (label === null) {
    throw new KeyError(
      "KEY_INVALID",
      `${what} is neither a PEM key file nor DER holding a PKCS#8, SPKI, PKCS#1 or SEC1 key`,
    );
  }
  return [{ label, der: content, encrypted: false }];
}

/** OIDs as their full DER encoding (tag 06 included). */
const oids = {
  ecPublicKey: Uint8Array.of(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01),
  rsaEncryption: Uint8Array.of(0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01),
  secp384r1: Uint8Array.of(0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22),
} as const;

const knownNames: Record<string, string> = {
  [toHex(oids.ecPublicKey)]: "EC",
  [toHex(oids.rsaEncryption)]: "RSA",
  "06092a864886f70d01010a": "RSA-PSS",
  "06032b6570": "Ed25519",
  "06032b6571": "Ed448",
  "06032b656e": "X25519",
  [toHex(oids.secp384r1)]: "P-384",
  "06082a8648ce3d030107": "P-256",
  "06052b81040023": "P-521",
  "06052b8104000a": "secp256k1",
};

function nameOf(oid: Uint8Array | undefined): string {
  if (oid === undefined) return "no curve";
  return knownNames[toHex(oid)] ?? `OID ${toHex(oid)}`;
}

const rsaAlgorithmId = tlv(0x30, concat(oids.rsaEncryption, Uint8Array.of(0x05, 0x00)));

/** SEC1 `EC PRIVATE KEY` (RFC 5915) → PKCS#8, with the curve from the key's parameters (P-384 if absent). */
export function sec1ToPkcs8(sec1: Uint8Array): Uint8Array {
  const fields = sequence(sec1);
  const params = fields.find((f) => f.tag === 0xa0);
  const curve = params === undefined ? oids.secp384r1 : readTlv(params.value, 0).raw;
  if (fields[0]?.tag !== 0x02 || fields[1]?.tag !== 0x04) throw new KeyError("KEY_INVALID", "not a SEC1 EC private key");
  const algorithm = tlv(0x30, concat(oids.ecPublicKey, curve));
  return tlv(0x30, concat(Uint8Array.of(0x02, 0x01, 0x00), algorithm, tlv(0x04, sec1)));
}

/** PKCS#1 `RSA PRIVATE KEY` → PKCS#8. */
export function pkcs1PrivateToPkcs8(pkcs1: Uint8Array): Uint8Array {
  sequence(pkcs1);
  return tlv(0x30, concat(Uint8Array.of(0x02, 0x01, 0x00), rsaAlgorithmId, tlv(0x04, pkcs1)));
}

/** PKCS#1 `RSA PUBLIC KEY` → SPKI. */
export function pkcs1PublicToSpki(pkcs1: Uint8Array): Uint8Array {
  sequence(pkcs1);
  return tlv(0x30, concat(rsaAlgorithmId, tlv(0x03, concat(Uint8Array.of(0), pkcs1))));
}

/** The key algorithm (and EC curve) a PKCS#8 or SPKI names. */
function algorithmOf(der: Uint8Array, container: "pkcs8" | "spki"): { algorithm: Uint8Array | undefined; curve: Uint8Array | undefined } {
  const fields = sequence(der);
  const algId = container === "pkcs8" ? fields[1] : fields[0];
  if (algId?.tag !== 0x30) throw new KeyError("KEY_INVALID", `not a ${container === "pkcs8" ? "PKCS#8" : "SPKI"} key`);
  const parts = children(algId.value);
  const param = parts[1];
  return { algorithm: parts[0]?.raw, curve: param?.tag === 0x06 ? param.raw : undefined };
}

/** What kind of key a PKCS#8 or SPKI holds: `EC P-384`, `RSA`, `Ed25519`, … */
export function describeKey(der: Uint8Array, container: "pkcs8" | "spki"): string {
  const { algorithm, curve } = algorithmOf(der, container);
  const name = nameOf(algorithm);
  return name === "EC" ? `EC ${nameOf(curve)}` : name;
}

/** A private key as PKCS#8, from a PEM or DER file in any of the forms openssl writes. */
function privatePkcs8(content: KeyFileContent, what: string): Uint8Array {
  const blocks = keyBlocks(content, what);
  if (blocks.length === 0) throw new KeyError("KEY_INVALID", `${what} holds no PEM block`);
  for (const block of blocks) {
    if (block.label === "ENCRYPTED PRIVATE KEY" || block.encrypted) {
      throw new KeyError(
        "KEY_ENCRYPTED",
        `${what} is encrypted with a passphrase; decrypt it first (openssl pkey -in FILE -out FILE.plain)`,
      );
    }
    if (block.label === "PRIVATE KEY") return block.der;
    if (block.label === "EC PRIVATE KEY") return sec1ToPkcs8(block.der);
    if (block.label === "RSA PRIVATE KEY") return pkcs1PrivateToPkcs8(block.der);
  }
  const labels = blocks.map((b) => b.label).join(", ");
  throw new KeyError("KEY_WRONG_TYPE", `${what} holds ${labels}, not a private key`);
}

/** A public key as SPKI, from a public-key file (SPKI or PKCS#1) or a private-key file, PEM or DER. */
async function publicSpki(content: KeyFileContent, what: string): Promise<Uint8Array> {
  const blocks = keyBlocks(content, what);
  for (const block of blocks) {
    if (block.label === "PUBLIC KEY") return block.der;
    if (block.label === "RSA PUBLIC KEY") return pkcs1PublicToSpki(block.der);
  }
  const pkcs8 = privatePkcs8(content, what);
  const kind = describeKey(pkcs8, "pkcs8");
  if (kind === "EC P-384") return (await importWorkloadOwnerPkcs8(pkcs8, what)).spki;
  if (kind === "RSA") return (await importSeedShareOwnerPkcs8(pkcs8, what)).spki;
  throw new KeyError("KEY_WRONG_TYPE", `${what} is an ${kind} key; expected EC P-384 or RSA`);
}

/** A workload owner's key: an ECDSA P-384 signing key with its public SPKI and the digest the manifest lists. */
export interface WorkloadOwnerKey {
  privateKey: CryptoKey;
  spki: Uint8Array;
  digest: string;
}

/** A seed-share owner's key: an RSA-OAEP (SHA-256) decryption key, the same key for RSA-PSS (SHA-256) signing, and its public SPKI. */
export interface SeedShareOwnerKey {
  privateKey: CryptoKey;
  /** The same private key for RSA-PSS (SHA-256) signatures: rekey approvals and recovery resets. */
  signingKey: CryptoKey;
  spki: Uint8Array;
  bits: number;
}

async function importWorkloadOwnerPkcs8(pkcs8: Uint8Array, what: string): Promise<WorkloadOwnerKey> {
  const kind = describeKey(pkcs8, "pkcs8");
  if (kind !== "EC P-384") {
    throw new KeyError("KEY_WRONG_TYPE", `${what} is an ${kind} key; a workload owner key must be ECDSA P-384`);
  }
  let extractable: CryptoKey;
  try {
    extractable = await subtle().importKey("pkcs8", pkcs8 as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, true, ["sign"]);
  } catch {
    throw new KeyError("KEY_INVALID", `${what} is not a valid ECDSA P-384 private key`);
  }
  const jwk = await subtle().exportKey("jwk", extractable);
  const pub = await subtle().importKey(
    "jwk",
    { kty: "EC", crv: "P-384", x: jwk.x, y: jwk.y, ext: true },
    { name: "ECDSA", namedCurve: "P-384" },
    true,
    ["verify"],
  );
  const spki = new Uint8Array(await subtle().exportKey("spki", pub));
  const privateKey = await subtle().importKey("pkcs8", pkcs8 as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, false, ["sign"]);
  return { privateKey, spki, digest: toHex(await sha256(spki)) };
}

async function importSeedShareOwnerPkcs8(pkcs8: Uint8Array, what: string): Promise<SeedShareOwnerKey> {
  const kind = describeKey(pkcs8, "pkcs8");
  if (kind !== "RSA") {
    throw new KeyError("KEY_WRONG_TYPE", `${what} is an ${kind} key; a seed-share owner key must be RSA`);
  }
  const algorithm = { name: "RSA-OAEP", hash: "SHA-256" };
  let extractable: CryptoKey;
  try {
    extractable = await subtle().importKey("pkcs8", pkcs8 as BufferSource, algorithm, true, ["decrypt"]);
  } catch {
    throw new KeyError("KEY_INVALID", `${what} is not a valid RSA private key`);
  }
  const jwk = await subtle().exportKey("jwk", extractable);
  const pub = await subtle().importKey("jwk", { kty: "RSA", n: jwk.n, e: jwk.e, ext: true }, algorithm, true, ["encrypt"]);
  const spki = new Uint8Array(await subtle().exportKey("spki", pub));
  const privateKey = await subtle().importKey("pkcs8", pkcs8 as BufferSource, algorithm, false, ["decrypt"]);
  const signingKey = await subtle().importKey("pkcs8", pkcs8 as BufferSource, { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]);
  return { privateKey, signingKey, spki, bits: (extractable.algorithm as RsaHashedKeyAlgorithm).modulusLength };
}

/** Reads a workload owner's private key (PKCS#8 or SEC1, PEM or DER, ECDSA P-384). `what` names the file in errors. */
export async function loadWorkloadOwnerKey(content: KeyFileContent, what: string): Promise<WorkloadOwnerKey> {
  return naming(what, () => importWorkloadOwnerPkcs8(privatePkcs8(content, what), what));
}

/** Runs a key file's parsing so that every KeyError names the file: the DER and base64 readers do not know it. */
async function naming<T>(what: string, parse: () => Promise<T>): Promise<T> {
  try {
    return await parse();
  } catch (err) {
    if (err instanceof KeyError && !err.message.startsWith(what)) throw new KeyError(err.code, `${what} is not a valid key file: ${err.message}`);
    throw err;
  }
}

/**
 * Reads a seed-share owner's private key (PKCS#8 or PKCS#1, PEM or DER, RSA). `what` names the file
 * in errors. Its public exponent is not checked here, so that a share made for a key from before that
 * check can still be opened to recover; `checkSeedShareOwnerPublicKey` refuses such a key.
 */
export async function loadSeedShareOwnerKey(content: KeyFileContent, what: string): Promise<SeedShareOwnerKey> {
  return naming(what, () => importSeedShareOwnerPkcs8(privatePkcs8(content, what), what));
}

/** Reads a workload owner's public key (SPKI, or the private key; PEM or DER) and returns its SPKI and digest. */
export async function loadWorkloadOwnerPublicKey(content: KeyFileContent, what: string): Promise<{ spki: Uint8Array; digest: string }> {
  const spki = await naming(what, () => publicSpki(content, what));
  const kind = await naming(what, async () => describeKey(spki, "spki"));
  if (kind !== "EC P-384") {
    throw new KeyError("KEY_WRONG_TYPE", `${what} is an ${kind} key; a workload owner key must be ECDSA P-384`);
  }
  try {
    await subtle().importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve: "P-384" }, true, ["verify"]);
  } catch {
    throw new KeyError("KEY_INVALID", `${what} is not a valid ECDSA P-384 public key`);
  }
  return { spki, digest: toHex(await sha256(spki)) };
}

/**
 * Reads a seed-share owner's public key (SPKI or PKCS#1, or the private key; PEM or DER) and
 * returns its SPKI and size. A public exponent other than 65537 is KEY_WEAK.
 */
export async function loadSeedShareOwnerPublicKey(content: KeyFileContent, what: string): Promise<{ spki: Uint8Array; bits: number }> {
  const spki = await naming(what, () => publicSpki(content, what));
  return { spki, bits: await checkSeedShareOwnerPublicKey(spki, what) };
}

/**
 * Checks a seed-share owner's public key (DER SPKI) as the Coordinator will: RSA, with public
 * exponent exactly 65537 (KEY_WEAK otherwise: with e = 1 its "encrypted" share is the share in the
 * clear). Returns its size in bits; the caller checks the minimum.
 */
export async function checkSeedShareOwnerPublicKey(spki: Uint8Array, what: string): Promise<number> {
  let kind: string;
  try {
    kind = describeKey(spki, "spki");
  } catch {
    throw new KeyError("KEY_INVALID", `${what} is not a valid RSA public key`);
  }
  if (kind !== "RSA") throw new KeyError("KEY_WRONG_TYPE", `${what} is an ${kind} key; a seed-share owner key must be RSA`);
  let key: CryptoKey;
  try {
    key = await subtle().importKey("spki", spki as BufferSource, { name: "RSA-OAEP", hash: "SHA-256" }, true, ["encrypt"]);
  } catch {
    throw new KeyError("KEY_INVALID", `${what} is not a valid RSA public key`);
  }
  const weak = await weakExponent(key);
  if (weak !== null) {
    throw new KeyError(
      "KEY_WEAK",
      `${what} is an RSA key with public exponent ${weak}; a seed-share owner key must have exponent ${seedShareOwnerExponent}`,
    );
  }
  return (key.algorithm as RsaHashedKeyAlgorithm).modulusLength;
}

/** A fresh ECDSA P-384 key as PKCS#8 DER. */
export async function generateWorkloadOwnerKey(): Promise<Uint8Array> {
  const pair = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return new Uint8Array(await subtle().exportKey("pkcs8", pair.privateKey));
}

/** A fresh RSA key (exponent 65537) as PKCS#8 DER. */
export async function generateSeedShareOwnerKey(bits: number): Promise<Uint8Array> {
  const pair = (await subtle().generateKey(
    { name: "RSA-OAEP", modulusLength: bits, publicExponent: Uint8Array.of(1, 0, 1), hash: "SHA-256" },
    true,
    ["encrypt", "decrypt"],
  )) as CryptoKeyPair;
  return new Uint8Array(await subtle().exportKey("pkcs8", pair.privateKey));
}
