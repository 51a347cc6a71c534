// The storage conformance suite: the behaviour every Coordinator driver must show, run once per driver.
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  contentVersion,
  createStore,
  StoreError,
  type CoordinatorDriver,
  type Store,
} from "../../src/storage/store.js";

/** A driver instance for one test, with a way to dispose of what it created. */
export interface DriverUnderTest {
  driver: CoordinatorDriver;
  cleanup?: () => Promise<void>;
}

const encoder = new TextEncoder();
const text = (s: string): Uint8Array => encoder.encode(s);

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}

function expectBytes(actual: Uint8Array | null, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(Uint8Array);
  expect(actual!.length).toBe(expected.length);
  // Compare byte by byte (fast for 1 MiB, and a Buffer equals a Uint8Array with the same bytes).
  let firstDifference = -1;
  for (let i = 0; i < expected.length; i++) {
    if (actual![i] !== expected[i]) {
      firstDifference = i;
      break;
    }
  }
  expect(firstDifference, "index of the first differing byte").toBe(-1);
}

async function expectConflict(promise: Promise<unknown>): Promise<void> {
  const err = await promise.then(
    () => new Error("expected a CONFLICT, but the write succeeded"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  expect((err as StoreError).code).toBe("CONFLICT");
}

/** Byte values the round-trip test stores: the awkward ones that a JSON or string layer would mangle. */
const awkwardValues: [string, Uint8Array][] = [
  ["ASCII 123", text("123")],
  ['the JSON string "x"', text('"x"')],
  ["a JSON object", text('{"a":1,"b":[true,null]}')],
  ["true", text("true")],
  ["null", text("null")],
  ["unstorage's base64 prefix", text("base64:AAAA")],
  ["leading and trailing spaces", text("  42  ")],
  ["an empty value", new Uint8Array(0)],
  ["all 256 byte values", Uint8Array.from({ length: 256 }, (_, i) => i)],
  ["invalid UTF-8", Uint8Array.of(0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80)],
];

/**
 * Defines the conformance suite for one driver. `make` is called for every test (and every
 * property run) and must return a fresh, empty driver.
 */
export function testDriver(name: string, make: () => Promise<DriverUnderTest>): void {
  describe(`storage conformance: ${name}`, () => {
    let current: DriverUnderTest;
    let store: Store;
    let driver: CoordinatorDriver;

    beforeEach(async () => {
      current = await make();
      driver = current.driver;
      store = createStore(driver);
    });
    afterEach(async () => {
      await current.cleanup?.();
    });

    describe("exact bytes", () => {
      for (const [label, value] of awkwardValues) {
        it(`round-trips ${label} through put/get`, async () => {
          await store.put("obj:v", value);
          expectBytes(await store.get("obj:v"), value);
        });
        it(`round-trips ${label} through compare-and-swap`, async () => {
          const version = await store.compareAndSwap("head:v", value, null);
          expect(version).toBe(await contentVersion(value));
          const got = await store.getVersioned("head:v");
          expectBytes(got?.value ?? null, value);
          expect(got?.version).toBe(version);
        });
      }

      it("round-trips a 1 MiB value", async () => {
        const big = pattern(1 << 20, 7);
        await store.put("obj:big", big);
        expectBytes(await store.get("obj:big"), big);
        const version = await store.compareAndSwap("head:big", big, null);
        expect((await store.getVersioned("head:big"))?.version).toBe(version);
      });

      it("stores a copy: changing the caller's array afterwards changes nothing", async () => {
        const value = text("original");
        await store.put("obj:copy", value);
        value[0] = 0x4f;
        expectBytes(await store.get("obj:copy"), text("original"));
        const head = text("head-1");
        await store.compareAndSwap("head:copy", head, null);
        head.fill(0);
        expectBytes(await store.get("head:copy"), text("head-1"));
      });

      it("returns a copy: changing a returned array changes nothing", async () => {
        await store.put("obj:copy", text("original"));
        const first = await store.get("obj:copy");
        first!.fill(0);
        expectBytes(await store.get("obj:copy"), text("original"));
      });

      it("reads a missing key as null", async () => {
        expect(await store.get("obj:missing")).toBeNull();
        expect(await store.getVersioned("head:missing")).toBeNull();
        expect(await driver.hasItem("obj:missing", {})).toBe(false);
      });

      it("overwrites a value", async () => {
        await store.put("obj:o", text("one"));
        await store.put("obj:o", text("two, longer than one"));
        await store.put("obj:o", text("3"));
        expectBytes(await store.get("obj:o"), text("3"));
      });
    });

    describe("keys and removal", () => {
      it("lists the keys of one kind only, each once", async () => {
        await store.put("obj:a", text("a"));
        await store.put("obj:b.c-d", text("b"));
        await store.put("other:a", text("x"));
        await store.compareAndSwap("obj:head", text("h1"), null);
        await store.compareAndSwap("obj:head", text("h2"), await contentVersion(text("h1")));
        await store.put("obj:head", text("h3"));
        expect(await store.keys("obj")).toEqual(["obj:a", "obj:b.c-d", "obj:head"]);
        expect(await store.keys("other")).toEqual(["other:a"]);
        expect(await store.keys("none")).toEqual([]);
        const direct = await driver.getKeys("obj:", {});
        expect([...direct].sort()).toEqual(["obj:a", "obj:b.c-d", "obj:head"]);
      });

      it("removes plain and compare-and-swapped keys", async () => {
        await store.put("obj:a", text("a"));
        await store.compareAndSwap("obj:h", text("h"), null);
        await store.remove("obj:a");
        await store.remove("obj:h");
        await store.remove("obj:never-there");
        expect(await store.get("obj:a")).toBeNull();
        expect(await store.get("obj:h")).toBeNull();
        expect(await driver.hasItem("obj:h", {})).toBe(false);
        expect(await store.keys("obj")).toEqual([]);
      });

      it("treats a removed key as absent for compare-and-swap", async () => {
        const v1 = await store.compareAndSwap("head:r", text("one"), null);
        await store.remove("head:r");
        await expectConflict(store.compareAndSwap("head:r", text("two"), v1));
        expect(await store.get("head:r")).toBeNull();
        await store.compareAndSwap("head:r", text("three"), null);
        expectBytes(await store.get("head:r"), text("three"));
        expect(await store.keys("head")).toEqual(["head:r"]);
      });
    });

    describe("compare-and-swap", () => {
      it("creates with ifMatch null once, then conflicts", async () => {
        const version = await store.compareAndSwap("head:c", text("first"), null);
        expect(version).toBe(await contentVersion(text("first")));
        await expectConflict(store.compareAndSwap("head:c", text("second"), null));
        expectBytes(await store.get("head:c"), text("first"));
      });

      it("conflicts with ifMatch null on a key written unconditionally", async () => {
        await store.put("obj:p", text("plain"));
        await expectConflict(store.compareAndSwap("obj:p", text("other"), null));
        expectBytes(await store.get("obj:p"), text("plain"));
      });

      it("swaps with the right version and returns the new content version", async () => {
        const v1 = await store.compareAndSwap("head:s", text("one"), null);
        const v2 = await store.compareAndSwap("head:s", text("two"), v1);
        expect(v2).toBe(await contentVersion(text("two")));
        const got = await store.getVersioned("head:s");
        expectBytes(got?.value ?? null, text("two"));
        expect(got?.version).toBe(v2);
      });

      it("conflicts on a stale version and changes nothing", async () => {
        const v1 = await store.compareAndSwap("head:s", text("one"), null);
        const v2 = await store.compareAndSwap("head:s", text("two"), v1);
        await expectConflict(store.compareAndSwap("head:s", text("three"), v1));
        await expectConflict(store.compareAndSwap("head:s", text("three"), "0".repeat(64)));
        await expectConflict(store.compareAndSwap("head:missing", text("x"), v2));
        expect(await store.get("head:missing")).toBeNull();
        const got = await store.getVersioned("head:s");
        expectBytes(got?.value ?? null, text("two"));
        expect(got?.version).toBe(v2);
      });

      it("swaps a key that was written unconditionally, and back", async () => {
        await store.put("obj:m", text("plain"));
        const v1 = await store.compareAndSwap("obj:m", text("swapped"), await contentVersion(text("plain")));
        await store.put("obj:m", text("plain again"));
        await expectConflict(store.compareAndSwap("obj:m", text("stale"), v1));
        await store.compareAndSwap("obj:m", text("swapped again"), await contentVersion(text("plain again")));
        expectBytes(await store.get("obj:m"), text("swapped again"));
        expect(await store.keys("obj")).toEqual(["obj:m"]);
      });

      it("lets exactly one of 20 concurrent swaps from the same version win", async () => {
        const base = await store.compareAndSwap("head:race", text("base"), null);
        const values = Array.from({ length: 20 }, (_, i) => text(`attempt ${i}`));
        const results = await Promise.allSettled(values.map((v) => store.compareAndSwap("head:race", v, base)));
        const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
        expect(winners).toHaveLength(1);
        for (const r of results) {
          if (r.status === "rejected") {
            expect(r.reason).toBeInstanceOf(StoreError);
            expect((r.reason as StoreError).code).toBe("CONFLICT");
          }
        }
        const winner = winners[0]!;
        const got = await store.getVersioned("head:race");
        expectBytes(got?.value ?? null, values[winner]!);
        expect(got?.version).toBe((results[winner] as PromiseFulfilledResult<string>).value);
      });

      it("lets exactly one of 10 concurrent creates win", async () => {
        const results = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => store.compareAndSwap("head:new", text(`create ${i}`), null)),
        );
        const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
        expect(winners).toHaveLength(1);
        expectBytes(await store.get("head:new"), text(`create ${winners[0]}`));
      });
    });

    describe("the driver itself", () => {
      it("honours ifMatch on setItemRaw and throws StoreError CONFLICT", async () => {
        await driver.setItemRaw("head:d", text("one"), { ifMatch: null });
        await expectConflict(Promise.resolve(driver.setItemRaw("head:d", text("two"), { ifMatch: null })));
        await expectConflict(Promise.resolve(driver.setItemRaw("head:d", text("two"), { ifMatch: "f".repeat(64) })));
        await driver.setItemRaw("head:d", text("two"), { ifMatch: await contentVersion(text("one")) });
        expectBytes((await driver.getItemRaw("head:d", {})) as Uint8Array, text("two"));
        expect(await driver.hasItem("head:d", {})).toBe(true);
      });

      it("stores strings with setItem/getItem", async () => {
        await driver.setItem!("obj:s", "héllo", {});
        expect(await driver.getItem("obj:s", {})).toBe("héllo");
        expectBytes((await driver.getItemRaw("obj:s", {})) as Uint8Array, text("héllo"));
        const storage = createStore(driver).storage;
        await storage.setItem("obj:json", { a: 1 });
        expect(await storage.getItem("obj:json")).toEqual({ a: 1 });
      });
    });

    it("behaves like a map with compare-and-swap for random operation sequences", async () => {
      const keys = ["head:a", "head:b", "obj:a"] as const;
      const value = fc.oneof(
        fc.uint8Array({ maxLength: 12 }),
        fc.constantFrom(text("123"), text('"x"'), new Uint8Array(0), text("null")),
      );
      const key = fc.constantFrom(...keys);
      const op = fc.oneof(
        fc.record({ op: fc.constant("put" as const), key, value }),
        fc.record({
          op: fc.constant("cas" as const),
          key,
          value,
          expected: fc.constantFrom("current" as const, "null" as const, "previous" as const, "bogus" as const),
        }),
        fc.record({ op: fc.constant("remove" as const), key }),
        fc.record({ op: fc.constant("get" as const), key }),
      );
      const bogus = await contentVersion(text("a value longer than anything the property stores"));
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
          const instance = await make();
          try {
            const s = createStore(instance.driver);
            const model = new Map<string, Uint8Array>();
            const previous = new Map<string, Uint8Array>();
            for (const o of ops) {
              const now = model.get(o.key);
              if (o.op === "put") {
                await s.put(o.key, o.value);
                if (now !== undefined) previous.set(o.key, now);
                model.set(o.key, o.value);
              } else if (o.op === "remove") {
                await s.remove(o.key);
                if (now !== undefined) previous.set(o.key, now);
                model.delete(o.key);
              } else if (o.op === "get") {
                const got = await s.get(o.key);
                if (now === undefined) expect(got).toBeNull();
                else expectBytes(got, now);
              } else {
                const prev = previous.get(o.key);
                const expected =
                  o.expected === "null"
                    ? null
                    : o.expected === "bogus"
                      ? bogus
                      : o.expected === "previous"
                        ? prev === undefined
                          ? bogus
                          : await contentVersion(prev)
                        : now === undefined
                          ? null
                          : await contentVersion(now);
                const nowVersion = now === undefined ? null : await contentVersion(now);
                if (expected === nowVersion) {
                  expect(await s.compareAndSwap(o.key, o.value, expected)).toBe(await contentVersion(o.value));
                  if (now !== undefined) previous.set(o.key, now);
                  model.set(o.key, o.value);
                } else {
                  await expectConflict(s.compareAndSwap(o.key, o.value, expected));
                }
              }
            }
            for (const k of keys) {
              const want = model.get(k);
              const got = await s.get(k);
              if (want === undefined) expect(got).toBeNull();
              else expectBytes(got, want);
            }
            expect(await s.keys("head")).toEqual(keys.filter((k) => k.startsWith("head:") && model.has(k)));
            expect(await s.keys("obj")).toEqual(model.has("obj:a") ? ["obj:a"] : []);
          } finally {
            await instance.cleanup?.();
          }
        }),
        { numRuns: 40 },
      );
    });
  });
}
