// A crash can never strand a deployment, through real processes: the Coordinator (dist/coordinator.mjs on an fs store) is SIGKILLed right after each store write of a first set and of a change of the seed-share owners, so that `contrast set` loses its answer; after a restart the documented steps (contrast set, contrast recover, contrast set, contrast verify) reach ready every time. Also: a lost answer without a restart, lying servers after a lost answer, and `set` of the current manifest ("unchanged").
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HistoryResponse } from "../../src/client/client.js";
import { loadSeedShareOwnerKey } from "../../src/client/keys.js";
import { openOwnShare } from "../../src/client/seedshares.js";
import { verifyHistory } from "../../src/client/verify.js";
import type { SeedShareDocument } from "../../src/crypto/seedshares.js";
import { toBase64 } from "../../src/encoding.js";
import { bundlePath, killAll, projectRoot, startCoordinator } from "../e2e/process.js";
import type { CoordinatorProcess } from "../e2e/process.js";
import { contrast, ensureBundles, expectFailure, expectOk, ownerKeyFiles, rewritingProxy, snapshot } from "./harness.js";
import type { CliRun, OwnerKeyFiles } from "./harness.js";

const killer = join(projectRoot, "test", "cli", "crash-at-write.mjs");
const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, "utf8")) as T;

let work: string;
/** A workspace after `contrast generate`: policies/, workload-owner.pem, seedshare-owner.pem (owner A, 3072 bits), manifest.json. Copied for every case. */
let template: string;
/** A second seed-share owner, added by the change of owners. */
let bob: OwnerKeyFiles;

/** A Coordinator started with the write counter preloaded. */
interface Killable {
  url: string;
  /** The store writes so far ("<kind>/<name>", "<kind>/<name>@v/chain" or "<kind>/<name>@v/chain/<seq>.c-<id>"), in order. */
  writes: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  child: ChildProcess;
}

/** Children started here (the others are in process.ts's list); every one is SIGKILLed by pid at the end. */
const started = new Set<ChildProcess>();

/**
 * Starts dist/coordinator.mjs on `fs:<store>` with test/cli/crash-at-write.mjs preloaded: it SIGKILLs
 * itself right after the store's `killAt`-th write (0: never). Waits for the `listening` line.
 */
async function startKillable(store: string, killAt: number): Promise<Killable> {
  const env: NodeJS.ProcessEnv = { ...process.env, STRAND_STORE: store, STRAND_KILL_AT: String(killAt) };
  delete env.NODE_OPTIONS;
  delete env.NODE_PATH;
  const args = ["--import", killer, bundlePath, "--port", "0", "--host", "127.0.0.1", "--store", `fs:${store}`, "--attestation", "insecure-simulated"];
  const child = spawn(process.execPath, args, { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("close", (code, signal) => {
      started.delete(child);
      done({ code, signal });
    }),
  );
  const writes: string[] = [];
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
    const lines = err.split("\n");
    err = lines.pop()!;
    for (const line of lines) {
      const m = /^strand-write (\d+) (.*)$/.exec(line);
      if (m !== null) writes.push(m[2]!);
    }
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the Coordinator did not start")), 15_000);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      const m = /"msg":"listening".*?"port":(\d+)/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`the Coordinator exited before listening: ${JSON.stringify(e)}`));
    });
  });
  return { url: `http://127.0.0.1:${port}`, writes, exited, child };
}

/** A fresh copy of the template workspace (or of `from`). */
function workspace(name: string, from = template): string {
  const ws = join(work, name);
  cpSync(from, ws, { recursive: true });
  return ws;
}

/** The error code of a failed `--json` run (exit 1, one stderr line). */
function failureCode(run: CliRun): string {
  expectFailure(run);
  return (JSON.parse(run.stdout.slice(run.stdout.lastIndexOf('{\n  "error"'))) as { error: { code: string } }).error.code;
}

/** What the Coordinator at `url` verifiably is now: generation, latest transition and the seed-share salt of its verified head. */
async function verified(url: string): Promise<{ generation: number; latestTransition: string; salt: string }> {
  const h = await verifyHistory((await (await fetch(`${url}/v1/manifests`)).json()) as HistoryResponse);
  return { generation: h.generation, latestTransition: h.latestTransition, salt: h.head.recovery.salt };
}

async function state(url: string): Promise<string> {
  return ((await (await fetch(`${url}/v1/status`)).json()) as { state: string }).state;
}

