// The start-up probe of a Kubernetes store: dry-run creates only (nothing persisted, nothing to delete), and a namespace the Coordinator cannot write stops the start with exit 2.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { probeAtStart, probeKubernetes } from "../../adapters/node/probe.js";
import { dedicatedKinds, group, kubernetesDriver, type KubernetesDriver } from "../../src/storage/kubernetes.js";
import { StoreError } from "../../src/storage/store.js";
import { ensureBundle, killAll, runBundle, startCoordinator } from "../e2e/process.js";
import { applyDeploy, killApiServers, provision, startApiServer, type ApiServer } from "../kubernetes/apiserver.js";

interface Seen {
  method: string;
  url: URL;
  body: { metadata?: { name?: string; labels?: Record<string, string> } } | null;
}

/** A driver whose fetch records every request and answers with `answer(request)`. */
function fakeDriver(mode: "crd" | "configmap", answer: (seen: Seen) => { status: number; body?: unknown } | null): { driver: KubernetesDriver; seen: Seen[] } {
  const seen: Seen[] = [];
  const driver = kubernetesDriver({
    server: "https://api.invalid:6443",
    namespace: "contrast",
    token: () => "token",
    coordinator: "coordinator",
    mode,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 1 },
    fetch: (url, init) => {
      const s: Seen = { method: init.method ?? "GET", url: new URL(url), body: typeof init.body === "string" ? (JSON.parse(init.body) as Seen["body"]) : null };
      seen.push(s);
      const a = answer(s);
      // null: an API server that never answers.
      if (a === null) return new Promise<Response>(() => undefined);
      return Promise.resolve(new Response(a.body === undefined ? "{}" : JSON.stringify(a.body), { status: a.status, headers: { "content-type": "application/json" } }));
    },
  });
  return { driver, seen };
}

describe("probeKubernetes (recorded requests)", () => {
  it("sends one dry-run create per custom resource the Coordinator writes, and nothing else", async () => {
    const { driver, seen } = fakeDriver("crd", () => ({ status: 201 }));
    await probeKubernetes(driver, "coordinator");
    expect(seen.map((s) => s.method)).toEqual(Object.keys(dedicatedKinds).map(() => "POST"));
    expect(seen.map((s) => s.url.pathname).sort()).toEqual(
      Object.values(dedicatedKinds)
        .map((k) => `/apis/${group}/v1/namespaces/contrast/${k.plural}`)
        .sort(),
    );
    for (const s of seen) {
      expect(s.url.searchParams.get("dryRun")).toBe("All");
      // Never a Coordinator name (a DNS label) nor a SHA-256 hex: it cannot collide with real data.
      expect(s.body?.metadata?.name).toMatch(/^probe\.coordinator\.[0-9a-f]{32}$/);
      expect(s.body?.metadata?.labels?.[`${group}/kind`]).toBe("probes");
    }
  });

  it("in configmap mode, dry-run creates one ConfigMap", async () => {
    const { driver, seen } = fakeDriver("configmap", () => ({ status: 201 }));
    await probeKubernetes(driver, "coordinator");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe("POST");
    expect(seen[0]!.url.pathname).toBe("/api/v1/namespaces/contrast/configmaps");
    expect(seen[0]!.url.searchParams.get("dryRun")).toBe("All");
    expect(seen[0]!.body?.metadata?.name).toMatch(/^contrast\.probes\.probe\.coordinator\.[0-9a-f]{32}$/);
  });

  it("fails on 403 (RBAC) and on 404 (no CRD or namespace); accepts 409 AlreadyExists (create was allowed)", async () => {
    const forbidden = fakeDriver("crd", () => ({ status: 403, body: { kind: "Status", reason: "Forbidden", code: 403 } }));
    await expect(probeKubernetes(forbidden.driver, "coordinator")).rejects.toMatchObject({ code: "UNAVAILABLE", apiCode: "K8S_FORBIDDEN" });
    expect(forbidden.seen).toHaveLength(1);

    const missing = fakeDriver("crd", () => ({ status: 404, body: { kind: "Status", reason: "NotFound", code: 404 } }));
    const err = await probeKubernetes(missing.driver, "coordinator").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe("UNAVAILABLE");
    expect((err as StoreError).message).toContain("deploy/crds.yaml");

    const exists = fakeDriver("crd", () => ({ status: 409, body: { kind: "Status", reason: "AlreadyExists", code: 409 } }));
    await expect(probeKubernetes(exists.driver, "coordinator")).resolves.toBeUndefined();
  });

  it("gives up on an API server that never answers", async () => {
    const { driver } = fakeDriver("crd", () => null);
    await expect(probeAtStart({ kubernetes: driver }, "coordinator", 200)).rejects.toMatchObject({ name: "StoreError", code: "UNAVAILABLE" });
  });
});

