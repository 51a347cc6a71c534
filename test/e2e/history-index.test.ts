// The history index over a real process on an fs store: a changed, removed or swapped index is refused at recovery naming it; an older history object only the index vouches for is never served, is reported by the audit at once after recovery, and blocks writes until restored.
import "reflect-metadata";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { call, firstSetBody, manifestBytes, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import type { CoordinatorRef, JsonAnswer } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

/** Polls /readyz until `done` holds (the audit interval is 1 s; a few seconds is several intervals). */
async function readyzUntil(base: string, done: (r: JsonAnswer) => boolean, ms = 8_000): Promise<JsonAnswer> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await call(base, "GET", "/readyz");
    if (done(r)) return r;
    if (Date.now() > until) throw new Error(`readyz stayed ${r.status} ${r.text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const sha256hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Every file of the store, with its bytes (hex), so a test can show that nothing was written. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, readFileSync(p).toString("hex"));
    }
  };
  walk(dir);
  return out;
}

let dir: string;
const generations = 4;

afterAll(async () => {
  await killAll();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe("the history index over a real process", () => {
  let recover: { share: string; salt: string };
  let historyBefore: string;
  let ref: CoordinatorRef;
  let latest: string;
  let owner: Awaited<ReturnType<typeof workloadOwner>>;
  let shareOwnerHex: string;
  let oldManifest: string;
  let latestPolicy: string;
  let indexHash: string;

  const start = (auditInterval = "1s") =>
    startCoordinator({ store: `fs:${dir}`, extraArgs: ["--attestation", "insecure-simulated", "--audit-interval", auditInterval] });
  const flip = (bytes: Buffer) => {
    const out = Buffer.from(bytes);
    out[Math.floor(out.length / 2)]! ^= 1;
    return out;
  };

  beforeAll(async () => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "contrast-index-"));
    const shareOwner = await seedShareOwner();
    owner = await workloadOwner();
    shareOwnerHex = shareOwner.publicHex;
    const proc = await start();
    for (let i = 0; i < generations; i++) {
      const p = await policy(`policy of revision ${i}\n`);
      const manifest = manifestBytes({ policies: [{ hash: p.hash, name: `web-${i}` }], workloadOwners: [owner.digest], seedShareOwners: [shareOwnerHex] });
      if (i === 0) oldManifest = sha256hex(manifest);
      latestPolicy = p.hash;
      const answer = await call(proc.url, "POST", "/v1/manifest", i === 0 ? firstSetBody(manifest, [p.bytes]) : await updateBody(manifest, [p.bytes], latest, owner, ref));
      expect(answer.status, answer.text).toBe(200);
      if (i === 0) {
        ref = { name: "coordinator", rootCA: answer.body.rootCA as string };
        recover = await recoverBody(answer.body.seedShares as SeedShareDocument, shareOwner.keys.privateKey);
      }
      latest = answer.body.transition as string;
    }
    const history = await call(proc.url, "GET", "/v1/manifests");
    historyBefore = history.text;
    const head = JSON.parse(Buffer.from(history.body.head as string, "base64").toString()) as { objects: { history: string } };
    indexHash = head.objects.history;
    await proc.stop("SIGKILL");
  }, 120_000);

  /** Recovery refuses naming `key`, and the process serves nothing from the store and writes nothing. */
  async function expectRefused(proc: CoordinatorProcess, key: string): Promise<void> {
    const before = snapshot(dir);
    const r = await call(proc.url, "POST", "/v1/recover", recover);
    expect(r.status, r.text).toBe(502);
    expect(r.body.error).toMatchObject({ code: "STATE_CORRUPT", key });
    expect((await call(proc.url, "GET", "/v1/status")).body.state).toBe("recovery-required");
    expect((await call(proc.url, "GET", "/v1/manifests")).body.error).toMatchObject({ code: "RECOVERY_REQUIRED" });
    const key2 = await workloadKey();
    const cert = await call(proc.url, "POST", "/v1/mesh/certificate", { publicKey: key2.spki, evidence: { type: "insecure-simulated", policyHash: latestPolicy } });
    expect(cert.body.error).toMatchObject({ code: "RECOVERY_REQUIRED" });
    expect(snapshot(dir)).toEqual(before);
  }

  it("a changed, removed or swapped index is refused at recovery naming it; restored, recovery serves the history byte for byte", async () => {
    const key = `histories:${indexHash}`;
    const path = join(dir, "histories", indexHash);
    const original = readFileSync(path);
    // Each set wrote the index of its own head: an older one is a valid index, of another head.
    const older = readdirSync(join(dir, "histories")).filter((n) => n !== indexHash);
    expect(older).toHaveLength(generations - 1);
    const swapped = readFileSync(join(dir, "histories", older[0]!));
    for (const damage of ["change", "remove", "swap"] as const) {
      if (damage === "change") writeFileSync(path, flip(original));
      else if (damage === "remove") unlinkSync(path);
      else writeFileSync(path, swapped);
      const proc = await start();
      await expectRefused(proc, key);
      writeFileSync(path, original);
      const r = await call(proc.url, "POST", "/v1/recover", recover);
      expect(r.status, r.text).toBe(200);
      expect((await call(proc.url, "GET", "/v1/manifests")).text).toBe(historyBefore);
      await proc.stop("SIGKILL");
    }
  });

  it("an old manifest changed before a restart: recovery succeeds, it is never served, the audit reports it at once and writes are refused; restored, all is well", async () => {
    const key = `manifests:${oldManifest}`;
    const path = join(dir, "manifests", oldManifest);
    const original = readFileSync(path);
    const changed = flip(original);
    writeFileSync(path, changed);
    // No interval audit within the test: what reports the damage is the audit every recovery starts.
    const proc = await start("1h");
    const r = await call(proc.url, "POST", "/v1/recover", recover);
    expect(r.status, r.text).toBe(200);

    const served = await call(proc.url, "GET", "/v1/manifests");
    expect(served.status, served.text).toBe(502);
    expect(served.body).toEqual({ error: expect.objectContaining({ code: "STATE_CORRUPT", key }) });
    expect(served.text).not.toContain(changed.toString("base64"));
    // The audit that follows the recovery finds it, without waiting for an interval.
    const reported = await readyzUntil(proc.url, (a) => a.status === 503);
    expect(reported.body).toMatchObject({ state: "ready", damage: { key } });
    expect(proc.stdout.some((l) => l.includes('"stored state damaged"') && l.includes(key))).toBe(true);

    // Writes are refused and change nothing; the active manifest (verified at recovery) still certifies its workloads.
    const p = await policy("policy of the refused update\n");
    const manifest = manifestBytes({ policies: [{ hash: p.hash, name: "refused" }], workloadOwners: [owner.digest], seedShareOwners: [shareOwnerHex] });
    const update = await updateBody(manifest, [p.bytes], latest, owner, ref);
    const before = snapshot(dir);
    const refused = await call(proc.url, "POST", "/v1/manifest", update);
    expect(refused.status, refused.text).toBe(502);
    expect(refused.body.error).toMatchObject({ code: "STATE_CORRUPT", key });
    expect(snapshot(dir)).toEqual(before);
    expect((await call(proc.url, "GET", "/v1/status")).body).toMatchObject({ generation: generations, latestTransition: latest });
    const workload = await workloadKey();
    const cert = await call(proc.url, "POST", "/v1/mesh/certificate", { publicKey: workload.spki, evidence: { type: "insecure-simulated", policyHash: latestPolicy } });
    expect(cert.status, cert.text).toBe(200);

    writeFileSync(path, original);
    expect((await call(proc.url, "GET", "/v1/manifests")).text).toBe(historyBefore);
    await proc.stop("SIGTERM");
    const again = await start();
    expect((await call(again.url, "POST", "/v1/recover", recover)).status).toBe(200);
    await readyzUntil(again.url, (a) => a.status === 200);
    expect((await call(again.url, "GET", "/v1/manifests")).text).toBe(historyBefore);
    const ok = await call(again.url, "POST", "/v1/manifest", update);
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.generation).toBe(generations + 1);
    await again.stop("SIGTERM");
  });
});
