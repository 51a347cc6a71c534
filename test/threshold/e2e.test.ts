// Threshold recovery over real processes: 2 of 3 and 3 of 5 through the built bundle, SIGKILL, restart, and G1/G2.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decryptSeedShare } from "../../src/crypto/seedshares.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64, utf8 } from "../../src/encoding.js";
import { expectCrossVerified } from "../certificates.js";
import { ensureBundle, killAll, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { firstSetBody, policy, seedShareOwner, workloadKey } from "../helpers.js";

type SeedOwner = Awaited<ReturnType<typeof seedShareOwner>>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
async function http(base: string, path: string, body?: unknown): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(base + path, body === undefined ? undefined : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), text };
}

async function shareOf(doc: SeedShareDocument, owner: SeedOwner): Promise<{ share: string; salt: string }> {
  const entry = doc.shares.find((s) => s.ownerPublicKey === owner.publicHex)!;
  return { share: toBase64(await decryptSeedShare(entry.encryptedShare, owner.keys.privateKey)), salt: doc.salt };
}

let owners: SeedOwner[];
let dir: string;

beforeAll(async () => {
  ensureBundle();
  owners = await Promise.all(Array.from({ length: 5 }, () => seedShareOwner()));
  dir = mkdtempSync(join(tmpdir(), "coordinator-threshold-"));
}, 120_000);

afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe.each([
  [2, 3, [2, 0]],
  [3, 5, [4, 1, 3]],
])("%i of %i over real processes", (t, n, recoverers) => {
  it("recovers after SIGKILL with any t owners; t − 1 leave it in recovery; certificates cross-verify", async () => {
    const store = `fs:${join(dir, `store-${t}-${n}`)}`;
    const web = await policy("policy of web\n");
    const manifest = utf8(
      JSON.stringify({
        Policies: { [web.hash]: { SANs: ["web"], WorkloadSecretID: "web" } },
        WorkloadOwnerKeyDigests: [],
        SeedshareOwnerPubKeys: owners.slice(0, n).map((o) => o.publicHex),
        Threshold: t,
      }),
    );
    let coordinator: CoordinatorProcess = await startCoordinator({ store });
    const set = await http(coordinator.url, "/v1/manifest", firstSetBody(manifest, [web.bytes]));
    expect(set.status, set.text).toBe(200);
    const doc = set.json.seedShares as SeedShareDocument;
    expect(doc.threshold).toBe(t);
    const evidence = { type: "insecure-simulated", policyHash: web.hash };
    const before = await http(coordinator.url, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence });
    const history = (await http(coordinator.url, "/v1/manifests")).text;

    await coordinator.stop("SIGKILL");
    coordinator = await startCoordinator({ store });
    expect((await http(coordinator.url, "/v1/status")).json).toMatchObject({ state: "recovery-required", recovery: { threshold: t, received: 0 } });
    for (const [i, o] of recoverers.slice(0, -1).entries()) {
      const r = await http(coordinator.url, "/v1/recover", await shareOf(doc, owners[o]!));
      expect(r.json, r.text).toMatchObject({ state: "recovery-required", recovery: { threshold: t, received: i + 1 } });
    }
    expect((await http(coordinator.url, "/readyz")).status).toBe(503);
    const done = await http(coordinator.url, "/v1/recover", await shareOf(doc, owners[recoverers.at(-1)!]!));
    expect(done.json, done.text).toMatchObject({ state: "ready", recovery: { threshold: t, received: t } });
    expect((await http(coordinator.url, "/v1/manifests")).text).toBe(history);

    const after = await http(coordinator.url, "/v1/mesh/certificate", { publicKey: (await workloadKey()).spki, evidence });
    await expectCrossVerified(before.json, after.json, join(dir, `pem-${t}-${n}`));
    await coordinator.stop("SIGTERM");
  });
});
