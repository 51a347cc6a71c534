// Test harness: provisions (builds or takes from the cache) a real kube-apiserver and etcd, runs them on loopback, and applies deploy/'s CRDs.
import { execFile, execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { caFetch } from "../../adapters/node/kubernetes.js";
import type { FetchFunction } from "../../src/storage/kubernetes.js";

const execFileP = promisify(execFile);

/** The project root. */
export const projectRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
/** The provisioning script. */
export const provisionScript = join(projectRoot, "scripts", "kube-apiserver.sh");

/** The binaries, or why there are none. */
export type Provisioned = { ok: true; bin: string } | { ok: false; reason: string };

function which(tool: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Builds kube-apiserver and unpacks etcd if they are not cached yet (minutes, once per machine),
 * then answers where they are. Under `CI=true` a failure throws, so the test file fails instead
 * of skipping.
 */
export async function provision(): Promise<Provisioned> {
  let result: Provisioned;
  const missing = ["kubectl", "openssl"].filter((t) => !which(t));
  if (process.env.CONTRAST_SKIP_KUBERNETES === "1") {
    result = { ok: false, reason: "CONTRAST_SKIP_KUBERNETES=1" };
  } else if (missing.length > 0) {
    result = { ok: false, reason: `${missing.join(" and ")} not installed` };
  } else {
    try {
      const { stdout } = await execFileP("bash", [provisionScript, "provision"], {
        timeout: 40 * 60_000,
        maxBuffer: 16 << 20,
      });
      result = { ok: true, bin: stdout.trim().split("\n").pop()! };
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      const tail = (e.stderr ?? e.message).trim().split("\n").slice(-3).join(" | ");
      result = { ok: false, reason: `cannot provision kube-apiserver and etcd (${tail})` };
    }
  }
  if (!result.ok && process.env.CI === "true") {
    throw new Error(`CI=true: the Kubernetes tests cannot be skipped: ${result.reason}`);
  }
  if (!result.ok) process.stderr.write(`kubernetes tests skipped: ${result.reason}\n`);
  return result;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null || child.signalCode !== null) return done();
    child.once("exit", () => done());
  });
}

/** A running etcd + kube-apiserver pair. */
export interface ApiServer {
  /** `https://127.0.0.1:PORT` */
  url: string;
  /** The serving certificate (self-signed: it is its own CA), as a file and as PEM. */
  caFile: string;
  caPem: string;
  /** A token of user `admin` in group `system:masters`. */
  adminToken: string;
  /** A fetch that trusts the serving certificate. */
  fetch: FetchFunction;
  /** A scratch directory removed on stop. */
  dir: string;
  /** Calls the API as admin; answers status and parsed JSON. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Runs kubectl against this server as admin, with `input` on stdin. */
  kubectl(args: string[], input?: string): Promise<string>;
  /** Creates a namespace. */
  createNamespace(name: string): Promise<void>;
  /** A ServiceAccount token from the TokenRequest API, written to a file whose path is returned with it. */
  serviceAccountToken(namespace: string, serviceAccount: string): Promise<{ token: string; file: string }>;
  stop(): Promise<void>;
}

/** Every child the harness started and has not stopped. */
const children = new Set<ChildProcess>();

function startChild(bin: string, args: string[], logFile: string): ChildProcess {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let log = "";
  const keep = (chunk: Buffer) => {
    log += chunk.toString("utf8");
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  child.once("exit", () => {
    children.delete(child);
    try {
      writeFileSync(logFile, log);
    } catch {
      // the directory may be gone already
    }
  });
  (child as ChildProcess & { log: () => string }).log = () => log;
  return child;
}

function logOf(child: ChildProcess): string {
  return (child as ChildProcess & { log?: () => string }).log?.().slice(-2000) ?? "";
}

/** Polls `probe` until it answers true; rejects with `what` and the child's log after `timeoutMs` or if the child exits. */
async function waitFor(what: string, child: ChildProcess, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: the process exited (${child.exitCode ?? child.signalCode}): ${logOf(child)}`);
    try {
      if (await probe()) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${timeoutMs} ms: ${logOf(child)}`);
}

