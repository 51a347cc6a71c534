// Property tests (fast-check) of bad input: no body, header, path or method gives a 5xx, a non-JSON error or a state change.
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import fc from "fast-check";
import type { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { fromBase64, toBase64, toHex, utf8 } from "../../src/encoding.js";
import { canonicalIp } from "../../src/manifest/san.js";
import { firstSetBody, workloadKey } from "../helpers.js";
import { fixture, makeOwners, postJson, snapshot } from "./fixture.js";
import type { Fixture, FixtureState, NamedPolicy, Owners } from "./fixture.js";

const postPaths = ["/v1/manifest", "/v1/recover", "/v1/mesh/certificate"] as const;
type PostPath = (typeof postPaths)[number];

const fixtures = new Map<FixtureState, Fixture>();
let owners: Owners;
let validWorkloadKey: string;

beforeAll(async () => {
  owners = await makeOwners();
  for (const state of ["uninitialized", "ready", "recovery-required", "stale"] as const) {
    fixtures.set(state, await fixture(state, owners));
  }
  validWorkloadKey = (await workloadKey("P-384")).spki;
});

function fx(state: FixtureState): Fixture {
  return fixtures.get(state)!;
}

// ---- generators ------------------------------------------------------------------------------

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(toHex);
const b64 = (maxLength = 200) => fc.uint8Array({ maxLength }).map(toBase64);

/** Any value that JSON can carry, serialized; values JSON.stringify cannot serialize become "null". */
const anythingJson = fc.anything().map((v) => {
  try {
    return JSON.stringify(v) ?? "null";
  } catch {
    return "null";
  }
});

/** A value of a wrong or random type for a field. */
const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.double(),
  fc.integer(),
  fc.string(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string(), { maxKeys: 3 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Mostly `valid`, sometimes `junk`: keeps the requests deep enough to reach the later checks. */
function mostly<T>(valid: fc.Arbitrary<T>, junk: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: junk, weight: 1 });
}

/** Mostly absent (undefined, which JSON.stringify drops), sometimes a junk value. */
const rarely = mostly(fc.constant(undefined), wrongValue);

/**
 * A manifest JSON document of the right shape with random content. Outside uninitialized it is mostly
 * valid (the real seed-share owner, the given policies), so that it passes the manifest checks and is
 * refused later (policies, base, signature); in uninitialized it never names a usable seed-share owner,
 * or it could be a valid first set.
 */
function randomManifest(state: FixtureState, policies: NamedPolicy[]): fc.Arbitrary<Uint8Array> {
  const real = state !== "uninitialized";
  const san = mostly(fc.constantFrom("web", "a.b", "1.2.3.4", "::1", "*.x", "web.default.svc"), fc.string({ maxLength: 10 }));
  const entry = fc.record({
    SANs: fc.array(san, { maxLength: 3 }),
    WorkloadSecretID: mostly(fc.constantFrom("web", "db", "x"), fc.string({ maxLength: 10 })),
  });
  const randomPolicies = fc.dictionary(fc.oneof(hex64, fc.string({ maxLength: 8 })), entry, { maxKeys: 3 });
  const givenPolicies = fc.tuple(...policies.map(() => entry)).map((entries) => Object.fromEntries(policies.map((p, i) => [p.hash, entries[i]!])));
  const junkKey = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 64 }).map(toHex), fc.string({ maxLength: 8 }));
  return fc
    .record(
      {
        Policies: real ? mostly(givenPolicies, randomPolicies) : randomPolicies,
        ReferenceValues: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
        WorkloadOwnerKeyDigests: mostly<string[]>(fc.constant([owners.workload.digest]), fc.array(mostly(fc.constant(owners.workload.digest), hex64), { maxLength: 2 })),
        SeedshareOwnerPubKeys: real ? mostly<string[]>(fc.constant([owners.seed.publicHex]), fc.array(junkKey, { maxLength: 2 })) : fc.array(junkKey, { maxLength: 2 }),
        Extra: rarely,
      },
      { requiredKeys: real ? ["Policies", "WorkloadOwnerKeyDigests", "SeedshareOwnerPubKeys"] : [] },
    )
    .map((m) => utf8(JSON.stringify(m)));
}

