// A manifest written for Contrast works as is: Role, WorkloadOwnerPubKeys, PKCS#1 seed-share owner keys, no WorkloadSecretID.
import { createPublicKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createStore } from "../../src/storage/store.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { fromHex, toHex, utf8 } from "../../src/encoding.js";
import { approvalOf, firstSetBody, policy, recoverBody, seedShareOwner, updateBody, workloadKey, workloadOwner } from "../helpers.js";
import { coordinatorName, get, postJson, start } from "../api/fixture.js";

/** The PKCS#1 RSAPublicKey (hex) of an SPKI (hex), as Contrast lists seed-share owners. */
function pkcs1Of(spkiHex: string): string {
  return toHex(new Uint8Array(createPublicKey({ key: Buffer.from(fromHex(spkiHex)), format: "der", type: "spki" }).export({ format: "der", type: "pkcs1" })));
}

const [alice, bob, owner, web, coordinatorPolicy] = await Promise.all([
  seedShareOwner(),
  seedShareOwner(),
  workloadOwner(),
  policy("policy of web\n"),
  policy("policy of the coordinator\n"),
]);

function contrastManifest(opts: { seedOwners: string[]; roles?: ("coordinator" | "")[]; threshold?: number; ownerKeys?: string[] }): Uint8Array {
  const roles = opts.roles ?? ["", "coordinator"];
  return utf8(
    JSON.stringify({
      Policies: {
        [web.hash]: { SANs: ["web"], ...(roles[0] ? { Role: roles[0] } : {}) },
        [coordinatorPolicy.hash]: { SANs: ["coordinator"], Role: roles[1] },
      },
      ReferenceValues: {},
      WorkloadOwnerKeyDigests: [],
      WorkloadOwnerPubKeys: opts.ownerKeys ?? [toHex(owner.spki)],
      SeedshareOwnerPubKeys: opts.seedOwners,
      ...(opts.threshold === undefined ? {} : { Threshold: opts.threshold }),
    }),
  );
}

describe("Contrast manifests", () => {
  it("set with Role, WorkloadOwnerPubKeys and a PKCS#1 owner key; certificates without WorkloadSecretID; updates by the listed key; recovery with the PKCS#1 owner's share", async () => {
    const store = createStore(memoryDriver());
    const { app } = await start(store);
    const m1 = contrastManifest({ seedOwners: [pkcs1Of(alice.publicHex)] });
    const set = await postJson(app, "/v1/manifest", firstSetBody(m1, [web.bytes, coordinatorPolicy.bytes]));
    expect(set.status, set.text).toBe(200);
    expect(set.json.seedShares.shares[0].ownerPublicKey).toBe(pkcs1Of(alice.publicHex));

    const key = await workloadKey();
    const cert = await postJson(app, "/v1/mesh/certificate", { publicKey: key.spki, evidence: { type: "insecure-simulated", policyHash: web.hash } });
    expect(cert.status, cert.text).toBe(200);
    expect(cert.json.workloadSecretID).toBe(web.hash);

    const ref = { name: coordinatorName, rootCA: set.json.rootCA as string };
    // A rekey to a second (SPKI-listed) owner, approved by the PKCS#1-listed one.
    const m2 = contrastManifest({ seedOwners: [pkcs1Of(alice.publicHex), bob.publicHex], threshold: 1 });
    const approval = await approvalOf({ ...alice, publicHex: pkcs1Of(alice.publicHex) }, ref, m2, set.json.transition);
    const update = await postJson(app, "/v1/manifest", await updateBody(m2, [web.bytes, coordinatorPolicy.bytes], set.json.transition, owner, ref, [approval]));
    expect(update.status, update.text).toBe(200);
    const stranger = await workloadOwner();
    const m3 = contrastManifest({ seedOwners: [pkcs1Of(alice.publicHex), bob.publicHex], threshold: 1, roles: ["", ""] });
    const refused = await postJson(app, "/v1/manifest", await updateBody(m3, [web.bytes, coordinatorPolicy.bytes], update.json.transition, stranger, ref));
    expect(refused.json.error.code).toBe("UNAUTHORIZED_UPDATE");

    const history = (await get(app, "/v1/manifests")).text;
    const restarted = await start(store);
    const recovered = await postJson(restarted.app, "/v1/recover", await recoverBody(update.json.seedShares, alice.keys.privateKey, 0));
    expect(recovered.json.state, recovered.text).toBe("ready");
    expect((await get(restarted.app, "/v1/manifests")).text).toBe(history);
  });

  it("refuses two coordinator roles, a key listed as SPKI and as PKCS#1, and a workload-owner key that is not ECDSA P-384", async () => {
    const { app } = await start(createStore(memoryDriver()));
    const bad = [
      contrastManifest({ seedOwners: [alice.publicHex], roles: ["coordinator", "coordinator"] }),
      contrastManifest({ seedOwners: [alice.publicHex, pkcs1Of(alice.publicHex)] }),
      contrastManifest({ seedOwners: [alice.publicHex], ownerKeys: [alice.publicHex] }),
    ];
    for (const m of bad) {
      const answer = await postJson(app, "/v1/manifest", firstSetBody(m, [web.bytes, coordinatorPolicy.bytes]));
      expect(answer.json.error.code, answer.text).toBe("INVALID_MANIFEST");
    }
    expect((await get(app, "/v1/status")).json.state).toBe("uninitialized");
  });
});