/** Recovers a Coordinator over HTTP with the threshold-1 share of seedshare-owner.pem in `ws` (the test's shortcut, not a documented step). */
async function recoverDirectly(url: string, ws: string): Promise<void> {
  const doc = readJson<SeedShareDocument>(join(ws, "seed-shares.json"));
  const key = await loadSeedShareOwnerKey(readFileSync(join(ws, "seedshare-owner.pem"), "utf8"), "seedshare-owner.pem");
  const { share } = await openOwnShare(doc, key);
  const res = await fetch(`${url}/v1/recover`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ share: toBase64(share), salt: doc.salt }) });
  expect(res.status, await res.clone().text()).toBe(200);
  expect(await state(url)).toBe("ready");
}

/** The workspace is complete and consistent with the Coordinator: no pending record, memory at its generation, seed-shares.json the head's, root CA pinned. */
async function expectComplete(ws: string, url: string, generation: number): Promise<void> {
  const now = await verified(url);
  expect(now.generation).toBe(generation);
  expect(existsSync(join(ws, ".contrast-pending-set.json"))).toBe(false);
  expect(readJson<{ generation: number; latestTransition: string }>(join(ws, ".contrast-state.json"))).toMatchObject({ generation, latestTransition: now.latestTransition });
  expect(readJson<SeedShareDocument>(join(ws, "seed-shares.json")).salt).toBe(now.salt);
  expect(existsSync(join(ws, "coordinator-root-ca.pem"))).toBe(true);
  expect(existsSync(join(ws, "mesh-ca.pem"))).toBe(true);
}

beforeAll(async () => {
  ensureBundles();
  work = mkdtempSync(join(tmpdir(), "contrast-cli-strand-"));
  template = join(work, "template");
  mkdirSync(join(template, "policies"), { recursive: true });
  writeFileSync(join(template, "policies", "web.rego"), "package web\n");
  mkdirSync(join(work, "keys"));
  [bob] = await Promise.all([ownerKeyFiles(join(work, "keys"), "bob"), (async () => expectOk(await contrast(["-w", template, "generate", "--seedshare-owner-bits", "3072"], work)))()]);
});

afterAll(async () => {
  await Promise.all(
    [...started].map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once("exit", () => done());
          process.kill(child.pid!, "SIGKILL");
        }),
    ),
  );
  await killAll();
  rmSync(work, { recursive: true, force: true });
});

/** Runs `cases` with at most `limit` at a time (each case has its own store, workspace and processes). */
async function inParallel<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await run(item);
    }),
  );
}

describe("kill -9 at every store write of a first set, the answer lost at the client", () => {
  let writes: string[];

  it("a first set writes the seed-share document before the head (counted on a run without a kill)", async () => {
    const store = join(work, "first-dry", "store");
    const ws = workspace("first-dry/ws");
    const proc = await startKillable(store, 0);
    try {
      expectOk(await contrast(["-c", proc.url, "-w", ws, "set"], work));
      await expectComplete(ws, proc.url, 1);
    } finally {
      process.kill(proc.child.pid!, "SIGKILL");
      await proc.exited;
    }
    writes = proc.writes;
    expect(writes[writes.length - 1]).toMatch(/^heads\/coordinator@v\/chain\/\d{16}\.c-[0-9a-f]{16}$/);
    const shares = writes.findIndex((w) => w.startsWith("seedshares/"));
    expect(shares).toBeGreaterThanOrEqual(0);
    expect(shares).toBeLessThan(writes.length - 1);
  });

  it("after each crash, set (then recover and set, if it says so) reaches ready, and verify passes", async () => {
    const head = writes.length;
    const outcomes = new Map<number, string>();
    await inParallel(
      Array.from({ length: head }, (_, i) => i + 1),
      2,
      async (k) => {
        const store = join(work, `first-${k}`, "store");
        const ws = workspace(`first-${k}/ws`);
        const doomed = await startKillable(store, k);
        const cli = (url: string, ...args: string[]) => contrast(["-c", url, "-w", ws, "--json", ...args], work);
        // The set whose answer is lost: the Coordinator dies right after write k.
        expect(failureCode(await cli(doomed.url, "set")), `k=${k}`).toBe("ANSWER_LOST");
        expect((await doomed.exited).signal).toBe("SIGKILL");
        expect(existsSync(join(ws, ".contrast-pending-set.json"))).toBe(true);
        expect(existsSync(join(ws, "seed-shares.json"))).toBe(false);

        const proc = await startCoordinator({ store: `fs:${store}` });
        try {
          const again = await cli(proc.url, "set");
          if (k < head) {
            // The head never landed: the restarted Coordinator is uninitialized and the set simply happens now.
            expectOk(again);
            expect(JSON.parse(again.stdout)).toMatchObject({ generation: 1, seedSharesWritten: true });
            outcomes.set(k, "set again");
          } else {
            // The head landed: its seed shares are fetched, and recovery comes first.
            expect(failureCode(again), `k=${k}`).toBe("RECOVERY_REQUIRED");
            expect(existsSync(join(ws, "seed-shares.json"))).toBe(true);
            const recovered = await cli(proc.url, "recover", "--insecure-http");
            expectOk(recovered);
            expect(JSON.parse(recovered.stdout)).toMatchObject({ state: "ready", recovered: true, generation: 1 });
            const finish = await cli(proc.url, "set");
            expectOk(finish);
            expect(JSON.parse(finish.stdout)).toMatchObject({ unchanged: true, generation: 1 });
            outcomes.set(k, "recovered");
          }
          expectOk(await cli(proc.url, "verify"));
          await expectComplete(ws, proc.url, 1);
          // The share fetched after the lost answer is this owner's genuine one: the recovery used it, and seedshare check agrees.
          expectOk(await contrast(["-w", ws, "seedshare", "check"], work));
        } finally {
          await proc.stop("SIGKILL");
        }
      },
    );
    expect([...outcomes.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: head }, (_, i) => i + 1));
    expect(outcomes.get(head)).toBe("recovered");
  });
});

