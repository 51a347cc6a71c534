// Known-answer tests of the seed engine against Contrast's vectors, on two WebCrypto implementations.
import { readFileSync } from "node:fs";
import { Crypto } from "@peculiar/webcrypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { useWebCrypto, webcrypto } from "../../src/crypto/provider.js";
import {
  SeedEngine,
  detKeygenP384,
  ecPrivateKeyDer,
  hkdf,
  importP384,
  labels,
} from "../../src/crypto/seedengine.js";
import { fromHex, toHex, utf8 } from "../../src/encoding.js";
import { CoordinatorError } from "../../src/errors.js";
import { transitionHash } from "../../src/history/transition.js";

interface EngineVector {
  seed: string;
  salt: string;
  podStateSeed?: string;
  historySeed?: string;
  rootCAKey?: string;
  transactionSigningKey?: string;
  error?: string;
}

interface Fixture {
  algorithm: { labels: Record<string, string> };
  seedEngine: EngineVector[];
  workloadSecret: { seed: string; salt: string; cases: { id: string; secret?: string; error?: string }[] };
  transition: { manifestHash: string; previousTransitionHash: string; transitionHash: string };
}

const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/seedengine.json", import.meta.url), "utf8"),
) as Fixture;

const good = fixture.seedEngine.filter((v) => v.error === undefined);
const bad = fixture.seedEngine.filter((v) => v.error !== undefined);

const runtimeCrypto = globalThis.crypto;

/** Expects a promise to reject with an INVALID_REQUEST CoordinatorError carrying exactly this message. */
async function expectInvalid(promise: Promise<unknown>, message: string): Promise<void> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CoordinatorError);
  expect((err as CoordinatorError).code).toBe("INVALID_REQUEST");
  expect((err as CoordinatorError).message).toBe(message);
}

