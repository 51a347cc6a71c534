// Offline verification and the rollback memory against an in-process Coordinator: a real history verifies, every kind of tampering is caught.
import fc from "fast-check";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { ClientError, CoordinatorClient } from "../../src/client/client.js";
import type { HistoryResponse } from "../../src/client/client.js";
import { RetryTimeout, formatDuration, parseDuration, retrying } from "../../src/client/retry.js";
import { RollbackError, checkMemory } from "../../src/client/rollback.js";
import type { Memory } from "../../src/client/rollback.js";
import { signedUpdate } from "../../src/client/update.js";
import { VerificationError, certificateDerOf, verifyHistory } from "../../src/client/verify.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { sha256 } from "../../src/crypto/provider.js";
import { fromBase64, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import { manifestBytes, policy, seedShareOwner, workloadOwner } from "../helpers.js";

async function coordinatorClient(): Promise<CoordinatorClient> {
  const coordinator = await Coordinator.start({
    store: createStore(memoryDriver()),
    name: "unit",
    validators: new Map([[simulatedValidator.type, simulatedValidator]]),
  });
  const app = createApp({ coordinator });
  return new CoordinatorClient({ baseUrl: "http://coordinator.test", fetch: (input, init) => Promise.resolve(app.fetch(new Request(input, init))) });
}

describe("verifyHistory", () => {
  let history: HistoryResponse;
  let otherRoot: Uint8Array;
  let client: CoordinatorClient;

  beforeAll(async () => {
    const [shares, owner, a, b] = await Promise.all([seedShareOwner(), workloadOwner(), policy("a\n"), policy("b\n")]);
    const m1 = manifestBytes({ policies: [{ hash: a.hash, name: "a" }], workloadOwners: [owner.digest], seedShareOwners: [shares.publicHex] });
    const m2 = manifestBytes({ policies: [{ hash: b.hash, name: "b" }], workloadOwners: [owner.digest], seedShareOwners: [shares.publicHex] });
    client = await coordinatorClient();
    const first = await client.setManifest({ manifest: toBase64(m1), policies: [toBase64(a.bytes)] });
    const coordinator = { name: "unit", rootCA: await sha256(certificateDerOf(first.rootCA)) };
    const { body, newTransition } = await signedUpdate({ manifest: m2, policies: [b.bytes], previousTransition: first.transition, owner: { privateKey: owner.keys.privateKey, spki: owner.spki }, coordinator });
    const second = await client.setManifest(body);
    expect(second.transition).toBe(newTransition);
    history = await client.history();

    const other = await coordinatorClient();
    otherRoot = certificateDerOf((await other.setManifest({ manifest: toBase64(m1), policies: [toBase64(a.bytes)] })).rootCA);
  });

  it("accepts the real history, pinned to its own root", async () => {
    const verified = await verifyHistory(history, { pinnedRootCA: certificateDerOf(history.rootCA) });
    expect(verified.generation).toBe(2);
    expect(verified.manifests).toHaveLength(2);
    expect(verified.policies.size).toBe(2);
    expect(verified.latestTransition).toBe(history.latestTransition);
  });

  const tampered: [string, (h: HistoryResponse) => HistoryResponse, string][] = [
    ["a changed manifest", (h) => ({ ...h, manifests: [toBase64(utf8(" " + new TextDecoder().decode(fromBase64(h.manifests[0]!)))), h.manifests[1]!] }), "HISTORY_INVALID"],
    ["a missing manifest", (h) => ({ ...h, manifests: h.manifests.slice(1), transitions: h.transitions.slice(1) }), "HISTORY_INVALID"],
    ["swapped manifests", (h) => ({ ...h, manifests: [...h.manifests].reverse() }), "HISTORY_INVALID"],
    ["a changed policy", (h) => ({ ...h, policies: Object.fromEntries(Object.entries(h.policies).map(([k]) => [k, toBase64(utf8("evil"))])) }), "HISTORY_INVALID"],
    ["a missing policy", (h) => ({ ...h, policies: {} }), "HISTORY_INVALID"],
    ["an extra policy", (h) => ({ ...h, policies: { ...h.policies, ["0".repeat(64)]: toBase64(utf8("x")) } }), "HISTORY_INVALID"],
    ["a generation that disagrees with the head", (h) => ({ ...h, generation: 3 }), "HEAD_INVALID"],
    ["a changed head signature", (h) => {
      const head = JSON.parse(new TextDecoder().decode(fromBase64(h.head))) as { signature: string };
      const sig = fromBase64(head.signature);
      sig[10] = sig[10]! ^ 1;
      const text = new TextDecoder().decode(fromBase64(h.head)).replace(head.signature, toBase64(sig));
      return { ...h, head: toBase64(utf8(text)) };
    }, "HEAD_INVALID"],
    ["a head that is not JSON", (h) => ({ ...h, head: toBase64(utf8("nope")) }), "HEAD_INVALID"],
    ["a mesh CA the head does not name", (h) => ({ ...h, meshCA: h.intermediateCA }), "CERTIFICATE_INVALID"],
    ["a root CA that is not a certificate", (h) => ({ ...h, rootCA: "garbage" }), "CERTIFICATE_INVALID"],
    ["a transaction signer that is the root", (h) => ({ ...h, transactionSigner: h.rootCA }), "HEAD_INVALID"],
  ];

  it.each(tampered)("refuses %s", async (_what, change, code) => {
    const err = await verifyHistory(change(structuredClone(history))).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(VerificationError);
    expect((err as VerificationError).code).toBe(code);
  });

  it("refuses a history under another root CA than the pinned one", async () => {
    const err = await verifyHistory(history, { pinnedRootCA: otherRoot }).then(() => null, (e: unknown) => e);
    expect((err as VerificationError).code).toBe("ROOT_CA_MISMATCH");
  });

  it("the client maps API errors to their codes", async () => {
    const err = await client.recover({ share: toBase64(new Uint8Array(64)), salt: "0".repeat(64) }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect((err as ClientError).code).toBe("NOT_IN_RECOVERY");
    expect((err as ClientError).status).toBe(409);
  });

  afterAll(() => undefined);
});

describe("the client without a Coordinator", () => {
  it("reports UNREACHABLE with the system code for a closed port", async () => {
    const server = createServer();
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((done) => server.close(() => done()));
    const client = new CoordinatorClient({ baseUrl: `http://127.0.0.1:${port}` });
    const err = await client.status().then(() => null, (e: unknown) => e);
    expect((err as ClientError).code).toBe("UNREACHABLE");
    expect((err as ClientError).systemCode).toBe("ECONNREFUSED");
  });

  it("reports BAD_RESPONSE for an answer that is not the API's", async () => {
    const client = new CoordinatorClient({ baseUrl: "http://x.test", fetch: () => Promise.resolve(new Response("<html>", { status: 200 })) });
    expect(await client.status().then(() => null, (e: unknown) => (e as ClientError).code)).toBe("BAD_RESPONSE");
    const proxy = new CoordinatorClient({ baseUrl: "http://x.test", fetch: () => Promise.resolve(new Response("{}", { status: 502 })) });
    expect(await proxy.status().then(() => null, (e: unknown) => (e as ClientError).status)).toBe(502);
  });
});

describe("checkMemory", () => {
  const t = (c: string) => c.repeat(64);
  const memory: Memory = { format: "contrast-cli-state/v1", name: "c", rootCA: t("a"), generation: 2, latestTransition: t("b") };

  it("keeps a newer generation that descends from the remembered transition, and the old memory for the same one", () => {
    const newer = checkMemory(memory, { name: "c", rootCA: t("a"), generation: 3, latestTransition: t("c"), transitions: [t("1"), t("b"), t("c")] });
    expect(newer).toEqual({ ...memory, generation: 3, latestTransition: t("c") });
    expect(checkMemory(memory, { name: "c", rootCA: t("a"), generation: 2, latestTransition: t("b"), transitions: [t("1"), t("b")] })).toEqual(memory);
    expect(checkMemory(memory, { name: "c", rootCA: t("a"), generation: 2, latestTransition: t("b") })).toEqual(memory);
    expect(checkMemory(null, { name: "c", rootCA: t("a"), generation: 1, latestTransition: t("c"), transitions: [t("c")] })?.generation).toBe(1);
    // An unauthenticated observation (no root CA) never becomes the memory.
    expect(checkMemory(memory, { name: "c", generation: 5, latestTransition: t("d") })).toEqual(memory);
    // Nor does a newer one whose descent from the remembered transition was not shown (no transitions).
    expect(checkMemory(memory, { name: "c", rootCA: t("a"), generation: 3, latestTransition: t("c") })).toEqual(memory);
  });

  it.each([
    ["an older generation", { generation: 1, latestTransition: t("b"), rootCA: t("a") }, "ROLLBACK"],
    ["another transition at the same generation", { generation: 2, latestTransition: t("c"), rootCA: t("a") }, "FORK"],
    ["another root CA", { generation: 2, latestTransition: t("b"), rootCA: t("f") }, "ROOT_CA_MISMATCH"],
    ["an older generation seen by status", { generation: 1, latestTransition: t("b") }, "ROLLBACK"],
    [
      "a newer generation whose history has another transition at the remembered generation (a fork that moved on)",
      { generation: 3, latestTransition: t("d"), rootCA: t("a"), transitions: [t("1"), t("c"), t("d")] },
      "FORK",
    ],
    [
      "a newer generation whose history was rewritten before the remembered generation",
      { generation: 4, latestTransition: t("d"), rootCA: t("a"), transitions: [t("b"), t("2"), t("3"), t("d")] },
      "FORK",
    ],
    ["transitions that do not end at the observed generation", { generation: 3, latestTransition: t("d"), rootCA: t("a"), transitions: [t("1"), t("b")] }, "FORK"],
  ])("refuses %s", (_what, seen, code) => {
    let err: unknown = null;
    try {
      checkMemory(memory, { name: "c", ...seen });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RollbackError);
    expect((err as RollbackError).code).toBe(code);
  });
});

describe("checkMemory over random histories (property)", () => {
  const hash = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(toHex);

  it("moves forward exactly when the remembered transition is at its generation; otherwise refuses and keeps nothing", () => {
    fc.assert(
      fc.property(
        fc.array(hash, { minLength: 1, maxLength: 8 }),
        fc.nat(),
        fc.array(hash, { maxLength: 8 }),
        fc.nat(),
        fc.boolean(),
        (history, rememberedAt, tail, cut, fork) => {
          const g = (rememberedAt % history.length) + 1;
          const memory: Memory = { format: "contrast-cli-state/v1", name: "c", rootCA: "a".repeat(64), generation: g, latestTransition: history[g - 1]! };
          // The served history: the remembered one up to `cut`, then (if `fork`) another transition, then `tail`.
          const keep = cut % (history.length + 1);
          const served = [...history.slice(0, keep), ...(fork ? ["f".repeat(64)] : []), ...tail];
          if (served.length === 0) return;
          const observed = { name: "c", rootCA: memory.rootCA, generation: served.length, latestTransition: served[served.length - 1]!, transitions: served };
          let result: Memory | null = null;
          let err: unknown = null;
          try {
            result = checkMemory(memory, observed);
          } catch (e) {
            err = e;
          }
          if (served.length < g) {
            expect((err as RollbackError).code).toBe("ROLLBACK");
          } else if (served[g - 1] !== memory.latestTransition) {
            expect((err as RollbackError).code).toBe("FORK");
          } else {
            expect(err).toBeNull();
            expect(result).toEqual({ ...memory, generation: served.length, latestTransition: served[served.length - 1] });
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("retries and durations", () => {
  it("parses durations and refuses anything else", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("3m")).toBe(180_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["", "30", "s", "3 m", "-1s", "1d", "1s2"]) expect(() => parseDuration(bad), bad).toThrow(TypeError);
    expect(formatDuration(90_000)).toBe("1m30s");
  });

  it("backs off up to the deadline, then reports the last error", async () => {
    let clock = 0;
    const waits: number[] = [];
    const err = await retrying(() => Promise.reject(new Error("down")), {
      timeoutMs: 10_000,
      retryable: () => true,
      now: () => clock,
      sleep: async (ms) => {
        waits.push(ms);
        clock += ms;
      },
    }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RetryTimeout);
    expect((err as RetryTimeout).last).toEqual(new Error("down"));
    expect(waits.slice(0, 5)).toEqual([250, 500, 1000, 2000, 4000]);
    expect(waits.reduce((a, b) => a + b, 0)).toBe(10_000);
  });

  it("throws a non-retryable error at once and returns the first success", async () => {
    let calls = 0;
    await expect(retrying(() => Promise.reject(new Error("no")), { timeoutMs: 1000, retryable: () => false })).rejects.toThrow("no");
    const value = await retrying(async () => {
      if (++calls < 3) throw new Error("later");
      return 7;
    }, { timeoutMs: 60_000, retryable: () => true, sleep: async () => undefined });
    expect(value).toBe(7);
    expect(calls).toBe(3);
  });
});
