// The Node side of the Kubernetes store: in-cluster settings from the ServiceAccount directory and environment, and a token file that is read again as it rotates.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../adapters/node/config.js";
import { fileTokenSource, resolveKubernetesSettings } from "../../adapters/node/kubernetes.js";

describe("the Node side of the kubernetes store", () => {
  let dir: string;
  let sa: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "contrast-kube-adapter-"));
    sa = join(dir, "serviceaccount");
    mkdirSync(sa);
    writeFileSync(join(sa, "token"), "token-1\n");
    writeFileSync(join(sa, "ca.crt"), "-----BEGIN CERTIFICATE-----\n");
    writeFileSync(join(sa, "namespace"), "contrast\n");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("resolves in-cluster settings from the environment and the ServiceAccount directory", () => {
    const env = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };
    expect(resolveKubernetesSettings({ kind: "kubernetes", mode: "crd" }, env, sa)).toEqual({
      server: "https://10.96.0.1:443",
      namespace: "contrast",
      tokenFile: join(sa, "token"),
      caFile: join(sa, "ca.crt"),
      mode: "crd",
    });
    expect(resolveKubernetesSettings({ kind: "kubernetes", mode: "crd" }, { KUBERNETES_SERVICE_HOST: "fd00::1" }, sa).server).toBe("https://[fd00::1]:443");
  });

  it("lets explicit settings win; an explicit server uses no in-cluster token or CA", () => {
    const settings = resolveKubernetesSettings({ kind: "kubernetes", mode: "configmap", server: "https://127.0.0.1:6443", namespace: "x" }, {}, sa);
    expect(settings).toEqual({ server: "https://127.0.0.1:6443", namespace: "x", tokenFile: null, caFile: null, mode: "configmap" });
  });

  it("refuses in-cluster mode outside a cluster, and unreadable files, with one line", () => {
    expect(() => resolveKubernetesSettings({ kind: "kubernetes", mode: "crd" }, {}, sa)).toThrow(/KUBERNETES_SERVICE_HOST is unset/);
    expect(() =>
      resolveKubernetesSettings({ kind: "kubernetes", mode: "crd", server: "https://h", namespace: "n", tokenFile: join(dir, "missing") }, {}, sa),
    ).toThrow(ConfigError);
    expect(() => resolveKubernetesSettings({ kind: "kubernetes", mode: "crd", server: "https://h" }, {}, join(dir, "none"))).toThrow(
      /no namespace given/,
    );
  });

  it("re-reads the token after its maximum age and on refresh, and keeps the last one if the file vanishes", () => {
    const file = join(dir, "rotating-token");
    writeFileSync(file, "one\n");
    let now = 0;
    const token = fileTokenSource(file, 60_000, () => now);
    expect(token()).toBe("one");
    writeFileSync(file, "two\n");
    now = 59_999;
    expect(token()).toBe("one");
    now = 60_000;
    expect(token()).toBe("two");
    writeFileSync(file, "three\n");
    expect(token({ refresh: true })).toBe("three");
    rmSync(file);
    expect(token({ refresh: true })).toBe("three");
  });
});
