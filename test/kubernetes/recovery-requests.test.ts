// On the Kubernetes store (real kube-apiserver), a recovery makes the same API requests at history 1 and at a longer history but for one read per index segment (at most ceil(n / 2,048) + 1): the head's index stands for the older history.
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
/** Longer than one index tail (64 entries): the index is two segments. */
const longHistory = 70;

describe.skipIf(skip)(`recovery requests on the kubernetes store${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  let server: ApiServer;
  /** Requests while `recording`, as `METHOD resource` with object names left out. */
  const log: string[] = [];
  let recording = false;
  const fetch: FetchFunction = async (url, init) => {
    if (recording) {
      const path = new URL(url).pathname.replace(/^\/apis\/contrast\.edgeless\.systems\/v1\/namespaces\/[^/]+\//, "");
      log.push(`${init.method ?? "GET"} ${path.replace(/\/[^/]+$/, "")}`);
    }
    return server.fetch(url, init);
  };

  beforeAll(async () => {
    if (!provisioned.ok) return;
    server = await startApiServer(provisioned.bin);
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await killApiServers();
  });

  const app = async (namespace: string) => {
    const driver = kubernetesDriver({ server: server.url, namespace, token: () => server.adminToken, fetch, coordinator: "coordinator" });
    const coordinator = await Coordinator.start({ store: createStore(driver), name: "coordinator", validators: new Map([[simulatedValidator.type, simulatedValidator]]) });
    return createApp({ coordinator });
  };

  /** Sets `generations` manifests in a fresh namespace, restarts, and returns the requests of the recovery and whether it served the same history. */
  async function recoveryRequests(namespace: string, generations: number, owners: { share: Awaited<ReturnType<typeof seedShareOwner>>; owner: Awaited<ReturnType<typeof workloadOwner>> }): Promise<string[]> {
    await server.createNamespace(namespace);
    const first = await app(namespace);
    let transition = "";
    let ref = { name: "coordinator", rootCA: "" };
    let doc: SeedShareDocument | null = null;
    for (let i = 0; i < generations; i++) {
      const [shared, own] = await Promise.all([policy("the shared policy\n"), policy(`policy of revision ${i}\n`)]);
      const manifest = manifestBytes({
        policies: [
          { hash: shared.hash, name: "shared" },
          { hash: own.hash, name: `web-${i}` },
        ],
        workloadOwners: [owners.owner.digest],
        seedShareOwners: [owners.share.publicHex],
      });
      const body = i === 0 ? firstSetBody(manifest, [shared.bytes, own.bytes]) : await updateBody(manifest, [shared.bytes, own.bytes], transition, owners.owner, ref);
      const res = await first.request("/v1/manifest", post(body));
      const json = (await res.json()) as { transition: string; rootCA: string; seedShares?: SeedShareDocument };
      expect(res.status, JSON.stringify(json)).toBe(200);
      transition = json.transition;
      if (i === 0) {
        ref = { name: "coordinator", rootCA: json.rootCA };
        doc = json.seedShares!;
      }
    }
    const before = await (await first.request("/v1/manifests")).text();
    const restarted = await app(namespace);
    const body = await recoverBody(doc!, owners.share.keys.privateKey);
    log.length = 0;
    recording = true;
    const rec = await restarted.request("/v1/recover", post(body));
    recording = false;
    expect(rec.status).toBe(200);
    expect(await (await restarted.request("/v1/manifests")).text()).toBe(before);
    return [...log];
  }

  it(`makes the same requests at history 1 and ${longHistory} but for one per index segment`, async () => {
    const owners = { share: await seedShareOwner(), owner: await workloadOwner() };
    const one = await recoveryRequests("history-one", 1, owners);
    const many = await recoveryRequests("history-many", longHistory, owners);
    process.stdout.write(`\nkubernetes recovery requests: history 1: ${one.length}; history ${longHistory}: ${many.length} (${many.join(", ")})\n`);
    const segment = "GET historyindexes";
    // no manifest, transition or policy beyond the newest one's: only the index segments add requests
    expect(many.filter((r) => r !== segment).sort()).toEqual(one.filter((r) => r !== segment).sort());
    expect(one.filter((r) => r === segment)).toHaveLength(1);
    const segments = many.filter((r) => r === segment).length;
    expect(segments).toBeGreaterThan(1);
    expect(segments).toBeLessThanOrEqual(Math.ceil(longHistory / 2048) + 1);
    expect(one).toHaveLength(11);
    expect(one.every((r) => r.startsWith("GET "))).toBe(true);
  }, 120_000);
});
