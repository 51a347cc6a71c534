// Bundles each entry point into one self-contained ES module under dist/ (no node_modules needed at run time).
import { build } from "esbuild";
import { mkdirSync } from "node:fs";

const entries = [{ in: "adapters/node/main.ts", out: "coordinator" }];

mkdirSync("dist", { recursive: true });
for (const entry of entries) {
  await build({
    entryPoints: [entry.in],
    outfile: `dist/${entry.out}.mjs`,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    // Some dependencies are CommonJS and call require() for Node built-ins.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: "warning",
  });
}
