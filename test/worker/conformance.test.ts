// Runs the storage conformance suite against the Durable Object driver inside workerd (every operation executes in a Durable Object over its SQLite files), plus races inside one object.
import { describe, expect, it } from "vitest";
import { testDriver } from "../storage/conformance.js";
import { callHarness, remoteDriver, useHarness } from "./workerd.js";

const { harness, nextInstance } = useHarness("driver");

/** A fresh Durable Object (a new name, so new, empty storage) for every test and property run. */
testDriver("durable object (workerd)", async () => ({ driver: remoteDriver(harness(), nextInstance()) }));

interface RaceResult {
  winners: number[];
  conflicts: number;
  final: string;
}

describe("compare-and-swap races inside one Durable Object", () => {
  it("20 requests from outside, held until all are inside the object, then racing to create: one wins", async () => {
    const instance = nextInstance();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        callHarness(harness(), instance, { op: "setItemRaw", key: "head:x", ifMatch: null, barrier: 20 }, { bytes: new TextEncoder().encode(`v${i}`) }),
      ),
    );
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as { code?: string }).code).toBe("CONFLICT");
    expect(await callHarness(harness(), instance, { op: "getItemRaw", key: "head:x" })).toEqual(new TextEncoder().encode(`v${winners[0]}`));
  });

  it("exactly one of 50 writes started at once inside the object wins", async () => {
    const result = (await callHarness(harness(), nextInstance(), { op: "race", key: "head:race", n: 50 })) as RaceResult;
    expect(result.winners).toHaveLength(1);
    expect(result.conflicts).toBe(49);
    expect(result.final).toBe(`attempt ${result.winners[0]}`);
  });

  it("negative control: a check-await-write without the synchronous step lets several win", async () => {
    const result = (await callHarness(harness(), nextInstance(), { op: "race", key: "head:race", n: 50, broken: true })) as RaceResult;
    expect(result.winners.length).toBeGreaterThan(1);
  });
});