/** Bodies of the right shape with random content, per endpoint; none of them is ever a valid request that changes state. */
function shapedBody(path: PostPath, state: FixtureState): fc.Arbitrary<unknown> {
  const f = fx(state);
  switch (path) {
    case "/v1/manifest":
      return fc.subarray(f.policies).chain((subset) =>
        fc.record(
          {
            manifest: mostly(randomManifest(state, subset).map(toBase64), b64(400)),
            policies: mostly(
              fc.constant(subset.map((p) => toBase64(p.bytes))),
              fc.array(mostly(fc.constantFrom(...f.policies.map((p) => toBase64(p.bytes))), b64(64)), { maxLength: 4 }),
            ),
            // In uninitialized, always a previous transition: a first set that names one is refused (STALE_BASE).
            previousTransition: mostly(fc.constant(f.transition ?? "0".repeat(64)), hex64),
            // Random signature values never verify, so an update is never authorized.
            signature: fc.record({
              publicKey: mostly(fc.constant(toBase64(owners.workload.spki)), b64(120)),
              value: mostly(fc.uint8Array({ minLength: 96, maxLength: 96 }).map(toBase64), b64(100)),
            }),
          },
          { requiredKeys: state === "uninitialized" ? ["manifest", "policies", "previousTransition"] : ["manifest", "policies"] },
        ),
      );
    case "/v1/recover": {
      const salt = f.recover?.salt ?? "0".repeat(64);
      const seed = f.recover === undefined ? new Uint8Array(64) : fromBase64(f.recover.share);
      // Near misses of the right seed: a flipped bit, cut short, or made longer; never the seed itself.
      const nearMiss = fc
        .tuple(fc.nat({ max: seed.length * 8 - 1 }), fc.integer({ min: -34, max: 40 }))
        .map(([bit, delta]) => {
          const out = new Uint8Array(Math.max(0, seed.length + delta));
          out.set(seed.subarray(0, Math.min(seed.length, out.length)));
          if (delta === 0) out[bit >> 3]! ^= 1 << (bit & 7);
          return toBase64(out);
        });
      const randomSeed = fc.uint8Array({ minLength: 32, maxLength: 200 }).map(toBase64);
      return fc.record({ share: fc.oneof(b64(100), randomSeed, nearMiss), salt: mostly(fc.constant(salt), hex64) });
    }
    case "/v1/mesh/certificate": {
      const hashes = fc.constantFrom(...f.policies.map((p) => p.hash));
      return fc.record({
        publicKey: mostly(fc.constant(validWorkloadKey), b64(120)),
        evidence: fc.record(
          {
            type: mostly(fc.constant("insecure-simulated"), fc.oneof(fc.string({ maxLength: 10 }), wrongValue)),
            policyHash: mostly(fc.oneof(hashes, hex64), wrongValue),
            extra: rarely,
          },
          { requiredKeys: [] },
        ),
      });
    }
  }
}

/** The right keys for an endpoint, each with a value of a random (mostly wrong) type. */
function wrongTypes(path: PostPath): fc.Arbitrary<unknown> {
  const keys: Record<PostPath, string[]> = {
    "/v1/manifest": ["manifest", "policies", "previousTransition", "signature"],
    "/v1/recover": ["share", "salt"],
    "/v1/mesh/certificate": ["publicKey", "evidence"],
  };
  return fc.record(Object.fromEntries(keys[path].map((k) => [k, wrongValue])), { requiredKeys: [] });
}

/** A request body: raw text, raw bytes, random JSON, or one of the shaped bodies. */
function body(path: PostPath, state: FixtureState): fc.Arbitrary<string | Uint8Array> {
  return fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: "binary", maxLength: 100 }),
    fc.uint8Array({ maxLength: 200 }),
    fc.json({ maxDepth: 3 }),
    anythingJson,
    { arbitrary: wrongTypes(path).map((v) => JSON.stringify(v)), weight: 2 },
    { arbitrary: shapedBody(path, state).map((v) => JSON.stringify(v)), weight: 8 },
  );
}

