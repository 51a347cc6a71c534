// The Node adapter's configuration: defaults, flags over environment, and one clear error per mistake.
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../adapters/node/config.js";

describe("parseConfig", () => {
  it("defaults to port 1313, an fs store under ./data, name coordinator, no attestation, no TLS", () => {
    expect(parseConfig([], {})).toEqual({
      port: 1313,
      host: "0.0.0.0",
      store: { kind: "fs", dir: "./data" },
      name: "coordinator",
      attestation: "none",
      tls: null,
      recoveryTimeoutMs: 600_000,
    });
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
    expect(parseConfig(["--attestation", "insecure-simulated"], {})).toMatchObject({ attestation: "insecure-simulated" });
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

  it.each([
    ["kubernetes:bogus=1", /unknown option "bogus"/],
    ["kubernetes:server=", /server needs a value/],
    ["kubernetes:server=ftp://x", /https:\/\/ URL/],
    ["kubernetes:server=https://h/path", /without a path/],
    ["kubernetes:server=not a url", /must be a URL/],
    ["kubernetes:namespace=Bad_NS", /namespace must be a DNS label/],
    ["kubernetes:mode=secret", /mode must be crd or configmap/],
    ["kubernetes:namespace=a,namespace=b", /given twice/],
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
