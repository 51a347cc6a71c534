// Peer discovery on Kubernetes against a real kube-apiserver: deploy/'s Role grants exactly `list` on the namespace's EndpointSlices, and kubernetesPeers lists the addresses of one Service's slices, follows changes and survives a failing server.
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../adapters/node/config.js";
import type { KubernetesSettings } from "../../adapters/node/kubernetes.js";
import { kubernetesPeers, maxPeerAddresses } from "../../adapters/node/peers-kubernetes.js";
import { CoordinatorError } from "../../src/errors.js";
import { until } from "../e2e/process.js";
import { applyDeploy, killApiServers, provision, startApiServer, type ApiServer } from "./apiserver.js";

const provisioned = await provision();
const skip = !provisioned.ok;

/** What the test proxy in front of the API server does with a request. */
type ProxyMode = "pass" | "v1-only" | "500" | "429" | "hang" | "close" | "garbage" | { body: unknown };

/** An https proxy with the API server's own certificate: passes requests on, or fails them as `mode` says. */
interface Proxy {
  url: string;
  mode: ProxyMode;
  /** Request paths seen (without the query). */
  paths: string[];
  /** Requests held open by `hang` whose connection is still open. */
  hanging(): number;
  /** Ends every held request with a 503. */
  release(): void;
  close(): Promise<void>;
}

