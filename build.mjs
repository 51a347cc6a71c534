// Bundles each entry point into one self-contained ES module under dist/ (no node_modules needed at run time).
// `BUILD_OUT=<dir> BUILD_MINIFY=0 node build.mjs` writes readable bundles elsewhere, e.g. for CPU profiles;
// `BUILD_META=1` also writes each bundle's esbuild metafile (<out>.meta.json: what each input adds).
import { build } from "esbuild";
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

// CommonJS dependencies call require() for Node built-ins; give the ES module bundle one.
const nodeRequire = "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);";

const entries = [
  // The Coordinator server for Node: `node dist/coordinator.mjs`.
  { in: "adapters/node/main.ts", out: "coordinator", platform: "node", banner: nodeRequire, lazy: true },
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

// `import { z } from "zod"` binds zod's whole namespace as one value, which esbuild cannot tree-shake:
// every locale and unused API (about 330 KB minified) would be bundled, parsed at each start and
// evaluated. `import * as z from "zod"` binds the same exports, and esbuild keeps only the properties
// the code reads. The project's sources are read with that one import line rewritten.
const zodNamespace = {
  name: "zod-namespace",
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes("/node_modules/")) return undefined;
      const source = await readFile(args.path, "utf8");
      return { contents: source.replace(/^import \{ z \} from "zod";$/m, 'import * as z from "zod";'), loader: "ts" };
    });
  },
};

// The Coordinator's start needs none of the X.509 and ASN.1 libraries (they parse and make
// certificates, which requests do), yet, being CommonJS, each would run its whole module graph at
// start (tens of milliseconds: class decorators, schema registries). For the Node server, an import
// of one of them from the project's sources gets the same exports through getters that load the
// library on the first read of any of them (constants, such as object identifiers, are plain
// values); the libraries themselves are bundled unchanged. A library that a module uses at its top
// level (a class extending one of its classes) is loaded at start as before.
const lazyPackages = ["@peculiar/x509", "@peculiar/asn1-x509", "@peculiar/asn1-rsa", "@peculiar/asn1-ecc", "@peculiar/asn1-schema"];
const lazyCommonJs = {
  name: "lazy-commonjs",
  setup(b) {
    const projectRequire = createRequire(import.meta.url);
    const filter = new RegExp(`^(${lazyPackages.map((p) => p.replace(/[/.-]/g, "\\$&")).join("|")})$`);
    b.onResolve({ filter }, (args) => {
      if (args.pluginData === "lazy-commonjs" || args.importer.includes("/node_modules/")) return undefined;
      return { path: args.path, namespace: "lazy-commonjs" };
    });
    b.onLoad({ filter: /.*/, namespace: "lazy-commonjs" }, async (args) => {
      // The exports, from the library as Node loads it (its decorators need reflect-metadata).
      projectRequire("reflect-metadata");
      const library = projectRequire(args.path);
      const names = Object.keys(library);
      if (names.length === 0) throw new Error(`lazy-commonjs: ${args.path} exports nothing`);
      const constant = (name) => ["string", "number", "boolean"].includes(typeof library[name]);
      const constants = Object.fromEntries(names.filter(constant).map((name) => [name, library[name]]));
      return {
        contents:
          `let real;\nconst load = () => (real ??= require(${JSON.stringify(args.path)}));\n` +
          `for (const [name, value] of Object.entries(${JSON.stringify(constants)})) Object.defineProperty(module.exports, name, { enumerable: true, value });\n` +
          `for (const name of ${JSON.stringify(names.filter((name) => !constant(name)))}) Object.defineProperty(module.exports, name, { enumerable: true, get: () => load()[name] });\n`,
        loader: "js",
        resolveDir: process.cwd(),
        pluginData: "lazy-commonjs",
      };
    });
  },
};

const outDir = process.env.BUILD_OUT ?? "dist";
const minify = process.env.BUILD_MINIFY !== "0";
mkdirSync(outDir, { recursive: true });
for (const entry of entries) {
  if (!existsSync(entry.in)) continue;
  const result = await build({
    entryPoints: [entry.in],
    metafile: process.env.BUILD_META === "1",
    // Written beside the target and renamed over it, so a reader never sees a half-written bundle.
    outfile: `${outDir}/.${entry.out}.${process.pid}.mjs`,
    bundle: true,
    platform: entry.platform,
    format: "esm",
    target: entry.platform === "node" ? "node20" : "es2022",
    conditions: entry.platform === "neutral" ? ["workerd", "worker", "browser", "import", "default"] : [],
    mainFields: entry.platform === "neutral" ? ["module", "main"] : undefined,
    minify,
    sourcemap: false,
    legalComments: "none",
    banner: entry.banner ? { js: entry.banner } : undefined,
    logLevel: "warning",
    plugins: [...(entry.platform === "neutral" ? [webcryptoStub] : []), ...(entry.lazy === true ? [lazyCommonJs] : []), zodNamespace],
  });
  // A bundle with a shebang is a command: make it executable.
  if (entry.banner.startsWith("#!")) chmodSync(`${outDir}/.${entry.out}.${process.pid}.mjs`, 0o755);
  renameSync(`${outDir}/.${entry.out}.${process.pid}.mjs`, `${outDir}/${entry.out}.mjs`);
  if (result.metafile !== undefined) writeFileSync(`${outDir}/${entry.out}.meta.json`, JSON.stringify(result.metafile));
}
