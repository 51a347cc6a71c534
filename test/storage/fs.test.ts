// Runs the storage conformance suite on the fs driver; checks restarts, crash leftovers and real multi-process races.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
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
    expect(path).toMatch(/[/\\]head[/\\]h@v[/\\]chain[/\\]\d{16}$/);
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

  it("keeps one version file at rest, however many updates, and a stale version still conflicts", async () => {
    const base = await newBase();
    const store = createStore(fsDriver({ base }));
    let version: string | null = null;
    const versions: string[] = [];
    for (let i = 0; i < 50; i++) {
      version = await store.compareAndSwap("head:p", text(`v${i}`), version);
      versions.push(version);
      expect(await readdir(join(base, "head", "p@v"))).toEqual(["chain"]);
      // Version 1 is the "absent" marker the first conditional create starts from.
      expect(await readdir(join(base, "head", "p@v", "chain"))).toEqual([String(i + 2).padStart(16, "0")]);
    }
    for (const old of versions.slice(0, -1)) {
      await expect(store.compareAndSwap("head:p", text("late"), old)).rejects.toMatchObject({ code: "CONFLICT" });
    }
    await expect(store.compareAndSwap("head:p", text("late"), null)).rejects.toMatchObject({ code: "CONFLICT" });
    expect(decoder.decode((await store.get("head:p"))!)).toBe("v49");
    await store.remove("head:p");
    expect(await readdir(join(base, "head", "p@v", "chain"))).toHaveLength(1);
    expect(await store.get("head:p")).toBeNull();
  });

  it("reads what a writer killed between claim and publish committed, and finishes its write", async () => {
    const base = await newBase();
    const store = createStore(fsDriver({ base }));
    const v1 = await store.compareAndSwap("head:k", text("one"), null);
    const chain = join(base, "head", "k@v", "chain");
    const [current] = await readdir(chain);
    const seq = (n: number): string => String(Number(current) + n).padStart(16, "0");
    // Writer 0123…: its value written, its claim made, killed before the publish.
    await writeFile(join(chain, `.n-${seq(1)}-0123456789abcdef`), "two");
    await rename(join(chain, current!), join(chain, `${current}.c-0123456789abcdef`));
    // Writer fedc…: lost the claim to it, killed before deleting its value.
    await writeFile(join(chain, `.n-${seq(1)}-fedcba9876543210`), "lost");

    const restarted = createStore(fsDriver({ base }));
    expect(decoder.decode((await restarted.get("head:k"))!)).toBe("two");
    expect(await restarted.keys("head")).toEqual(["head:k"]);
    expect(await fsPathOf(base, "head:k")).toBe(join(chain, `.n-${seq(1)}-0123456789abcdef`));
    await expect(restarted.compareAndSwap("head:k", text("x"), v1)).rejects.toMatchObject({ code: "CONFLICT" });
    const v3 = await restarted.compareAndSwap("head:k", text("three"), await contentVersion(text("two")));
    // The committed value was published and then superseded; the loser's value and the claim went.
    expect(await readdir(chain)).toEqual([seq(2)]);
    expect((await restarted.getVersioned("head:k"))?.version).toBe(v3);
  });

  it("a writer held between its pending value and its claim loses once another writer moved on, and leaves nothing behind", async () => {
    const base = await newBase();
    let release: () => void = () => undefined;
    let held: () => void = () => undefined;
    const holding = new Promise<void>((resolve) => (held = resolve));
    const slow = createStore(
      fsDriver({
        base,
        beforeCommit: () => {
          held();
          return new Promise<void>((resolve) => (release = resolve));
        },
      }),
    );
    const fast = createStore(fsDriver({ base }));
    const v1 = await fast.compareAndSwap("head:s", text("zero"), null);
    const late = slow.compareAndSwap("head:s", text("slow"), v1);
    await holding;
    const chain = join(base, "head", "s@v", "chain");
    expect((await readdir(chain)).filter((n) => n.startsWith(".n-"))).toHaveLength(1);
    // Many updates, then the same bytes as the held writer compared against: equal bytes do not let it win.
    let version = v1;
    for (let i = 0; i < 10; i++) version = await fast.compareAndSwap("head:s", text(`v${i}`), version);
    await fast.compareAndSwap("head:s", text("zero"), version);
    expect(await readdir(chain)).toHaveLength(1);
    release();
    await expect(late).rejects.toMatchObject({ code: "CONFLICT" });
    expect(decoder.decode((await fast.get("head:s"))!)).toBe("zero");
    expect(await readdir(chain)).toHaveLength(1);
  });

  it("migrates the layout before the chain: reads its newest version, then keeps only the chain", async () => {
    const base = await newBase();
    const versions = join(base, "head", "old@v");
    await mkdir(versions, { recursive: true });
    for (let i = 1; i <= 30; i++) await writeFile(join(versions, String(i).padStart(16, "0")), `old ${i}`);
    await writeFile(join(base, "head", "old"), "plain, superseded");
    const store = createStore(fsDriver({ base }));
    expect(decoder.decode((await store.get("head:old"))!)).toBe("old 30");
    expect(await store.keys("head")).toEqual(["head:old"]);
    await expect(store.compareAndSwap("head:old", text("x"), await contentVersion(text("old 29")))).rejects.toMatchObject({
      code: "CONFLICT",
    });
    await store.compareAndSwap("head:old", text("new"), await contentVersion(text("old 30")));
    expect(await readdir(versions)).toEqual(["chain"]);
    expect(await readdir(join(base, "head"))).toEqual(["old@v"]);
    expect(decoder.decode((await store.get("head:old"))!)).toBe("new");
    // A removed key of the old layout (a tombstone directory) reads as absent and can be created.
    await mkdir(join(base, "head", "gone@v", "0000000000000002"), { recursive: true });
    await writeFile(join(base, "head", "gone@v", "0000000000000001"), "before");
    expect(await store.get("head:gone")).toBeNull();
    await store.compareAndSwap("head:gone", text("again"), null);
    expect(decoder.decode((await store.get("head:gone"))!)).toBe("again");
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

  describe("collecting unreferenced objects", () => {
    const hour = 3600_000;
    const names = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).sort();

    it("sets old unreferenced objects aside where reads still find them, deletes them a grace period later, and never touches referenced or young ones", async () => {
      const base = await newBase();
      const store = createStore(fsDriver({ base }));
      for (const name of ["old-a", "old-b", "old-kept", "young"]) await store.put(`obj:${name}`, text(name));
      await store.compareAndSwap("obj:versioned", text("v"), null);
      const old = new Date(Date.now() - 3 * hour);
      for (const name of ["old-a", "old-b", "old-kept"]) await utimes(join(base, "obj", name), old, old);
      let kept = new Set(["obj:old-kept"]);
      const referenced = async () => (key: string) => kept.has(key);
      const collect = (now?: number) => store.collectObjects!({ kinds: ["obj"], graceMs: hour, referenced, ...(now === undefined ? {} : { now }) });

      expect(await collect()).toEqual({ objects: 2, inTrash: 2, trashed: 2, purged: 0, restored: 0, skipped: false });
      expect(await names(join(base, "obj"))).toEqual([".trash", "old-kept", "versioned@v", "young"]);
      expect(await names(join(base, "obj", ".trash"))).toEqual(["old-a", "old-b"]);
      expect(await store.keys("obj")).toEqual(["obj:old-kept", "obj:versioned", "obj:young"]);
      // Still there for a reader, who moves it back.
      expect(decoder.decode((await store.get("obj:old-a"))!)).toBe("old-a");
      expect(await names(join(base, "obj", ".trash"))).toEqual(["old-b"]);

      // Two hours later: old-b has been aside for the grace period and goes; old-a (read an hour ago) and young are set aside.
      expect(await collect(Date.now() + 2 * hour)).toMatchObject({ trashed: 2, purged: 1, restored: 0, inTrash: 2 });
      expect(await store.get("obj:old-b")).toBeNull();
      expect(await names(join(base, "obj", ".trash"))).toEqual(["old-a", "young"]);
      // old-a became referenced meanwhile: it is put back, not deleted.
      kept = new Set(["obj:old-kept", "obj:old-a"]);
      expect(await collect(Date.now() + 4 * hour)).toMatchObject({ trashed: 0, purged: 1, restored: 1, inTrash: 0 });
      expect(await names(join(base, "obj"))).toEqual([".trash", "old-a", "old-kept", "versioned@v"]);
      expect(decoder.decode((await store.get("obj:versioned"))!)).toBe("v");
      expect(await store.get("obj:young")).toBeNull();
    });

    it("does nothing while the references are unknown, and removing an object set aside removes it", async () => {
      const base = await newBase();
      const store = createStore(fsDriver({ base }));
      await store.put("obj:x", text("x"));
      const later = Date.now() + 2 * hour;
      const unknown = await store.collectObjects!({ kinds: ["obj"], graceMs: hour, now: later, referenced: async () => null });
      expect(unknown).toMatchObject({ skipped: true, trashed: 0 });
      expect(await names(join(base, "obj"))).toEqual(["x"]);
      await store.collectObjects!({ kinds: ["obj"], graceMs: hour, now: later, referenced: async () => () => false });
      expect(await names(join(base, "obj", ".trash"))).toEqual(["x"]);
      await store.remove("obj:x");
      expect(await store.get("obj:x")).toBeNull();
      expect(await names(join(base, "obj", ".trash"))).toEqual([]);
    });
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

    it("loses no update under concurrent compare-and-swap from every process while old versions are deleted, with a bounded file count", async () => {
      const store = createStore(fsDriver({ base }));
      const chain = join(base, "counter", "hammer@v", "chain");
      const perChild = 40;
      for (const child of children) child.send(`counter counter:hammer ${perChild}`);
      let most = 0;
      let finished = 0;
      const done = Promise.all(children.map((c) => c.next())).finally(() => (finished = 1));
      // Watch the chain while they run: never more than the current version plus a value and a claim per writer.
      while (finished === 0) {
        const names = await readdir(chain).catch(() => []);
        most = Math.max(most, names.length);
        await sleep(1);
      }
      let conflicts = 0;
      for (const line of await done) {
        const match = new RegExp(`^done ${perChild} (\\d+)$`).exec(line);
        expect(match, line).not.toBeNull();
        conflicts += Number(match![1]);
      }
      expect(decoder.decode((await store.get("counter:hammer"))!)).toBe(String(children.length * perChild));
      expect(conflicts, "the processes did race").toBeGreaterThan(0);
      expect(most).toBeLessThanOrEqual(1 + 2 * children.length);
      expect(await readdir(chain)).toEqual([String(children.length * perChild + 1).padStart(16, "0")]);
      expect(await readdir(join(base, "counter", "hammer@v"))).toEqual(["chain"]);
    });

    it("a process held after its comparison, for as long as others write, can never win on what it read", async () => {
      const store = createStore(fsDriver({ base }));
      const key = "counter:held";
      const v0 = await store.compareAndSwap(key, text("0"), null);
      const [held, ...others] = children;
      held!.send(`stale ${key} ${v0} 1000`);
      expect(await held!.next()).toBe("paused");
      const perChild = 10;
      for (const child of others) child.send(`counter ${key} ${perChild}`);
      for (const line of await Promise.all(others.map((c) => c.next()))) expect(line).toMatch(new RegExp(`^done ${perChild} \\d+$`));
      const total = String(others.length * perChild);
      expect(decoder.decode((await store.get(key))!)).toBe(total);
      // Back to the very bytes the held process compared against (an ABA of the content).
      await store.compareAndSwap(key, text("0"), await contentVersion(text(total)));
      held!.send("go");
      expect(await held!.next()).toBe("stale lost");
      expect(decoder.decode((await store.get(key))!)).toBe("0");
      expect(await readdir(join(base, "counter", "held@v", "chain"))).toHaveLength(1);
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
        // Whatever the kill left in the chain (a value, a claim) is gone after the next write.
        expect(await readdir(join(base, "head", "loop@v", "chain"))).toHaveLength(1);
      }
    });
  });
});
