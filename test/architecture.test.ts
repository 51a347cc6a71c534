// Keeps the core runtime-neutral: nothing under src/ may import a node:* module or use Node-only globals.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

const nodeBuiltins = /(?:from\s+|import\s*\(\s*|require\s*\(\s*)["'](node:[^"']+|fs|path|os|crypto|child_process|http|https|net|util|stream|buffer)(?:\/[^"']*)?["']/;
const nodeGlobals = /\b(?:process\.|Buffer\.|Buffer\b(?=\s*[.(<])|__dirname|__filename|require\s*\()/;

describe("the core in src/", () => {
  const files = sources("src");

  it("has source files to check", () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it.each(files)("%s imports no Node module", (file) => {
    const text = readFileSync(file, "utf8");
    expect(text.match(nodeBuiltins)?.[0] ?? null).toBeNull();
  });

  it.each(files)("%s uses no Node-only global", (file) => {
    const code = readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => !/^\s*(\/\/|\*|\/\*)/.test(line))
      .join("\n");
    expect(code.match(nodeGlobals)?.[0] ?? null).toBeNull();
  });

  it("the checks catch a Node import when there is one", () => {
    expect(nodeBuiltins.test('import { readFile } from "node:fs/promises";')).toBe(true);
    expect(nodeBuiltins.test('import x from "crypto";')).toBe(true);
    expect(nodeGlobals.test("const b = Buffer.from(x);")).toBe(true);
    expect(nodeBuiltins.test('import { z } from "zod";')).toBe(false);
  });
});
