// End to end on the Kubernetes store: the built Coordinator runs with a ServiceAccount token bound to deploy/'s Role against a real kube-apiserver; set, SIGKILL, recover, RBAC, and two Coordinators racing.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { expectCrossVerified } from "../certificates.js";
import type { IssuedCertificate } from "../certificates.js";
import { call, firstSetBody, manifestBytes, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { applyDeploy, killApiServers, provision, startApiServer, type ApiServer } from "./apiserver.js";

const provisioned = await provision();
const skip = !provisioned.ok;

type Json = Record<string, unknown>;


const errorOf = (body: Json) => body.error as { code?: string; message?: string } | undefined;


describe.skipIf(skip)(`recovery end to end on the kubernetes store${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  let server: ApiServer;
  let storeArg: (namespace: string) => string;
  const namespace = "contrast-e2e";
  const raceNamespace = "contrast-race";

  let shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
  let owner: Awaited<ReturnType<typeof workloadOwner>>;
  let polA: Awaited<ReturnType<typeof policy>>;
  let polB: Awaited<ReturnType<typeof policy>>;
  let manifest1: Uint8Array;
  let manifest2: Uint8Array;
  let manifest3: Uint8Array;

  beforeAll(async () => {
    if (!provisioned.ok) return;
    ensureBundle();
    server = await startApiServer(provisioned.bin);
    const tokens: Record<string, string> = {};
    for (const ns of [namespace, raceNamespace]) {
      await server.createNamespace(ns);
      await applyDeploy(server, ns);
      tokens[ns] = (await server.serviceAccountToken(ns, "coordinator")).file;
    }
    storeArg = (ns) => `kubernetes:server=${server.url},namespace=${ns},token-file=${tokens[ns]},ca-file=${server.caFile}`;
    [shareOwner, owner, polA, polB] = await Promise.all([
      seedShareOwner(),
      workloadOwner(),
      policy("policy A: the frontend\n"),
      policy("policy B: the backend\n"),
    ]);
    const m = (names: string[]) =>
      manifestBytes({
        policies: names.map((name, i) => ({ hash: [polA, polB][i]!.hash, name })),
        workloadOwners: [owner.digest],
        seedShareOwners: [shareOwner.publicHex],
      });
    manifest1 = m(["frontend", "backend"]);
    manifest2 = m(["frontend-v2", "backend"]);
    manifest3 = m(["frontend", "backend-v3"]);
  }, 180_000);

  afterAll(async () => {
    await killAll();
    await server?.stop();
    await killApiServers();
    if (server !== undefined) rmSync(server.dir, { recursive: true, force: true });
  });

  describe("one Coordinator with the Role from deploy/", () => {
    let proc: CoordinatorProcess;
    let seedShares: SeedShareDocument;
    let firstTransition: string;
    let firstRef: CoordinatorRef;
    let historyBefore: string;
    let certBefore: Json;
    const base = () => proc.url;

    it("starts uninitialized with the ServiceAccount token and names the store in its log", async () => {
      proc = await startCoordinator({ store: storeArg(namespace) });
      expect((await call(base(), "GET", "/v1/status")).body.state).toBe("uninitialized");
      const listening = proc.stdout.map((l) => JSON.parse(l) as Json).find((l) => l.msg === "listening")!;
      expect(listening.store).toBe(`kubernetes:${server.url}/namespaces/${namespace}`);
    });

    it("sets the first manifest and issues a mesh certificate", async () => {
      const set = await call(base(), "POST", "/v1/manifest", firstSetBody(manifest1, [polA.bytes, polB.bytes]));
      expect(set.status, set.text).toBe(200);
      seedShares = set.body.seedShares as SeedShareDocument;
      firstTransition = set.body.transition as string;
      firstRef = { name: "coordinator", rootCA: set.body.rootCA as string };
      const key = await workloadKey();
      const cert = await call(base(), "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: polA.hash } });
      expect(cert.status, cert.text).toBe(200);
      certBefore = cert.body;
      const history = await call(base(), "GET", "/v1/manifests");
      expect(history.status).toBe(200);
      historyBefore = history.text;
    });

    it("keeps the state in custom resources: labelled, no ownerReferences, the head named after the Coordinator", async () => {
      const heads = await server.api("GET", `/apis/contrast.edgeless.systems/v1/namespaces/${namespace}/coordinatorheads`);
      const items = heads.body.items as { metadata: { name: string; labels: Record<string, string>; ownerReferences?: unknown }; spec: Json }[];
      expect(items.map((i) => i.metadata.name)).toEqual(["coordinator"]);
      expect(items[0]!.metadata.labels["contrast.edgeless.systems/coordinator"]).toBe("coordinator");
      expect(items[0]!.metadata.labels["app.kubernetes.io/managed-by"]).toBe("contrast-coordinator");
      expect(items[0]!.metadata.ownerReferences).toBeUndefined();
      expect(items[0]!.spec.generation).toBe(1);
      expect(items[0]!.spec.threshold).toBe(seedShares.threshold);
      for (const [plural, count] of [
        ["policies", 2],
        ["manifests", 1],
        ["transitions", 1],
        ["sealedkeys", 1],
        ["seedsharedocuments", 1],
      ] as const) {
        const list = await server.api("GET", `/apis/contrast.edgeless.systems/v1/namespaces/${namespace}/${plural}`);
        expect((list.body.items as unknown[]).length, plural).toBe(count);
      }
      const table = await server.kubectl(["get", "coordinatorheads", "-n", namespace]);
      expect(table).toMatch(/^NAME\s+GENERATION\s+THRESHOLD\s+SHARES\s+AGE/);
    });

    it("after SIGKILL and a restart it requires recovery, then recovers byte-identical history", async () => {
      const exit = await proc.stop("SIGKILL");
      expect(exit.signal).toBe("SIGKILL");
      proc = await startCoordinator({ store: storeArg(namespace) });
      expect((await call(base(), "GET", "/v1/status")).body.state).toBe("recovery-required");
      const blocked = await call(base(), "GET", "/v1/manifests");
      expect(blocked.status).toBe(409);
      expect(errorOf(blocked.body)?.code).toBe("RECOVERY_REQUIRED");

      const rec = await call(base(), "POST", "/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
      expect(rec.status, rec.text).toBe(200);
      expect(rec.body.state).toBe("ready");
      const history = await call(base(), "GET", "/v1/manifests");
      expect(history.status).toBe(200);
      expect(history.text).toBe(historyBefore);
    });

    it("certificates from before and after the restart cross-verify", async () => {
      const key = await workloadKey();
      const cert = await call(base(), "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: polA.hash } });
      expect(cert.status, cert.text).toBe(200);
      expect(cert.body.rootCA).toBe(certBefore.rootCA);
      expect(cert.body.meshCA).toBe(certBefore.meshCA);
      const dir = mkdtempSync(join(tmpdir(), "coordinator-k8s-pem-"));
      try {
        await expectCrossVerified(certBefore as unknown as IssuedCertificate, cert.body as unknown as IssuedCertificate, dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("without 'update' on coordinatorheads an update fails with a 403 message naming verb and resource; with it back, it succeeds", async () => {
      const rolePath = `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles/coordinator`;
      const role = (await server.api("GET", rolePath)).body as { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
      const original = structuredClone(role);
      // Split the rule: heads lose "update", everything else keeps it.
      role.rules = role.rules.flatMap((r) =>
        r.resources.includes("coordinatorheads")
          ? [
              { ...r, resources: r.resources.filter((x) => x !== "coordinatorheads") },
              { ...r, resources: ["coordinatorheads"], verbs: r.verbs.filter((v) => v !== "update") },
            ]
          : [r],
      );
      expect((await server.api("PUT", rolePath, role)).status).toBe(200);
      try {
        const body = await updateBody(manifest2, [polA.bytes, polB.bytes], firstTransition, owner, firstRef);
        const denied = await call(base(), "POST", "/v1/manifest", body);
        expect(denied.status, denied.text).toBe(503);
        expect(errorOf(denied.body)?.code).toBe("STORE_UNAVAILABLE");
        expect(errorOf(denied.body)?.message).toMatch(/may not "update" coordinatorheads\.contrast\.edgeless\.systems in namespace "contrast-e2e"/);
        expect((await call(base(), "GET", "/v1/status")).body.generation).toBe(1);
      } finally {
        const now = (await server.api("GET", rolePath)).body as { metadata: Json };
        expect((await server.api("PUT", rolePath, { ...original, metadata: now.metadata })).status).toBe(200);
      }
      const body = await updateBody(manifest2, [polA.bytes, polB.bytes], firstTransition, owner, firstRef);
      const ok = await call(base(), "POST", "/v1/manifest", body);
      expect(ok.status, ok.text).toBe(200);
      expect(ok.body.generation).toBe(2);
      await proc.stop("SIGTERM");
    });
  });

  describe("two Coordinators with the same name on one namespace", () => {
    it("race an update: exactly one wins, the loser answers STALE and follows the winner's head; no fork", async () => {
      const a = await startCoordinator({ store: storeArg(raceNamespace) });
      const set = await call(a.url, "POST", "/v1/manifest", firstSetBody(manifest1, [polA.bytes, polB.bytes]));
      expect(set.status, set.text).toBe(200);
      const seedShares = set.body.seedShares as SeedShareDocument;
      const first = set.body.transition as string;
      const ref = { name: "coordinator", rootCA: set.body.rootCA as string };

      const b = await startCoordinator({ store: storeArg(raceNamespace) });
      expect((await call(b.url, "GET", "/v1/status")).body.state).toBe("recovery-required");
      const rec = await call(b.url, "POST", "/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
      expect(rec.status, rec.text).toBe(200);

      const [ua, ub] = await Promise.all([
        updateBody(manifest2, [polA.bytes, polB.bytes], first, owner, ref).then((body) => call(a.url, "POST", "/v1/manifest", body)),
        updateBody(manifest3, [polA.bytes, polB.bytes], first, owner, ref).then((body) => call(b.url, "POST", "/v1/manifest", body)),
      ]);
      const results = [
        { proc: a, res: ua },
        { proc: b, res: ub },
      ];
      const winners = results.filter((r) => r.res.status === 200);
      const losers = results.filter((r) => r.res.status !== 200);
      expect(winners, `${ua.text} / ${ub.text}`).toHaveLength(1);
      expect(losers[0]!.res.status).toBe(409);
      expect(errorOf(losers[0]!.res.body)?.code).toBe("STALE");
      const winner = winners[0]!;
      const loser = losers[0]!;
      expect((await call(loser.proc.url, "GET", "/v1/status")).body).toMatchObject({ state: "ready", generation: 2 });

      // The store holds the winner's history, once.
      const history = await call(winner.proc.url, "GET", "/v1/manifests");
      const view = history.body as { generation: number; transitions: string[] };
      expect(view.generation).toBe(2);
      expect(view.transitions).toEqual([first, winner.res.body.transition]);
      const heads = await server.api("GET", `/apis/contrast.edgeless.systems/v1/namespaces/${raceNamespace}/coordinatorheads`);
      expect((heads.body.items as unknown[]).length).toBe(1);

      // The loser followed the winner's head: the same bytes as the winner serves, without a recovery.
      expect((await call(loser.proc.url, "GET", "/v1/manifests")).text).toBe(history.text);
      await Promise.all([a.stop("SIGTERM"), b.stop("SIGTERM")]);
    });
  });
});
