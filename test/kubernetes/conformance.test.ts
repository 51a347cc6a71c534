// Runs the storage conformance suite on the Kubernetes driver (custom resources and ConfigMaps) against a real kube-apiserver and etcd, plus the driver's own error mapping.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubernetesDriver, KubernetesStoreError, type KubernetesDriver } from "../../src/storage/kubernetes.js";
import { contentVersion, createStore, StoreError } from "../../src/storage/store.js";
import { testDriver } from "../storage/conformance.js";
import { killApiServers, provision, startApiServer, type ApiServer } from "./apiserver.js";

const provisioned = await provision();
const skip = !provisioned.ok;

let server: ApiServer;
let namespaces = 0;

/** A fresh namespace per driver instance: each test starts empty. */
async function freshDriver(mode: "crd" | "configmap", extra: Partial<Parameters<typeof kubernetesDriver>[0]> = {}): Promise<KubernetesDriver> {
  const namespace = `conf-${process.pid}-${++namespaces}`;
  await server.createNamespace(namespace);
  return kubernetesDriver({
    server: server.url,
    namespace,
    token: () => server.adminToken,
    fetch: server.fetch,
    coordinator: "conformance",
    mode,
    ...extra,
  });
}

describe.skipIf(skip)(`kubernetes store against a real kube-apiserver${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  beforeAll(async () => {
    if (!provisioned.ok) return;
    server = await startApiServer(provisioned.bin);
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await killApiServers();
  });

  testDriver("kubernetes (custom resources)", async () => ({ driver: await freshDriver("crd") }));
  testDriver("kubernetes (ConfigMaps)", async () => ({ driver: await freshDriver("configmap") }));

  describe("objects as Kubernetes sees them", () => {
    it("stores a head as a CoordinatorHead named after the key, with labels, base64 data, no ownerReferences", async () => {
      const driver = await freshDriver("crd");
      const head = new TextEncoder().encode(JSON.stringify({ generation: 3, latestTransition: "ab".repeat(32), recovery: { threshold: 2, shares: 3 } }));
      await createStore(driver).compareAndSwap("heads:my-coordinator", head, null);
      const res = await server.api("GET", `/apis/contrast.edgeless.systems/v1/namespaces/${driver.namespace}/coordinatorheads/my-coordinator`);
      expect(res.status).toBe(200);
      const meta = res.body.metadata as { labels: Record<string, string>; ownerReferences?: unknown };
      expect(meta.labels).toEqual({
        "app.kubernetes.io/managed-by": "contrast-coordinator",
        "contrast.edgeless.systems/coordinator": "conformance",
        "contrast.edgeless.systems/kind": "heads",
      });
      expect(meta.ownerReferences).toBeUndefined();
      expect(res.body.spec).toEqual({
        data: Buffer.from(head).toString("base64"),
        generation: 3,
        latestTransition: "ab".repeat(32),
        threshold: 2,
        shares: 3,
      });
    });

    it("stores immutable kinds under their own resource, named by the hash", async () => {
      const driver = await freshDriver("crd");
      const store = createStore(driver);
      const name = "0".repeat(64);
      for (const [kind, plural] of [
        ["policies", "policies"],
        ["manifests", "manifests"],
        ["transitions", "transitions"],
        ["certificates", "certificates"],
        ["keys", "sealedkeys"],
        ["seedshares", "seedsharedocuments"],
      ] as const) {
        await store.put(`${kind}:${name}`, Uint8Array.of(1, 2, 3));
        const res = await server.api("GET", `/apis/contrast.edgeless.systems/v1/namespaces/${driver.namespace}/${plural}/${name}`);
        expect(res.status, kind).toBe(200);
        expect((res.body.spec as { data: string }).data).toBe("AQID");
        expect(await store.keys(kind)).toEqual([`${kind}:${name}`]);
      }
    });

    it("lists with limit/continue pagination", async () => {
      const driver = await freshDriver("crd", { pageSize: 3 });
      const store = createStore(driver);
      const names = Array.from({ length: 10 }, (_, i) => `${i}`.padStart(64, "a"));
      await Promise.all(names.map((n) => store.put(`policies:${n}`, Uint8Array.of(1))));
      const before = driver.client.requests;
      expect(await store.keys("policies")).toEqual(names.map((n) => `policies:${n}`).sort());
      expect(driver.client.requests - before).toBe(4); // 3 + 3 + 3 + 1
    });
  });

  describe("errors with stable codes", () => {
    async function failure(p: Promise<unknown>): Promise<KubernetesStoreError> {
      const err = await p.then(
        () => new Error("expected a failure"),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KubernetesStoreError);
      return err as KubernetesStoreError;
    }

    it("refuses a key that cannot be an object name before any request", async () => {
      const driver = await freshDriver("crd");
      const before = driver.client.requests;
      const err = await createStore(driver).put("heads:Upper", Uint8Array.of(1)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe("INVALID_KEY");
      await expect(driver.setItemRaw("obj:ends-with-dash-", Uint8Array.of(1), {})).rejects.toMatchObject({ code: "INVALID_KEY" });
      expect(driver.client.requests).toBe(before);
    });

    it("maps an object over etcd's limit to K8S_TOO_LARGE without retrying", async () => {
      const driver = await freshDriver("crd");
      const before = driver.client.requests;
      const err = await failure(Promise.resolve(driver.setItemRaw("obj:big", new Uint8Array(1_200_000), { ifMatch: null })));
      expect(err.apiCode).toBe("K8S_TOO_LARGE");
      expect(err.code).toBe("UNAVAILABLE");
      expect(driver.client.requests - before).toBe(1);
    });

    it("maps a ConfigMap over 1 MiB to K8S_INVALID with the cause", async () => {
      const driver = await freshDriver("configmap");
      const err = await failure(Promise.resolve(driver.setItemRaw("obj:big", new Uint8Array((1 << 20) + 1), { ifMatch: null })));
      expect(err.apiCode).toBe("K8S_INVALID");
      expect(err.status).toBe(422);
      expect(err.causes.length).toBeGreaterThan(0);
      expect(err.message).toMatch(/invalid configmaps/);
    });

    it("maps a body over 3 MiB to K8S_TOO_LARGE (413)", async () => {
      const driver = await freshDriver("crd");
      const err = await failure(Promise.resolve(driver.setItemRaw("obj:huge", new Uint8Array(3 << 20), { ifMatch: null })));
      expect(err.apiCode).toBe("K8S_TOO_LARGE");
      expect(err.status).toBe(413);
    });

    it("maps an unauthenticated request to K8S_FORBIDDEN naming the verb and resource", async () => {
      const driver = await freshDriver("crd", { token: () => null });
      const err = await failure(Promise.resolve(driver.getItemRaw("heads:x", {})));
      expect(err.apiCode).toBe("K8S_FORBIDDEN");
      expect(err.status).toBe(403);
      expect(err.verb).toBe("get");
      expect(err.resource).toBe("coordinatorheads.contrast.edgeless.systems");
      expect(err.message).toMatch(/may not "get" coordinatorheads\.contrast\.edgeless\.systems in namespace/);
      expect(err.message).toMatch(/system:anonymous/);
    });

    it("maps a wrong token to K8S_UNAUTHORIZED after reading the token again once", async () => {
      const asked: (boolean | undefined)[] = [];
      const driver = await freshDriver("crd", {
        token: (o) => {
          asked.push(o?.refresh);
          return "not-a-token";
        },
      });
      const err = await failure(Promise.resolve(driver.getItemRaw("heads:x", {})));
      expect(err.apiCode).toBe("K8S_UNAUTHORIZED");
      expect(err.status).toBe(401);
      expect(asked).toEqual([undefined, true]);
    });

    it("picks up a rotated token after a 401", async () => {
      let current = "stale-token";
      const driver = await freshDriver("crd", {
        token: (o) => {
          if (o?.refresh === true) current = server.adminToken;
          return current;
        },
      });
      expect(await driver.getItemRaw("heads:x", {})).toBeNull();
    });

    it("retries connection failures with bounded backoff, then answers K8S_UNAVAILABLE", async () => {
      const delays: number[] = [];
      const driver = kubernetesDriver({
        server: "https://127.0.0.1:1",
        namespace: "default",
        token: () => "t",
        fetch: server.fetch,
        coordinator: "c",
        retry: { attempts: 4, baseDelayMs: 10, maxDelayMs: 15 },
        sleep: async (ms) => {
          delays.push(ms);
        },
      });
      const err = await failure(Promise.resolve(driver.getItemRaw("heads:x", {})));
      expect(err.apiCode).toBe("K8S_UNAVAILABLE");
      expect(err.code).toBe("UNAVAILABLE");
      expect(driver.client.requests).toBe(4);
      expect(delays).toHaveLength(3);
      for (const d of delays) expect(d).toBeLessThanOrEqual(15);
    });

    /** The real server's fetch, except that the answers to the first `lose` writes are dropped after the server handled them (a connection reset). */
    function losingAnswers(lose: number): Parameters<typeof kubernetesDriver>[0]["fetch"] {
      let left = lose;
      return async (url, init) => {
        const res = await server.fetch(url, init);
        if (init.method !== "GET" && left > 0) {
          left--;
          throw new TypeError("fetch failed", { cause: new Error("read ECONNRESET") });
        }
        return res;
      };
    }

    it("a create whose answer was lost is retried and recognised as its own success", async () => {
      const driver = await freshDriver("crd", { fetch: losingAnswers(1), sleep: async () => undefined });
      const store = createStore(driver);
      expect(await store.compareAndSwap("heads:lost", Uint8Array.of(7), null)).toBe(await contentVersion(Uint8Array.of(7)));
      expect(Array.from((await store.get("heads:lost"))!)).toEqual([7]);
      // A real competitor is still refused.
      await expect(store.compareAndSwap("heads:lost", Uint8Array.of(8), null)).rejects.toMatchObject({ code: "CONFLICT" });
    });

    it("a swap whose answer was lost is retried and recognised as its own success", async () => {
      const plain = await freshDriver("crd");
      const v1 = await createStore(plain).compareAndSwap("heads:lost", Uint8Array.of(1), null);
      const driver = kubernetesDriver({ ...plain.options, fetch: losingAnswers(1), sleep: async () => undefined } as Parameters<typeof kubernetesDriver>[0]);
      const store = createStore(driver);
      await store.compareAndSwap("heads:lost", Uint8Array.of(2), v1);
      expect(Array.from((await store.get("heads:lost"))!)).toEqual([2]);
      await expect(store.compareAndSwap("heads:lost", Uint8Array.of(3), v1)).rejects.toMatchObject({ code: "CONFLICT" });
    });

    it("answers CONFLICT when a swap's object was removed, and K8S_NOT_FOUND never leaks from reads", async () => {
      const driver = await freshDriver("crd");
      const store = createStore(driver);
      expect(await store.get("heads:gone")).toBeNull();
      const v = await store.compareAndSwap("heads:gone", Uint8Array.of(1), null);
      await server.api("DELETE", `/apis/contrast.edgeless.systems/v1/namespaces/${driver.namespace}/coordinatorheads/gone`);
      await expect(store.compareAndSwap("heads:gone", Uint8Array.of(2), v)).rejects.toMatchObject({ code: "CONFLICT" });
    });
  });
});
