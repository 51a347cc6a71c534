// Counts the API requests one set, one recover and one history read make on the Kubernetes store (real kube-apiserver), and prints them with their times.
import "reflect-metadata";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { simulatedValidator } from "../../src/attestation/validator.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { kubernetesDriver } from "../../src/storage/kubernetes.js";
import type { FetchFunction } from "../../src/storage/kubernetes.js";
import { createStore } from "../../src/storage/store.js";
import { firstSetBody, manifestBytes, policy, post, recoverBody, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import { killApiServers, provision, startApiServer, type ApiServer } from "./apiserver.js";

const provisioned = await provision();
const skip = !provisioned.ok;

describe.skipIf(skip)(`API requests per operation on the kubernetes store${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  let server: ApiServer;
  const log: string[] = [];
  let inFetchMs = 0;
  const recording: FetchFunction = async (url, init) => {
    const u = new URL(url);
    log.push(`${init.method ?? "GET"} ${u.pathname.replace(/^\/apis\/contrast\.edgeless\.systems\/v1\/namespaces\/[^/]+\//, "")}`);
    const t0 = performance.now();
    try {
      const res = await server.fetch(url, init);
      await res.clone().arrayBuffer();
      return res;
    } finally {
      inFetchMs += performance.now() - t0;
    }
  };

  beforeAll(async () => {
    if (!provisioned.ok) return;
    server = await startApiServer(provisioned.bin);
    await server.createNamespace("figures");
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await killApiServers();
  });

  it("set, restart, recover, read the history", async () => {
    const [share, owner, polA, polB] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy A\n"), policy("policy B\n")]);
    const manifest = manifestBytes({
      policies: [
        { hash: polA.hash, name: "a" },
        { hash: polB.hash, name: "b" },
      ],
      workloadOwners: [owner.digest],
      seedShareOwners: [share.publicHex],
    });
    const start = async () => {
      const driver = kubernetesDriver({ server: server.url, namespace: "figures", token: () => server.adminToken, fetch: recording, coordinator: "coordinator" });
      const coordinator = await Coordinator.start({ store: createStore(driver), name: "coordinator", validators: new Map([[simulatedValidator.type, simulatedValidator]]) });
      return createApp({ coordinator });
    };
    const figures: string[] = [];
    const measure = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
      log.length = 0;
      inFetchMs = 0;
      const t0 = performance.now();
      const result = await op();
      const ms = performance.now() - t0;
      const counts = new Map<string, number>();
      for (const r of log) counts.set(r.replace(/\/[0-9a-f]{64}$/, "/<hash>"), (counts.get(r.replace(/\/[0-9a-f]{64}$/, "/<hash>")) ?? 0) + 1);
      figures.push(`${what}: ${log.length} requests, ${ms.toFixed(0)} ms in all, request times summed ${inFetchMs.toFixed(0)} ms (${[...counts].map(([k, n]) => `${n}× ${k}`).join(", ")})`);
      return result;
    };

    const app1 = await measure("start (empty store)", start);
    const set = await measure("first set", async () => app1.request("/v1/manifest", post(firstSetBody(manifest, [polA.bytes, polB.bytes]))));
    expect(set.status).toBe(200);
    const doc = ((await set.clone().json()) as { seedShares: SeedShareDocument }).seedShares;
    const { transition, rootCA } = (await set.clone().json()) as { transition: string; rootCA: string };
    const manifest2 = manifestBytes({
      policies: [
        { hash: polA.hash, name: "a2" },
        { hash: polB.hash, name: "b" },
      ],
      workloadOwners: [owner.digest],
      seedShareOwners: [share.publicHex],
    });
    const update = await updateBody(manifest2, [polA.bytes, polB.bytes], transition, owner, { name: "coordinator", rootCA });
    const updated = await measure("signed update (same owners)", async () => app1.request("/v1/manifest", post(update)));
    expect(updated.status).toBe(200);
    const history1 = await measure("GET /v1/manifests", async () => (await app1.request("/v1/manifests")).text());

    const app2 = await measure("start (existing head)", start);
    const body = await recoverBody(doc, share.keys.privateKey);
    const rec = await measure("recover", async () => app2.request("/v1/recover", post(body)));
    expect(rec.status).toBe(200);
    expect(await (await app2.request("/v1/manifests")).text()).toBe(history1);
    process.stdout.write(`\nkubernetes store figures (real kube-apiserver on loopback):\n  ${figures.join("\n  ")}\n`);
  });
});
