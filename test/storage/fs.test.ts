// Runs the storage conformance suite on the fs driver; checks restarts, crash leftovers and real multi-process races.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fsDriver, fsPathOf } from "../../adapters/node/fs-driver.js";
import { contentVersion, createStore, StoreError } from "../../src/storage/store.js";
import { testDriver } from "./conformance.js";
import { loopStep } from "./fs-child.js";

async function tempBase(): Promise<string> {
  return mkdtemp(join(tmpdir(), "coordinator-fs-"));
}

testDriver("fs", async () => {
  const base = await tempBase();
  return { driver: fsDriver({ base }), cleanup: () => rm(base, { recursive: true, force: true }) };
});

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (s: string): Uint8Array => encoder.encode(s);
const root = fileURLToPath(new URL("../..", import.meta.url));
const childScript = fileURLToPath(new URL("./fs-child.ts", import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A child Node process running fs-child.ts, read line by line. */
class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly queue: string[] = [];
  private readonly waiters: ((line: string | null) => void)[] = [];
  private closed = false;
  private stderr = "";

  constructor(args: string[]) {
    this.proc = spawn(process.execPath, ["--import", "tsx", childScript, ...args], { cwd: root });
    this.proc.stderr.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    const lines = createInterface({ input: this.proc.stdout });
    lines.on("line", (line) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(line);
      else this.queue.push(line);
    });
    lines.on("close", () => {
      this.closed = true;
      for (const waiter of this.waiters.splice(0)) waiter(null);
    });
    this.exit = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve({ code, signal })));
  }

  /** The next line, or null once the child's output has ended. */
  async nextOrNull(timeoutMs = 30_000): Promise<string | null> {
    const queued = this.queue.shift();
    if (queued !== undefined) return queued;
    if (this.closed) return null;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child timed out; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  /** The next line; fails if the child ended. */
  async next(): Promise<string> {
    const line = await this.nextOrNull();
    if (line === null) throw new Error(`child ended early; stderr: ${this.stderr}`);
    return line;
  }

  send(line: string): void {
    this.proc.stdin.write(line + "\n");
  }
}

