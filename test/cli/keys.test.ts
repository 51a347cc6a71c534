// Key files as openssl writes them (PKCS#8, SEC1, PKCS#1, SPKI; PEM or DER) load to the same keys; wrong, weak, encrypted and malformed ones are refused with a code.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  KeyError,
  checkSeedShareOwnerPublicKey,
  describeKey,
  generateSeedShareOwnerKey,
  generateWorkloadOwnerKey,
  loadSeedShareOwnerKey,
  loadSeedShareOwnerPublicKey,
  loadWorkloadOwnerKey,
  loadWorkloadOwnerPublicKey,
  pem,
  pemBlocks,
} from "../../src/client/keys.js";
import { toHex } from "../../src/encoding.js";
import { exponentOnePrivatePem, spkiPem, withExponent } from "./weak-keys.js";

const openssl = "/usr/bin/openssl";

describe("key files", () => {
  let dir: string;
  const f = (name: string) => join(dir, name);
  const text = (name: string) => readFileSync(f(name), "utf8");
  const bytes = (name: string) => new Uint8Array(readFileSync(f(name)));
  const run = (...args: string[]) => execFileSync(openssl, args, { stdio: "pipe" });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "contrast-keys-"));
    // EC P-384: PKCS#8 (genpkey), SEC1 (ecparam -genkey), SPKI public.
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", f("ec.pkcs8.pem"));
    run("ec", "-in", f("ec.pkcs8.pem"), "-out", f("ec.sec1.pem"));
    run("pkey", "-in", f("ec.pkcs8.pem"), "-pubout", "-out", f("ec.pub.pem"));
    run("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", f("ec.ecparam.pem"));
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("p256.sec1.pem"));
    // RSA 3072: PKCS#1 (genrsa -traditional), PKCS#8, SPKI and PKCS#1 public.
    run("genrsa", "-traditional", "-out", f("rsa.pkcs1.pem"), "3072");
    run("pkcs8", "-topk8", "-nocrypt", "-in", f("rsa.pkcs1.pem"), "-out", f("rsa.pkcs8.pem"));
    run("rsa", "-in", f("rsa.pkcs1.pem"), "-pubout", "-out", f("rsa.pub.pem"));
    run("rsa", "-in", f("rsa.pkcs1.pem"), "-RSAPublicKey_out", "-out", f("rsa.pkcs1pub.pem"));
    run("genpkey", "-algorithm", "ED25519", "-out", f("ed.pem"));
    run("pkcs8", "-topk8", "-in", f("ec.pkcs8.pem"), "-passout", "pass:secret", "-out", f("ec.encrypted.pem"));
    // The same keys as DER (-outform DER).
    run("pkey", "-in", f("ec.pkcs8.pem"), "-outform", "DER", "-out", f("ec.pkcs8.der"));
    run("ec", "-in", f("ec.pkcs8.pem"), "-outform", "DER", "-out", f("ec.sec1.der"));
    run("pkey", "-in", f("ec.pkcs8.pem"), "-pubout", "-outform", "DER", "-out", f("ec.pub.der"));
    run("rsa", "-in", f("rsa.pkcs1.pem"), "-traditional", "-outform", "DER", "-out", f("rsa.pkcs1.der"));
    run("pkey", "-in", f("rsa.pkcs8.pem"), "-outform", "DER", "-out", f("rsa.pkcs8.der"));
    run("pkey", "-in", f("rsa.pkcs8.pem"), "-pubout", "-outform", "DER", "-out", f("rsa.pub.der"));
    run("rsa", "-in", f("rsa.pkcs1.pem"), "-RSAPublicKey_out", "-outform", "DER", "-out", f("rsa.pkcs1pub.der"));
    run("pkcs8", "-topk8", "-in", f("ec.pkcs8.pem"), "-passout", "pass:secret", "-outform", "DER", "-out", f("ec.encrypted.der"));
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("openssl wrote each form with the label the test expects", () => {
    expect(pemBlocks(text("ec.sec1.pem"))[0]!.label).toBe("EC PRIVATE KEY");
    expect(pemBlocks(text("ec.ecparam.pem"))[0]!.label).toBe("EC PRIVATE KEY");
    expect(pemBlocks(text("rsa.pkcs1.pem"))[0]!.label).toBe("RSA PRIVATE KEY");
    expect(pemBlocks(text("rsa.pkcs8.pem"))[0]!.label).toBe("PRIVATE KEY");
    expect(pemBlocks(text("rsa.pkcs1pub.pem"))[0]!.label).toBe("RSA PUBLIC KEY");
  });

  it("loads a P-384 workload owner key from PKCS#8 and SEC1 to the same public key, matching openssl's", async () => {
    const a = await loadWorkloadOwnerKey(text("ec.pkcs8.pem"), "a");
    const b = await loadWorkloadOwnerKey(text("ec.sec1.pem"), "b");
    const pub = await loadWorkloadOwnerPublicKey(text("ec.pub.pem"), "pub");
    expect(toHex(a.spki)).toBe(toHex(b.spki));
    expect(toHex(a.spki)).toBe(toHex(pub.spki));
    expect(a.digest).toBe(pub.digest);
    // The digest is the SHA-256 of the DER SPKI, as openssl computes it.
    const der = run("pkey", "-pubin", "-in", f("ec.pub.pem"), "-outform", "DER");
    expect(pub.digest).toBe(toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", der))));
    // A key from `openssl ecparam -genkey` (SEC1 with parameters) signs too.
    const c = await loadWorkloadOwnerKey(text("ec.ecparam.pem"), "c");
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, c.privateKey, new Uint8Array([1, 2, 3]));
    expect(sig.byteLength).toBe(96);
  });

  it("loads an RSA seed-share owner key from PKCS#1 and PKCS#8, and its public key from SPKI and PKCS#1", async () => {
    const a = await loadSeedShareOwnerKey(text("rsa.pkcs1.pem"), "a");
    const b = await loadSeedShareOwnerKey(text("rsa.pkcs8.pem"), "b");
    const spki = await loadSeedShareOwnerPublicKey(text("rsa.pub.pem"), "spki");
    const pkcs1 = await loadSeedShareOwnerPublicKey(text("rsa.pkcs1pub.pem"), "pkcs1");
    const fromPrivate = await loadSeedShareOwnerPublicKey(text("rsa.pkcs1.pem"), "private");
    for (const k of [b, spki, pkcs1, fromPrivate]) expect(toHex(k.spki)).toBe(toHex(a.spki));
    expect(a.bits).toBe(3072);
    expect(pkcs1.bits).toBe(3072);
    expect(describeKey(a.spki, "spki")).toBe("RSA");
  });

  it("refuses the wrong key type, naming what the file holds", async () => {
    const cases: [Promise<unknown>, RegExp][] = [
      [loadWorkloadOwnerKey(text("rsa.pkcs8.pem"), "w.pem"), /w\.pem is an RSA key; a workload owner key must be ECDSA P-384/],
      [loadWorkloadOwnerKey(text("p256.sec1.pem"), "w.pem"), /EC P-256 key/],
      [loadWorkloadOwnerKey(text("ed.pem"), "w.pem"), /Ed25519 key/],
      [loadSeedShareOwnerKey(text("ec.pkcs8.pem"), "s.pem"), /s\.pem is an EC P-384 key; a seed-share owner key must be RSA/],
      [loadSeedShareOwnerPublicKey(text("ec.pub.pem"), "s.pem"), /EC P-384 key/],
      [loadWorkloadOwnerPublicKey(text("rsa.pub.pem"), "w.pem"), /RSA key/],
      [loadWorkloadOwnerKey(text("ec.pub.pem"), "w.pem"), /holds PUBLIC KEY, not a private key/],
    ];
    for (const [promise, message] of cases) {
      const err = await promise.then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as KeyError).code).toBe("KEY_WRONG_TYPE");
      expect((err as KeyError).message).toMatch(message);
    }
  });

  it("refuses encrypted, empty and malformed key files", async () => {
    const code = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => (e as KeyError).code);
    expect(await code(loadWorkloadOwnerKey(text("ec.encrypted.pem"), "x"))).toBe("KEY_ENCRYPTED");
    expect(await code(loadWorkloadOwnerKey("", "x"))).toBe("KEY_INVALID");
    expect(await code(loadWorkloadOwnerKey("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "x"))).toBe("KEY_INVALID");
    expect(await code(loadWorkloadOwnerKey(pem(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]), "PRIVATE KEY"), "x"))).toBe("KEY_INVALID");
    expect(await code(loadSeedShareOwnerKey(pem(new Uint8Array([0x30, 0x82, 0xff]), "RSA PRIVATE KEY"), "x"))).toBe("KEY_INVALID");
  });

  it("loads DER key files (PKCS#8, SEC1, PKCS#1, SPKI) to the same keys as their PEM", async () => {
    const ec = await loadWorkloadOwnerKey(text("ec.pkcs8.pem"), "ec");
    for (const file of ["ec.pkcs8.der", "ec.sec1.der"]) {
      expect(toHex((await loadWorkloadOwnerKey(bytes(file), file)).spki), file).toBe(toHex(ec.spki));
    }
    for (const file of ["ec.pub.der", "ec.pkcs8.der", "ec.sec1.der"]) {
      expect((await loadWorkloadOwnerPublicKey(bytes(file), file)).digest, file).toBe(ec.digest);
    }
    const rsa = await loadSeedShareOwnerKey(text("rsa.pkcs1.pem"), "rsa");
    for (const file of ["rsa.pkcs1.der", "rsa.pkcs8.der"]) {
      expect(toHex((await loadSeedShareOwnerKey(bytes(file), file)).spki), file).toBe(toHex(rsa.spki));
    }
    for (const file of ["rsa.pub.der", "rsa.pkcs1pub.der", "rsa.pkcs1.der", "rsa.pkcs8.der"]) {
      expect(toHex((await loadSeedShareOwnerPublicKey(bytes(file), file)).spki), file).toBe(toHex(rsa.spki));
    }
    // PEM given as bytes is still PEM.
    expect(toHex((await loadSeedShareOwnerKey(bytes("rsa.pkcs1.pem"), "rsa")).spki)).toBe(toHex(rsa.spki));
  });

  it("refuses DER files that hold no usable key, naming the file and the formats", async () => {
    const err = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as KeyError);
    const junk = await err(loadWorkloadOwnerKey(Uint8Array.of(0x00, 0xff, 0xfe, 0x80, 0x81), "junk.bin"));
    expect(junk?.code).toBe("KEY_INVALID");
    expect(junk?.message).toMatch(/junk\.bin .*PEM.*DER.*PKCS#8, SPKI, PKCS#1 or SEC1/);
    expect((await err(loadWorkloadOwnerKey(Uint8Array.of(0x30, 0x03, 0x01, 0x01, 0xff), "bool.der")))?.code).toBe("KEY_INVALID");
    expect((await err(loadWorkloadOwnerKey(bytes("ec.encrypted.der"), "enc.der")))?.code).toBe("KEY_ENCRYPTED");
    expect((await err(loadWorkloadOwnerKey(bytes("ec.pub.der"), "pub.der")))?.code).toBe("KEY_WRONG_TYPE");
    expect((await err(loadSeedShareOwnerKey(bytes("ec.sec1.der"), "ec.der")))?.code).toBe("KEY_WRONG_TYPE");
  });

  it("refuses a seed-share owner public key whose exponent is not 65537 (KEY_WEAK), in every form", async () => {
    const real = (await loadSeedShareOwnerPublicKey(text("rsa.pub.pem"), "real")).spki;
    expect(await checkSeedShareOwnerPublicKey(real, "real")).toBe(3072);
    for (const e of [1, 3, 17, 65539]) {
      const weak = await withExponent(real, e);
      for (const content of [weak, spkiPem(weak)]) {
        const err = await loadSeedShareOwnerPublicKey(content, "weak.pub").then(() => null, (x: unknown) => x as KeyError);
        expect(err?.code, `e = ${e}`).toBe("KEY_WEAK");
        expect(err?.message).toContain(`exponent ${e}`);
      }
    }
    // A private key with exponent 1 loads (a share made for it before the check can still be opened to recover),
    // but its public key is refused wherever it would be named.
    const weakPrivate = exponentOnePrivatePem(text("rsa.pkcs1.pem"));
    const loaded = await loadSeedShareOwnerKey(weakPrivate, "weak.pem");
    expect(toHex(loaded.spki)).toBe(toHex(await withExponent(real, 1)));
    expect(await loadSeedShareOwnerPublicKey(weakPrivate, "weak.pem").then(() => null, (x: unknown) => (x as KeyError).code)).toBe("KEY_WEAK");
  });

  it("writes keys openssl reads back", async () => {
    const ec = await generateWorkloadOwnerKey();
    const rsa = await generateSeedShareOwnerKey(3072);
    const ecFile = f("gen-ec.pem");
    const rsaFile = f("gen-rsa.pem");
    await import("node:fs/promises").then(async (fsp) => {
      await fsp.writeFile(ecFile, pem(ec, "PRIVATE KEY"));
      await fsp.writeFile(rsaFile, pem(rsa, "PRIVATE KEY"));
    });
    expect(run("pkey", "-in", ecFile, "-noout", "-text").toString()).toMatch(/NIST CURVE: P-384|secp384r1/);
    expect(run("pkey", "-in", rsaFile, "-noout", "-text").toString()).toMatch(/3072 bit/);
  });
});