describe.each([
  { name: "runtime globalThis.crypto", impl: runtimeCrypto },
  { name: "@peculiar/webcrypto", impl: new Crypto() as globalThis.Crypto },
])("seed engine on $name", ({ impl }) => {
  beforeAll(() => useWebCrypto(impl));
  afterAll(() => useWebCrypto(runtimeCrypto));

  it("uses the selected WebCrypto implementation", () => {
    expect(webcrypto()).toBe(impl);
  });

  it("has Contrast's labels", () => {
    expect(labels).toEqual(fixture.algorithm.labels);
  });

  it("has at least one good and one bad engine vector", () => {
    expect(good.length).toBeGreaterThan(0);
    expect(bad.length).toBeGreaterThan(0);
  });

  describe.each(good)("vector seed $seed", (v) => {
    let engine: SeedEngine;
    beforeAll(async () => {
      engine = await SeedEngine.create(fromHex(v.seed), fromHex(v.salt));
    });

    it("derives podStateSeed and historySeed", async () => {
      expect(toHex(engine.podStateSeed)).toBe(v.podStateSeed);
      expect(toHex(engine.historySeed)).toBe(v.historySeed);
      expect(toHex(await engine.deriveSecret(labels.podStateSeed))).toBe(v.podStateSeed);
      expect(toHex(await hkdf(fromHex(v.seed), fromHex(v.salt), labels.historySeed, 32))).toBe(v.historySeed);
    });

    it("derives the root CA key", () => {
      expect(toHex(ecPrivateKeyDer(engine.rootCAKey))).toBe(v.rootCAKey);
    });

    it("derives the transaction signing key", () => {
      expect(toHex(ecPrivateKeyDer(engine.transactionSigningKey))).toBe(v.transactionSigningKey);
    });

    it("det-keygen of the labelled secrets gives the same keys", async () => {
      const rootCA = await detKeygenP384(await engine.deriveSecret(labels.rootCASeed));
      const tx = await detKeygenP384(await engine.deriveSecret(labels.transactionSigningSecret));
      expect(toHex(ecPrivateKeyDer(rootCA))).toBe(v.rootCAKey);
      expect(toHex(ecPrivateKeyDer(tx))).toBe(v.transactionSigningKey);
    });

    it("importP384 of the scalar gives the same public point", async () => {
      for (const key of [engine.rootCAKey, engine.transactionSigningKey]) {
        const again = await importP384(key.d);
        expect(toHex(again.publicPoint)).toBe(toHex(key.publicPoint));
      }
    });

    it("signs with the derived private key and verifies with the derived public key", async () => {
      const algorithm = { name: "ECDSA", hash: "SHA-384" };
      const message = utf8("contrast coordinator");
      for (const key of [engine.rootCAKey, engine.transactionSigningKey]) {
        // The keys belong to the selected implementation: its own subtle must accept them.
        const signature = await impl.subtle.sign(algorithm, key.privateKey, message as BufferSource);
        expect(signature.byteLength).toBe(96);
        expect(await impl.subtle.verify(algorithm, key.publicKey, signature, message as BufferSource)).toBe(true);
        const other = utf8("contrast coordinator!");
        expect(await impl.subtle.verify(algorithm, key.publicKey, signature, other as BufferSource)).toBe(false);
      }
      // A signature of one key does not verify with the other.
      const signature = await impl.subtle.sign(algorithm, engine.rootCAKey.privateKey, message as BufferSource);
      expect(
        await impl.subtle.verify(algorithm, engine.transactionSigningKey.publicKey, signature, message as BufferSource),
      ).toBe(false);
    });

    it("makes ECDSA P-384 keys with the right usages; the private key is not extractable", async () => {
      for (const key of [engine.rootCAKey, engine.transactionSigningKey]) {
        expect(key.privateKey.type).toBe("private");
        expect(key.privateKey.extractable).toBe(false);
        expect(key.privateKey.usages).toEqual(["sign"]);
        expect(key.privateKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-384" });
        expect(key.publicKey.type).toBe("public");
        expect(key.publicKey.usages).toEqual(["verify"]);
        await expect(impl.subtle.exportKey("pkcs8", key.privateKey)).rejects.toThrow();
        const raw = new Uint8Array(await impl.subtle.exportKey("raw", key.publicKey));
        expect(toHex(raw)).toBe(toHex(key.publicPoint));
        expect(key.publicPoint.length).toBe(97);
        expect(key.d.length).toBe(48);
      }
    });
  });

  describe.each(bad)("vector error $error", (v) => {
    it("is rejected with the vector's message", async () => {
      await expectInvalid(SeedEngine.create(fromHex(v.seed), fromHex(v.salt)), v.error!);
    });
  });

  it("rejects a seed shorter than 32 bytes", async () => {
    await expectInvalid(SeedEngine.create(new Uint8Array(31), new Uint8Array(32)), "seed is 31 bytes, at least 32 needed");
  });

  it("accepts a 64-byte seed and derives 64-byte secrets", async () => {
    const engine = await SeedEngine.create(new Uint8Array(64).fill(7), new Uint8Array(32).fill(9));
    expect(engine.podStateSeed.length).toBe(64);
    expect(engine.historySeed.length).toBe(64);
    expect((await engine.workloadSecret("w")).length).toBe(64);
    expect((await engine.deriveSecret("X", 16)).length).toBe(16);
  });

  describe("workload secrets", () => {
    let engine: SeedEngine;
    beforeAll(async () => {
      engine = await SeedEngine.create(fromHex(fixture.workloadSecret.seed), fromHex(fixture.workloadSecret.salt));
    });

    it.each(fixture.workloadSecret.cases)("id '$id'", async (c) => {
      if (c.error !== undefined) {
        await expectInvalid(engine.workloadSecret(c.id), c.error);
      } else {
        expect(toHex(await engine.workloadSecret(c.id))).toBe(c.secret);
      }
    });
  });

  it("reproduces the transition hash", async () => {
    const t = fixture.transition;
    expect(toHex(await transitionHash(fromHex(t.manifestHash), fromHex(t.previousTransitionHash)))).toBe(
      t.transitionHash,
    );
  });
});

describe("SEC1 encoding", () => {
  it("rejects a wrong-length scalar or a compressed point", () => {
    expect(() => ecPrivateKeyDer({ d: new Uint8Array(47), publicPoint: new Uint8Array(97).fill(4) })).toThrow(
      CoordinatorError,
    );
    expect(() => ecPrivateKeyDer({ d: new Uint8Array(48), publicPoint: new Uint8Array(49).fill(2) })).toThrow(
      CoordinatorError,
    );
  });
});

describe("importP384", () => {
  it("rejects zero, n and wrong lengths", async () => {
    await expect(importP384(new Uint8Array(48))).rejects.toThrow(CoordinatorError);
    await expect(importP384(new Uint8Array(48).fill(0xff))).rejects.toThrow(CoordinatorError);
    await expect(importP384(new Uint8Array(32).fill(1))).rejects.toThrow(CoordinatorError);
  });
});
