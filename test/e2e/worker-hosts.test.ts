// DNS rebinding on the Worker: dist/worker.mjs in workerd with the ALLOWED_HOSTS var refuses requests for other hosts with 421 HOST_NOT_ALLOWED and changes nothing.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstSetBody, manifestBytes, policy, seedShareOwner, workloadOwner } from "../helpers.js";
import { ensureWorkerBundle, startWorkers } from "../worker/workerd.js";
import type { Workerd } from "../worker/workerd.js";

// Every request of the workerd helper names host coordinator.test.
describe("the Worker's ALLOWED_HOSTS var (workerd)", () => {
  let dir: string;
  let w: Workerd;
  let body: Record<string, unknown>;

  beforeAll(async () => {
    ensureWorkerBundle();
    dir = mkdtempSync(join(tmpdir(), "contrast-worker-hosts-"));
    const [seed, workload, web] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy of web")]);
    body = firstSetBody(manifestBytes({ policies: [{ ...web, name: "web" }], workloadOwners: [workload.digest], seedShareOwners: [seed.publicHex] }), [
      web.bytes,
    ]);
    w = await startWorkers(dir, [
      { name: "elsewhere", vars: { ALLOWED_HOSTS: "coordinator.example.com" } },
      { name: "here", vars: { ALLOWED_HOSTS: "Coordinator.Test,localhost:8787" } },
    ]);
  }, 120_000);
  afterAll(async () => {
    await w?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (payload: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(payload), headers: { "content-type": "application/json" } });

  it("refuses a first set and a status read for a host not in ALLOWED_HOSTS, and nothing changes", async () => {
    const set = await w.fetch("/v1/manifest", post(body), "elsewhere");
    expect(set.status).toBe(421);
    expect(((await set.json()) as { error: { code: string } }).error.code).toBe("HOST_NOT_ALLOWED");
    const status = await w.fetch("/v1/status", undefined, "elsewhere");
    expect(status.status).toBe(421);
    await status.body?.cancel();
    // The probes still answer; readiness shows the Coordinator is still uninitialized.
    const ready = await w.fetch("/readyz", undefined, "elsewhere");
    expect([ready.status, await ready.json()]).toEqual([503, { ready: false, state: "uninitialized" }]);
  });

  it("serves the same first set where the host is allowed", async () => {
    const set = await w.fetch("/v1/manifest", post(body), "here");
    expect(set.status).toBe(200);
    await set.body?.cancel();
    const status = await w.fetch("/v1/status", undefined, "here");
    expect(await status.json()).toMatchObject({ state: "ready", generation: 1 });
  });
});
