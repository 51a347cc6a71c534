// What issuance does without a WebCrypto round trip or a rebuild: the point check against WebCrypto's import, the PEM encoder against base64, the leaf's cached parts against the inputs, and serials across a refill of their random pool.
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { createMeshCA, createRootCertificate, issueLeafDer, parseCertificate, subjectKeyId, toPem } from "../../src/crypto/ca.js";
import type { CertifiedKey } from "../../src/crypto/ca.js";
import { canonicalEcKey, frozenClaim, isValidEcPoint, leafTbs, pointKeyId, templateFor } from "../../src/crypto/leaf.js";
import type { LeafTemplate } from "../../src/crypto/leaf.js";
import { octetString } from "../../src/crypto/der.js";
import { SeedEngine } from "../../src/crypto/seedengine.js";
import { toBase64, toHex, utf8 } from "../../src/encoding.js";
import { generalName } from "../../src/manifest/san.js";
import type { GeneralName } from "../../src/manifest/san.js";

const now = new Date("2026-11-28T12:00:00.250Z");

let issuer: CertifiedKey;
let template: LeafTemplate;
const spkis: Record<"P-256" | "P-384", Uint8Array> = { "P-256": new Uint8Array(0), "P-384": new Uint8Array(0) };

beforeAll(async () => {
  const engine = await SeedEngine.create(new Uint8Array(64).fill(3), new Uint8Array(32).fill(4));
  const rootKeys = { privateKey: engine.rootCAKey.privateKey, publicKey: engine.rootCAKey.publicKey };
  const rootCert = await createRootCertificate(rootKeys, now);
  const mesh = await createMeshCA({ privateKey: rootKeys.privateKey, certificate: rootCert, keyId: await subjectKeyId(rootKeys.publicKey) }, now);
  issuer = { privateKey: mesh.keys.privateKey, certificate: mesh.intermediate, keyId: await subjectKeyId(mesh.keys.publicKey) };
  template = templateFor(issuer);
  for (const curve of ["P-256", "P-384"] as const) {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])) as CryptoKeyPair;
    spkis[curve] = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  }
});

async function webCryptoImports(spki: Uint8Array, namedCurve: string): Promise<boolean> {
  try {
    await crypto.subtle.importKey("spki", spki as BufferSource, { name: "ECDSA", namedCurve }, true, ["verify"]);
    return true;
  } catch {
    return false;
  }
}

describe("the workload key check", () => {
  it("agrees with a WebCrypto import on valid keys and on keys with one bit of the point flipped (property)", async () => {
    for (const curve of ["P-256", "P-384"] as const) {
      const spki = spkis[curve];
      const key = canonicalEcKey(spki)!;
      expect(key.namedCurve).toBe(curve);
      expect(isValidEcPoint(key)).toBe(true);
      const pointAt = spki.length - key.point.length;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 8, max: (key.point.length - 1) * 8 - 1 }), async (bit) => {
          const changed = spki.slice();
          changed[pointAt + 1 + (bit >> 3)]! ^= 1 << (bit & 7);
          const canonical = canonicalEcKey(changed);
          expect(canonical).not.toBeNull();
          expect(isValidEcPoint(canonical!)).toBe(await webCryptoImports(changed, curve));
        }),
        { numRuns: 60 },
      );
    }
  });

  it("takes only WebCrypto's own SPKI form: another curve's prefix, a compressed point or extra bytes are not canonical", () => {
    const spki = spkis["P-256"];
    expect(canonicalEcKey(spki.subarray(0, spki.length - 1))).toBeNull();
    expect(canonicalEcKey(Uint8Array.from([...spki, 0]))).toBeNull();
    const compressedTag = spki.slice();
    compressedTag[spki.length - 65] = 0x02;
    expect(canonicalEcKey(compressedTag)).toBeNull();
  });

  it("identifies the key by the leftmost 160 bits of the point's SHA-256, as subjectKeyId does", async () => {
    for (const curve of ["P-256", "P-384"] as const) {
      const imported = await crypto.subtle.importKey("spki", spkis[curve] as BufferSource, { name: "ECDSA", namedCurve: curve }, true, ["verify"]);
      expect(toHex(await pointKeyId(canonicalEcKey(spkis[curve])!.point))).toBe(await subjectKeyId(imported));
    }
  });
});

describe("PEM", () => {
  /** The encoder before it was written out by hand: base64, then lines of 64. */
  function referencePem(der: Uint8Array, label: string): string {
    const b64 = toBase64(der);
    const lines: string[] = [];
    for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
    return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
  }

  it("is the reference encoding for every length up to 400 bytes and random contents (property)", () => {
    for (let n = 0; n <= 400; n++) {
      const der = crypto.getRandomValues(new Uint8Array(n));
      expect(toPem(der)).toBe(referencePem(der, "CERTIFICATE"));
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), fc.constantFrom("CERTIFICATE", "PUBLIC KEY"), (der, label) => toPem(der, label) === referencePem(der, label)));
  });
});

