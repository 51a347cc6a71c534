// Seed-share owner keys in a manifest: only RSA with public exponent 65537 and at least 3072 bits; exponent 1 (a share in the clear) and other small exponents are refused.
import { describe, expect, it } from "vitest";
import { CoordinatorError } from "../../src/errors.js";
import { fromHex, toHex, utf8 } from "../../src/encoding.js";
import { importSeedShareOwnerKey, readManifest, rsaExponentValue, weakExponent } from "../../src/manifest/manifest.js";
import { seedShareOwner } from "../helpers.js";
import { withExponent } from "../cli/weak-keys.js";

function manifestWith(owners: string[], threshold?: number): Uint8Array {
  return utf8(
    JSON.stringify({
      Policies: {},
      WorkloadOwnerKeyDigests: [],
      SeedshareOwnerPubKeys: owners,
      ...(threshold === undefined ? {} : { Threshold: threshold }),
    }),
  );
}

async function refusal(p: Promise<unknown>): Promise<CoordinatorError | null> {
  return p.then(
    () => null,
    (e: unknown) => e as CoordinatorError,
  );
}

describe("seed-share owner key exponents", () => {
  it("accepts exponent 65537 and refuses 1, 3, 17 and 65539 with INVALID_MANIFEST naming the exponent", async () => {
    const owner = await seedShareOwner();
    expect(await readManifest(manifestWith([owner.publicHex]))).toBeDefined();
    for (const e of [1, 3, 17, 65539]) {
      const weak = toHex(await withExponent(fromHex(owner.publicHex), e));
      const err = await refusal(readManifest(manifestWith([weak])));
      expect(err, `e = ${e}`).toBeInstanceOf(CoordinatorError);
      expect(err?.code).toBe("INVALID_MANIFEST");
      expect(err?.message).toContain(`exponent ${e}`);
      // Among good owners and with a threshold too: one weak share weakens every recovery.
      const other = await seedShareOwner();
      expect((await refusal(readManifest(manifestWith([owner.publicHex, other.publicHex, weak], 2))))?.code).toBe("INVALID_MANIFEST");
      expect((await refusal(importSeedShareOwnerKey(weak)))?.code).toBe("INVALID_MANIFEST");
    }
  });

  it("the rebuilt SPKI with exponent 65537 is the original key (the builder changes only the exponent)", async () => {
    const owner = await seedShareOwner();
    expect(toHex(await withExponent(fromHex(owner.publicHex), 65537))).toBe(owner.publicHex);
  });

  it("compares the exponent by value: leading zero bytes do not matter, anything else does", async () => {
    expect(rsaExponentValue(Uint8Array.of(1, 0, 1))).toBe(65537);
    expect(rsaExponentValue(Uint8Array.of(0, 1, 0, 1))).toBe(65537);
    expect(rsaExponentValue(Uint8Array.of(1))).toBe(1);
    expect(rsaExponentValue(new Uint8Array(9).fill(0xff))).toBeNull();
    // WebCrypto keeps the bytes a key was generated with: [0, 1, 0, 1] is 65537 and accepted.
    const keys = (await crypto.subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: 3072, publicExponent: Uint8Array.of(0, 1, 0, 1), hash: "SHA-256" },
      true,
      ["encrypt", "decrypt"],
    )) as CryptoKeyPair;
    expect(await weakExponent(keys.publicKey)).toBeNull();
    const three = (await crypto.subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: 3072, publicExponent: Uint8Array.of(3), hash: "SHA-256" },
      true,
      ["encrypt", "decrypt"],
    )) as CryptoKeyPair;
    expect(await weakExponent(three.publicKey)).toBe("3");
  });
});
