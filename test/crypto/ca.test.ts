// The CA layout of design §5 (root, transaction signer, intermediate + self-signed mesh CA, leaves) and sealing at rest.
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import {
  createMeshCA,
  createRootCertificate,
  createTransactionSignerCertificate,
  issueLeaf,
  subjectKeyId,
  toPem,
} from "../../src/crypto/ca.js";
import type { CertifiedKey } from "../../src/crypto/ca.js";
import { sha256, subtle, webcrypto } from "../../src/crypto/provider.js";
import { importSealingKey, open, seal } from "../../src/crypto/sealed.js";
import { SeedEngine } from "../../src/crypto/seedengine.js";
import { toHex, utf8 } from "../../src/encoding.js";
import { generalName } from "../../src/manifest/san.js";
import { implementations, usingImplementation } from "./implementations.js";

const now = new Date("2026-11-28T12:00:00Z");

function extension<T extends x509.Extension>(cert: x509.X509Certificate, type: new (raw: BufferSource) => T): T {
  const ext = cert.getExtension(type);
  if (ext === null) throw new Error(`missing ${type.name}`);
  return ext;
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  return cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto());
}

describe.each(implementations)("certificates on %s", (_name, impl) => {
  usingImplementation(impl);

  async function root(): Promise<{ engine: SeedEngine; root: CertifiedKey }> {
    const engine = await SeedEngine.create(new Uint8Array(64).fill(7), new Uint8Array(32).fill(9));
    const keys = { privateKey: engine.rootCAKey.privateKey, publicKey: engine.rootCAKey.publicKey };
    const certificate = await createRootCertificate(keys, now);
    return { engine, root: { privateKey: keys.privateKey, certificate, keyId: await subjectKeyId(keys.publicKey) } };
  }

  it("computes subject key identifiers by RFC 7093 method 1 (SHA-256 of the point, first 160 bits)", async () => {
    const { engine } = await root();
    const expected = toHex((await sha256(engine.rootCAKey.publicPoint)).slice(0, 20));
    expect(await subjectKeyId(engine.rootCAKey.publicKey)).toBe(expected);
  });

  it("makes a self-signed root CA for the seed's root key", async () => {
    const { engine, root: r } = await root();
    expect(r.certificate.subject).toBe("CN=system:coordinator:root");
    expect(await signedBy(r.certificate, r.certificate)).toBe(true);
    expect(extension(r.certificate, x509.BasicConstraintsExtension).ca).toBe(true);
    expect(extension(r.certificate, x509.SubjectKeyIdentifierExtension).keyId).toBe(r.keyId);
    const raw = new Uint8Array(await subtle().exportKey("raw", await r.certificate.publicKey.export(webcrypto())));
    expect(toHex(raw)).toBe(toHex(engine.rootCAKey.publicPoint));
    expect(r.certificate.notAfter.getUTCFullYear() - r.certificate.notBefore.getUTCFullYear()).toBe(20);
  });

  it("certifies the transaction-signing key under the root", async () => {
    const { engine, root: r } = await root();
    const cert = await createTransactionSignerCertificate(r, engine.transactionSigningKey.publicKey, now);
    expect(await signedBy(cert, r.certificate)).toBe(true);
    expect(extension(cert, x509.BasicConstraintsExtension).ca).toBe(false);
    expect(extension(cert, x509.AuthorityKeyIdentifierExtension).keyId).toBe(r.keyId);
  });

  it("makes the mesh CA as an intermediate under the root and a self-signed twin with the same key and subject", async () => {
    const { root: r } = await root();
    const mesh = await createMeshCA(r, now);
    expect(await signedBy(mesh.intermediate, r.certificate)).toBe(true);
    expect(await signedBy(mesh.meshCA, mesh.meshCA)).toBe(true);
    expect(mesh.intermediate.subject).toBe(mesh.meshCA.subject);
    expect(mesh.intermediate.publicKey.rawData).toEqual(mesh.meshCA.publicKey.rawData);
    const keyId = await subjectKeyId(mesh.keys.publicKey);
    expect(extension(mesh.intermediate, x509.SubjectKeyIdentifierExtension).keyId).toBe(keyId);
    expect(extension(mesh.meshCA, x509.SubjectKeyIdentifierExtension).keyId).toBe(keyId);
    expect(extension(mesh.intermediate, x509.AuthorityKeyIdentifierExtension).keyId).toBe(r.keyId);
  });

  it("issues leaves that both the intermediate and the self-signed mesh CA verify, with DNS and IP SANs", async () => {
    const { root: r } = await root();
    const mesh = await createMeshCA(r, now);
    const workload = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const leaf = await issueLeaf(
      { privateKey: mesh.keys.privateKey, certificate: mesh.intermediate, keyId: await subjectKeyId(mesh.keys.publicKey) },
      { publicKey: workload.publicKey, sans: ["web", "*.web.svc", "10.0.0.1", "::1"].map(generalName), commonName: "web" },
      now,
    );
    expect(await signedBy(leaf, mesh.intermediate)).toBe(true);
    expect(await signedBy(leaf, mesh.meshCA)).toBe(true);
    const names = extension(leaf, x509.SubjectAlternativeNameExtension).names.toJSON();
    expect(names).toEqual([
      { type: "dns", value: "web" },
      { type: "dns", value: "*.web.svc" },
      { type: "ip", value: "10.0.0.1" },
      { type: "ip", value: "::1" },
    ]);
    expect(extension(leaf, x509.BasicConstraintsExtension).ca).toBe(false);
    expect(toPem(new Uint8Array(leaf.rawData))).toBe(leaf.toString("pem").replace(/\r\n/g, "\n") + "\n");
  });

  it("seals secrets to an identity: a wrong identity, key or byte is refused", async () => {
    const key = await importSealingKey(new Uint8Array(32).fill(1));
    const other = await importSealingKey(new Uint8Array(32).fill(2));
    const sealed = await seal(key, utf8("mesh key"), "identity-a");
    expect(new TextDecoder().decode(await open(key, sealed, "identity-a", "keys:x"))).toBe("mesh key");
    await expect(open(key, sealed, "identity-b", "keys:x")).rejects.toMatchObject({ code: "STATE_CORRUPT", key: "keys:x" });
    await expect(open(other, sealed, "identity-a", "keys:x")).rejects.toMatchObject({ code: "STATE_CORRUPT" });
    const flipped = sealed.slice();
    flipped[20]! ^= 1;
    await expect(open(key, flipped, "identity-a", "keys:x")).rejects.toMatchObject({ code: "STATE_CORRUPT" });
    await expect(open(key, sealed.slice(0, 10), "identity-a", "keys:x")).rejects.toMatchObject({ code: "STATE_CORRUPT" });
  });
});
