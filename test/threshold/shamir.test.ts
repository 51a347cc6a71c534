// Properties of the seed split: any t shares recombine to the recovery seed; t−1 shares open nothing.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newRecovery, openRootSeed } from "../../src/coordinator/recovery.js";
import { SeedEngine } from "../../src/crypto/seedengine.js";
import { combineShares, shareCommitment, splitSeed } from "../../src/crypto/seedshares.js";
import { fromHex } from "../../src/encoding.js";
import { seedShareOwner } from "../helpers.js";

/** t ≤ n ≤ 10 and a subset of the n share indexes of the given size (relative to t). */
const scheme = (extra: number) =>
  fc
    .integer({ min: 2, max: 10 })
    .chain((n) => fc.integer({ min: 2, max: n }).map((t) => ({ n, t })))
    .chain(({ n, t }) =>
      fc
        .shuffledSubarray([...Array(n).keys()], { minLength: t + extra, maxLength: t + extra })
        .map((subset) => ({ n, t, subset })),
    );

describe("Shamir split of the recovery seed", () => {
  it("any t distinct shares recombine to the seed", async () => {
    await fc.assert(
      fc.asyncProperty(scheme(0), fc.uint8Array({ minLength: 64, maxLength: 64 }), async ({ n, t, subset }, seed) => {
        const shares = await splitSeed(seed, n, t);
        expect(shares).toHaveLength(n);
        expect(await combineShares(subset.map((i) => shares[i]!))).toEqual(seed);
      }),
      { numRuns: 150 },
    );
  });

  it("t − 1 shares never give the seed, and never open the sealed root seed", async () => {
    const owner = await seedShareOwner();
    const root = await SeedEngine.create(new Uint8Array(64).fill(5), new Uint8Array(32).fill(6));
    await fc.assert(
      fc.asyncProperty(scheme(-1).filter(({ subset }) => subset.length >= 2), fc.uint8Array({ minLength: 64, maxLength: 64 }), async ({ n, t, subset }, seed) => {
        const shares = await splitSeed(seed, n, t);
        const guess = await combineShares(subset.map((i) => shares[i]!));
        expect(guess).not.toEqual(seed);
        const salt = new Uint8Array(32).fill(7);
        const { recovery } = await newRecovery(root, seed, salt, [owner.publicHex], 1, "c");
        expect(await openRootSeed(guess, salt, recovery.sealedRootSeed, "c")).toBeNull();
        expect(await openRootSeed(seed, salt, recovery.sealedRootSeed, "c")).not.toBeNull();
      }),
      { numRuns: 40 },
    );
  });

  it("threshold 1 gives every owner the seed itself; commitments bind the salt", async () => {
    const seed = new Uint8Array(64).fill(9);
    const shares = await splitSeed(seed, 3, 1);
    for (const s of shares) expect(s).toEqual(seed);
    const a = await shareCommitment(new Uint8Array(32).fill(1), seed);
    const b = await shareCommitment(new Uint8Array(32).fill(2), seed);
    expect(a).not.toBe(b);
    expect(fromHex(a)).toHaveLength(32);
  });

  it.each([
    [3, 0],
    [3, 4],
    [256, 2],
  ])("refuses n=%i, t=%i", async (n, t) => {
    await expect(splitSeed(new Uint8Array(64), n, t)).rejects.toMatchObject({ code: "INVALID_MANIFEST" });
  });
});