/** Random request headers: content-type, content-length (possibly lying), transfer-encoding, junk. */
const headers: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      "content-type": fc.oneof(
        fc.constantFrom(
          "application/json",
          "application/json; charset=utf-8",
          "text/plain",
          "",
          "multipart/form-data; boundary=x",
          "application/x-www-form-urlencoded",
        ),
        printable,
      ),
      "content-length": fc.oneof(fc.nat({ max: 100_000 }).map(String), fc.constantFrom("-1", "0", "abc", "1e9", "99999999999"), printable),
      "transfer-encoding": fc.constantFrom("chunked", "gzip", "identity"),
      "x-junk": printable,
    },
    { requiredKeys: [] },
  )
  .map((h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.trim()])));

// ---- the checks -------------------------------------------------------------------------------

interface Sent {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** Sends a request and checks the answer: never 5xx (but /readyz's 503); every error is a JSON body with a string code. */
async function send(app: Hono, req: Sent): Promise<{ status: number; json: unknown }> {
  const init: RequestInit = { method: req.method };
  if (req.headers !== undefined) init.headers = req.headers;
  if (req.body !== undefined) init.body = req.body as BodyInit;
  const res = await app.request(req.path, init);
  const text = await res.text();
  // The one intended 5xx: readiness says 503 outside state ready.
  const readiness = new URL("http://localhost" + req.path).pathname === "/readyz" && res.status === 503;
  if (!readiness) expect(res.status, text).toBeLessThan(500);
  const head = req.method.toUpperCase() === "HEAD";
  if (head) expect(text).toBe("");
  if (res.status >= 400 && !head && !readiness) {
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const json = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    expect(typeof json.error?.code).toBe("string");
    expect(typeof json.error?.message).toBe("string");
    return { status: res.status, json };
  }
  return { status: res.status, json: !head && res.headers.get("content-type")?.startsWith("application/json") ? (JSON.parse(text) as unknown) : undefined };
}

/** The only way random input may succeed: a mesh certificate for a real policy from a ready Coordinator. */
function allowedSuccess(state: FixtureState, path: string): boolean {
  return state === "ready" && path === "/v1/mesh/certificate";
}

async function postsChangeNothing(state: FixtureState, numRuns: number): Promise<void> {
  const f = fx(state);
  const initial = await snapshot(f.app, f.store);
  const request = fc.constantFrom(...postPaths).chain((path) =>
    fc.record({ path: fc.constant(path), body: body(path, state), headers: fc.option(headers, { nil: undefined }) }),
  );
  await fc.assert(
    fc.asyncProperty(request, async ({ path, body, headers }) => {
      const answer = await send(f.app, { method: "POST", path, body, ...(headers === undefined ? {} : { headers }) });
      if (answer.status < 400) expect(allowedSuccess(state, path), `${path} answered ${answer.status}`).toBe(true);
      expect(await snapshot(f.app, f.store)).toEqual(initial);
    }),
    { numRuns },
  );
  expect(JSON.parse((await snapshot(f.app, f.store)).status).state).toBe(state);
}

describe("bad input to every POST endpoint: never a 5xx, always a JSON error, never a state change", () => {
  it("ready", async () => {
    await postsChangeNothing("ready", 400);
  });

  it("recovery-required (stays recovery-required)", async () => {
    await postsChangeNothing("recovery-required", 400);
  });

  it("uninitialized", async () => {
    await postsChangeNothing("uninitialized", 150);
  });

  it("stale", async () => {
    await postsChangeNothing("stale", 150);
  });
});

describe("arbitrary paths and methods", () => {
  const segment = fc.oneof(
    fc.constantFrom(
      "v1",
      "status",
      "manifest",
      "manifests",
      "recover",
      "mesh",
      "certificate",
      "healthz",
      "readyz",
      "metrics",
      "openapi.json",
      "..",
      ".",
      "",
      "%2e%2e",
      "%zz",
      "%",
      "%2F",
      "%00",
      "%E2%82",
      "%C0%AF",
    ),
    fc.string({ unit: fc.constantFrom(..."abcxyzAZ09-._~!$&'()*+,;=:@%"), maxLength: 12 }),
  );
  const path = fc
    .tuple(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.option(printable.map((q) => "?" + encodeURI(q)), { nil: "" }))
    .map(([segments, query]) => "/" + segments.join("/") + query);
  const method = fc.oneof(
    fc.constantFrom("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "post"),
    fc.string({ unit: fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ-!#$%&'*+.^_`|~"), minLength: 1, maxLength: 10 }),
  );

  it("never give a 5xx, and change nothing", async () => {
    const states = ["ready", "recovery-required"] as const;
    const initial = new Map<FixtureState, Awaited<ReturnType<typeof snapshot>>>();
    for (const s of states) initial.set(s, await snapshot(fx(s).app, fx(s).store));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...states), method, path, fc.option(fc.string({ maxLength: 100 }), { nil: undefined }), async (state, m, p, b) => {
        const upper = m.toUpperCase();
        const withBody = b !== undefined && upper !== "GET" && upper !== "HEAD";
        const f = fx(state);
        const answer = await send(f.app, { method: m, path: p, ...(withBody ? { body: b } : {}) });
        const code = (answer.json as { error?: { code?: string } } | undefined)?.error?.code;
        if (answer.status === 405 && upper !== "HEAD") expect(code).toBe("METHOD_NOT_ALLOWED");
        if (answer.status === 404 && upper !== "HEAD") expect(code).toBe("NOT_FOUND");
        expect(await snapshot(f.app, f.store)).toEqual(initial.get(state));
      }),
      { numRuns: 400 },
    );
  });
});

/** How Node renders an IP address in subjectAltName: dotted IPv4, or eight upper-case hex groups. */
function renderedIp(ip: string): string {
  if (isIP(ip) === 4) return ip;
  let s = ip;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = s.slice(0, v4.index) + ((a << 8) | b).toString(16) + ":" + ((c << 8) | d).toString(16);
  }
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  return groups.map((g) => parseInt(g, 16).toString(16).toUpperCase()).join(":");
}

describe("manifest SANs", () => {
  // Valid names and addresses, and junk made of the characters IP addresses and DNS names use.
  const san = fc.oneof(
    // The unspecified addresses (0.0.0.0, ::) name no host and are refused.
    fc.ipV4().map((value) => ({ value, valid: value !== "0.0.0.0" })),
    fc.ipV6().map((value) => ({ value, valid: canonicalIp(value) !== canonicalIp("::") })),
    fc.domain().map((value) => ({ value, valid: true })),
    fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF:.*-_"), minLength: 1, maxLength: 20 }).map((value) => ({ value, valid: false })),
  );

  it("whatever SANs the first set accepts, the mesh certificate carries them; valid ones are always accepted", async () => {
    const key = validWorkloadKey;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(san, { minLength: 1, maxLength: 3, selector: (s) => s.value }), async (sans) => {
        const f = await fixture("uninitialized", owners);
        const p = f.policies[0]!;
        const manifest = utf8(
          JSON.stringify({
            Policies: { [p.hash]: { SANs: sans.map((s) => s.value), WorkloadSecretID: "web" } },
            WorkloadOwnerKeyDigests: [],
            SeedshareOwnerPubKeys: [owners.seed.publicHex],
          }),
        );
        const set = await postJson(f.app, "/v1/manifest", firstSetBody(manifest, [p.bytes]));
        expect(set.status, set.text).toBeLessThan(500);
        const allValid = sans.every((s) => s.valid);
        if (allValid) expect(set.status, `valid SANs refused: ${set.text}`).toBe(200);
        if (set.status !== 200) {
          expect(set.json.error.code).toBe("INVALID_MANIFEST");
          return;
        }
        const cert = await postJson(f.app, "/v1/mesh/certificate", { publicKey: key, evidence: { type: "insecure-simulated", policyHash: p.hash } });
        expect(cert.status, `the set accepted ${JSON.stringify(sans.map((s) => s.value))}, the certificate answered ${cert.text}`).toBe(200);
        if (allValid) {
          const leaf = new X509Certificate(cert.json.certChain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)[0]);
          const expected = sans.map((s) => (isIP(s.value) === 0 ? `DNS:${s.value}` : `IP Address:${renderedIp(s.value)}`)).join(", ");
          expect(leaf.subjectAltName).toBe(expected);
        }
      }),
      { numRuns: 60 },
    );
  });
});