describe("kill -9 at every store write of a change of the seed-share owners, the answer lost at the client", () => {
  /** The state every case starts from: a store at generation 1 (owner A), and a workspace whose manifest.json adds Bob, approved by A. */
  let baseStore: string;
  let baseWs: string;
  let writes: string[];
  /** Writes the Coordinator makes before the set (its recovery): the kill counts from there. */
  let offset: number;

  beforeAll(async () => {
    baseStore = join(work, "rekey-base", "store");
    baseWs = workspace("rekey-base/ws");
    const proc = await startCoordinator({ store: `fs:${baseStore}` });
    try {
      const cli = (...args: string[]) => contrast(["-c", proc.url, "-w", baseWs, ...args], work);
      expectOk(await cli("set"));
      expectOk(await cli("generate", "--add-seedshare-owner-key", bob.pub));
      expectOk(await cli("seedshare", "approve"));
    } finally {
      await proc.stop("SIGKILL");
    }
  });

  it("the change writes the new seed-share document before the head (counted on a run without a kill)", async () => {
    const store = join(work, "rekey-dry", "store");
    cpSync(baseStore, store, { recursive: true });
    const ws = workspace("rekey-dry/ws", baseWs);
    const proc = await startKillable(store, 0);
    try {
      await recoverDirectly(proc.url, ws);
      offset = proc.writes.length;
      const run = await contrast(["-c", proc.url, "-w", ws, "set"], work);
      expectOk(run);
      expect(run.stdout).toMatch(/approved by 1 of the 1 previous seed-share owners/);
      await expectComplete(ws, proc.url, 2);
    } finally {
      process.kill(proc.child.pid!, "SIGKILL");
      await proc.exited;
    }
    writes = proc.writes.slice(offset);
    expect(writes[writes.length - 1]).toMatch(/^heads\/coordinator@v\/chain\/\d{16}\.c-[0-9a-f]{16}$/);
    const shares = writes.findIndex((w) => w.startsWith("seedshares/"));
    expect(shares).toBeGreaterThanOrEqual(0);
    expect(shares).toBeLessThan(writes.length - 1);
  });

  it("after each crash, set, recover, set reach ready at generation 2 with the new owners' shares, and verify passes", async () => {
    const head = writes.length;
    const oldSalt = readJson<SeedShareDocument>(join(baseWs, "seed-shares.json")).salt;
    const bobKey = await loadSeedShareOwnerKey(readFileSync(bob.pem, "utf8"), bob.pem);
    await inParallel(
      Array.from({ length: head }, (_, i) => i + 1),
      2,
      async (k) => {
        const store = join(work, `rekey-${k}`, "store");
        cpSync(baseStore, store, { recursive: true });
        const ws = workspace(`rekey-${k}/ws`, baseWs);
        const cli = (url: string, ...args: string[]) => contrast(["-c", url, "-w", ws, "--json", ...args], work);
        const doomed = await startKillable(store, offset + k);
        await recoverDirectly(doomed.url, ws);
        expect(failureCode(await cli(doomed.url, "set")), `k=${k}`).toBe("ANSWER_LOST");
        expect((await doomed.exited).signal).toBe("SIGKILL");
        expect(readJson<SeedShareDocument>(join(ws, "seed-shares.json")).salt).toBe(oldSalt);

        const proc = await startCoordinator({ store: `fs:${store}` });
        try {
          // Step 1: set. The Coordinator restarted, so recovery comes first; if the change had landed, its new shares are fetched now.
          expect(failureCode(await cli(proc.url, "set")), `k=${k}`).toBe("RECOVERY_REQUIRED");
          const salt = readJson<SeedShareDocument>(join(ws, "seed-shares.json")).salt;
          if (k < head) {
            expect(salt).toBe(oldSalt);
            expect(existsSync(join(ws, "seed-shares.previous.json"))).toBe(false);
          } else {
            expect(salt).not.toBe(oldSalt);
            expect(readJson<SeedShareDocument>(join(ws, "seed-shares.previous.json")).salt).toBe(oldSalt);
          }
          // Step 2: recover with seed-shares.json as it is now.
          const recovered = await cli(proc.url, "recover", "--insecure-http");
          expectOk(recovered);
          expect(JSON.parse(recovered.stdout)).toMatchObject({ state: "ready", generation: k < head ? 1 : 2 });
          // Step 3: set again: it sends the change again (it had not landed) or finds it landed and says unchanged.
          const finish = await cli(proc.url, "set");
          expectOk(finish);
          expect(JSON.parse(finish.stdout)).toMatchObject(k < head ? { generation: 2, seedSharesWritten: true } : { generation: 2, unchanged: true });
          expectOk(await cli(proc.url, "verify"));
          await expectComplete(ws, proc.url, 2);
          // The new document opens for the new owner, and the old owner's share in it is genuine too.
          await openOwnShare(readJson<SeedShareDocument>(join(ws, "seed-shares.json")), bobKey);
        } finally {
          await proc.stop("SIGKILL");
        }
      },
    );
  });
});

