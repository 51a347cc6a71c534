// Keeps wrangler.toml in step with the Worker and with what the workerd tests run: entry, compatibility date, vars, the SQLite-backed Durable Object.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compatibilityDate, projectRoot } from "./workerd.js";

const toml = readFileSync(join(projectRoot, "wrangler.toml"), "utf8");
const source = readFileSync(join(projectRoot, "adapters", "worker", "index.ts"), "utf8");
const line = (pattern: RegExp): string | undefined => toml.split("\n").find((l) => pattern.test(l.trim()));

describe("wrangler.toml", () => {
  it("deploys the bundle build.mjs writes, as it is", () => {
    expect(line(/^main\s*=/)).toBe('main = "dist/worker.mjs"');
    expect(line(/^no_bundle\s*=/)).toBe("no_bundle = true");
    expect(line(/^command\s*=/)).toBe('command = "node build.mjs"');
  });

  it("names the compatibility date the tests run workerd with", () => {
    expect(line(/^compatibility_date\s*=/)).toBe(`compatibility_date = "${compatibilityDate}"`);
  });

  it("binds COORDINATOR to the exported SQLite-backed class CoordinatorObject", () => {
    expect(toml).toMatch(/\[\[durable_objects\.bindings\]\]\s*\nname = "COORDINATOR"\s*\nclass_name = "CoordinatorObject"/);
    expect(toml).toMatch(/new_sqlite_classes = \["CoordinatorObject"\]/);
    expect(source).toMatch(/export class CoordinatorObject\b/);
  });

  it("sets the two vars to their defaults", () => {
    expect(line(/^COORDINATOR_NAME\s*=/)).toBe('COORDINATOR_NAME = "coordinator"');
    expect(line(/^ATTESTATION\s*=/)).toBe('ATTESTATION = "none"');
  });
});
