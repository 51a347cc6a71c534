// The Node adapter's configuration: defaults, flags over environment, and one clear error per mistake.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../adapters/node/config.js";
import { hostAllowed, parseHostPattern } from "../../src/api/hosts.js";
import { projectRoot } from "../e2e/process.js";

describe("parseConfig", () => {
  it("defaults to port 1313, an fs store under ./data, name coordinator, no attestation, no TLS", () => {
    expect(parseConfig([], {})).toEqual({
      port: 1313,
      host: "0.0.0.0",
      store: { kind: "fs", dir: "./data" },
      name: "coordinator",
      attestation: [],
      attestationRootsFile: null,
      tls: null,
      recoveryTimeoutMs: 600_000,
      auditIntervalMs: 60_000,
      followIntervalMs: 500,
      peers: null,
      peerIntervalMs: 2_000,
      simulatedTeeFile: null,
      allowedHosts: null,
      evidence: "none",
      tsmPath: "/sys/kernel/config/tsm/report",
    });
  });

  it("reads --allowed-hosts (or CONTRAST_ALLOWED_HOSTS) as a list, and an empty or malformed one is a mistake", () => {
    expect(parseConfig(["--allowed-hosts", "coordinator,coordinator.contrast.svc, localhost:1313,[::1]"], {})).toMatchObject({
      allowedHosts: ["coordinator", "coordinator.contrast.svc", "localhost:1313", "[::1]"],
    });
    expect(parseConfig([], { CONTRAST_ALLOWED_HOSTS: "a.example" })).toMatchObject({ allowedHosts: ["a.example"] });
    expect(parseConfig(["--allowed-hosts", "b.example"], { CONTRAST_ALLOWED_HOSTS: "a.example" })).toMatchObject({ allowedHosts: ["b.example"] });
    for (const [argv, env] of [
      [["--allowed-hosts", ""], {}],
      [[], { CONTRAST_ALLOWED_HOSTS: "" }],
      [["--allowed-hosts", "a,,b"], {}],
      [["--allowed-hosts", "http://a.example"], {}],
      [["--allowed-hosts", "a.example:70000"], {}],
    ] as const) {
      expect(() => parseConfig([...argv], env)).toThrow(/^--allowed-hosts /);
    }
  });

  it("reads the follow interval: 0 (off) or 100ms to 1h, default 500ms", () => {
    expect(parseConfig([], {})).toMatchObject({ followIntervalMs: 500 });
    expect(parseConfig(["--follow-interval", "0"], {})).toMatchObject({ followIntervalMs: 0 });
    expect(parseConfig([], { CONTRAST_FOLLOW_INTERVAL: "2s" })).toMatchObject({ followIntervalMs: 2_000 });
    for (const bad of ["50ms", "2h", "often", ""]) expect(() => parseConfig(["--follow-interval", bad], {})).toThrow(/--follow-interval/);
  });

  it("reads the audit interval as a duration from 1s to 24h", () => {
    expect(parseConfig(["--audit-interval", "5s"], {})).toMatchObject({ auditIntervalMs: 5_000 });
    expect(parseConfig([], { CONTRAST_AUDIT_INTERVAL: "2m" })).toMatchObject({ auditIntervalMs: 120_000 });
    for (const bad of ["0", "500ms", "25h", "often"]) {
      expect(() => parseConfig(["--audit-interval", bad], {})).toThrow(/--audit-interval/);
    }
  });

  it("reads the recovery timeout as a duration", () => {
    expect(parseConfig(["--recovery-timeout", "90s"], {})).toMatchObject({ recoveryTimeoutMs: 90_000 });
    expect(parseConfig([], { CONTRAST_RECOVERY_TIMEOUT: "1h" })).toMatchObject({ recoveryTimeoutMs: 3_600_000 });
    for (const bad of ["0", "500ms", "25h", "soon"]) {
      expect(() => parseConfig(["--recovery-timeout", bad], {})).toThrow(/--recovery-timeout/);
    }
  });

  it("reads the environment, and flags win over it", () => {
    const env = { CONTRAST_PORT: "8080", CONTRAST_STORE: "memory", CONTRAST_NAME: "from-env" };
    expect(parseConfig([], env)).toMatchObject({ port: 8080, store: { kind: "memory" }, name: "from-env" });
    expect(parseConfig(["--port", "9000", "--store", "fs:/var/lib/c", "--name", "flag"], env)).toMatchObject({
      port: 9000,
      store: { kind: "fs", dir: "/var/lib/c" },
      name: "flag",
    });
  });

  it("switches the simulated validator on only when asked", () => {
    expect(parseConfig(["--attestation", "insecure-simulated"], {})).toMatchObject({ attestation: ["insecure-simulated"] });
    expect(parseConfig(["--attestation", "sev-snp, tdx"], {})).toMatchObject({ attestation: ["sev-snp", "tdx"], attestationRootsFile: null });
    expect(parseConfig(["--attestation-roots", "roots.pem"], { CONTRAST_ATTESTATION: "tdx" })).toMatchObject({
      attestation: ["tdx"],
      attestationRootsFile: "roots.pem",
    });
    for (const bad of ["snp", "sev-snp,,tdx", "", "none,tdx"]) {
      expect(() => parseConfig(["--attestation", bad], {})).toThrow(/--attestation/);
    }
  });

  it("takes TLS files as a pair", () => {
    expect(parseConfig(["--tls-cert", "c.pem", "--tls-key", "k.pem"], {})).toMatchObject({
      tls: { certFile: "c.pem", keyFile: "k.pem" },
    });
    expect(() => parseConfig(["--tls-cert", "c.pem"], {})).toThrow(ConfigError);
  });

  it("answers --help", () => {
    expect(parseConfig(["--help"], {})).toBe("help");
  });

  it.each([
    [["--port", "abc"], /--port/],
    [["--port", "70000"], /--port/],
    [["--store", "s3:bucket"], /--store/],
    [["--store", "fs:"], /--store/],
    [["--name", "Bad_Name"], /--name/],
    [["--attestation", "snp"], /--attestation/],
    [["--bogus"], /bogus/],
    [["positional"], /positional|Unexpected argument/],
  ])("rejects %j with one line naming the problem", (argv, pattern) => {
    let error: unknown;
    try {
      parseConfig(argv, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(pattern);
    expect((error as Error).message).not.toContain("\n");
  });
});

describe("parseConfig: the kubernetes store", () => {
  it("takes `kubernetes` as in-cluster, with every setting left to the environment", () => {
    expect(parseConfig(["--store", "kubernetes"], {})).toMatchObject({ store: { kind: "kubernetes", mode: "crd" } });
    expect(parseConfig([], { CONTRAST_STORE: "kubernetes" })).toMatchObject({ store: { kind: "kubernetes", mode: "crd" } });
  });

  it("takes explicit settings after `kubernetes:`", () => {
    const store = "kubernetes:server=https://127.0.0.1:6443,namespace=contrast,token-file=/t,ca-file=/ca.crt,mode=configmap";
    expect(parseConfig(["--store", store], {})).toMatchObject({
      store: { kind: "kubernetes", server: "https://127.0.0.1:6443", namespace: "contrast", tokenFile: "/t", caFile: "/ca.crt", mode: "configmap" },
    });
    expect(parseConfig(["--store", "kubernetes:namespace=other"], {})).toEqual(
      expect.objectContaining({ store: { kind: "kubernetes", namespace: "other", mode: "crd" } }),
    );
  });

  it("accepts an http:// server without a token, and with a token only after insecure-http=true", () => {
    expect(parseConfig(["--store", "kubernetes:server=http://127.0.0.1:8001,namespace=x"], {})).toMatchObject({
      store: { kind: "kubernetes", server: "http://127.0.0.1:8001" },
    });
    const store = parseConfig(["--store", "kubernetes:server=http://127.0.0.1:8080,namespace=x,token-file=/t,insecure-http=true"], {});
    expect(store).toMatchObject({ store: { server: "http://127.0.0.1:8080", tokenFile: "/t", insecureHttp: true } });
    expect(parseConfig(["--store", "kubernetes:server=https://h,token-file=/t,insecure-http=false"], {})).toEqual(
      expect.objectContaining({ store: { kind: "kubernetes", server: "https://h", tokenFile: "/t", mode: "crd" } }),
    );
  });

  it.each([
    ["kubernetes:bogus=1", /unknown option "bogus"/],
    ["kubernetes:server=", /server needs a value/],
    ["kubernetes:server=ftp://x", /https:\/\/ URL/],
    ["kubernetes:server=https://h/path", /without a path/],
    ["kubernetes:server=not a url", /must be a URL/],
    ["kubernetes:namespace=Bad_NS", /namespace must be a DNS label/],
    ["kubernetes:mode=secret", /mode must be crd or configmap/],
    ["kubernetes:namespace=a,namespace=b", /given twice/],
    ["kubernetes:insecure-http=yes", /insecure-http must be true or false/],
    ["kubernetes:server=http://127.0.0.1:8080,token-file=/t", /refusing to send the token to http:\/\/127\.0\.0\.1:8080 over plain http/],
    ["kubernetes:server=http://127.0.0.1:8080,token-file=/t,insecure-http=false", /refusing to send the token/],
    ["kubernetes:token-file=/t,server=HTTP://10.0.0.1", /refusing to send the token/],
    ["kubernetesx", /--store must be/],
  ])("rejects --store %s with one line naming the problem", (store, pattern) => {
    let error: unknown;
    try {
      parseConfig(["--store", store], {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(pattern);
    expect((error as Error).message).not.toContain("\n");
  });
});

describe("deploy/coordinator.yaml: CONTRAST_ALLOWED_HOSTS", () => {
  const yaml = readFileSync(join(projectRoot, "deploy", "coordinator.yaml"), "utf8");

  it("names the Service in the Pod's namespace and the Pod's IP (downward API, defined before use) and localhost, and parses", () => {
    expect(yaml).toMatch(/kind: Service\nmetadata:\n {2}name: coordinator\n/);
    const ns = yaml.indexOf("- name: POD_NAMESPACE\n              valueFrom:\n                fieldRef:\n                  fieldPath: metadata.namespace");
    const value = /- name: CONTRAST_ALLOWED_HOSTS\n\s+value: "([^"]+)"/.exec(yaml);
    expect(ns).toBeGreaterThan(0);
    expect(value).not.toBeNull();
    expect(value!.index).toBeGreaterThan(ns); // Kubernetes expands $(VAR) only for variables defined earlier
    const ip = yaml.indexOf("- name: POD_IP\n              valueFrom:\n                fieldRef:\n                  fieldPath: status.podIP");
    expect(ip).toBeGreaterThan(0);
    expect(value!.index).toBeGreaterThan(ip);
    const expanded = value![1]!.replaceAll("$(POD_NAMESPACE)", "tenant-a").replaceAll("$(POD_IP)", "10.0.0.7");
    expect(expanded).not.toContain("$(");
    const config = parseConfig([], { CONTRAST_ALLOWED_HOSTS: expanded });
    const patterns = (config as { allowedHosts: string[] }).allowedHosts.map(parseHostPattern);
    for (const host of ["coordinator:1313", "coordinator.tenant-a:1313", "coordinator.tenant-a.svc:1313", "coordinator.tenant-a.svc.cluster.local", "localhost:1313", "127.0.0.1:1313", "[::1]:1313"]) {
      expect([host, hostAllowed(patterns, host, 80)]).toEqual([host, true]);
    }
    for (const host of ["attacker.example", "coordinator.other-ns.svc", "coordinator.tenant-a.svc.attacker.example"]) {
      expect([host, hostAllowed(patterns, host, 80)]).toEqual([host, false]);
    }
  });
});