/** A proxy that forwards everything but never answers POST /v1/manifest: it forwards it, then drops the connection. */
async function answerDroppingProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    if (req.headers["content-type"] !== undefined) headers["content-type"] = req.headers["content-type"];
    const answer = await fetch(target + req.url, { method: req.method, headers, body: body.length > 0 ? body : undefined });
    const text = Buffer.from(await answer.arrayBuffer());
    if (req.method === "POST" && req.url === "/v1/manifest") {
      res.socket?.destroy();
      return;
    }
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" });
    res.end(text);
  };
  const server: Server = createServer((req, res) => void forward(req, res).catch(() => res.socket?.destroy()));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

describe("a lost answer without a restart, and servers that lie after a lost answer", () => {
  let proc: CoordinatorProcess;

  beforeAll(async () => {
    proc = await startCoordinator({ store: "memory" });
  });

  afterAll(async () => {
    await proc.stop("SIGKILL");
  });

  it("a first set whose answer was lost: set again finds it landed, fetches and verifies the seed shares, pins the root CA and says unchanged", async () => {
    const ws = workspace("lost-first");
    const proxy = await answerDroppingProxy(proc.url);
    try {
      const run = await contrast(["-c", proxy.url, "-w", ws, "set"], work);
      expect(expectFailure(run)).toMatch(/the first set \(generation 1, transition [0-9a-f]{64}\) was sent, but no answer came back .*: it may or may not have landed; run contrast set again/);
    } finally {
      await proxy.close();
    }
    expect(existsSync(join(ws, "seed-shares.json"))).toBe(false);
    const run = await contrast(["-c", proc.url, "-w", ws, "set"], work);
    expectOk(run);
    expect(run.stdout).toMatch(/the first set this workspace sent before landed, but its answer was lost: generation 1/);
    expect(run.stdout).toMatch(/wrote .*seed-shares\.json \(fetched: the document its verified head commits to\)/);
    expect(run.stdout).toMatch(/unchanged: .*manifest\.json is already the current manifest of Coordinator coordinator \(generation 1, .*\); nothing was sent/);
    await expectComplete(ws, proc.url, 1);
    expectOk(await contrast(["-w", ws, "seedshare", "check"], work));
    expectOk(await contrast(["-c", proc.url, "-w", ws, "verify"], work));
  });

  it("after a lost answer, a server that serves a seed-share document of the verified head's owners but another salt is refused, and nothing is written", async () => {
    const ws = workspace("lost-liar");
    const store = join(work, "lost-liar-store");
    const real = await startCoordinator({ store: `fs:${store}` });
    try {
      const proxy = await answerDroppingProxy(real.url);
      try {
        expect(failureCode(await contrast(["-c", proxy.url, "-w", ws, "--json", "set"], work))).toBe("ANSWER_LOST");
      } finally {
        await proxy.close();
      }
      // The liar changes the salt of the stored document (a document the signed head does not commit to).
      const liar = await rewritingProxy(real.url, (e) => {
        if (e.url !== "/v1/seedshares" || e.status !== 200) return undefined;
        const body = JSON.parse(e.body) as { seedShares: SeedShareDocument; verified: boolean };
        return JSON.stringify({ ...body, seedShares: { ...body.seedShares, salt: "00".repeat(32) } });
      });
      try {
        const before = snapshot(ws);
        expect(failureCode(await contrast(["-c", liar.url, "-w", ws, "--json", "set"], work))).toBe("SEED_SHARES_INVALID");
        expect(snapshot(ws)).toEqual(before);
      } finally {
        await liar.close();
      }
      // In recovery, a document for other owners than the manifest sent is refused too.
      await real.stop("SIGKILL");
      const restarted = await startCoordinator({ store: `fs:${store}` });
      try {
        const other = await rewritingProxy(restarted.url, (e) => {
          if (e.url !== "/v1/seedshares" || e.status !== 200) return undefined;
          const body = JSON.parse(e.body) as { seedShares: SeedShareDocument; verified: boolean };
          return JSON.stringify({ ...body, seedShares: { ...body.seedShares, shares: body.seedShares.shares.map((s) => ({ ...s, ownerPublicKey: bob.spki })) } });
        });
        try {
          const before = snapshot(ws);
          const run = await contrast(["-c", other.url, "-w", ws, "--json", "set"], work);
          expect(failureCode(run)).toBe("SEED_SHARES_INVALID");
          expect(run.stderr).toMatch(/share 1 is not for seed-share owner 1 of the manifest sent/);
          expect(snapshot(ws)).toEqual(before);
        } finally {
          await other.close();
        }
        // The genuine one, served by the real Coordinator, is taken: recovery then works with it.
        expect(failureCode(await contrast(["-c", restarted.url, "-w", ws, "--json", "set"], work))).toBe("RECOVERY_REQUIRED");
        expectOk(await contrast(["-c", restarted.url, "-w", ws, "recover", "--insecure-http"], work));
        expectOk(await contrast(["-c", restarted.url, "-w", ws, "set"], work));
        await expectComplete(ws, restarted.url, 1);
      } finally {
        await restarted.stop("SIGKILL");
      }
    } finally {
      await real.stop("SIGKILL");
    }
  });

  it("recover and seedshare check in a workspace without seed-shares.json fetch it; a document whose share does not match its commitment is refused before anything is sent", async () => {
    const wo = workspace("fetch-wo");
    const store = join(work, "fetch-store");
    let coordinator = await startCoordinator({ store: `fs:${store}` });
    try {
      expectOk(await contrast(["-c", coordinator.url, "-w", wo, "set"], work));
      // The owner has only their key and the pinned root CA.
      const owner = join(work, "fetch-owner");
      mkdirSync(owner);
      for (const f of ["seedshare-owner.pem", "coordinator-root-ca.pem"]) cpSync(join(wo, f), join(owner, f));
      const check = await contrast(["-c", coordinator.url, "-w", owner, "seedshare", "check"], work);
      expectOk(check);
      expect(check.stdout).toMatch(/seed-shares\.json did not exist: fetched the seed-share document from Coordinator coordinator \(the Coordinator is ready, and it is the document its verified head at generation 1 commits to\)/);
      expect(readFileSync(join(owner, "seed-shares.json"), "utf8")).toBe(readFileSync(join(wo, "seed-shares.json"), "utf8"));
      rmSync(join(owner, "seed-shares.json"));

      await coordinator.stop("SIGKILL");
      coordinator = await startCoordinator({ store: `fs:${store}` });
      // A server that flips a byte of the encrypted share: it does not decrypt, nothing is sent, nothing is written.
      const liar = await rewritingProxy(coordinator.url, (e) => {
        if (e.url !== "/v1/seedshares" || e.status !== 200) return undefined;
        const body = JSON.parse(e.body) as { seedShares: SeedShareDocument; verified: boolean };
        const [first, ...rest] = body.seedShares.shares;
        const flipped = first!.encryptedShare.startsWith("A") ? "B" + first!.encryptedShare.slice(1) : "A" + first!.encryptedShare.slice(1);
        return JSON.stringify({ ...body, seedShares: { ...body.seedShares, shares: [{ ...first!, encryptedShare: flipped }, ...rest] } });
      });
      try {
        const run = await contrast(["-c", liar.url, "-w", owner, "--json", "recover", "--insecure-http"], work);
        expect(failureCode(run)).toBe("SHARE_UNDECRYPTABLE");
        expect(run.stderr).toMatch(/seed-shares\.json was not written; nothing was sent/);
        expect(liar.exchanges.some((e) => e.url === "/v1/recover")).toBe(false);
        expect(existsSync(join(owner, "seed-shares.json"))).toBe(false);
      } finally {
        await liar.close();
      }
      expect(await state(coordinator.url)).toBe("recovery-required");
      const recovered = await contrast(["-c", coordinator.url, "-w", owner, "recover", "--insecure-http"], work);
      expectOk(recovered);
      expect(recovered.stdout).toMatch(/the Coordinator is recovery-required, so its head is not verified yet, but share 1 decrypts with .*seedshare-owner\.pem and matches its commitment/);
      expect(recovered.stdout).toMatch(/recovered Coordinator coordinator: ready at generation 1/);
    } finally {
      await coordinator.stop("SIGKILL");
    }
  });
});

