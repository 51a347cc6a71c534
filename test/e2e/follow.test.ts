// Replicas follow the head, over two real processes on one fs store: an update through one is served by the other within 2 s, no certificate for a removed policy after that bound, an uninitialized replica notices the first set, and a head it cannot verify makes it stale (and changes nothing).
import "reflect-metadata";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fsPathOf } from "../../adapters/node/fs-driver.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { call, firstSetBody, manifestBytes, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator, until } from "./process.js";
import { expectBoundHeld, requestsAcrossUpdate, tallyLines } from "./removed-policy.js";
import type { CoordinatorProcess } from "./process.js";

type Json = Record<string, unknown>;

/** The issue's bound: once one replica acknowledged an update, every other ready replica serves it within this. */
const boundMs = 2_000;

const codeOf = (body: Json) => (body.error as { code?: string } | undefined)?.code;

/** The `time` of the first log line with message `msg`, as epoch milliseconds, or null. */
function logTime(proc: CoordinatorProcess, msg: string, after = 0): number | null {
  for (const line of proc.stdout) {
    try {
      const parsed = JSON.parse(line) as { msg?: string; time?: string };
      const at = parsed.time === undefined ? NaN : Date.parse(parsed.time);
      if (parsed.msg === msg && at >= after) return at;
    } catch {
      // not a log line
    }
  }
  return null;
}

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "contrast-follow-"));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  await killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("replicas follow the head (two processes on one fs store)", () => {
  const keys = (async () => {
    const [shareOwner, owner, web, db, cache] = await Promise.all([
      seedShareOwner(),
      workloadOwner(),
      policy("policy of web\n"),
      policy("policy of db\n"),
      policy("policy of cache\n"),
    ]);
    const manifest = (...ps: { hash: string; name: string }[]) =>
      manifestBytes({ policies: ps, workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] });
    return { shareOwner, owner, web, db, cache, manifest };
  })();

  /** Starts A on a fresh store, sets the first manifest through it, starts B and recovers it: two ready replicas. */
  async function pair(policies: "web+db" | "web"): Promise<{
    dir: string;
    a: CoordinatorProcess;
    b: CoordinatorProcess;
    ref: CoordinatorRef;
    latest: string;
    seedShares: SeedShareDocument;
  }> {
    const { shareOwner, web, db, manifest } = await keys;
    const dir = tempDir();
    const a = await startCoordinator({ store: `fs:${dir}` });
    const m = policies === "web+db" ? manifest({ ...web, name: "web" }, { ...db, name: "db" }) : manifest({ ...web, name: "web" });
    const set = await call(a.url, "POST", "/v1/manifest", firstSetBody(m, policies === "web+db" ? [web.bytes, db.bytes] : [web.bytes]));
    expect(set.status, set.text).toBe(200);
    const seedShares = set.body.seedShares as SeedShareDocument;
    const b = await startCoordinator({ store: `fs:${dir}` });
    expect((await call(b.url, "GET", "/v1/status")).body.state).toBe("recovery-required");
    const rec = await call(b.url, "POST", "/v1/recover", await recoverBody(seedShares, shareOwner.keys.privateKey));
    expect(rec.status, rec.text).toBe(200);
    expect(rec.body.state).toBe("ready");
    return { dir, a, b, ref: { name: "coordinator", rootCA: set.body.rootCA as string }, latest: set.body.transition as string, seedShares };
  }

  beforeAll(() => ensureBundle());

  it("an update through A is served by B within 2 s of A's acknowledgement, without recovery", async () => {
    const { owner, web, db, cache, manifest } = await keys;
    const { a, b, ref, latest } = await pair("web+db");
    const update = await updateBody(manifest({ ...web, name: "web" }, { ...cache, name: "cache" }), [web.bytes, cache.bytes], latest, owner, ref);
    const ack = await call(a.url, "POST", "/v1/manifest", update);
    const ackAt = Date.now();
    expect(ack.status, ack.text).toBe(200);
    const served = await until(
      () => call(b.url, "GET", "/v1/manifests"),
      (r) => r.status === 200 && r.body.latestTransition === ack.body.transition,
    );
    const delay = served.at - ackAt;
    console.log(`follow: B served generation ${String(ack.body.generation)} ${delay} ms after A acknowledged it (bound ${boundMs} ms)`);
    expect(delay).toBeLessThanOrEqual(boundMs);
    // Byte-identical history on both, and B never went stale.
    expect(served.value.text).toBe((await call(a.url, "GET", "/v1/manifests")).text);
    expect((await call(b.url, "GET", "/v1/status")).body).toMatchObject({ state: "ready", generation: 2 });
    expect(b.stdout.some((l) => l.includes('"followed the head another process wrote"'))).toBe(true);
    // B certifies the new policy and refuses the removed one.
    const key = await workloadKey();
    const added = await call(b.url, "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: cache.hash } });
    expect(added.status, added.text).toBe(200);
    const removed = await call(b.url, "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: db.hash } });
    expect(codeOf(removed.body)).toBe("POLICY_NOT_IN_MANIFEST");
    // And B can write on top of A's update: it follows, it is not stale.
    const next = await updateBody(manifest({ ...web, name: "web" }), [web.bytes], ack.body.transition as string, owner, ref);
    const third = await call(b.url, "POST", "/v1/manifest", next);
    expect(third.status, third.text).toBe(200);
    expect(third.body.generation).toBe(3);
    await until(
      () => call(a.url, "GET", "/v1/status"),
      (r) => r.body.generation === 3,
    );
  });

  it("200 certificate requests over A and B while an update removes a policy: none for it issued later than 2 s after the acknowledgement", async () => {
    const { owner, web, db, manifest } = await keys;
    const { a, b, ref, latest } = await pair("web+db");
    const key = await workloadKey();
    const replicas = [a, b];
    const run = await requestsAcrossUpdate({
      boundMs,
      replicaOf: (i) => (i % 2 === 0 ? ("A" as const) : ("B" as const)),
      policyOf: (i) => (Math.floor(i / 2) % 2 === 0 ? "db" : "web"),
      certify: async (replica, which) => {
        const policyHash = which === "db" ? db.hash : web.hash;
        const r = await call(replicas[replica === "A" ? 0 : 1]!.url, "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash } });
        return { status: r.status, code: codeOf(r.body) };
      },
      update: () => updateBody(manifest({ ...web, name: "web" }), [web.bytes], latest, owner, ref).then((body) => call(a.url, "POST", "/v1/manifest", body)),
    });
    const { ackAt, dbCerts, count } = run;
    const followedAt = logTime(b, "followed the head another process wrote", ackAt - 1000);
    const afterFollow = followedAt === null ? [] : dbCerts.filter((o) => o.sentAt > followedAt && o.replica === "B");
    const lines = tallyLines(run, boundMs);
    console.log(
      [
        `follow: 200 certificate requests (A ${count((o) => o.replica === "A")}, B ${count((o) => o.replica === "B")}; db, the removed policy: ${count((o) => o.policy === "db")})`,
        lines.certificates,
        `  B followed ${followedAt === null ? "(no log line)" : `${followedAt - ackAt} ms`} after the acknowledgement; certificates for db from B on requests sent after that: ${afterFollow.length}`,
        lines.afterBound,
      ].join("\n"),
    );
    expectBoundHeld(run, ["A", "B"] as const);
    // Never under a superseded manifest after B saw the new head.
    expect(followedAt).not.toBeNull();
    expect(afterFollow).toEqual([]);
    expect(b.stdout.some((l) => l.includes('"level":"warn"') && l.includes("stale"))).toBe(false);
  });

  it("B started uninitialized becomes recovery-required when A initializes the store, and recovers to A's state", async () => {
    const { shareOwner, web, manifest } = await keys;
    const dir = tempDir();
    const a = await startCoordinator({ store: `fs:${dir}` });
    const b = await startCoordinator({ store: `fs:${dir}` });
    expect((await call(b.url, "GET", "/v1/status")).body.state).toBe("uninitialized");
    const set = await call(a.url, "POST", "/v1/manifest", firstSetBody(manifest({ ...web, name: "web" }), [web.bytes]));
    expect(set.status, set.text).toBe(200);
    const noticed = await until(
      () => call(b.url, "GET", "/v1/status"),
      (r) => r.body.state !== "uninitialized",
    );
    expect(noticed.value.body).toMatchObject({ state: "recovery-required", recovery: { threshold: 1, received: 0 } });
    expect(b.stdout.some((l) => l.includes('"another Coordinator initialized the store: recovery required"'))).toBe(true);
    // Nothing unverified is served meanwhile.
    expect(codeOf((await call(b.url, "GET", "/v1/manifests")).body)).toBe("RECOVERY_REQUIRED");
    const rec = await call(b.url, "POST", "/v1/recover", await recoverBody(set.body.seedShares as SeedShareDocument, shareOwner.keys.privateKey));
    expect(rec.status, rec.text).toBe(200);
    expect((await call(b.url, "GET", "/v1/manifests")).text).toBe((await call(a.url, "GET", "/v1/manifests")).text);
  });

  it("a head B cannot verify (changed, or another seed's) makes it stale: certificates refused, nothing adopted, and the verified head back makes it ready again", async () => {
    const { web, manifest } = await keys;
    const { dir, b } = await pair("web");
    const headFile = await fsPathOf(dir, "heads:coordinator");
    const original = readFileSync(headFile);
    const before = await call(b.url, "GET", "/v1/manifests");
    const key = await workloadKey();
    const certify = () => call(b.url, "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: web.hash } });
    expect((await certify()).status).toBe(200);

    // A head of another deployment with the same name: another seed signed it.
    const otherDir = tempDir();
    const other = await startCoordinator({ store: `fs:${otherDir}` });
    const otherSet = await call(other.url, "POST", "/v1/manifest", firstSetBody(manifest({ ...web, name: "web" }), [web.bytes]));
    expect(otherSet.status, otherSet.text).toBe(200);
    await other.stop("SIGTERM");
    const foreign = readFileSync(await fsPathOf(otherDir, "heads:coordinator"));
    // This Coordinator's head with a newer generation, the signature left as it was.
    const head = JSON.parse(original.toString()) as { generation: number };
    const changed = Buffer.from(JSON.stringify({ ...head, generation: head.generation + 1 }, null, 2) + "\n");

    for (const [what, bytes] of [
      ["another seed's head", foreign],
      ["a changed head", changed],
    ] as const) {
      writeFileSync(headFile, bytes);
      const stale = await until(
        () => call(b.url, "GET", "/v1/status"),
        (r) => r.body.state !== "ready",
      );
      expect(stale.value.body, what).toMatchObject({ state: "stale", generation: 1 });
      const refused = await certify();
      expect(refused.status, what).toBe(409);
      expect(codeOf(refused.body), what).toBe("STALE");
      expect(b.stdout.some((l) => l.includes("cannot be verified with this Coordinator's keys"))).toBe(true);

      // Restored: ready again with the same state, no recovery, and nothing of the forged head adopted.
      writeFileSync(headFile, original);
      await until(
        () => call(b.url, "GET", "/v1/status"),
        (r) => r.body.state === "ready",
      );
      expect((await call(b.url, "GET", "/v1/manifests")).text, what).toBe(before.text);
      expect((await certify()).status, what).toBe(200);
    }
  });
});
