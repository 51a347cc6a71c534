// A test-only Worker that runs Coordinator driver operations inside workerd against a Durable Object's storage, one object per test instance.
import "reflect-metadata";
import { durableObjectDriver } from "../../adapters/worker/sql-driver.js";
import type { DurableObjectNamespace, DurableObjectState } from "../../adapters/worker/types.js";
import { contentVersion, StoreError } from "../../src/storage/store.js";
import type { CoordinatorDriver } from "../../src/storage/store.js";

/** One driver call, as the Node side sends it in header `x-call`; the value of setItem (UTF-8) or setItemRaw is the request body. */
export interface HarnessCall {
  op: "hasItem" | "getItem" | "getItemRaw" | "setItem" | "setItemRaw" | "removeItem" | "getMeta" | "getKeys" | "clear" | "race";
  key?: string;
  /** Present only when the caller passed `ifMatch` (null included). */
  ifMatch?: string | null;
  base?: string;
  /**
   * For setItemRaw: wait until this many calls carrying a barrier have arrived at the object before
   * writing, so that they provably overlap inside it and then race (fails after 20 s otherwise).
   */
  barrier?: number;
  /** For `race`: how many conditional writes to start at once, and whether to use the deliberately broken check-await-write. */
  n?: number;
  broken?: boolean;
}

interface Env {
  HARNESS: DurableObjectNamespace;
}

const encoder = new TextEncoder();

function answer(body: unknown): Response {
  return new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
}

/** A Durable Object holding one driver; every request is one driver operation. */
export class DriverHarness {
  private readonly state: DurableObjectState;
  private driverInstance: CoordinatorDriver | null = null;
  private arrived = 0;
  private release: (() => void) | null = null;
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));

  constructor(state: DurableObjectState, _env: Env) {
    this.state = state;
  }

  /** The driver, made by the first request with the chunk size it names (header `x-chunk-size`, else the default). */
  private get driver(): CoordinatorDriver {
    return this.driverInstance!;
  }

  async fetch(request: Request): Promise<Response> {
    if (this.driverInstance === null) {
      const chunk = request.headers.get("x-chunk-size");
      this.driverInstance = durableObjectDriver(this.state.storage, chunk === null ? {} : { chunkSize: Number(chunk) });
    }
    try {
      const call = JSON.parse(request.headers.get("x-call") ?? "{}") as HarnessCall;
      const body = new Uint8Array(await request.arrayBuffer());
      const result = await this.run(call, body);
      if (result instanceof Uint8Array) return new Response(result as Uint8Array<ArrayBuffer>, { headers: { "content-type": "application/octet-stream" } });
      return answer({ result });
    } catch (err) {
      if (err instanceof StoreError) return answer({ error: { name: "StoreError", code: err.code, message: err.message } });
      return answer({ error: { name: "Error", message: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) } });
    }
  }

  /** Resolves once `n` barrier calls have arrived here; rejects if they do not within 20 s. */
  private async barrier(n: number): Promise<void> {
    if (++this.arrived >= n) this.release?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`only ${this.arrived} of ${n} requests overlapped in the object`)), 20_000);
    });
    try {
      await Promise.race([this.released, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(call: HarnessCall, body: Uint8Array): Promise<unknown> {
    const d = this.driver;
    const key = call.key ?? "";
    const opts = "ifMatch" in call ? { ifMatch: call.ifMatch } : {};
    switch (call.op) {
      case "hasItem":
        return d.hasItem(key, {});
      case "getItem":
        return d.getItem(key, {});
      case "getItemRaw": {
        const raw: unknown = await d.getItemRaw(key, {});
        if (raw === null) return null;
        if (!(raw instanceof Uint8Array)) throw new Error(`getItemRaw returned ${Object.prototype.toString.call(raw)}`);
        return raw;
      }
      case "setItem":
        await d.setItem!(key, new TextDecoder().decode(body), opts);
        return null;
      case "setItemRaw":
        if (call.barrier !== undefined) await this.barrier(call.barrier);
        await d.setItemRaw(key, body, opts);
        return null;
      case "removeItem":
        await d.removeItem!(key, {});
        return null;
      case "getMeta": {
        const meta = await d.getMeta!(key, {});
        return meta === null ? null : { size: meta.size, mtime: meta.mtime instanceof Date ? meta.mtime.toISOString() : null };
      }
      case "getKeys":
        return d.getKeys(call.base ?? "", {});
      case "clear":
        await d.clear!(call.base ?? "", {});
        return null;
      case "race":
        return this.race(key, call.n ?? 20, call.broken === true);
    }
  }

  /**
   * Starts `n` conditional writes from the same base version at once, inside this object. With
   * `broken`, each write reads the version, awaits, then writes unconditionally: the negative control
   * showing that concurrent work does interleave here, so the driver's synchronous step is what counts.
   */
  private async race(key: string, n: number, broken: boolean): Promise<{ winners: number[]; conflicts: number; final: string | null }> {
    const d = this.driver;
    await d.setItemRaw(key, encoder.encode("base"), {});
    const base = await contentVersion(encoder.encode("base"));
    const attempt = async (i: number): Promise<void> => {
      const value = encoder.encode(`attempt ${i}`);
      if (!broken) return d.setItemRaw(key, value, { ifMatch: base });
      const current = (await d.getItemRaw(key, {})) as Uint8Array | null;
      const version = current === null ? null : await contentVersion(current);
      if (version !== base) throw new StoreError("CONFLICT", `${key} has changed`);
      await d.setItemRaw(key, value, {});
    };
    const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => attempt(i)));
    const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    const conflicts = results.filter((r) => r.status === "rejected" && r.reason instanceof StoreError && r.reason.code === "CONFLICT").length;
    const final = (await d.getItemRaw(key, {})) as Uint8Array | null;
    return { winners, conflicts, final: final === null ? null : new TextDecoder().decode(final) };
  }
}

/** Routes `/<instance>` (the call in header `x-call`, bytes as the body) to the Durable Object named `<instance>`. */
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const instance = new URL(request.url).pathname.slice(1);
    return env.HARNESS.get(env.HARNESS.idFromName(instance)).fetch(request);
  },
};
