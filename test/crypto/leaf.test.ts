// The DER encoder and the directly-encoded workload leaf: byte rules, every field, openssl's verdict and equality with the @peculiar/x509 leaf.
import { spawnSync } from "node:child_process";
import { ECDH, createPublicKey, verify as nodeVerify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMeshCA,
  createRootCertificate,
  issueLeaf,
  issueLeafDer,
  parseCertificate,
  signingAlgorithm,
  subjectKeyId,
  subjects,
  toPem,
} from "../../src/crypto/ca.js";
import type { CertifiedKey, LeafRequest, MeshCA } from "../../src/crypto/ca.js";
import {
  bitString,
  boolean,
  children,
  ecdsaSignatureDer,
  encodeLength,
  explicit,
  generalizedTime,
  implicit,
  integer,
  namedBits,
  octetString,
  oid,
  printableString,
  readElement,
  sequence,
  setOf,
  smallInteger,
  time,
  tlv,
  utcTime,
  utf8String,
} from "../../src/crypto/der.js";
import { canonicalEcPoint, certificateSubject, ipAddressBytes, leafTbs, templateFor } from "../../src/crypto/leaf.js";
import { subtle, webcrypto } from "../../src/crypto/provider.js";
import { SeedEngine } from "../../src/crypto/seedengine.js";
import { fromHex, toHex } from "../../src/encoding.js";
import { canonicalIp, generalName } from "../../src/manifest/san.js";
import type { GeneralName } from "../../src/manifest/san.js";
import { implementations, usingImplementation } from "./implementations.js";

const openssl = "/usr/bin/openssl";
/** Issuance time; the milliseconds must not reach the certificate. */
const now = new Date("2026-11-28T12:00:00.250Z");

const hex = (bytes: Uint8Array): string => toHex(bytes);
const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

function expectInternal(fn: () => unknown): void {
  expect(fn).toThrow(expect.objectContaining({ code: "INTERNAL" }) as Error);
}

/** The TBSCertificate bytes of a DER certificate. */
function tbsOf(der: Uint8Array): Uint8Array {
  const tbs = children(der, readElement(der))[0]!;
  return der.slice(tbs.start, tbs.end);
}

