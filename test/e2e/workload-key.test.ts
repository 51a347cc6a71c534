// Attack over a real process: a mesh certificate asked for a public key that is not a point on its curve (the form workloads send, checked without a WebCrypto import) is refused, and nothing is issued.
import "reflect-metadata";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../../src/encoding.js";
import { call, firstSetBody, manifestBytes, policy, seedShareOwner, workloadKey, workloadOwner } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

const dirs: string[] = [];
afterAll(async () => {
  await killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The prime of each curve's field, big-endian. */
const fieldPrimes = {
  "P-256": "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
  "P-384": "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
};

/** The count of issued mesh certificates, from /metrics. */
async function issued(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("coordinator_mesh_certificates_total"));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("attack: a mesh certificate for a key that is not on its curve", () => {
  let coordinator: CoordinatorProcess;
  let policyHash: string;

  beforeAll(async () => {
    ensureBundle();
    const dir = mkdtempSync(join(tmpdir(), "contrast-workload-key-"));
    dirs.push(dir);
    coordinator = await startCoordinator({ store: `fs:${dir}` });
    const [shareOwner, owner, web] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy of web\n")]);
    const manifest = manifestBytes({ policies: [{ ...web, name: "web" }], workloadOwners: [owner.digest], seedShareOwners: [shareOwner.publicHex] });
    const set = await call(coordinator.url, "POST", "/v1/manifest", firstSetBody(manifest, [web.bytes]));
    expect(set.status, set.text).toBe(200);
    policyHash = web.hash;
  });

  for (const curve of ["P-256", "P-384"] as const) {
    it(`refuses ${curve} SPKIs in WebCrypto's own form whose point is off the curve or out of the field with 400 INVALID_REQUEST, issuing nothing; the valid key is certified`, async () => {
      const key = await workloadKey(curve);
      const spki = fromBase64(key.spki);
      const coordinateLength = curve === "P-256" ? 32 : 48;
      const pointAt = spki.length - (1 + 2 * coordinateLength);
      // One bit of Y flipped: the same bytes around it, a point no longer on the curve.
      const offCurve = spki.slice();
      offCurve[offCurve.length - 1]! ^= 1;
      // X replaced by the field prime itself: not a field element.
      const outOfField = spki.slice();
      outOfField.set(Uint8Array.from(fieldPrimes[curve].match(/../g)!, (h) => parseInt(h, 16)), pointAt + 1);
      // The all-zero point (what the point at infinity would look like): not on the curve.
      const zero = spki.slice();
      zero.fill(0, pointAt + 1);

      const before = await issued(coordinator.url);
      const status = (await call(coordinator.url, "GET", "/v1/status")).body;
      for (const bad of [offCurve, outOfField, zero]) {
        const answer = await call(coordinator.url, "POST", "/v1/mesh/certificate", {
          publicKey: toBase64(bad),
          evidence: { type: "insecure-simulated", policyHash },
        });
        expect(answer.status, answer.text).toBe(400);
        expect((answer.body.error as { code: string }).code).toBe("INVALID_REQUEST");
        expect(answer.body.certChain).toBeUndefined();
      }
      expect(await issued(coordinator.url)).toBe(before);
      expect((await call(coordinator.url, "GET", "/v1/status")).body).toEqual(status);

      const good = await call(coordinator.url, "POST", "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash } });
      expect(good.status, good.text).toBe(200);
      expect(await issued(coordinator.url)).toBe(before + 1);
    });
  }
});
