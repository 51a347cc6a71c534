// scripts/kube-apiserver.sh names no mirror: its private apt sources come from the machine's own apt configuration (one-line and deb822 files), checked on fixture configurations through APT_CONFIG.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../e2e/process.js";

const script = join(projectRoot, "scripts", "kube-apiserver.sh");

function hasAptConfig(): boolean {
  try {
    execFileSync("apt-config", ["dump"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const apt = hasAptConfig();

const work = mkdtempSync(join(tmpdir(), "contrast-kube-sources-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs `kube-apiserver.sh sources` on an apt configuration made of these files only. */
function sourcesFor(name: string, files: { list?: string; parts?: Record<string, string> }): { status: number | null; stdout: string; stderr: string } {
  const dir = join(work, name);
  mkdirSync(join(dir, "sources.list.d"), { recursive: true });
  if (files.list !== undefined) writeFileSync(join(dir, "sources.list"), files.list);
  for (const [file, text] of Object.entries(files.parts ?? {})) writeFileSync(join(dir, "sources.list.d", file), text);
  writeFileSync(join(dir, "apt.conf"), `Dir::Etc::SourceList "${dir}/sources.list";\nDir::Etc::SourceParts "${dir}/sources.list.d/";\n`);
  const result = spawnSync("bash", [script, "sources"], { env: { ...process.env, APT_CONFIG: join(dir, "apt.conf") }, encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe.skipIf(!apt)(`kube-apiserver.sh sources${apt ? "" : " (skipped: apt-config not installed)"}`, () => {
  it("names no mirror host of its own", () => {
    const text = readFileSync(script, "utf8");
    expect(text).not.toMatch(/deb\.debian\.org|https?:\/\/[a-z0-9.-]+\/debian/);
  });

  it("takes the URIs and Signed-By of enabled Debian entries, one-line and deb822, and derives bookworm(+updates, +security, deb-src) and bullseye(+security) from them", () => {
    const out = sourcesFor("mixed", {
      list: [
        "# deb http://commented.example/debian bookworm main",
        "deb [ arch=amd64 signed-by=/keys/mirror.gpg ] http://mirror.example/debian/ trixie main contrib",
        "deb-src http://src-only.example/debian bookworm main",
        "deb http://third-party.example/apt nodistro main",
        "deb http://mirror.example/debian bookworm-updates main",
        "",
      ].join("\n"),
      parts: {
        "debian.sources": [
          "Types: deb",
          "URIs: http://security.example/debian-security",
          "Suites: trixie-security",
          "Components: main",
          "Signed-By:",
          " -----BEGIN PGP PUBLIC KEY BLOCK-----",
          " .",
          " mQINBGRKEY",
          " -----END PGP PUBLIC KEY BLOCK-----",
          "",
          "# switched off: ignored",
          "Types: deb",
          "URIs: http://disabled.example/debian",
          "Suites: bookworm",
          "Components: main",
          "Enabled: no",
          "",
        ].join("\n"),
        "vendor.sources": "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n",
        "old.list.disabled": "deb http://not-read.example/debian bookworm main\n",
      },
    });
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout).toBe(
      [
        "Types: deb deb-src",
        "URIs: http://mirror.example/debian",
        "Suites: bookworm bookworm-updates",
        "Components: main",
        "Signed-By: /keys/mirror.gpg",
        "",
        "Types: deb",
        "URIs: http://mirror.example/debian",
        "Suites: bullseye",
        "Components: main",
        "Signed-By: /keys/mirror.gpg",
        "",
        "Types: deb deb-src",
        "URIs: http://security.example/debian-security",
        "Suites: bookworm-security",
        "Components: main",
        "Signed-By:",
        " -----BEGIN PGP PUBLIC KEY BLOCK-----",
        " .",
        " mQINBGRKEY",
        " -----END PGP PUBLIC KEY BLOCK-----",
        "",
        "Types: deb",
        "URIs: http://security.example/debian-security",
        "Suites: bullseye-security",
        "Components: main",
        "Signed-By:",
        " -----BEGIN PGP PUBLIC KEY BLOCK-----",
        " .",
        " mQINBGRKEY",
        " -----END PGP PUBLIC KEY BLOCK-----",
        "",
        "",
      ].join("\n"),
    );
  });

  it("fails with a message when the machine has no Debian source", () => {
    const out = sourcesFor("none", { parts: { "vendor.sources": "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n" } });
    expect(out.status).toBe(1);
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(/no enabled Debian source/);
  });
});