describe("the leaf's cached parts", () => {
  const extensionValue = (cert: x509.X509Certificate, oid: string) => toHex(new Uint8Array(cert.getExtension(oid)!.value));

  /** Parses a TBSCertificate by wrapping it as a certificate with a placeholder signature. */
  function parsedTbs(tbs: Uint8Array): x509.X509Certificate {
    const signatureAlgorithm = Uint8Array.of(0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03);
    const signature = Uint8Array.of(0x03, 0x01, 0x00);
    const body = new Uint8Array([...tbs, ...signatureAlgorithm, ...signature]);
    const length = body.length < 0x80 ? [body.length] : body.length < 0x100 ? [0x81, body.length] : [0x82, body.length >> 8, body.length & 0xff];
    return parseCertificate(new Uint8Array([0x30, ...length, ...body]));
  }

  it("give, frozen (cached) or fresh, the same TBSCertificate, which says what was asked, across interleaved requests (property)", () => {
    const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
    const request = fc.record({
      names: fc.array(label, { maxLength: 3 }),
      commonName: fc.oneof(label, fc.constant("wéb")),
      secretId: fc.string({ maxLength: 12 }),
      ms: fc.integer({ min: 0, max: 5_000 }),
    });
    fc.assert(
      fc.property(fc.array(request, { minLength: 2, maxLength: 8 }), (requests) => {
        for (const r of requests) {
          const sans = r.names.map((n) => generalName(n));
          const frozenSans = Object.freeze(sans.map((s) => Object.freeze({ ...s }))) as readonly GeneralName[];
          const claim = { oid: "1.3.9901.3.1", value: octetString(utf8(r.secretId)) };
          const notBefore = new Date(now.getTime() + r.ms);
          const notAfter = new Date(notBefore.getTime() + 365 * 86_400_000);
          const fields = { serialNumber: Uint8Array.of(0x42, 1), notBefore, notAfter, commonName: r.commonName, subjectPublicKeyInfo: spkis["P-256"], subjectKeyId: new Uint8Array(20) };
          const cached = leafTbs(template, { ...fields, sans: frozenSans, extensions: [frozenClaim(claim)] });
          const fresh = leafTbs(template, { ...fields, sans: sans.map((s) => ({ ...s })), extensions: [{ oid: claim.oid, value: claim.value.slice() }] });
          expect(toHex(cached)).toBe(toHex(fresh));
          const cert = parsedTbs(cached);
          expect(cert.subject).toBe(`CN=${r.commonName}`);
          expect(cert.notBefore.getTime()).toBe(Math.floor(notBefore.getTime() / 1000) * 1000);
          expect(cert.notAfter.getTime()).toBe(Math.floor(notAfter.getTime() / 1000) * 1000);
          const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
          expect(san?.names.items.map((n) => n.value) ?? []).toEqual(r.names);
          expect(extensionValue(cert, "1.3.9901.3.1")).toBe(toHex(octetString(utf8(r.secretId))));
        }
      }),
      { numRuns: 40 },
    );
  });

  it("keep the validity of one second and change it with the next: .000 and .999 alike, .999 and the next .000 not", () => {
    const tbsAt = (ms: number) => {
      const notBefore = new Date(Date.UTC(2026, 10, 28, 12, 0, 0) + ms);
      return parsedTbs(leafTbs(template, { serialNumber: Uint8Array.of(1), notBefore, notAfter: new Date(notBefore.getTime() + 1000), commonName: "web", subjectPublicKeyInfo: spkis["P-256"], subjectKeyId: new Uint8Array(20), sans: [] }));
    };
    expect(tbsAt(0).notBefore.getTime()).toBe(tbsAt(999).notBefore.getTime());
    expect(tbsAt(1000).notBefore.getTime()).toBe(tbsAt(999).notBefore.getTime() + 1000);
    expect(tbsAt(999).notAfter.getTime()).toBe(tbsAt(0).notAfter.getTime());
    expect(tbsAt(1000).notAfter.getTime()).toBe(tbsAt(0).notAfter.getTime() + 1000);
  });

  it("a claim's cached extension does not follow changes to the bytes it was made from (they are copied)", () => {
    const value = octetString(utf8("secret-a"));
    const claim = frozenClaim({ oid: "1.3.9901.3.1", value });
    value.fill(0);
    const fields = { serialNumber: Uint8Array.of(1), notBefore: now, notAfter: new Date(now.getTime() + 1000), commonName: "web", subjectPublicKeyInfo: spkis["P-256"], subjectKeyId: new Uint8Array(20), sans: [] };
    expect(extensionValue(parsedTbs(leafTbs(template, { ...fields, extensions: [claim] })), "1.3.9901.3.1")).toBe(toHex(octetString(utf8("secret-a"))));
    expect(Object.isFrozen(claim)).toBe(true);
  });
});

describe("serial numbers", () => {
  it("stay positive, 16 bytes, starting 0x40 to 0x7f, and distinct across a refill of their random pool (300 leaves)", async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const leaf = parseCertificate(await issueLeafDer(issuer, { subjectPublicKeyInfo: spkis["P-384"], sans: [], commonName: "web" }, now));
      expect(leaf.serialNumber).toMatch(/^[4-7][0-9a-f]{31}$/);
      serials.add(leaf.serialNumber);
    }
    expect(serials.size).toBe(300);
  });

  it("a leaf without its key needs the SPKI in WebCrypto's form: any other is INTERNAL", async () => {
    const compressedTag = spkis["P-256"].slice();
    compressedTag[compressedTag.length - 65] = 0x02;
    await expect(issueLeafDer(issuer, { subjectPublicKeyInfo: compressedTag, sans: [], commonName: "web" }, now)).rejects.toMatchObject({ code: "INTERNAL" });
  });
});
