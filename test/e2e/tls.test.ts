// The Node adapter serves HTTPS with --tls-cert and --tls-key, and refuses unreadable TLS files with one clear line.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBundle, killAll, runBundle, startCoordinator } from "./process.js";

function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, servername: "localhost" }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("TLS", () => {
  let dir: string;

  beforeAll(() => {
    ensureBundle();
    dir = mkdtempSync(join(tmpdir(), "coordinator-tls-"));
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
    ], { stdio: "ignore" });
  });

  afterAll(async () => {
    await killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the API over HTTPS", async () => {
    const coordinator = await startCoordinator({
      store: "memory",
      extraArgs: ["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")],
    });
    const listening = coordinator.stdout.map((l) => JSON.parse(l) as { msg: string; tls?: boolean }).find((l) => l.msg === "listening");
    expect(listening?.tls).toBe(true);
    const res = await httpsGet(`https://127.0.0.1:${coordinator.port}/v1/status`, readFileSync(join(dir, "cert.pem")));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ state: "uninitialized", name: "coordinator" });
    await expect(fetch(`http://127.0.0.1:${coordinator.port}/v1/status`)).rejects.toThrow();
    expect((await coordinator.stop("SIGTERM")).code).toBe(0);
  });

  it("exits with one line when a TLS file cannot be read", async () => {
    const result = await runBundle(
      ["--store", "memory", "--port", "0", "--host", "127.0.0.1", "--tls-cert", join(dir, "missing.pem"), "--tls-key", join(dir, "key.pem")],
      { cwd: dir },
    );
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/^contrast-coordinator: error: cannot read the TLS files/);
  });
});
