// DNS rebinding against the real bundle: with --allowed-hosts localhost, requests naming another Host (as a rebound browser page sends them) are refused with 421 HOST_NOT_ALLOWED and change nothing.
import "reflect-metadata";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstSetBody, manifestBytes, policy, seedShareOwner, workloadOwner } from "../helpers.js";
import { ensureBundle, killAll, startCoordinator } from "./process.js";
import type { CoordinatorProcess } from "./process.js";

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/** One HTTP/1.1 request to 127.0.0.1:port with an explicit Host header (fetch will not set one). */
function send(port: number, method: string, path: string, host: string, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        setHost: false,
        headers: { host, ...(payload === undefined ? {} : { "content-type": "application/json", "content-length": String(payload.length) }) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

describe("--allowed-hosts against DNS rebinding (real process)", () => {
  let proc: CoordinatorProcess;
  let body: Record<string, unknown>;

  beforeAll(async () => {
    ensureBundle();
    const [seed, workload, web] = await Promise.all([seedShareOwner(), workloadOwner(), policy("policy of web")]);
    const manifest = manifestBytes({ policies: [{ ...web, name: "web" }], workloadOwners: [workload.digest], seedShareOwners: [seed.publicHex] });
    body = firstSetBody(manifest, [web.bytes]);
    proc = await startCoordinator({ store: "memory", extraArgs: ["--allowed-hosts", "localhost"] });
  });
  afterAll(async () => {
    await killAll();
  });

  it("logs the allowed hosts in the listening line", () => {
    const listening = proc.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "listening");
    expect(listening).toMatchObject({ allowedHosts: ["localhost"], state: "uninitialized" });
  });

  it("refuses a first set and a status read for Host attacker.example, and nothing changes", async () => {
    const set = await send(proc.port, "POST", "/v1/manifest", "attacker.example", body);
    expect([set.status, set.json?.error?.code]).toEqual([421, "HOST_NOT_ALLOWED"]);
    const status = await send(proc.port, "GET", "/v1/status", `attacker.example:${proc.port}`);
    expect([status.status, status.json?.error?.code]).toEqual([421, "HOST_NOT_ALLOWED"]);
    const lookalike = await send(proc.port, "POST", "/v1/manifest", `localhost.attacker.example:${proc.port}`, body);
    expect([lookalike.status, lookalike.json?.error?.code]).toEqual([421, "HOST_NOT_ALLOWED"]);

    const after = await send(proc.port, "GET", "/v1/status", `localhost:${proc.port}`);
    expect(after.status).toBe(200);
    expect(after.json).toMatchObject({ state: "uninitialized" });
  });

  it("answers the probes for any Host (kubelet probes by Pod IP)", async () => {
    expect((await send(proc.port, "GET", "/healthz", "10.1.2.3:1313")).status).toBe(200);
    expect((await send(proc.port, "GET", "/readyz", "attacker.example")).status).toBe(503);
    expect((await send(proc.port, "GET", "/metrics", "attacker.example")).status).toBe(200);
  });

  it("serves the same first set for Host localhost:<port> (the refused body was a working one)", async () => {
    const set = await send(proc.port, "POST", "/v1/manifest", `LocalHost:${proc.port}`, body);
    expect(set.status).toBe(200);
    expect(set.json.seedShares).toBeDefined();
    const status = await send(proc.port, "GET", "/v1/status", "localhost");
    expect(status.json).toMatchObject({ state: "ready", generation: 1 });
    // Still refused for the rebound name after the set.
    expect((await send(proc.port, "GET", "/v1/manifests", "attacker.example")).status).toBe(421);
  });
});
