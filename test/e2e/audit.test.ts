// Damage to the stored state of a running Coordinator (each object kind truncated or removed) is reported within one audit interval and heals when restored, over a real process.
import "reflect-metadata";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstSetBody, manifestBytes, policy, seedShareOwner, updateBody, workloadOwner } from "../helpers.js";
import type { CoordinatorRef } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

type Json = Record<string, unknown>;

async function call(base: string, method: string, path: string, payload?: unknown): Promise<{ status: number; body: Json; text: string }> {
  const init: RequestInit = payload === undefined ? { method } : { method, body: JSON.stringify(payload), headers: { "content-type": "application/json" } };
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { status: res.status, body: (text.startsWith("{") ? JSON.parse(text) : {}) as Json, text };
}

/** Polls /readyz until `done` holds; fails after `ms`. The audit interval is 1 s, so a few seconds is several intervals. */
async function readyzUntil(base: string, done: (r: { status: number; body: Json }) => boolean, ms = 8_000): Promise<{ status: number; body: Json }> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await call(base, "GET", "/readyz");
    if (done(r)) return r;
    if (Date.now() > until) throw new Error(`readyz stayed ${r.status} ${JSON.stringify(r.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

let dir: string;
let proc: CoordinatorProcess;
afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe("background re-verification of the stored state", () => {
  const setup = (async () => {
    const [shareOwner, owner, p1, p2, p3] = await Promise.all([
      seedShareOwner(),
      workloadOwner(),
      policy("policy of web\n"),
      policy("policy of db\n"),
      policy("policy of web, v3\n"),
    ]);
    const common = { workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] };
    return {
      owner,
      p1,
      p2,
      p3,
      m1: manifestBytes({ ...common, policies: [{ ...p1, name: "web" }] }),
      m2: manifestBytes({ ...common, policies: [{ ...p1, name: "web" }, { ...p2, name: "db" }] }),
      m3: manifestBytes({ ...common, policies: [{ ...p3, name: "web" }] }),
    };
  })();
  let ref: CoordinatorRef;
  let latest: string;

  beforeAll(async () => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "contrast-audit-"));
    proc = await startCoordinator({ store: `fs:${dir}`, extraArgs: ["--audit-interval", "1s"] });
    const { m1, m2, p1, p2, owner } = await setup;
    const first = await call(proc.url, "POST", "/v1/manifest", firstSetBody(m1, [p1.bytes]));
    expect(first.status, first.text).toBe(200);
    ref = { name: "coordinator", rootCA: first.body.rootCA as string };
    const second = await call(proc.url, "POST", "/v1/manifest", await updateBody(m2, [p1.bytes, p2.bytes], first.body.transition as string, owner, ref));
    expect(second.status, second.text).toBe(200);
    latest = second.body.transition as string;
    await readyzUntil(proc.url, (r) => r.status === 200);
  });

  /** One stored object of each kind the ready state relies on, as `kind/name` under the fs store. */
  async function objectsOfEachKind(): Promise<string[]> {
    const head = JSON.parse((await call(proc.url, "GET", "/v1/manifests")).text) as Json;
    const headDoc = JSON.parse(Buffer.from(head.head as string, "base64").toString()) as { objects: Record<string, string> };
    const { p2 } = await setup;
    return [
      `certificates/${headDoc.objects.rootCA}`,
      `certificates/${headDoc.objects.intermediateCA}`,
      `keys/${headDoc.objects.meshCAKey}`,
      `transitions/${(head.transitions as string[])[0]}`,
      `manifests/${createHash("sha256").update(Buffer.from((head.manifests as string[])[0]!, "base64")).digest("hex")}`,
      `policies/${p2.hash}`,
    ];
  }

  it("reports each object kind truncated or removed within an interval (readyz 503 naming it, metric, log, writes refused) and heals when it is put back", async () => {
    const { m3, p3, owner } = await setup;
    const update = await updateBody(m3, [p3.bytes], latest, owner, ref);
    for (const object of await objectsOfEachKind()) {
      const path = join(dir, object);
      const key = object.replace("/", ":");
      const original = readFileSync(path);
      for (const damage of ["truncate", "remove"] as const) {
        if (damage === "truncate") writeFileSync(path, original.subarray(0, Math.floor(original.length / 2)));
        else unlinkSync(path);
        const reported = await readyzUntil(proc.url, (r) => r.status === 503);
        expect(reported.body).toMatchObject({ ready: false, state: "ready", damage: { key } });
        const refused = await call(proc.url, "POST", "/v1/manifest", update);
        expect(refused.status, refused.text).toBe(502);
        expect(refused.body.error).toMatchObject({ code: "STATE_CORRUPT", key });
        expect((await call(proc.url, "GET", "/v1/status")).body.generation).toBe(2);
        expect((await call(proc.url, "GET", "/metrics")).text).toMatch(/^coordinator_state_damaged 1$/m);
        expect(proc.stdout.some((l) => l.includes('"stored state damaged"') && l.includes(key))).toBe(true);

        writeFileSync(path, original);
        await readyzUntil(proc.url, (r) => r.status === 200);
        expect((await call(proc.url, "GET", "/metrics")).text).toMatch(/^coordinator_state_damaged 0$/m);
      }
    }
    expect((await call(proc.url, "GET", "/metrics")).text).toMatch(/^coordinator_audits_total\{result="damaged"\} \d+$/m);
    // Healed without a restart: the update that was refused now succeeds.
    const ok = await call(proc.url, "POST", "/v1/manifest", update);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.generation).toBe(3);
  });
});
