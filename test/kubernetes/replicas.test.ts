// Three real Coordinator replicas on the Kubernetes store of a real kube-apiserver, finding each other through the EndpointSlices of a headless Service and recovering from each other with mutual attestation (one saved test TEE): kill -9 one, kill all three, a rolling restart, 200 certificate requests while an update lands, and a head rolled back through the API server.
import "reflect-metadata";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo, Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64, utf8 } from "../../src/encoding.js";
import { createTestTee, teeFiles, testMeasurement, testReferenceValues } from "../attestation/make-evidence.js";
import { contrast, ensureBundles } from "../cli/harness.js";
import type { CliRun } from "../cli/harness.js";
import { call, policy, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { JsonAnswer } from "../helpers.js";
import { killAll, startCoordinator, pause, until } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { expectBoundHeld, requestsAcrossUpdate, tallyLines } from "../e2e/removed-policy.js";
import { applyDeploy, killApiServers, provision, startApiServer, type ApiServer } from "./apiserver.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const provisioned = await provision();
const skip = !provisioned.ok;

/** The Coordinator's name (the CoordinatorHead is named after it). */
const name = "coordinator";
/** The headless Service whose EndpointSlices list the replicas (deploy/'s). */
const peerService = "coordinator-peers";
/** The replicas' addresses: all loopback, one port for all (discovery uses the configured port, not the slice's). */
const addresses = ["127.0.0.1", "127.0.0.2", "127.0.0.3"] as const;
type Replica = 0 | 1 | 2;
const replicas: Replica[] = [0, 1, 2];

/** The issue's bound: once one replica acknowledged an update, no certificate for a removed policy on a request sent later than this after it. */
const boundMs = 2_000;

const codeOf = (body: Json): string | undefined => (body?.error as { code?: string } | undefined)?.code;

/** Listens on `host:port` (0: any); resolves with the server, or null if that port is taken there. */
function listen(host: string, port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(null));
    server.listen(port, host, () => resolve(server));
  });
}

/** A port nobody listens on now on every one of `addresses` (checked on each by binding it). */
async function commonFreePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await listen(addresses[0], 0);
    if (first === null) continue;
    const port = (first.address() as AddressInfo).port;
    const rest = await Promise.all(addresses.slice(1).map((a) => listen(a, port)));
    const all = [first, ...rest];
    await Promise.all(all.map((s) => (s === null ? undefined : new Promise<void>((done) => s.close(() => done())))));
    if (rest.every((s) => s !== null)) return port;
  }
  throw new Error(`no port free on all of ${addresses.join(", ")}`);
}

/** The parsed log lines of a process whose message is `msg` (or starts with it, with `prefix`). */
function logLines(proc: CoordinatorProcess, msg: string, prefix = false): Json[] {
  return proc.stdout.flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as Json;
      return parsed.msg === msg || (prefix && typeof parsed.msg === "string" && parsed.msg.startsWith(msg)) ? [parsed] : [];
    } catch {
      return [];
    }
  });
}