describe("DER encoder", () => {
  it("writes lengths in short form below 128 and minimal long form from 128", () => {
    expect(hex(encodeLength(0))).toBe("00");
    expect(hex(encodeLength(127))).toBe("7f");
    expect(hex(encodeLength(128))).toBe("8180");
    expect(hex(encodeLength(255))).toBe("81ff");
    expect(hex(encodeLength(256))).toBe("820100");
    expect(hex(encodeLength(65535))).toBe("82ffff");
    expect(hex(encodeLength(65536))).toBe("83010000");
    expectInternal(() => encodeLength(-1));
    expectInternal(() => encodeLength(1.5));
  });

  it("wraps contents of every boundary length so that the reader finds them again", () => {
    for (const n of [0, 1, 127, 128, 255, 256, 65535, 65536]) {
      const content = new Uint8Array(n).fill(0xab);
      const element = tlv(0x04, content.subarray(0, Math.floor(n / 2)), content.subarray(Math.floor(n / 2)));
      expect(element.length).toBe(1 + encodeLength(n).length + n);
      const read = readElement(element);
      expect(read).toEqual({ tag: 0x04, start: 0, contentStart: 1 + encodeLength(n).length, end: element.length });
    }
  });

  it("reads only minimal definite lengths that fit", () => {
    expectInternal(() => readElement(bytes(0x04, 0x81, 0x05, 1, 2, 3, 4, 5)));
    expectInternal(() => readElement(bytes(0x04, 0x82, 0x00, 0x80)));
    expectInternal(() => readElement(bytes(0x04, 0x80)));
    expectInternal(() => readElement(bytes(0x04, 0x03, 1, 2)));
    expectInternal(() => readElement(bytes(0x1f, 0x01, 0x00)));
    const seq = sequence(integer(bytes(1)), octetString(bytes(2, 3)));
    expect(children(seq, readElement(seq)).map((c) => c.tag)).toEqual([0x02, 0x04]);
  });

  it("encodes INTEGERs minimally: leading zeros dropped, 0x00 added before a set top bit, zero as one byte", () => {
    expect(hex(integer(bytes()))).toBe("020100");
    expect(hex(integer(bytes(0)))).toBe("020100");
    expect(hex(integer(bytes(0, 0, 0)))).toBe("020100");
    expect(hex(integer(bytes(0, 0, 5)))).toBe("020105");
    expect(hex(integer(bytes(0x7f)))).toBe("02017f");
    expect(hex(integer(bytes(0x80)))).toBe("02020080");
    expect(hex(integer(bytes(0, 0x80)))).toBe("02020080");
    expect(hex(integer(bytes(0, 0, 0x7f, 0xff)))).toBe("02027fff");
    expect(hex(integer(bytes(0xff, 0xff)))).toBe("020300ffff");
    expect(hex(smallInteger(2))).toBe("020102");
    expect(hex(smallInteger(0))).toBe("020100");
    expect(hex(smallInteger(256))).toBe("02020100");
    expect(hex(smallInteger(128))).toBe("02020080");
  });

  it("encodes OBJECT IDENTIFIERs in base 128", () => {
    expect(hex(oid("1.2.840.10045.4.3.3"))).toBe("06082a8648ce3d040303");
    expect(hex(oid("2.5.29.17"))).toBe("0603551d11");
    expect(hex(oid("1.3.6.1.5.5.7.3.1"))).toBe("06082b06010505070301");
    expect(hex(oid("2.999.3"))).toBe("0603883703");
    expectInternal(() => oid("1.40"));
    expectInternal(() => oid("3.1"));
    expectInternal(() => oid("1.2.03"));
  });

  it("encodes strings, BOOLEAN, OCTET STRING, context tags and SET OF in DER order", () => {
    expect(hex(printableString("Ab9 '()+,-./:=?"))).toBe("130f" + hex(new TextEncoder().encode("Ab9 '()+,-./:=?")));
    expectInternal(() => printableString("*.web"));
    expectInternal(() => printableString("a_b"));
    expect(hex(utf8String("é"))).toBe("0c02c3a9");
    expect(hex(boolean(true))).toBe("0101ff");
    expect(hex(boolean(false))).toBe("010100");
    expect(hex(octetString(bytes(1, 2)))).toBe("04020102");
    expect(hex(explicit(3, sequence()))).toBe("a3023000");
    expect(hex(implicit(7, bytes(10, 0, 0, 1)))).toBe("87040a000001");
    expect(hex(setOf(bytes(0x02, 0x01, 0x05), bytes(0x02, 0x01, 0x03), bytes(0x01, 0x01, 0xff)))).toBe("31090101ff020103020105");
  });

  it("writes UTCTime through 2049 and GeneralizedTime from 2050, whole seconds only", () => {
    const text = (der: Uint8Array): string => new TextDecoder().decode(der.subarray(2));
    expect(hex(utcTime(new Date("2026-11-28T11:00:00.999Z")).subarray(0, 2))).toBe("170d");
    expect(text(time(new Date("2026-11-28T11:00:00.999Z")))).toBe("261128110000Z");
    expect(text(time(new Date("2049-12-31T23:59:59.999Z")))).toBe("491231235959Z");
    expect(time(new Date("2049-12-31T23:59:59.999Z"))[0]).toBe(0x17);
    expect(time(new Date("2050-01-01T00:00:00.500Z"))[0]).toBe(0x18);
    expect(text(time(new Date("2050-01-01T00:00:00.500Z")))).toBe("20500101000000Z");
    expect(text(time(new Date("1950-01-01T00:00:00Z")))).toBe("500101000000Z");
    expect(text(time(new Date("1949-12-31T23:59:59Z")))).toBe("19491231235959Z");
    expect(text(generalizedTime(new Date("2026-01-02T03:04:05Z")))).toBe("20260102030405Z");
    expectInternal(() => utcTime(new Date("2050-01-01T00:00:00Z")));
    expectInternal(() => time(new Date(Number.NaN)));
  });

  it("encodes BIT STRINGs, named bits without trailing zero bits", () => {
    expect(hex(bitString(bytes(1, 2)))).toBe("0303000102");
    expect(hex(namedBits([0, 2]))).toBe("030205a0");
    expect(hex(namedBits([]))).toBe("030100");
    expect(hex(namedBits([7]))).toBe("03020001");
    expect(hex(namedBits([8]))).toBe("0303070080");
    expect(hex(namedBits([5, 6]))).toBe("03020106");
    expectInternal(() => bitString(bytes(0x01), 1));
    expectInternal(() => bitString(bytes(), 3));
  });

  it("converts P1363 signatures to Ecdsa-Sig-Value: 0x00 before a set top bit, leading zeros dropped", () => {
    const r = new Uint8Array(48).fill(0x11);
    r[0] = 0x80;
    const s = new Uint8Array(48).fill(0x22);
    s[0] = 0;
    s[1] = 0;
    s[2] = 0x05;
    const der = ecdsaSignatureDer(new Uint8Array([...r, ...s]));
    expect(hex(der)).toBe("3063" + "023100" + hex(r) + "022e" + hex(s.subarray(2)));
    const zeroS = ecdsaSignatureDer(new Uint8Array([...new Uint8Array(32).fill(0x7f), ...new Uint8Array(32)]));
    expect(hex(zeroS)).toBe("3025" + "0220" + "7f".repeat(32) + "020100");
    const highS = ecdsaSignatureDer(new Uint8Array([0x00, 0x80, ...new Uint8Array(30), 0xff, ...new Uint8Array(31)]));
    // r's own leading 0x00 stays (the next byte has its top bit set); s gains one.
    expect(hex(highS)).toBe("3045" + "0220" + "0080" + "00".repeat(30) + "022100ff" + "00".repeat(31));
    expectInternal(() => ecdsaSignatureDer(new Uint8Array(95)));
  });

  it("round-trips any P1363 signature through DER (property)", () => {
    fc.assert(
      fc.property(fc.constantFrom(32, 48, 66), fc.uint8Array({ minLength: 132, maxLength: 132 }), fc.nat(48), (size, raw, zeros) => {
        const p1363 = raw.slice(0, 2 * size);
        p1363.fill(0, 0, Math.min(zeros, size));
        const der = ecdsaSignatureDer(p1363);
        const outer = readElement(der);
        expect(outer.end).toBe(der.length);
        const [re, se] = children(der, outer);
        const back = [re!, se!].map((e) => {
          const content = der.subarray(e.contentStart, e.end);
          expect(e.tag).toBe(0x02);
          // minimal: no redundant 0x00, and never negative
          if (content.length > 1) expect(content[0] === 0 && content[1]! < 0x80).toBe(false);
          expect(content[0]! < 0x80).toBe(true);
          const padded = new Uint8Array(size + 1);
          padded.set(content, size + 1 - content.length);
          return padded.subarray(1);
        });
        expect(hex(new Uint8Array([...back[0]!, ...back[1]!]))).toBe(hex(p1363));
      }),
      { numRuns: 300 },
    );
  });

  it("packs IP SANs as 4 or 16 bytes", () => {
    expect(hex(ipAddressBytes("10.0.0.1"))).toBe("0a000001");
    expect(hex(ipAddressBytes("0:0:0:0:0:0:0:1"))).toBe("00000000000000000000000000000001");
    expect(hex(ipAddressBytes("2001:db8:0:0:0:0:ff00:42"))).toBe("20010db80000000000000000ff000042");
    expect(hex(ipAddressBytes("fe80::1"))).toBe("fe800000000000000000000000000001");
    expectInternal(() => ipAddressBytes("web"));
  });
});

