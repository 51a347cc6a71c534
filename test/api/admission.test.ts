// Admission control of large request bodies, in process: slots, the FIFO of waiters with their bodies unread, 503 BUSY with Retry-After, release on error, and checked options.
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { admission } from "../../src/api/admission.js";
import type { AdmissionOptions } from "../../src/api/admission.js";
import { errorResponse, toCoordinatorError } from "../../src/api/respond.js";
import { CoordinatorError } from "../../src/errors.js";

/** A promise with its resolve function. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves once every pending promise callback has run (several turns of the event loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}

/**
 * An app whose POST /up runs behind the admission middleware and then waits for the gate the test
 * holds open for that request's `x-id`; it records the order in which requests entered and whether
 * they failed on purpose (`x-fail`).
 */
function harness(options: Partial<AdmissionOptions>) {
  const app = new Hono();
  const entered: string[] = [];
  const gates = new Map<string, ReturnType<typeof deferred>>();
  const gate = (id: string) => {
    if (!gates.has(id)) gates.set(id, deferred());
    return gates.get(id)!;
  };
  app.post("/up", admission(options), async (c) => {
    const id = c.req.header("x-id")!;
    entered.push(id);
    await gate(id).promise;
    if (c.req.header("x-fail") !== undefined) throw new CoordinatorError("INVALID_REQUEST", "failed on purpose");
    return c.json({ id, bytes: (await c.req.arrayBuffer()).byteLength });
  });
  app.onError((err, c) => errorResponse(c, toCoordinatorError(err)));
  const send = (id: string, size: number | "chunked", extra: Record<string, string> = {}, init: RequestInit = {}) =>
    app.request("/up", {
      method: "POST",
      body: new Uint8Array(size === "chunked" ? 10 : size),
      headers: { "x-id": id, ...(size === "chunked" ? {} : { "content-length": String(size) }), ...extra },
      ...init,
    });
  return { app, entered, gate, send };
}

async function codeOf(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { error?: { code?: string } }).error?.code;
}

const large = 100 * 1024;

describe("admission of large request bodies", () => {
  it("lets one large body in per slot; the next waits, then goes in when the slot is released", async () => {
    const h = harness({ slots: 1, queue: 4, smallBytes: 64 * 1024 });
    const a = h.send("a", large);
    const b = h.send("b", large);
    await settle();
    expect(h.entered).toEqual(["a"]);
    h.gate("a").resolve();
    expect((await a).status).toBe(200);
    await settle();
    expect(h.entered).toEqual(["a", "b"]);
    h.gate("b").resolve();
    expect((await b).status).toBe(200);
  });

  it("serves waiters first in, first out", async () => {
    const h = harness({ slots: 1, queue: 4 });
    const all = ["a", "b", "c", "d"].map((id) => h.send(id, large));
    for (const id of ["a", "b", "c", "d"]) {
      await settle();
      h.gate(id).resolve();
    }
    expect((await Promise.all(all)).map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(h.entered).toEqual(["a", "b", "c", "d"]);
  });

  it("lets small bodies through while every slot is taken", async () => {
    const h = harness({ slots: 1, queue: 0, smallBytes: 64 * 1024 });
    const a = h.send("a", large);
    await settle();
    h.gate("s").resolve();
    const s = await h.send("s", 64 * 1024);
    expect(s.status).toBe(200);
    h.gate("a").resolve();
    expect((await a).status).toBe(200);
  });

  it("counts a body without a content-length as large", async () => {
    const h = harness({ slots: 1, queue: 0 });
    const a = h.send("a", large);
    await settle();
    const chunked = await h.send("c", "chunked");
    expect(chunked.status).toBe(503);
    expect(await codeOf(chunked)).toBe("BUSY");
    h.gate("a").resolve();
    await a;
  });

  it("answers 503 BUSY with a Retry-After at once when the queue is full, without entering the handler", async () => {
    const h = harness({ slots: 1, queue: 1, retryAfterSeconds: 7 });
    const a = h.send("a", large);
    const b = h.send("b", large);
    await settle();
    const c = await h.send("c", large);
    expect(c.status).toBe(503);
    expect(c.headers.get("retry-after")).toBe("7");
    expect(await codeOf(c)).toBe("BUSY");
    h.gate("a").resolve();
    h.gate("b").resolve();
    expect([(await a).status, (await b).status]).toEqual([200, 200]);
    expect(h.entered).toEqual(["a", "b"]);
  });

  it("answers 503 BUSY when the wait runs out, and the request never enters", async () => {
    const h = harness({ slots: 1, queue: 4, maxWaitMs: 20 });
    const a = h.send("a", large);
    await settle();
    const b = await h.send("b", large);
    expect(b.status).toBe(503);
    expect(await codeOf(b)).toBe("BUSY");
    expect(b.headers.get("retry-after")).toMatch(/^\d+$/);
    h.gate("a").resolve();
    expect((await a).status).toBe(200);
    expect(h.entered).toEqual(["a"]);
  });

  it("releases the slot when the handler fails", async () => {
    const h = harness({ slots: 1, queue: 1 });
    const a = h.send("a", large, { "x-fail": "1" });
    const b = h.send("b", large);
    await settle();
    h.gate("a").resolve();
    const failed = await a;
    expect(failed.status).toBe(400);
    expect(await codeOf(failed)).toBe("INVALID_REQUEST");
    await settle();
    h.gate("b").resolve();
    expect((await b).status).toBe(200);
  });

  it("drops a waiter whose client went away, freeing its place in the queue", async () => {
    const h = harness({ slots: 1, queue: 1 });
    const a = h.send("a", large);
    const gone = new AbortController();
    const b = Promise.resolve(h.send("b", large, {}, { signal: gone.signal })).catch(() => null);
    await settle();
    gone.abort();
    await settle();
    const c = h.send("c", large);
    await settle();
    h.gate("a").resolve();
    h.gate("c").resolve();
    expect((await a).status).toBe(200);
    expect((await c).status).toBe(200);
    await b;
    expect(h.entered).toEqual(["a", "c"]);
  });

  it("does not read a waiting request's body until it has a slot", async () => {
    const h = harness({ slots: 1, queue: 1 });
    const a = h.send("a", large);
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          pulls++;
          controller.enqueue(new Uint8Array(large));
          controller.close();
        },
      },
      { highWaterMark: 0 },
    );
    const b = h.app.request("/up", {
      method: "POST",
      body,
      headers: { "x-id": "b", "content-length": String(large) },
      duplex: "half",
    } as RequestInit);
    await settle();
    expect(pulls).toBe(0);
    h.gate("a").resolve();
    await a;
    await settle();
    h.gate("b").resolve();
    const answered = await b;
    expect(answered.status).toBe(200);
    expect(((await answered.json()) as { bytes: number }).bytes).toBe(large);
    expect(pulls).toBe(1);
  });

  it.each<[Partial<AdmissionOptions>]>([[{ slots: 0 }], [{ slots: 1.5 }], [{ queue: -1 }], [{ maxWaitMs: Number.NaN }], [{ retryAfterSeconds: 0 }], [{ smallBytes: -1 }]])(
    "refuses the options %j when the middleware is made",
    (options) => {
      let thrown: unknown;
      try {
        admission(options);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(CoordinatorError);
      expect((thrown as CoordinatorError).code).toBe("CONFIG_INVALID");
    },
  );
});