function pem(der: Uint8Array, label: string): string {
  return `-----BEGIN ${label}-----\n${toBase64(der).match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

describe.skipIf(skip)(`three replicas on the kubernetes store recover from each other${skip ? ` (skipped: ${(provisioned as { reason: string }).reason})` : ""}`, () => {
  const namespace = "contrast-replicas";
  let server: ApiServer;
  let root: string;
  let teeDir: string;
  let ws: string;
  let store: string;
  let port: number;
  let manifestFile: string;
  let coordinatorPolicyHash: string;
  let workload: Awaited<ReturnType<typeof workloadOwner>>;
  let web: Awaited<ReturnType<typeof policy>>;
  let db: Awaited<ReturnType<typeof policy>>;
  let coordinatorPolicy: Awaited<ReturnType<typeof policy>>;
  let manifest1: Json;
  let rootCA: string;
  let firstTransition: string;
  /** The CoordinatorHead's spec at generation 1, as the API server held it (for the rollback). */
  let head1Spec: Json;
  let shareOwnerHex: string;
  const procs: (CoordinatorProcess | undefined)[] = [undefined, undefined, undefined];

  const url = (r: Replica) => `http://${addresses[r]}:${port}`;
  const headPath = () => `/apis/contrast.edgeless.systems/v1/namespaces/${namespace}/coordinatorheads/${name}`;

  /** Starts replica `r` on its address, signing with the shared test TEE, finding its peers through the Service's EndpointSlices. */
  async function start(r: Replica): Promise<CoordinatorProcess> {
    const proc = await startCoordinator({
      store,
      timeoutMs: 30_000,
      extraArgs: [
        "--host", addresses[r],
        "--port", String(port),
        "--name", name,
        "--attestation", "insecure-simulated",
        "--evidence", "simulated",
        "--simulated-tee", join(teeDir, teeFiles.secrets),
        "--simulated-measurement", testMeasurement.snp,
        "--simulated-host-data", coordinatorPolicyHash,
        "--attestation-roots", join(teeDir, teeFiles.roots),
        "--peers", `kubernetes:service=${peerService},port=${port}`,
      ],
    });
    procs[r] = proc;
    return proc;
  }
  const kill = async (r: Replica) => expect((await procs[r]!.stop("SIGKILL")).signal).toBe("SIGKILL");

  const status = async (r: Replica): Promise<Json> => (await call(url(r), "GET", "/v1/status")).body;
  const history = async (r: Replica): Promise<JsonAnswer> => call(url(r), "GET", "/v1/manifests");
  const readyAt = (r: Replica, generation: number) => until(() => status(r), (s) => s.state === "ready" && s.generation === generation);
  /** Whether `/readyz` of replica `r` answers 200 (a refused or slow connection is not ready). */
  const readyz = async (r: Replica): Promise<boolean> => {
    try {
      return (await fetch(`${url(r)}/readyz`, { signal: AbortSignal.timeout(5_000) })).status === 200;
    } catch {
      return false;
    }
  };
  const rollbackRounds = async (r: Replica): Promise<number> => {
    const text = (await call(url(r), "GET", "/metrics")).text;
    return Number(/coordinator_peer_recovery_rounds_total\{outcome="ROLLBACK_DETECTED"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  /** `contrast recover` of the one seed-share owner against replica `r`, checking its evidence (the test TEE's roots, the manifest's reference values). */
  const recoverWithCli = (r: Replica): Promise<CliRun> =>
    contrast(
      ["recover", "-c", url(r), "-w", ws, "--attestation-roots", join(teeDir, teeFiles.roots), "--coordinator-reference-values", manifestFile, "--timeout", "20s", "--json"],
      ws,
      90_000,
      { attest: true },
    );
  const manifestOf = (policies: Awaited<ReturnType<typeof policy>>[], names: string[]): Json => ({
    Policies: Object.fromEntries(
      policies.map((p, i) => [p.hash, names[i] === "coordinator" ? { SANs: ["coordinator"], Role: "coordinator" } : { SANs: [names[i]], WorkloadSecretID: names[i] }]),
    ),
    ReferenceValues: { snp: testReferenceValues(teeDir).snp },
    WorkloadOwnerKeyDigests: [workload.digest],
    SeedshareOwnerPubKeys: [shareOwnerHex],
  });

  beforeAll(async () => {
    if (!provisioned.ok) return;
    ensureBundles();
    root = mkdtempSync(join(tmpdir(), "contrast-replicas-"));
    teeDir = join(root, "tee");
    ws = join(root, "owner");
    mkdirSync(ws);
    let shareOwner: Awaited<ReturnType<typeof seedShareOwner>>;
    [server, , shareOwner, workload, web, db, coordinatorPolicy, port] = await Promise.all([
      startApiServer(provisioned.bin),
      createTestTee(teeDir),
      seedShareOwner(),
      workloadOwner(),
      policy("policy of web\n"),
      policy("policy of db\n"),
      policy("package coordinator\n"),
      commonFreePort(),
    ]);
    shareOwnerHex = shareOwner.publicHex;
    coordinatorPolicyHash = coordinatorPolicy.hash;
    await server.createNamespace(namespace);
    await applyDeploy(server, namespace);
    const token = (await server.serviceAccountToken(namespace, "coordinator")).file;
    store = `kubernetes:server=${server.url},namespace=${namespace},token-file=${token},ca-file=${server.caFile}`;

    // No controller-manager runs: the EndpointSlice of the headless Service is written by hand, as
    // the endpointslice controller would (its port is not the replicas': discovery uses --peers' port).
    const group = await server.api("GET", "/apis/discovery.k8s.io");
    const discovery = (group.body.preferredVersion as { version: string }).version;
    const slice = await server.api("POST", `/apis/discovery.k8s.io/${discovery}/namespaces/${namespace}/endpointslices`, {
      apiVersion: `discovery.k8s.io/${discovery}`,
      kind: "EndpointSlice",
      metadata: { name: `${peerService}-abcde`, labels: { "kubernetes.io/service-name": peerService, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" } },
      addressType: "IPv4",
      endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true } })),
      ports: [{ name: "http", port: 1313, protocol: "TCP" }],
    });
    expect(slice.status, JSON.stringify(slice.body)).toBe(201);

    manifest1 = manifestOf([web, db, coordinatorPolicy], ["web", "db", "coordinator"]);
    manifestFile = join(root, "manifest.json");
    writeFileSync(manifestFile, JSON.stringify(manifest1));
    writeFileSync(join(ws, "seedshare-owner.pem"), pem(new Uint8Array(await crypto.subtle.exportKey("pkcs8", shareOwner.keys.privateKey)), "PRIVATE KEY"), { mode: 0o600 });

    // All three start on an empty store; the first set goes through replica 0; 1 and 2 notice it and recover from 0.
    await Promise.all(replicas.map(start));
    const set = await call(url(0), "POST", "/v1/manifest", {
      manifest: toBase64(utf8(JSON.stringify(manifest1))),
      policies: [web.bytes, db.bytes, coordinatorPolicy.bytes].map(toBase64),
    });
    expect(set.status, set.text).toBe(200);
    rootCA = set.body.rootCA as string;
    firstTransition = set.body.transition as string;
    writeFileSync(join(ws, "seed-shares.json"), JSON.stringify(set.body.seedShares as SeedShareDocument, null, 2) + "\n");
    head1Spec = (await server.api("GET", headPath())).body.spec;
    expect(head1Spec).toMatchObject({ data: expect.any(String) });
    for (const r of replicas) await readyAt(r, 1);
  }, 240_000);

  afterAll(async () => {
    await killAll();
    await server?.stop();
    await killApiServers();
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it("the replicas found each other through the EndpointSlices: 1 and 2 recovered from a peer after the first set, with no owner", async () => {
    const text = (await history(0)).text;
    for (const r of [1, 2] as const) {
      expect((await history(r)).text).toBe(text);
      expect(logLines(procs[r]!, "another Coordinator initialized the store: recovery required")).toHaveLength(1);
      expect(logLines(procs[r]!, "recovered from a peer replica")).toHaveLength(1);
      expect(logLines(procs[r]!, "recovered")).toHaveLength(0);
    }
    expect(logLines(procs[0]!, "recovers from peer replicas while recovery-required")[0].peers).toBe(`EndpointSlices of ${peerService} in ${namespace} (http, port ${port})`);
  });

  it("kill -9 one replica: it comes back ready with no owner action", async () => {
    const killedAt = Date.now();
    await kill(1);
    const proc = await start(1);
    const { at } = await readyAt(1, 1);
    const recovered = logLines(proc, "recovered from a peer replica");
    expect(recovered).toHaveLength(1);
    expect([`${addresses[0]}`, `${addresses[2]}`].some((a) => String(recovered[0].peer).includes(a))).toBe(true);
    expect(logLines(proc, "recovered")).toHaveLength(0); // no owner's share was ever sent
    console.log(
      `replicas (kubernetes): kill -9 → ready through peer recovery in ${at - killedAt} ms (process start to recovered: ${String(recovered[0].sinceProcessStartMs)} ms; 3 replicas, 2 shared cores)`,
    );
    expect((await history(1)).text).toBe((await history(0)).text);
    expect(await readyz(1)).toBe(true);
  }, 90_000);

  it("kill -9 all three: the owners recover one, and the other two recover from it", async () => {
    await Promise.all(replicas.map(kill));
    const started = await Promise.all(replicas.map(start));
    for (const r of replicas) expect((await status(r)).state).toBe("recovery-required");
    // No replica has a ready peer: the owners are needed, and not refused (no PEERS_READY).
    for (const r of replicas) await until(() => call(url(r), "GET", "/metrics"), (m) => /coordinator_peer_recovery_rounds_total\{outcome="no-ready-peer"\} [1-9]/.test(m.text));
    const run = await recoverWithCli(0);
    expect(run.code, run.stderr + run.stdout).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ state: "ready", recovered: true, generation: 1 });
    const ownersAt = Date.now();
    const ready = await Promise.all([1, 2].map((r) => readyAt(r as Replica, 1)));
    console.log(`replicas (kubernetes): after the owners recovered replica 0, replicas 1 and 2 were ready ${ready.map((x) => x.at - ownersAt).join(" and ")} ms later`);
    expect(logLines(started[0]!, "recovered")).toHaveLength(1);
    expect(logLines(started[0]!, "recovered from a peer replica")).toHaveLength(0);
    for (const r of [1, 2] as const) {
      expect(logLines(started[r]!, "recovered from a peer replica")).toHaveLength(1);
      expect(logLines(started[r]!, "recovered")).toHaveLength(0);
      expect((await history(r)).text).toBe((await history(0)).text);
    }
  }, 150_000);

  it("a rolling restart (kill -9 and restart each in turn, waiting for ready) keeps at least 2 ready throughout", async () => {
    for (const r of replicas) expect(await readyz(r)).toBe(true);
    const counts: number[] = [];
    let rolling = true;
    const poller = (async () => {
      while (rolling) {
        const t = Date.now();
        const answers = await Promise.all(replicas.map(readyz));
        counts.push(answers.filter(Boolean).length);
        await pause(Math.max(0, 100 - (Date.now() - t)));
      }
    })();
    const times: number[] = [];
    try {
      for (const r of replicas) {
        const killedAt = Date.now();
        await kill(r);
        const proc = await start(r);
        const { at } = await until(() => readyz(r), Boolean);
        times.push(at - killedAt);
        expect(logLines(proc, "recovered from a peer replica")).toHaveLength(1);
      }
    } finally {
      rolling = false;
      await poller;
    }
    const minimum = Math.min(...counts);
    console.log(
      `replicas (kubernetes): rolling restart of 3, kill -9 → ready ${times.join(", ")} ms; /readyz of all three polled ${counts.length} times every 100 ms: minimum ${minimum} ready, exactly 2 in ${counts.filter((c) => c === 2).length} polls`,
    );
    // The roll was seen: some polls caught one replica down, and none caught two down.
    expect(counts.filter((c) => c === 2).length).toBeGreaterThan(0);
    expect(minimum).toBeGreaterThanOrEqual(2);
    for (const r of replicas) expect((await history(r)).text).toBe((await history(0)).text);
  }, 180_000);

  it("200 certificate requests over the three while an update removing a policy lands through one: none for it on requests sent later than 2 s after the acknowledgement", async () => {
    const key = await workloadKey();
    const manifest2 = manifestOf([web, coordinatorPolicy], ["web", "coordinator"]);
    let generation: unknown;
    const run = await requestsAcrossUpdate({
      boundMs,
      replicaOf: (i) => (i % 3) as Replica,
      policyOf: (i) => (Math.floor(i / 3) % 2 === 0 ? "db" : "web"),
      certify: async (replica, which) => {
        const r = await call(url(replica), "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: which === "db" ? db.hash : web.hash } });
        return { status: r.status, code: codeOf(r.body) };
      },
      update: async () => {
        const body = await updateBody(utf8(JSON.stringify(manifest2)), [web.bytes, coordinatorPolicy.bytes], firstTransition, workload, { name, rootCA });
        const ack = await call(url(0), "POST", "/v1/manifest", body);
        generation = ack.body.generation;
        return ack;
      },
    });
    expect(generation).toBe(2);
    const { ackAt, dbCerts, count } = run;
    const followed = ([1, 2] as const).map((r) => {
      const line = logLines(procs[r]!, "followed the head another process wrote", true).find((l) => Date.parse(l.time) >= ackAt - 1_000);
      const at = line === undefined ? null : Date.parse(line.time);
      return { r, at, after: at === null ? [] : dbCerts.filter((o) => o.replica === r && o.sentAt > at) };
    });
    const lines = tallyLines(run, boundMs);
    console.log(
      [
        `replicas (kubernetes): 200 certificate requests (${replicas.map((r) => `replica ${r}: ${count((o) => o.replica === r)}`).join(", ")}; db, the removed policy: ${count((o) => o.policy === "db")})`,
        lines.certificates,
        ...followed.map(
          (f) =>
            `  replica ${f.r} followed ${f.at === null ? "(no log line)" : `${f.at - ackAt} ms`} after the acknowledgement; certificates for db from it on requests sent after that: ${f.after.length}`,
        ),
        lines.afterBound,
      ].join("\n"),
    );
    expectBoundHeld(run, replicas);
    // Never under a superseded manifest after a replica saw the new head.
    for (const f of followed) {
      expect(f.at, `replica ${f.r} followed`).not.toBeNull();
      expect(f.after).toEqual([]);
    }
    for (const r of replicas) expect(await status(r)).toMatchObject({ state: "ready", generation: 2 });
  }, 120_000);

  it("a head rolled back through the API server is refused by a recovering replica while its peers know generation 2; the restored head is adopted", async () => {
    const current = await server.api("GET", headPath());
    expect(current.status).toBe(200);
    const head2Spec = current.body.spec as Json;
    expect(head2Spec.data).not.toBe(head1Spec.data);
    /** Writes `spec` into the CoordinatorHead as the admin (over whatever it holds); answers the new object. */
    const putHead = async (spec: Json): Promise<Json> => {
      const now = await server.api("GET", headPath());
      const res = await server.api("PUT", headPath(), { ...now.body, spec });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    };

    // Replica 2 dies; someone with the cluster's admin rights puts the older, once valid head back.
    await kill(2);
    const rolledBack = await putHead(head1Spec);
    const proc = await start(2);
    const refused = await until(() => status(2), (s) => s.refusedHead !== undefined);
    expect(refused.value).toMatchObject({ state: "recovery-required", generation: null, refusedHead: { code: "ROLLBACK_DETECTED" } });
    expect(refused.value.refusedHead.message).toMatch(/older head than a peer: rollback refused/);
    const logged = await until(async () => logLines(proc, "the store holds an older head than a peer: rollback refused"), (lines) => lines.length > 0);
    expect(logged.value[0]).toMatchObject({ level: "error", code: "ROLLBACK_DETECTED" });
    // It stays so round after round, and writes nothing: the API server still holds the rolled-back
    // head, untouched (same resourceVersion); the peers keep generation 2 and serve nothing older.
    await until(() => rollbackRounds(2), (n) => n >= 2);
    expect((await status(2)).state).toBe("recovery-required");
    expect(await readyz(2)).toBe(false);
    expect(codeOf((await history(2)).body)).toBe("RECOVERY_REQUIRED");
    const stored: Json = await server.api("GET", headPath());
    expect(stored.body.spec.data).toBe(head1Spec.data);
    expect(stored.body.metadata.resourceVersion).toBe(rolledBack.metadata.resourceVersion);
    const key = await workloadKey();
    for (const r of [0, 1] as const) {
      expect(await status(r)).toMatchObject({ state: "ready", generation: 2 });
      // The rolled-back head names db again; a replica that knows generation 2 still refuses it.
      const removed = await call(url(r), "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: db.hash } });
      expect({ status: removed.status, code: codeOf(removed.body) }, removed.text).toEqual({ status: 403, code: "POLICY_NOT_IN_MANIFEST" });
    }
    console.log(`replicas (kubernetes): while the head is rolled back, /readyz of replicas 0 and 1: ${String(await readyz(0))}, ${String(await readyz(1))}; replica 2 refused ${await rollbackRounds(2)} rounds`);

    // The newest head restored: replica 2 adopts it by itself, and serves the same history.
    await putHead(head2Spec);
    await readyAt(2, 2);
    expect(logLines(proc, "recovered from a peer replica")).toHaveLength(1);
    expect((await history(2)).text).toBe((await history(0)).text);
    await until(async () => (await Promise.all(replicas.map(readyz))).every(Boolean), Boolean);
  }, 120_000);
});