/** The leaf the @peculiar/x509 generator makes: issueLeaf's body before the DER rewrite, with a given serial. */
async function x509Leaf(mesh: CertifiedKey, request: LeafRequest, at: Date, serialHex: string): Promise<x509.X509Certificate> {
  const notBefore = new Date(at.getTime() - 60 * 60 * 1000);
  const notAfter = new Date(notBefore.getTime() + 365 * 24 * 60 * 60 * 1000);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectKeyIdentifierExtension(await subjectKeyId(request.publicKey)),
    new x509.AuthorityKeyIdentifierExtension(mesh.keyId),
  ];
  if (request.sans.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(request.sans.map((n) => ({ type: n.type, value: n.value }))));
  }
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: serialHex,
      subject: [{ CN: [request.commonName] }],
      issuer: subjects.mesh,
      notBefore,
      notAfter,
      publicKey: request.publicKey,
      signingKey: mesh.privateKey,
      signingAlgorithm,
      extensions,
    },
    webcrypto(),
  );
}

function ext<T extends x509.Extension>(cert: x509.X509Certificate, type: new (raw: BufferSource) => T): T {
  const found = cert.getExtension(type);
  if (found === null) throw new Error(`missing ${type.name}`);
  return found;
}

/** A SAN as x509's toJSON gives it back, in the certificate's form. */
function certifiedForm(name: { type: string; value: string }): GeneralName {
  return { type: name.type as "dns" | "ip", value: name.type === "ip" ? canonicalIp(name.value) ?? "?" : name.value };
}