const provisioned = await provision();
const skip = !provisioned.ok;

describe.skipIf(skip)(`the Coordinator's start-up probe against a real kube-apiserver${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  let server: ApiServer;
  let work: string;
  const storeArg = (namespace: string, tokenFile: string) => `kubernetes:server=${server.url},namespace=${namespace},token-file=${tokenFile},ca-file=${server.caFile}`;

  /** Every object of the Coordinator's resources in `namespace`, as the admin sees them. */
  async function objectsIn(namespace: string): Promise<string[]> {
    const names: string[] = [];
    for (const k of Object.values(dedicatedKinds)) {
      const res = await server.api("GET", `/apis/${group}/v1/namespaces/${namespace}/${k.plural}`);
      expect(res.status).toBe(200);
      for (const item of (res.body.items ?? []) as { metadata: { name: string } }[]) names.push(`${k.plural}/${item.metadata.name}`);
    }
    return names;
  }

  beforeAll(async () => {
    if (!provisioned.ok) return;
    ensureBundle();
    work = mkdtempSync(join(tmpdir(), "contrast-k8s-probe-"));
    server = await startApiServer(provisioned.bin);
  }, 180_000);
  afterEach(() => killAll());
  afterAll(async () => {
    await killAll();
    await server?.stop();
    await killApiServers();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it("with deploy/'s Role (no delete, no list) the Coordinator starts, and the probe leaves no object behind", async () => {
    await server.createNamespace("probe-ok");
    await applyDeploy(server, "probe-ok");
    const token = await server.serviceAccountToken("probe-ok", "coordinator");
    const proc = await startCoordinator({ store: storeArg("probe-ok", token.file), cwd: work });
    expect(proc.stdout.some((l) => l.includes('"msg":"listening"'))).toBe(true);
    expect(await objectsIn("probe-ok")).toEqual([]);
    expect(await proc.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("in a namespace the ServiceAccount may only read, the start fails with exit 2 and one line naming the missing verb, and nothing is created", async () => {
    await server.createNamespace("probe-readonly");
    await applyDeploy(server, "probe-readonly");
    const rolePath = "/apis/rbac.authorization.k8s.io/v1/namespaces/probe-readonly/roles/coordinator";
    const role = (await server.api("GET", rolePath)).body as { rules: { verbs: string[] }[] };
    role.rules = role.rules.map((r) => ({ ...r, verbs: ["get"] }));
    expect((await server.api("PUT", rolePath, role)).status).toBe(200);
    const token = await server.serviceAccountToken("probe-readonly", "coordinator");

    const result = await runBundle(["--port", "0", "--host", "127.0.0.1", "--store", storeArg("probe-readonly", token.file)], { cwd: work, timeoutMs: 60_000 });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^contrast-coordinator: error: the store kubernetes:\S+ cannot be used: forbidden: the ServiceAccount may not "create" [^\n]+\n$/);
    expect(result.stdout).not.toContain("listening");
    expect(await objectsIn("probe-readonly")).toEqual([]);
  });

  it("in configmap mode the dry-run ConfigMap passes validation, and no ConfigMap is left behind", async () => {
    await server.createNamespace("probe-configmap");
    const adminToken = join(work, "admin-token-cm");
    writeFileSync(adminToken, server.adminToken);
    const proc = await startCoordinator({ store: `${storeArg("probe-configmap", adminToken)},mode=configmap`, cwd: work });
    const res = await server.api("GET", "/api/v1/namespaces/probe-configmap/configmaps?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcontrast-coordinator");
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([]);
    expect(await proc.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("a namespace that does not exist fails the start with exit 2 and one line", async () => {
    const adminToken = join(work, "admin-token");
    writeFileSync(adminToken, server.adminToken);
    const result = await runBundle(["--port", "0", "--host", "127.0.0.1", "--store", storeArg("probe-missing", adminToken)], { cwd: work, timeoutMs: 60_000 });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^contrast-coordinator: error: the store kubernetes:\S+ cannot be used: kubernetes: cannot create \S+ in namespace "probe-missing" [^\n]+\n$/);
  });
});