async function startProxy(server: ApiServer): Promise<Proxy> {
  const held = new Set<ServerResponse>();
  const proxy: Proxy = {
    url: "",
    mode: "pass",
    paths: [],
    hanging: () => [...held].filter((res) => !res.socket?.destroyed).length,
    release() {
      for (const res of held) res.writeHead(503).end();
      held.clear();
    },
    close: () =>
      new Promise((resolve) => {
        proxy.release();
        https.closeAllConnections();
        https.close(() => resolve());
      }),
  };
  const forward = async (path: string, req: IncomingMessage, res: ServerResponse) => {
    const answer = await server.fetch(server.url + path, { method: req.method ?? "GET", headers: { authorization: req.headers.authorization ?? "", accept: "application/json" } });
    res.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text());
  };
  const https: Server = createServer(
    { key: readFileSync(join(server.dir, "serving.key")), cert: readFileSync(join(server.dir, "serving.crt")) },
    (req, res) => {
      const url = req.url ?? "/";
      proxy.paths.push(url.split("?")[0]!);
      const mode = proxy.mode;
      const v1 = "/apis/discovery.k8s.io/v1/";
      if (mode === "pass") void forward(url, req, res);
      else if (mode === "v1-only") {
        // A server that serves only discovery.k8s.io/v1 (Kubernetes 1.25+), emulated over the 1.20 server's v1beta1.
        if (url.startsWith(v1)) void forward(url.replace(v1, "/apis/discovery.k8s.io/v1beta1/"), req, res);
        else res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", code: 404, reason: "NotFound" }));
      } else if (mode === "500" || mode === "429") {
        res.writeHead(Number(mode), { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", code: Number(mode), message: "injected" }));
      } else if (mode === "hang") held.add(res);
      else if (mode === "close") req.socket.destroy();
      else if (mode === "garbage") res.writeHead(200, { "content-type": "application/json" }).end("<html>not a list</html>");
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(mode.body));
    },
  );
  await new Promise<void>((resolve) => https.listen(0, "127.0.0.1", resolve));
  const address = https.address();
  proxy.url = `https://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
  return proxy;
}

describe("kubernetesPeers refuses a bad configuration before any request", () => {
  const settings: KubernetesSettings = { server: "https://127.0.0.1:1", namespace: "contrast", tokenFile: null, caFile: null, mode: "crd" };

  it("a bad service name, port or scheme, and a token over plain http, are ConfigErrors", () => {
    for (const service of ["", "Coordinator-Peers", "coordinator_peers", "1peers", "a".repeat(64), "peers,port=1"]) {
      expect(() => kubernetesPeers(settings, { service }), service).toThrow(ConfigError);
    }
    for (const port of [0, 65536, 1.5, Number.NaN]) expect(() => kubernetesPeers(settings, { service: "p", port }), String(port)).toThrow(ConfigError);
    expect(() => kubernetesPeers(settings, { service: "p", scheme: "ftp" as "http" })).toThrow(ConfigError);
    expect(() => kubernetesPeers({ ...settings, server: "http://127.0.0.1:1", tokenFile: "/dev/null" }, { service: "p" })).toThrow(ConfigError);
    expect(kubernetesPeers({ ...settings, server: "http://127.0.0.1:1", tokenFile: "/dev/null", insecureHttp: true }, { service: "p" }).description).toContain("p");
  });
});

describe.skipIf(skip)(`peer discovery against a real kube-apiserver${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  let server: ApiServer;
  let proxy: Proxy;
  const ns = "contrast-peers";
  const other = "contrast-peers-other";
  let token: { token: string; file: string };
  /** discovery.k8s.io's version on this server (v1beta1 on the 1.20 test server). */
  let discovery: string;
  let settings: KubernetesSettings;

  const slicePath = (namespace: string, name?: string) => `/apis/discovery.k8s.io/${discovery}/namespaces/${namespace}/endpointslices${name === undefined ? "" : `/${name}`}`;
  /** An EndpointSlice as the controller would write it: labelled with its Service, one port. */
  const slice = (name: string, service: string, addressType: "IPv4" | "IPv6" | "FQDN", endpoints: { addresses: string[]; ready: boolean }[]) => ({
    apiVersion: `discovery.k8s.io/${discovery}`,
    kind: "EndpointSlice",
    metadata: { name, labels: { "kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" } },
    addressType,
    endpoints: endpoints.map((e) => ({ addresses: e.addresses, conditions: { ready: e.ready } })),
    ports: [{ name: "http", port: 1313, protocol: "TCP" }],
  });
  const create = async (namespace: string, body: unknown) => {
    const res = await server.api("POST", slicePath(namespace), body);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  };

  beforeAll(async () => {
    if (!provisioned.ok) return;
    server = await startApiServer(provisioned.bin);
    await server.createNamespace(ns);
    await server.createNamespace(other);
    await applyDeploy(server, ns);
    token = await server.serviceAccountToken(ns, "coordinator");
    const group = await server.api("GET", "/apis/discovery.k8s.io");
    discovery = (group.body.preferredVersion as { version: string }).version;
    settings = { server: server.url, namespace: ns, tokenFile: token.file, caFile: server.caFile, mode: "crd" };
    proxy = await startProxy(server);
  }, 180_000);

  afterAll(async () => {
    await proxy?.close();
    await server?.stop();
    await killApiServers();
  });

  it("the API server accepts deploy/: 3 replicas started in parallel, the headless Service, the PodDisruptionBudget", async () => {
    const sts = await server.api("GET", `/apis/apps/v1/namespaces/${ns}/statefulsets/coordinator`);
    const spec = sts.body.spec as { replicas: number; podManagementPolicy: string; serviceName: string };
    expect([spec.replicas, spec.podManagementPolicy, spec.serviceName]).toEqual([3, "Parallel", "coordinator-peers"]);
    const svc = await server.api("GET", `/api/v1/namespaces/${ns}/services/coordinator-peers`);
    expect(svc.body.spec).toMatchObject({ clusterIP: "None", publishNotReadyAddresses: true, selector: { "app.kubernetes.io/name": "coordinator" } });
    const policy = await server.api("GET", "/apis/policy");
    const pdbVersion = ((policy.body.versions ?? []) as { version: string }[]).some((v) => v.version === "v1") ? "v1" : "v1beta1";
    const pdb = await server.api("GET", `/apis/policy/${pdbVersion}/namespaces/${ns}/poddisruptionbudgets/coordinator`);
    expect(pdb.body.spec).toMatchObject({ minAvailable: 2, selector: { matchLabels: { "app.kubernetes.io/name": "coordinator" } } });
  });

  it("the ServiceAccount may list its namespace's EndpointSlices and nothing else it did not have before", async () => {
    await create(ns, slice("probe-slice", "coordinator-peers", "IPv4", [{ addresses: ["10.0.9.9"], ready: true }]));
    await create(other, slice("probe-slice", "coordinator-peers", "IPv4", [{ addresses: ["10.0.9.9"], ready: true }]));
    const as = (method: string, path: string, body?: unknown) => server.api(method, path, body, token.token).then((r) => r.status);
    const selector = "?labelSelector=kubernetes.io%2Fservice-name%3Dcoordinator-peers";
    expect(await as("GET", slicePath(ns) + selector)).toBe(200);

    // Everything else is refused: no get by name, no watch, no writes, no other namespace, no other resource.
    const refused: [string, string, unknown?][] = [
      ["GET", slicePath(ns, "probe-slice")],
      ["GET", `${slicePath(ns)}?watch=true&timeoutSeconds=1`],
      ["POST", slicePath(ns), slice("mine", "coordinator-peers", "IPv4", [{ addresses: ["10.6.6.6"], ready: true }])],
      ["PUT", slicePath(ns, "probe-slice"), slice("probe-slice", "coordinator-peers", "IPv4", [{ addresses: ["10.6.6.6"], ready: true }])],
      ["PATCH", slicePath(ns, "probe-slice"), {}],
      ["DELETE", slicePath(ns, "probe-slice")],
      ["DELETE", slicePath(ns)],
      ["GET", slicePath(other) + selector],
      ["GET", `/apis/discovery.k8s.io/${discovery}/endpointslices`],
      ["GET", `/api/v1/namespaces/${ns}/pods`],
      ["GET", `/api/v1/namespaces/${ns}/secrets`],
      ["GET", `/api/v1/namespaces/${ns}/configmaps`],
      ["GET", `/api/v1/namespaces/${ns}/endpoints`],
      ["GET", `/api/v1/namespaces/${ns}/services`],
      ["GET", `/apis/contrast.edgeless.systems/v1/namespaces/${ns}/coordinatorheads`],
    ];
    for (const [method, path, body] of refused) expect(await as(method, path, body), `${method} ${path}`).toBe(403);
    const kept = await server.api("GET", slicePath(ns, "probe-slice"));
    expect((kept.body.endpoints as { addresses: string[] }[])[0]!.addresses).toEqual(["10.0.9.9"]);

    // The complete list of what the token may do, as the API server's authorizer computes it.
    const rules = async (namespace: string) => {
      const res = await server.api(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        { apiVersion: "authorization.k8s.io/v1", kind: "SelfSubjectRulesReview", spec: { namespace } },
        token.token,
      );
      const status = res.body.status as { resourceRules: { verbs: string[]; apiGroups: string[]; resources: string[] }[]; incomplete: boolean };
      expect(status.incomplete).toBe(false);
      return status.resourceRules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)))).sort();
    };
    const everyone = ["authorization.k8s.io/selfsubjectaccessreviews:create", "authorization.k8s.io/selfsubjectrulesreviews:create"];
    const store = ["policies", "manifests", "transitions", "certificates", "sealedkeys", "seedsharedocuments", "historyindexes", "coordinatorheads"].flatMap((r) =>
      ["get", "create", "update"].map((v) => `contrast.edgeless.systems/${r}:${v}`),
    );
    expect(await rules(ns)).toEqual([...everyone, ...store, "discovery.k8s.io/endpointslices:list"].sort());
    expect(await rules(other)).toEqual(everyone);
  });

  it("lists exactly the addresses of the Service's slices, ready or not, with port and scheme, and ignores other slices", async () => {
    await create(ns, slice("peers-a", "coordinator-peers", "IPv4", [
      { addresses: ["10.0.0.7"], ready: true },
      { addresses: ["10.0.0.12"], ready: false },
    ]));
    await create(ns, slice("peers-b", "coordinator-peers", "IPv6", [{ addresses: ["fd00:0:0::a"], ready: true }]));
    await create(ns, slice("clients-a", "coordinator", "IPv4", [{ addresses: ["10.0.0.99"], ready: true }]));
    await create(other, slice("peers-x", "coordinator-peers", "IPv4", [{ addresses: ["10.1.0.1"], ready: true }]));
    const expected = ["10.0.0.12", "10.0.0.7", "10.0.9.9", "[fd00::a]"];

    const peers = kubernetesPeers(settings, { service: "coordinator-peers" });
    expect(await peers.list()).toEqual(expected.map((a) => `http://${a}:1313`).sort());
    const tls = kubernetesPeers(settings, { service: "coordinator-peers", port: 8443, scheme: "https" });
    expect(await tls.list()).toEqual(expected.map((a) => `https://${a}:8443`).sort());
    expect(await kubernetesPeers(settings, { service: "coordinator" }).list()).toEqual(["http://10.0.0.99:1313"]);
    expect(await kubernetesPeers(settings, { service: "nobody-here" }).list()).toEqual([]);
  });

  it("follows changes: a replaced, a removed and a new slice", async () => {
    const peers = kubernetesPeers(settings, { service: "coordinator-peers" });
    const before = await peers.list();
    expect(before).toContain("http://10.0.0.7:1313");

    const current = await server.api("GET", slicePath(ns, "peers-a"));
    const replaced = slice("peers-a", "coordinator-peers", "IPv4", [{ addresses: ["10.0.0.8"], ready: false }]);
    const put = await server.api("PUT", slicePath(ns, "peers-a"), { ...replaced, metadata: { ...replaced.metadata, resourceVersion: (current.body.metadata as { resourceVersion: string }).resourceVersion } });
    expect(put.status).toBe(200);
    expect((await server.api("DELETE", slicePath(ns, "peers-b"))).status).toBe(200);
    await create(ns, slice("peers-c", "coordinator-peers", "IPv4", [{ addresses: ["10.0.0.9", "10.0.0.10"], ready: true }]));

    expect(await peers.list()).toEqual(["http://10.0.0.10:1313", "http://10.0.0.8:1313", "http://10.0.0.9:1313", "http://10.0.9.9:1313"]);
  });

  it(`returns at most ${maxPeerAddresses} addresses, sorted`, async () => {
    const many = Array.from({ length: 70 }, (_, i) => `10.2.${Math.floor(i / 10)}.${i % 10}`);
    await create(ns, slice("crowd", "crowd", "IPv4", many.map((a) => ({ addresses: [a], ready: true }))));
    const listed = await kubernetesPeers(settings, { service: "crowd" }).list();
    expect(listed).toHaveLength(maxPeerAddresses);
    expect(listed).toEqual(many.map((a) => `http://${a}:1313`).sort().slice(0, maxPeerAddresses));
  });

  it("survives a failing API server: 500, 429, a cut connection, a hanging request, garbage all answer [] and it recovers", async () => {
    const peers = kubernetesPeers({ ...settings, server: proxy.url }, { service: "coordinator-peers", timeoutMs: 300 });
    proxy.mode = "pass";
    const good = await peers.list();
    expect(good).toContain("http://10.0.0.8:1313");
    for (const mode of ["500", "429", "close", "garbage"] as const) {
      proxy.mode = mode;
      await expect(peers.list(), mode).resolves.toEqual([]);
      proxy.mode = "pass";
      expect(await peers.list(), `after ${mode}`).toEqual(good);
    }

    // Hanging requests: each round gives up after the timeout; at most 4 are ever left open.
    proxy.mode = "hang";
    const seen = proxy.paths.length;
    for (let i = 0; i < 8; i++) await expect(peers.list()).resolves.toEqual([]);
    expect(proxy.paths.length).toBeGreaterThan(seen);
    expect(proxy.hanging()).toBeLessThanOrEqual(4);
    proxy.release();
    proxy.mode = "pass";
    expect((await until(() => peers.list(), (l) => l.length > 0)).value).toEqual(good);
  });

  it("drops addresses that do not fit their slice's address type, and slices of other Services", async () => {
    const peers = kubernetesPeers({ ...settings, server: proxy.url }, { service: "coordinator-peers" });
    const item = (service: string, addressType: string, addresses: unknown[]) => ({
      metadata: { labels: { "kubernetes.io/service-name": service } },
      addressType,
      endpoints: [{ addresses }],
    });
    proxy.mode = {
      body: {
        items: [
          item("coordinator-peers", "IPv4", ["10.0.0.1", "10.0.0.1/x", "10.0.0.256", "evil.example", "10.0.0.2:80", "fd00::1", 7, null]),
          item("coordinator-peers", "IPv6", ["fd00::2", "10.0.0.3", "[fd00::3]", "fd00::4/64", "fd00::5%eth0"]),
          item("coordinator-peers", "FQDN", ["peer-0.coordinator-peers.contrast.svc", "user@evil.example", "evil.example/path", "EVIL.example"]),
          item("coordinator-peers", "Unknown", ["10.0.0.4"]),
          item("someone-else", "IPv4", ["10.0.0.5"]),
          { metadata: {}, addressType: "IPv4", endpoints: [{ addresses: ["10.0.0.6"] }] },
          { endpoints: "not a list" },
          null,
        ],
      },
    };
    try {
      expect(await peers.list()).toEqual(["http://10.0.0.1:1313", "http://[fd00::2]:1313", "http://peer-0.coordinator-peers.contrast.svc:1313"]);
      proxy.mode = { body: { items: "nope" } };
      expect(await peers.list()).toEqual([]);
    } finally {
      proxy.mode = "pass";
    }
  });

  it("asks discovery.k8s.io/v1 first, falls back to v1beta1 where v1 is not served, and back again", async () => {
    const peers = kubernetesPeers({ ...settings, server: proxy.url }, { service: "coordinator-peers" });
    const v1 = `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`;
    const v1beta1 = `/apis/discovery.k8s.io/v1beta1/namespaces/${ns}/endpointslices`;
    proxy.mode = "pass";
    proxy.paths.length = 0;
    const good = await peers.list();
    expect(good.length).toBeGreaterThan(0);
    const served = discovery === "v1" ? [v1] : [v1, v1beta1];
    expect(proxy.paths).toEqual(served);
    proxy.paths.length = 0;
    await peers.list();
    expect(proxy.paths).toEqual(served.slice(-1));

    proxy.mode = "v1-only";
    proxy.paths.length = 0;
    expect(await peers.list()).toEqual(good);
    expect(proxy.paths).toEqual(discovery === "v1" ? [v1] : [v1beta1, v1]);
    proxy.paths.length = 0;
    expect(await peers.list()).toEqual(good);
    expect(proxy.paths).toEqual([v1]);
    proxy.mode = "pass";
  });

  it("a token without the Role is a clear CONFIG_INVALID (K8S_FORBIDDEN) once, then [] until a list succeeds", async () => {
    const sa = await server.api("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "nobody" } });
    expect(sa.status).toBe(201);
    const nobody = await server.serviceAccountToken(ns, "nobody");
    const peers = kubernetesPeers({ ...settings, tokenFile: nobody.file }, { service: "coordinator-peers" });
    const first = await peers.list().then(
      () => null,
      (err: unknown) => err,
    );
    expect(first).toBeInstanceOf(CoordinatorError);
    expect([(first as CoordinatorError).code, (first as CoordinatorError).reason]).toEqual(["CONFIG_INVALID", "K8S_FORBIDDEN"]);
    await expect(peers.list()).resolves.toEqual([]);
    await expect(peers.list()).resolves.toEqual([]);

    // Granted, it lists; revoked again, the refusal is reported again (once).
    const binding = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "nobody" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "coordinator" }, subjects: [{ kind: "ServiceAccount", name: "nobody", namespace: ns }] };
    expect((await server.api("POST", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, binding)).status).toBe(201);
    await until(() => peers.list(), (l) => l.length > 0);
    expect((await server.api("DELETE", `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings/nobody`)).status).toBe(200);
    const { value: again } = await until(
      () => peers.list().then(() => null, (err: unknown) => err),
      (err) => err !== null,
    );
    expect((again as CoordinatorError).reason).toBe("K8S_FORBIDDEN");
    await expect(peers.list()).resolves.toEqual([]);
  });
});
