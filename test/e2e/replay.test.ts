// Attack over real processes: an update captured on one Coordinator is replayed on another with an identical history, and on its own after it was used.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstSetBody, manifestBytes, policy, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

type Json = Record<string, unknown>;

async function call(base: string, method: string, path: string, payload?: unknown): Promise<{ status: number; body: Json; text: string }> {
  const init: RequestInit = { method };
  if (payload !== undefined) init.body = JSON.stringify(payload);
  if (payload !== undefined) init.headers = { "content-type": "application/json" };
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Json, text };
}

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("attack: replaying a captured update", () => {
  let staging: CoordinatorProcess;
  let prod: CoordinatorProcess;
  let twin: CoordinatorProcess;

  beforeAll(async () => {
    ensureBundle();
    const store = (tag: string) => {
      const dir = mkdtempSync(join(tmpdir(), `contrast-replay-${tag}-`));
      dirs.push(dir);
      return `fs:${dir}`;
    };
    [staging, prod, twin] = await Promise.all([
      startCoordinator({ store: store("staging"), extraArgs: ["--name", "staging"] }),
      startCoordinator({ store: store("prod"), extraArgs: ["--name", "prod"] }),
      // Same name as staging, on a store of its own: the same history, another root CA.
      startCoordinator({ store: store("twin"), extraArgs: ["--name", "staging"] }),
    ]);
  });

  it("is refused by every other Coordinator, including one with the identical history and name, and changes nothing", async () => {
    const [shareOwner, owner, p1, p2] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy of web\n"), policy("policy of web, v2\n")]);
    const common = { workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] };
    const m1 = manifestBytes({ ...common, policies: [{ ...p1, name: "web" }] });
    const m2 = manifestBytes({ ...common, policies: [{ ...p2, name: "web" }] });
    const firsts = await Promise.all([staging, prod, twin].map((c) => call(c.url, "POST", "/v1/manifest", firstSetBody(m1, [p1.bytes]))));
    for (const f of firsts) expect(f.status, f.text).toBe(200);
    // Identical histories: the same transition everywhere.
    expect(new Set(firsts.map((f) => f.body.transition)).size).toBe(1);
    const t1 = firsts[0]!.body.transition as string;

    // The workload owner signs an update for staging; an attacker captures the request.
    const captured = await updateBody(m2, [p2.bytes], t1, owner, { name: "staging", rootCA: firsts[0]!.body.rootCA as string });
    const before = await Promise.all([prod, twin].map((c) => call(c.url, "GET", "/v1/manifests")));
    for (const target of [prod, twin]) {
      const replay = await call(target.url, "POST", "/v1/manifest", captured);
      expect(replay.status, replay.text).toBe(403);
      expect((replay.body.error as Json).code).toBe("UNAUTHORIZED_UPDATE");
    }
    const after = await Promise.all([prod, twin].map((c) => call(c.url, "GET", "/v1/manifests")));
    expect(after.map((a) => a.text)).toEqual(before.map((b) => b.text));

    // On staging it applies once; replayed there afterwards it names a stale base.
    const applied = await call(staging.url, "POST", "/v1/manifest", captured);
    expect(applied.status, applied.text).toBe(200);
    expect(applied.body.generation).toBe(2);
    const again = await call(staging.url, "POST", "/v1/manifest", captured);
    expect(again.status).toBe(409);
    expect((again.body.error as Json).code).toBe("STALE_BASE");
    expect((await call(staging.url, "GET", "/v1/status")).body.generation).toBe(2);
  });
});
