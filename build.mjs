// Bundles each entry point into one self-contained ES module under dist/ (no node_modules needed at run time).
import { build } from "esbuild";
import { chmodSync, existsSync, mkdirSync, renameSync } from "node:fs";

// CommonJS dependencies call require() for Node built-ins; give the ES module bundle one.
const nodeRequire = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

const entries = [
  // The Coordinator server for Node: `node dist/coordinator.mjs`.
  { in: "adapters/node/main.ts", out: "coordinator", platform: "node", banner: nodeRequire },
  // The `contrast` command-line tool: `node dist/contrast.mjs` (the package's bin).
  { in: "adapters/cli/main.ts", out: "contrast", platform: "node", banner: `#!/usr/bin/env node\n${nodeRequire}` },
  // The Coordinator as a Worker for workerd / wrangler.
  { in: "adapters/worker/index.ts", out: "worker", platform: "neutral", banner: "" },
];

// @hpke/common falls back to `import("crypto")` where no globalThis.crypto exists (old Node); the
// Worker always has one, and workerd refuses a bundle naming a Node built-in: give it a stub.
const webcryptoStub = {
  name: "webcrypto-stub",
  setup(b) {
    b.onResolve({ filter: /^(node:)?crypto$/ }, () => ({ path: "crypto", namespace: "webcrypto-stub" }));
    b.onLoad({ filter: /.*/, namespace: "webcrypto-stub" }, () => ({ contents: "export const webcrypto = globalThis.crypto;", loader: "js" }));
  },
};

mkdirSync("dist", { recursive: true });
for (const entry of entries) {
  if (!existsSync(entry.in)) continue;
  await build({
    entryPoints: [entry.in],
    // Written beside the target and renamed over it, so a reader never sees a half-written bundle.
    outfile: `dist/.${entry.out}.${process.pid}.mjs`,
    bundle: true,
    platform: entry.platform,
    format: "esm",
    target: entry.platform === "node" ? "node20" : "es2022",
    conditions: entry.platform === "neutral" ? ["workerd", "worker", "browser", "import", "default"] : [],
    mainFields: entry.platform === "neutral" ? ["module", "main"] : undefined,
    minify: true,
    sourcemap: false,
    legalComments: "none",
    banner: entry.banner ? { js: entry.banner } : undefined,
    logLevel: "warning",
    plugins: entry.platform === "neutral" ? [webcryptoStub] : [],
  });
  // A bundle with a shebang is a command: make it executable.
  if (entry.banner.startsWith("#!")) chmodSync(`dist/.${entry.out}.${process.pid}.mjs`, 0o755);
  renameSync(`dist/.${entry.out}.${process.pid}.mjs`, `dist/${entry.out}.mjs`);
}