describe.each(implementations)("workload leaves in DER on %s", (_name, impl) => {
  usingImplementation(impl);

  let dir: string;
  let rootCert: x509.X509Certificate;
  let mesh: MeshCA;
  let issuer: CertifiedKey;
  let p256: CryptoKeyPair;
  let p384: CryptoKeyPair;
  const sans = ["web", "*.web.svc", "10.0.0.1", "::1", "2001:db8::ff00:42"].map(generalName);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "leaf-test-"));
    const engine = await SeedEngine.create(new Uint8Array(64).fill(7), new Uint8Array(32).fill(9));
    const rootKeys = { privateKey: engine.rootCAKey.privateKey, publicKey: engine.rootCAKey.publicKey };
    rootCert = await createRootCertificate(rootKeys, now);
    const root = { privateKey: rootKeys.privateKey, certificate: rootCert, keyId: await subjectKeyId(rootKeys.publicKey) };
    mesh = await createMeshCA(root, now);
    issuer = { privateKey: mesh.keys.privateKey, certificate: mesh.intermediate, keyId: await subjectKeyId(mesh.keys.publicKey) };
    p256 = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    p384 = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
    writeFileSync(join(dir, "root.pem"), toPem(new Uint8Array(rootCert.rawData)));
    writeFileSync(join(dir, "intermediate.pem"), toPem(new Uint8Array(mesh.intermediate.rawData)));
    writeFileSync(join(dir, "mesh.pem"), toPem(new Uint8Array(mesh.meshCA.rawData)));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
    const result = spawnSync(openssl, args, { encoding: "utf8", timeout: 20_000 });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  function writeLeaf(der: Uint8Array, name = "leaf.pem"): string {
    const path = join(dir, name);
    writeFileSync(path, toPem(der));
    return path;
  }

  it("has every field and extension of the x509-built leaf, with the right values and criticality", async () => {
    const der = await issueLeafDer(issuer, { publicKey: p256.publicKey, sans, commonName: "web" }, now);
    const leaf = parseCertificate(der);
    expect(leaf.serialNumber).toMatch(/^[4-7][0-9a-f]{31}$/);
    expect(leaf.signatureAlgorithm).toMatchObject({ name: "ECDSA", hash: { name: "SHA-384" } });
    expect(leaf.issuer).toBe(subjects.mesh);
    expect(hex(new Uint8Array(leaf.issuerName.toArrayBuffer()))).toBe(hex(certificateSubject(new Uint8Array(mesh.intermediate.rawData))));
    expect(leaf.subject).toBe("CN=web");
    expect(leaf.notBefore.toISOString()).toBe("2026-11-28T11:00:00.000Z");
    expect(leaf.notAfter.toISOString()).toBe("2027-11-28T11:00:00.000Z");
    const spki = new Uint8Array(await subtle().exportKey("spki", p256.publicKey));
    expect(hex(new Uint8Array(leaf.publicKey.rawData))).toBe(hex(spki));

    expect(leaf.extensions.map((e) => [e.type, e.critical])).toEqual([
      ["2.5.29.19", true],
      ["2.5.29.15", true],
      ["2.5.29.37", false],
      ["2.5.29.14", false],
      ["2.5.29.35", false],
      ["2.5.29.17", false],
    ]);
    const bc = ext(leaf, x509.BasicConstraintsExtension);
    expect([bc.ca, bc.pathLength]).toEqual([false, undefined]);
    expect(ext(leaf, x509.KeyUsagesExtension).usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    expect(ext(leaf, x509.ExtendedKeyUsageExtension).usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    expect(ext(leaf, x509.SubjectKeyIdentifierExtension).keyId).toBe(await subjectKeyId(p256.publicKey));
    expect(ext(leaf, x509.AuthorityKeyIdentifierExtension).keyId).toBe(issuer.keyId);
    expect(ext(leaf, x509.SubjectAlternativeNameExtension).names.toJSON()).toEqual([
      { type: "dns", value: "web" },
      { type: "dns", value: "*.web.svc" },
      { type: "ip", value: "10.0.0.1" },
      { type: "ip", value: "::1" },
      { type: "ip", value: "2001:db8::ff00:42" },
    ]);

    const text = run(["x509", "-in", writeLeaf(der), "-noout", "-text"]);
    expect(text.status).toBe(0);
    expect(text.stdout).toContain("Version: 3 (0x2)");
    expect(text.stdout).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text.stdout).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text.stdout).toMatch(/X509v3 Extended Key Usage: \s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text.stdout).toMatch(
      /X509v3 Subject Alternative Name: \s+DNS:web, DNS:\*\.web\.svc, IP Address:10\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:0:0:FF00:42\n/,
    );
  });

  it("is signed by the mesh key: the intermediate and the self-signed mesh CA both verify it, another CA does not", async () => {
    const leaf = await issueLeaf(issuer, { publicKey: p384.publicKey, sans, commonName: "web" }, now);
    expect(await leaf.verify({ publicKey: mesh.intermediate.publicKey, signatureOnly: true }, webcrypto())).toBe(true);
    expect(await leaf.verify({ publicKey: mesh.meshCA.publicKey, signatureOnly: true }, webcrypto())).toBe(true);
    expect(await leaf.verify({ publicKey: rootCert.publicKey, signatureOnly: true }, webcrypto())).toBe(false);
    // The DER signature also checks under a second ECDSA implementation (node:crypto, DER encoding).
    const der = new Uint8Array(leaf.rawData);
    const signature = new Uint8Array(leaf.signature);
    const meshKey = createPublicKey({ key: Buffer.from(mesh.intermediate.publicKey.rawData), format: "der", type: "spki" });
    expect(nodeVerify("sha384", tbsOf(der), { key: meshKey, dsaEncoding: "der" }, signature)).toBe(true);
  });

  it("passes openssl verify against root + intermediate and against the self-signed mesh CA, and fails against a foreign CA", async () => {
    const attime = String(Math.floor(now.getTime() / 1000));
    for (const [name, key] of [["p256.pem", p256], ["p384.pem", p384]] as const) {
      const path = writeLeaf(await issueLeafDer(issuer, { publicKey: key.publicKey, sans, commonName: "web" }, now), name);
      const chain = run(["verify", "-attime", attime, "-CAfile", join(dir, "root.pem"), "-untrusted", join(dir, "intermediate.pem"), path]);
      expect(chain.stderr).toBe("");
      expect(chain).toMatchObject({ status: 0, stdout: `${path}: OK\n` });
      const direct = run(["verify", "-attime", attime, "-CAfile", join(dir, "mesh.pem"), path]);
      expect(direct).toMatchObject({ status: 0, stdout: `${path}: OK\n` });
      const wrong = run(["verify", "-attime", attime, "-CAfile", join(dir, "root.pem"), path]);
      expect(wrong.status).not.toBe(0);
    }
  });

  it("has the TBSCertificate @peculiar/x509 makes for the same inputs, byte for byte given the same serial", async () => {
    for (const [request, at] of [
      [{ publicKey: p256.publicKey, sans, commonName: "web" }, now],
      [{ publicKey: p384.publicKey, sans: [], commonName: "0123abcd".repeat(8) }, now],
      [{ publicKey: p256.publicKey, sans: [generalName("a_b.svc")], commonName: "a_b.svc" }, now],
      [{ publicKey: p256.publicKey, sans: [generalName("fe80::1")], commonName: "fe80::1" }, new Date("2049-06-01T00:00:00Z")],
      [{ publicKey: p256.publicKey, sans: [generalName("x")], commonName: "ünïcödé" }, new Date("2055-06-01T00:00:00Z")],
    ] as const) {
      const serial = "4" + hex(new Uint8Array(15).fill(0x9c)) + "7";
      const reference = await x509Leaf(issuer, { ...request, sans: [...request.sans] }, at, serial);
      const notBefore = new Date(at.getTime() - 60 * 60 * 1000);
      const tbs = leafTbs(templateFor(issuer), {
        serialNumber: fromHex(serial),
        notBefore,
        notAfter: new Date(notBefore.getTime() + 365 * 24 * 60 * 60 * 1000),
        commonName: request.commonName,
        subjectPublicKeyInfo: new Uint8Array(await subtle().exportKey("spki", request.publicKey)),
        subjectKeyId: fromHex(await subjectKeyId(request.publicKey)),
        sans: request.sans,
      });
      expect(hex(tbs)).toBe(hex(tbsOf(new Uint8Array(reference.rawData))));
    }
  });

  it("matches the x509 leaf field by field through the real issuance path (all but serial and signature)", async () => {
    const request = { publicKey: p256.publicKey, sans, commonName: "web" };
    const fast = parseCertificate(await issueLeafDer(issuer, request, now));
    const reference = await x509Leaf(issuer, request, now, "5" + "0".repeat(31));
    expect(fast.serialNumber).not.toBe(reference.serialNumber);
    for (const field of ["issuer", "subject", "notBefore", "notAfter", "signatureAlgorithm"] as const) {
      expect(fast[field]).toEqual(reference[field]);
    }
    expect(hex(new Uint8Array(fast.publicKey.rawData))).toBe(hex(new Uint8Array(reference.publicKey.rawData)));
    expect(fast.extensions.map((e) => [e.type, e.critical, hex(new Uint8Array(e.value))])).toEqual(
      reference.extensions.map((e) => [e.type, e.critical, hex(new Uint8Array(e.value))]),
    );
  });

  it("uses the workload's SPKI bytes as given only when they are what WebCrypto exports", async () => {
    for (const key of [p256, p384]) {
      const spki = new Uint8Array(await subtle().exportKey("spki", key.publicKey));
      const raw = new Uint8Array(await subtle().exportKey("raw", key.publicKey));
      expect(hex(canonicalEcPoint(spki) ?? bytes())).toBe(hex(raw));
      expect(canonicalEcPoint(spki.subarray(0, spki.length - 1))).toBeNull();
      const flipped = spki.slice();
      flipped[10]! ^= 1;
      expect(canonicalEcPoint(flipped)).toBeNull();
      const hinted = parseCertificate(await issueLeafDer(issuer, { publicKey: key.publicKey, subjectPublicKeyInfo: spki, sans, commonName: "web" }, now));
      const plain = parseCertificate(await issueLeafDer(issuer, { publicKey: key.publicKey, sans, commonName: "web" }, now));
      expect(hex(new Uint8Array(hinted.publicKey.rawData))).toBe(hex(spki));
      expect(hinted.extensions.map((e) => hex(new Uint8Array(e.rawData)))).toEqual(plain.extensions.map((e) => hex(new Uint8Array(e.rawData))));
    }
    // A compressed point imports, but is not the exported form: the key is exported instead.
    const spki = new Uint8Array(await subtle().exportKey("spki", p256.publicKey));
    const point = ECDH.convertKey(spki.subarray(26), "prime256v1", undefined, undefined, "compressed") as Buffer;
    const compressed = new Uint8Array([...fromHex("3039301306072a8648ce3d020106082a8648ce3d030107032200"), ...point]);
    expect(canonicalEcPoint(compressed)).toBeNull();
    const imported = await subtle().importKey("spki", compressed, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
    const leaf = parseCertificate(await issueLeafDer(issuer, { publicKey: imported, subjectPublicKeyInfo: compressed, sans, commonName: "web" }, now));
    expect(hex(new Uint8Array(leaf.publicKey.rawData))).toBe(hex(new Uint8Array(await subtle().exportKey("spki", imported))));
    expect(ext(leaf, x509.SubjectKeyIdentifierExtension).keyId).toBe(await subjectKeyId(imported));
  });

  it("draws a fresh positive 16-byte serial starting 0x40 to 0x7f each time", async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const leaf = await issueLeaf(issuer, { publicKey: p256.publicKey, sans: [], commonName: "web" }, now);
      expect(leaf.serialNumber).toMatch(/^[4-7][0-9a-f]{31}$/);
      serials.add(leaf.serialNumber);
    }
    expect(serials.size).toBe(20);
  });

  it("omits subjectAltName when there are no SANs", async () => {
    const leaf = await issueLeaf(issuer, { publicKey: p256.publicKey, sans: [], commonName: "policy" }, now);
    expect(leaf.getExtension(x509.SubjectAlternativeNameExtension)).toBeNull();
    expect(leaf.extensions).toHaveLength(5);
  });

  it("takes the issuer Name from the issuing certificate, following a changed certificate", async () => {
    const selfSigned = { ...issuer, certificate: mesh.meshCA };
    expect(hex(templateFor(selfSigned).issuer)).toBe(hex(certificateSubject(new Uint8Array(mesh.meshCA.rawData))));
    const foreign = { ...issuer, certificate: rootCert };
    const leaf = await issueLeaf(foreign, { publicKey: p256.publicKey, sans: [], commonName: "web" }, now);
    expect(leaf.issuer).toBe(subjects.root);
    const again = await issueLeaf(issuer, { publicKey: p256.publicKey, sans: [], commonName: "web" }, now);
    expect(again.issuer).toBe(subjects.mesh);
  });

  it("refuses SANs that cannot be encoded, with code INTERNAL", async () => {
    const base = { publicKey: p256.publicKey, commonName: "web" };
    await expect(issueLeafDer(issuer, { ...base, sans: [{ type: "dns", value: "wéb" }] }, now)).rejects.toMatchObject({ code: "INTERNAL" });
    await expect(issueLeafDer(issuer, { ...base, sans: [{ type: "ip", value: "10.0.0.256" }] }, now)).rejects.toMatchObject({
      code: "INTERNAL",
    });
  });

  it("parses and round-trips random SAN lists and common names (property)", async () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    const dns = fc
      .tuple(fc.boolean(), fc.array(label, { minLength: 1, maxLength: 4 }))
      .map(([wild, labels]) => (wild ? "*." : "") + labels.join("."))
      .filter((name) => !/^[0-9.]+$/.test(name) && name.length <= 253);
    const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => [...b].join("."));
    const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((g) => g.map((n) => n.toString(16)).join(":"));
    const san = fc.oneof(dns, v4, v6).map(generalName);
    const commonName = fc.oneof(dns, fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }));
    await fc.assert(
      fc.asyncProperty(fc.array(san, { maxLength: 12 }), commonName, async (names, cn) => {
        const leaf = parseCertificate(await issueLeafDer(issuer, { publicKey: p256.publicKey, sans: names, commonName: cn }, now));
        expect(leaf.subjectName.getField("CN")).toEqual([cn]);
        const found = leaf.getExtension(x509.SubjectAlternativeNameExtension);
        if (names.length === 0) {
          expect(found).toBeNull();
        } else {
          expect(found?.names.toJSON().map(certifiedForm)).toEqual(names);
        }
        expect(await leaf.verify({ publicKey: mesh.intermediate.publicKey, signatureOnly: true }, webcrypto())).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});