describe("fs driver", () => {
  const bases: string[] = [];
  async function newBase(): Promise<string> {
    const base = await tempBase();
    bases.push(base);
    return base;
  }
  afterAll(async () => {
    await Promise.all(bases.map((b) => rm(b, { recursive: true, force: true })));
  });

  it("keeps the bytes across a restart (a new driver on the same directory)", async () => {
    const base = await newBase();
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const first = createStore(fsDriver({ base }));
    await first.put("obj:all", all);
    const v1 = await first.compareAndSwap("head:h", text("123"), null);
    await first.compareAndSwap("head:h", all, v1);

    const second = createStore(fsDriver({ base }));
    expect(Array.from((await second.get("obj:all"))!)).toEqual(Array.from(all));
    const head = await second.getVersioned("head:h");
    expect(Array.from(head!.value)).toEqual(Array.from(all));
    const v3 = await second.compareAndSwap("head:h", text('"x"'), head!.version);
    expect((await first.getVersioned("head:h"))?.version).toBe(v3);
    expect(await second.keys("head")).toEqual(["head:h"]);
  });

  it("stores ordinary keys as plain files and names the file holding a key", async () => {
    const base = await newBase();
    const store = createStore(fsDriver({ base }));
    await store.put("obj:plain", text("123"));
    expect(await fsPathOf(base, "obj:plain")).toBe(join(base, "obj", "plain"));
    expect(decoder.decode(await readFile(join(base, "obj", "plain")))).toBe("123");

    await store.compareAndSwap("head:h", text("one"), null);
    const path = await fsPathOf(base, "head:h");
    expect(path).toMatch(/[/\\]head[/\\]h@v[/\\]\d{16}$/);
    await writeFile(path, "tampered");
    expect(decoder.decode((await store.get("head:h"))!)).toBe("tampered");
    await expect(fsPathOf(base, "obj:missing")).rejects.toThrow();
  });

  it("ignores what a crash leaves behind and cleans it up", async () => {
    const base = await newBase();
    const store = createStore(fsDriver({ base }));
    // Temp files of writers killed before their rename or link.
    await store.put("obj:x", text("x"));
    await writeFile(join(base, "obj", ".tmp-999-fresh"), "partial");
    await writeFile(join(base, "obj", ".tmp-999-stale"), "partial");
    const old = new Date(Date.now() - 3600_000);
    await utimes(join(base, "obj", ".tmp-999-stale"), old, old);
    // A conditional writer killed after creating the versions directory, before seeding it.
    await store.put("obj:y", text("y"));
    await mkdir(join(base, "obj", "y@v"));
    await writeFile(join(base, "obj", "y@v", ".tmp-999-x"), "partial");
    // A conditional writer killed after linking its version, before deleting the plain file.
    await store.put("obj:z", text("old"));
    await mkdir(join(base, "obj", "z@v"));
    await writeFile(join(base, "obj", "z@v", "0000000000000001"), "new");
    // A seed tombstone and nothing else.
    await mkdir(join(base, "head", "t@v", "0000000000000001"), { recursive: true });

    expect(await store.keys("obj")).toEqual(["obj:x", "obj:y", "obj:z"]);
    expect(await store.keys("head")).toEqual([]);
    expect(await createStore(fsDriver({ base })).storage.getKeys("")).toHaveLength(3);
    const objDir = await readdir(join(base, "obj"));
    expect(objDir).toContain(".tmp-999-fresh");
    expect(objDir).not.toContain(".tmp-999-stale");

    expect(decoder.decode((await store.get("obj:y"))!)).toBe("y");
    await store.compareAndSwap("obj:y", text("y2"), await contentVersion(text("y")));
    expect(decoder.decode((await store.get("obj:y"))!)).toBe("y2");

    expect(decoder.decode((await store.get("obj:z"))!)).toBe("new");
    await expect(store.compareAndSwap("obj:z", text("z2"), await contentVersion(text("old")))).rejects.toMatchObject({
      code: "CONFLICT",
    });
    await store.remove("obj:z");
    expect(await store.get("obj:z")).toBeNull();
    expect(await readdir(join(base, "obj"))).not.toContain("z");

    expect(await store.get("head:t")).toBeNull();
    await store.compareAndSwap("head:t", text("t"), null);
    expect(await store.keys("head")).toEqual(["head:t"]);
    expect(await store.keys("obj")).toEqual(["obj:x", "obj:y"]);
  });

  it("never deletes a version, so a sequence number can never be taken twice", async () => {
    const base = await newBase();
    const store = createStore(fsDriver({ base }));
    let version: string | null = null;
    for (let i = 0; i < 20; i++) version = await store.compareAndSwap("head:p", text(`v${i}`), version);
    const entries = await readdir(join(base, "head", "p@v"));
    expect(entries).toHaveLength(21); // version 1 is the "absent" marker the first conditional create starts from
    expect(entries.every((e) => /^\d{16}$/.test(e))).toBe(true);
    expect(decoder.decode((await store.get("head:p"))!)).toBe("v19");
  });

  it("rejects keys it cannot map to files and reports failures as UNAVAILABLE", async () => {
    const base = await newBase();
    const driver = fsDriver({ base });
    for (const key of ["a:b:c", "a:.hidden", "a:b@v", "a", "a:"]) {
      await expect(Promise.resolve(driver.setItemRaw(key, text("x"), {}))).rejects.toMatchObject({ code: "INVALID_KEY" });
      expect(await driver.getItemRaw(key, {})).toBeNull();
    }
    const file = join(base, "not-a-directory");
    await writeFile(file, "x");
    const broken = createStore(fsDriver({ base: file }));
    const err = await broken.put("obj:x", text("x")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe("UNAVAILABLE");
    expect((err as StoreError).cause).toBeDefined();
    await expect(broken.get("obj:x")).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(broken.compareAndSwap("obj:x", text("x"), null)).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });

  describe("across processes", () => {
    // One batch of child processes serves all three tests (starting them is the slow part); the
    // last test kills most of them.
    let base: string;
    let children: Child[];
    beforeAll(async () => {
      base = await newBase();
      children = Array.from({ length: 5 }, (_, i) => new Child([base, `c${i}`]));
      for (const child of children) expect(await child.next()).toBe("ready");
    });
    afterAll(async () => {
      for (const child of children) {
        if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill("SIGKILL");
      }
      await Promise.all(children.map((c) => c.exit));
    });

    it("lets exactly one process win each compare-and-swap round", async () => {
      const store = createStore(fsDriver({ base }));
      let expected = "null";
      for (let round = 0; round < 12; round++) {
        const at = Date.now() + 40;
        for (const child of children) child.send(`race race:r ${round} ${expected} ${at}`);
        const answers = await Promise.all(children.map((c) => c.next()));
        expect(answers.filter((a) => a !== `${round} won` && a !== `${round} lost`)).toEqual([]);
        const winners = answers.flatMap((a, i) => (a === `${round} won` ? [i] : []));
        expect(winners).toHaveLength(1);
        const head = await store.getVersioned("race:r");
        expect(decoder.decode(head!.value)).toBe(`round-${round}-child-c${winners[0]}`);
        expected = head!.version;
      }
      expect(await store.keys("race")).toEqual(["race:r"]);
    });

    it("loses no update when several processes increment one counter", async () => {
      const store = createStore(fsDriver({ base }));
      const perChild = 12;
      for (const child of children) child.send(`counter counter:n ${perChild}`);
      const done = await Promise.all(children.map((c) => c.next()));
      for (const line of done) expect(line).toMatch(new RegExp(`^done ${perChild} \\d+$`));
      expect(decoder.decode((await store.get("counter:n"))!)).toBe(String(children.length * perChild));
    });

    it("survives SIGKILL in the middle of a loop of writes", async () => {
      for (const [round, child] of children.slice(0, 4).entries()) {
        const id = `c${round}`;
        child.send("loop head:loop");
        const target = 2 + Math.floor(Math.random() * 8);
        let confirmed = -1;
        while (confirmed < target) confirmed = Number((await child.next()).split(" ")[1]);
        await sleep(Math.random() * 8);
        child.proc.kill("SIGKILL");
        expect((await child.exit).signal).toBe("SIGKILL");
        for (let line = await child.nextOrNull(); line !== null; line = await child.nextOrNull()) {
          confirmed = Math.max(confirmed, Number(line.split(" ")[1]));
        }

        // A restart: a new driver on the directory the killed process was writing.
        const store = createStore(fsDriver({ base }));
        const head = await store.getVersioned("head:loop");
        const step = loopStep(id, head!.value);
        expect(step, "the head holds exactly one of the values written").not.toBeNull();
        expect(step!).toBeGreaterThanOrEqual(confirmed);
        expect(await store.keys("head")).toEqual(["head:loop"]);
        for (const key of await store.keys("obj")) {
          const match = /^obj:loop-(c\d)-(\d+)$/.exec(key);
          expect(match, `unexpected key ${key}`).not.toBeNull();
          expect(decoder.decode((await store.get(key))!)).toBe(`object ${match![1]} ${match![2]}`);
        }
        for (let i = 0; i <= confirmed; i++) expect(await store.get(`obj:loop-${id}-${i}`)).not.toBeNull();
        const all = await store.storage.getKeys("");
        expect(all.filter((k) => !/^(obj|head|race|counter):[a-z0-9-]+$/.test(k))).toEqual([]);
        // No lock is left behind: a new compare-and-swap from the current version succeeds at once.
        const after = await store.compareAndSwap("head:loop", text(`after kill ${round}`), head!.version);
        expect((await store.getVersioned("head:loop"))?.version).toBe(after);
      }
    });
  });
});
