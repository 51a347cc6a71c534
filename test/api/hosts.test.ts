// Allowed hosts against DNS rebinding, in process: the matching rules, the app's 421 HOST_NOT_ALLOWED before any route runs, open probes, and the Worker's ALLOWED_HOSTS var.
import "reflect-metadata";
import { beforeAll, describe, expect, it } from "vitest";
import { parseWorkerConfig } from "../../adapters/worker/config.js";
import { createApp } from "../../src/app.js";
import { hostAllowed, parseAllowedHosts, parseHostPattern } from "../../src/api/hosts.js";
import { Coordinator } from "../../src/coordinator/coordinator.js";
import { memoryDriver } from "../../src/storage/memory.js";
import { createStore } from "../../src/storage/store.js";
import { firstSetBody } from "../helpers.js";
import { call, makeOwners, manifestOf, namedPolicy, simulated } from "./fixture.js";
import type { Owners } from "./fixture.js";

describe("host patterns", () => {
  it("normalises entries: lower case, IPv6 in brackets (bare or bracketed), a trailing dot dropped, an optional port", () => {
    expect(parseHostPattern("Coordinator.Contrast.SVC")).toEqual({ host: "coordinator.contrast.svc", port: null });
    expect(parseHostPattern("localhost:1313")).toEqual({ host: "localhost", port: 1313 });
    expect(parseHostPattern("coordinator.contrast.svc.cluster.local.")).toEqual({ host: "coordinator.contrast.svc.cluster.local", port: null });
    expect(parseHostPattern("[::1]:8443")).toEqual({ host: "[::1]", port: 8443 });
    expect(parseHostPattern("fd00:0:0::0001")).toEqual({ host: "[fd00::1]", port: null });
    expect(parseHostPattern(" 10.0.0.7 ")).toEqual({ host: "10.0.0.7", port: null });
  });

  it.each(["", "a b", "user@localhost", "localhost:99999", "localhost:", "[::1", "http://localhost", "localhost/path", "*.example", "bücher.example"])(
    "refuses the entry %j",
    (entry) => {
      expect(() => parseHostPattern(entry)).toThrow(/is not a host name/);
    },
  );

  it("parses a comma-separated list, and refuses an empty list or an empty entry", () => {
    expect(parseAllowedHosts("coordinator, coordinator.contrast ,localhost:1313")).toEqual(["coordinator", "coordinator.contrast", "localhost:1313"]);
    expect(() => parseAllowedHosts("")).toThrow(/at least one/);
    expect(() => parseAllowedHosts(" , ")).toThrow(/at least one/);
    expect(() => parseAllowedHosts("a,,b")).toThrow(/empty entry/);
    expect(() => parseAllowedHosts("a,b c")).toThrow(/is not a host name/);
  });

  const patterns = ["coordinator", "coordinator.contrast.svc", "localhost:1313", "[::1]", "127.0.0.1:80"].map(parseHostPattern);
  it.each([
    ["coordinator", true],
    ["COORDINATOR:1313", true],
    ["coordinator.contrast.svc:9999", true],
    ["coordinator.contrast.svc.", true],
    ["localhost:1313", true],
    ["localhost", false], // the entry names port 1313; no port means 80
    ["localhost:1314", false],
    ["[::1]:1313", true],
    ["[0:0:0:0:0:0:0:1]", true],
    ["::1", false], // a Host header must bracket IPv6
    ["127.0.0.1", true], // default port 80 matches the entry's :80
    ["127.1:80", true],
    ["127.0.0.1:1313", false],
    ["attacker.example", false],
    ["coordinator.attacker.example", false],
    ["attacker.example:1313", false],
    ["coordinator@attacker.example", false],
    ["coordinator:1313@attacker.example", false],
    ["", false],
  ])("Host %j allowed: %s", (authority, allowed) => {
    expect(hostAllowed(patterns, authority, 80)).toBe(allowed);
  });
});