describe("set of the manifest that is already current", () => {
  it("says unchanged, sends nothing, and the generation stays (after a first set and after an update); a lying unchanged answer fails", async () => {
    const proc = await startCoordinator({ store: "memory" });
    const ws = workspace("unchanged");
    const cli = (...args: string[]) => contrast(["-c", proc.url, "-w", ws, ...args], work);
    try {
      expectOk(await cli("set"));
      for (const generation of [1, 2]) {
        if (generation === 2) {
          writeFileSync(join(ws, "policies", "api.rego"), "package api\n");
          expectOk(await cli("generate"));
          expectOk(await cli("set"));
        }
        const before = await verified(proc.url);
        const files = snapshot(ws);
        const run = await cli("set");
        expectOk(run);
        expect(run.stdout).toMatch(new RegExp(`^unchanged: .*manifest\\.json is already the current manifest of Coordinator coordinator \\(generation ${generation}, transition ${before.latestTransition}, verified\\); nothing was sent\\n$`));
        expect(await verified(proc.url)).toEqual(before);
        expect(snapshot(ws)).toEqual(files);
        expect(JSON.parse((await cli("--json", "set")).stdout)).toMatchObject({ unchanged: true, generation, transition: before.latestTransition, seedSharesWritten: false });
      }
      // A proxy that answers a real update with "unchanged" cannot make set believe nothing happened: the result must verify.
      const before = await verified(proc.url);
      const memory = readFileSync(join(ws, ".contrast-state.json"), "utf8");
      writeFileSync(join(ws, "policies", "db.rego"), "package db\n");
      expectOk(await cli("generate"));
      const liar = await rewritingProxy(proc.url, (e) =>
        e.method === "POST" && e.url === "/v1/manifest" && e.status === 200
          ? JSON.stringify({ ...(JSON.parse(e.body) as object), unchanged: true, generation: before.generation, transition: before.latestTransition })
          : undefined,
      );
      try {
        expect(failureCode(await contrast(["-c", liar.url, "-w", ws, "--json", "set"], work))).toBe("SET_UNVERIFIED");
      } finally {
        await liar.close();
      }
      expect(readFileSync(join(ws, ".contrast-state.json"), "utf8")).toBe(memory);
      expect((await verified(proc.url)).generation).toBe(3);
    } finally {
      await proc.stop("SIGKILL");
    }
  });
});
