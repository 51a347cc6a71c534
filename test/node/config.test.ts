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
    });
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