describe("createApp with allowedHosts", () => {
  let owners: Owners;
  let body: Record<string, unknown>;

  beforeAll(async () => {
    owners = await makeOwners();
    const policies = [await namedPolicy("web")];
    body = firstSetBody(manifestOf(owners, policies), policies.map((p) => p.bytes));
  });

  async function app(allowedHosts?: readonly string[]) {
    const coordinator = await Coordinator.start({ store: createStore(memoryDriver()), name: "hosts", validators: simulated() });
    return createApp({ coordinator, ...(allowedHosts === undefined ? {} : { allowedHosts }) });
  }

  const postInit = (payload: unknown, headers: Record<string, string> = {}): RequestInit => ({
    method: "POST",
    body: JSON.stringify(payload),
    headers: { "content-type": "application/json", ...headers },
  });

  it("refuses a first set for another host with 421 HOST_NOT_ALLOWED and changes nothing; the allowed host sets", async () => {
    const a = await app(["coordinator.contrast.svc", "localhost:1313"]);
    const refused = await call(a, "http://attacker.example/v1/manifest", postInit(body));
    expect(refused.status).toBe(421);
    expect(refused.json.error.code).toBe("HOST_NOT_ALLOWED");
    expect((await call(a, "http://localhost:1313/v1/status")).json.state).toBe("uninitialized");

    const set = await call(a, "http://Coordinator.Contrast.Svc:1313/v1/manifest", postInit(body));
    expect(set.status).toBe(200);
    expect((await call(a, "http://localhost:1313/v1/status")).json.state).toBe("ready");
  });

  it("decides by the URL's host, which the runtime builds from the Host header", async () => {
    const a = await app(["localhost:1313"]);
    const other = await call(a, "http://localhost:1314/v1/manifest", postInit(body));
    expect([other.status, other.json.error.code]).toEqual([421, "HOST_NOT_ALLOWED"]);
    expect((await call(a, "http://LOCALHOST:1313/v1/status")).status).toBe(200);
    expect((await call(a, "http://localhost:1313/v1/status")).json.state).toBe("uninitialized");
  });

  it("refuses every API path for another host, reads included, before routing (no 404 or 405 oracle)", async () => {
    const a = await app(["coordinator"]);
    for (const [method, path] of [
      ["GET", "/v1/status"],
      ["GET", "/v1/manifests"],
      ["GET", "/v1/openapi.json"],
      ["POST", "/v1/recover"],
      ["DELETE", "/v1/recover"],
      ["POST", "/v1/mesh/certificate"],
      ["GET", "/no/such/path"],
      ["POST", "/healthz"],
    ] as const) {
      const answer = await call(a, `http://10.0.0.7:1313${path}`, { method });
      expect([method, path, answer.status, answer.json?.error?.code]).toEqual([method, path, 421, "HOST_NOT_ALLOWED"]);
    }
  });

  it("answers the probes (GET and HEAD of /healthz, /readyz, /metrics) for any Host: kubelet probes by Pod IP", async () => {
    const a = await app(["coordinator"]);
    expect((await call(a, "http://10.0.0.7:1313/healthz")).status).toBe(200);
    expect((await call(a, "http://10.0.0.7:1313/readyz")).status).toBe(503); // uninitialized: not ready, but answered
    expect((await call(a, "http://10.0.0.7:1313/healthz", { method: "HEAD" })).status).toBe(200);
    const metrics = await call(a, "http://10.0.0.7:1313/metrics");
    expect(metrics.status).toBe(200);
    await call(a, "http://attacker.example/v1/status");
    expect((await call(a, "http://10.0.0.7:1313/metrics")).text).toContain('coordinator_http_requests_total{method="GET",status="421"} 1');
  });

  it("answers every Host when allowedHosts is left out (the default)", async () => {
    const a = await app();
    expect((await call(a, "http://attacker.example/v1/status", { headers: { host: "attacker.example" } })).status).toBe(200);
  });
});

describe("the Worker's ALLOWED_HOSTS var", () => {
  it("is optional, and takes a comma-separated string or an array of strings", () => {
    expect(parseWorkerConfig({}).allowedHosts).toBeNull();
    expect(parseWorkerConfig({ ALLOWED_HOSTS: "coordinator.example.com, localhost:8787" }).allowedHosts).toEqual([
      "coordinator.example.com",
      "localhost:8787",
    ]);
    expect(parseWorkerConfig({ ALLOWED_HOSTS: ["coordinator.example.com", "[::1]"] }).allowedHosts).toEqual(["coordinator.example.com", "[::1]"]);
  });

  it.each([[""], ["a,,b"], ["a b"], [42], [["a", 1]]])("refuses ALLOWED_HOSTS %j with CONFIG_INVALID", (value) => {
    let error: unknown;
    try {
      parseWorkerConfig({ ALLOWED_HOSTS: value });
    } catch (err) {
      error = err;
    }
    expect((error as { code?: string }).code).toBe("CONFIG_INVALID");
    expect((error as Error).message).toMatch(/^ALLOWED_HOSTS /);
  });
});