/** Starts etcd and kube-apiserver on free loopback ports, waits until ready, applies deploy/crds.yaml. */
export async function startApiServer(bin: string): Promise<ApiServer> {
  const dir = mkdtempSync(join(tmpdir(), "contrast-kube-"));
  const file = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileP("openssl", args, { cwd: dir });
  await Promise.all([
    openssl([
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
      "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", file("serving.key"), "-out", file("serving.crt"),
    ]),
    openssl(["genrsa", "-out", file("sa.key"), "2048"]),
  ]);
  await openssl(["rsa", "-in", file("sa.key"), "-pubout", "-out", file("sa.pub")]);
  const adminToken = `admin-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  writeFileSync(file("tokens.csv"), `${adminToken},admin,admin-uid,"system:masters"\n`);

  const [etcdClient, etcdPeer, securePort] = await Promise.all([freePort(), freePort(), freePort()]);
  const etcd = startChild(
    join(bin, "etcd"),
    [
      "--name", "test",
      "--data-dir", file("etcd"),
      "--listen-client-urls", `http://127.0.0.1:${etcdClient}`,
      "--advertise-client-urls", `http://127.0.0.1:${etcdClient}`,
      "--listen-peer-urls", `http://127.0.0.1:${etcdPeer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${etcdPeer}`,
      "--initial-cluster", `test=http://127.0.0.1:${etcdPeer}`,
      "--log-level", "warn",
    ],
    file("etcd.log"),
  );
  const stopAll = async () => {
    for (const child of [...children]) child.kill("SIGKILL");
    await Promise.all([...children].map(waitExit));
  };
  let apiserver: ChildProcess;
  try {
    await waitFor("etcd did not become healthy", etcd, async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok, 30_000);
    apiserver = startChild(
      join(bin, "kube-apiserver"),
      [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${securePort}`,
        "--insecure-port=0",
        `--cert-dir=${file("certs")}`,
        `--tls-cert-file=${file("serving.crt")}`,
        `--tls-private-key-file=${file("serving.key")}`,
        `--token-auth-file=${file("tokens.csv")}`,
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        `--service-account-key-file=${file("sa.pub")}`,
        `--service-account-signing-key-file=${file("sa.key")}`,
        "--service-cluster-ip-range=10.96.0.0/24",
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",
        "--logtostderr=true",
        "--v=0",
      ],
      file("kube-apiserver.log"),
    );
  } catch (err) {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const url = `https://127.0.0.1:${securePort}`;
  const caPem = readFileSync(file("serving.crt"), "utf8");
  const kfetch = caFetch(caPem);
  const api: ApiServer["api"] = async (method, path, body, token = adminToken) => {
    const res = await kfetch(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { text };
    }
    return { status: res.status, body: parsed };
  };
  const kubectl: ApiServer["kubectl"] = (args, input) =>
    new Promise((resolveOut, reject) => {
      const child = execFile(
        "kubectl",
        [`--server=${url}`, `--token=${adminToken}`, `--certificate-authority=${file("serving.crt")}`, "--kubeconfig=/dev/null", ...args],
        { timeout: 60_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => (err ? reject(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`)) : resolveOut(stdout)),
      );
      if (input !== undefined) child.stdin!.end(input);
      else child.stdin!.end();
    });

  const server: ApiServer = {
    url,
    caFile: file("serving.crt"),
    caPem,
    adminToken,
    fetch: kfetch,
    dir,
    api,
    kubectl,
    async createNamespace(name) {
      const res = await api("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
      if (res.status !== 201) throw new Error(`creating namespace ${name}: ${res.status} ${JSON.stringify(res.body)}`);
    },
    async serviceAccountToken(namespace, serviceAccount) {
      const res = await api("POST", `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { expirationSeconds: 3600 },
      });
      const token = (res.body.status as { token?: string } | undefined)?.token;
      if (res.status !== 201 || token === undefined) throw new Error(`TokenRequest: ${res.status} ${JSON.stringify(res.body)}`);
      const path = file(`token-${namespace}-${serviceAccount}`);
      writeFileSync(path, token);
      return { token, file: path };
    },
    async stop() {
      await stopAll();
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await waitFor(
      "kube-apiserver did not become ready",
      apiserver,
      async () => (await api("GET", "/readyz")).status === 200,
      60_000,
    );
    await applyCrds(server);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/** Applies deploy/crds.yaml and waits until every CRD is Established. */
async function applyCrds(server: ApiServer): Promise<void> {
  const crds = join(projectRoot, "deploy", "crds.yaml");
  await server.kubectl(["apply", "--validate=false", "-f", crds]);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const res = await server.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    const items = (res.body.items ?? []) as { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
    const ours = items.filter((i) => i.metadata.name.endsWith(".contrast.edgeless.systems"));
    if (ours.length > 0 && ours.every((i) => i.status?.conditions?.some((c) => c.type === "Established" && c.status === "True"))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the CRDs did not become Established within 30 s");
}

/** Applies the rendered kustomize base (deploy/) to `namespace`, as a cluster admin would. */
export async function applyDeploy(server: ApiServer, namespace: string): Promise<void> {
  const overlay = mkdtempSync(join(server.dir, "overlay-"));
  writeFileSync(join(overlay, "kustomization.yaml"), `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ${namespace}\nresources:\n  - ${relative(overlay, join(projectRoot, "deploy"))}\n`);
  let rendered = await server.kubectl(["kustomize", "--load-restrictor=LoadRestrictionsNone", overlay]);
  // deploy/ uses policy/v1 (Kubernetes 1.21+; v1beta1 is gone since 1.25); the test server (1.20)
  // serves only policy/v1beta1, whose PodDisruptionBudget has the same minAvailable and selector.
  const policy = await server.api("GET", "/apis/policy");
  if (!((policy.body.versions ?? []) as { version: string }[]).some((v) => v.version === "v1")) {
    rendered = rendered.replace(/^apiVersion: policy\/v1\nkind: PodDisruptionBudget$/m, "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget");
  }
  await server.kubectl(["apply", "--validate=false", "-f", "-"], rendered);
}

/** Kills every process the harness started (for afterAll even when a test failed half-way). */
export async function killApiServers(): Promise<void> {
  for (const child of [...children]) child.kill("SIGKILL");
  await Promise.all([...children].map(waitExit));
}
