// A child process for the fs driver's multi-process tests: races, counts or loops compare-and-swaps on one directory.
//
// Run as `node --import tsx test/storage/fs-child.ts <base> <id>`; prints `ready`, then obeys lines on stdin:
//   race <key> <round> <expected version|null> <start at ms>
//            CASes `round-<round>-child-<id>` from that version at that moment; answers
//            `<round> won`, `<round> lost` or `<round> error <message>`.
//   counter <key> <n>
//            increments a decimal counter under <key> n times (read, CAS, retry on conflict);
//            answers `done <successes> <conflicts>`.
//   loop <key>
//            until killed: puts `obj:loop-<id>-<i>` and CASes <key> to `loopValue(id, i)`, printing
//            `wrote <i>` after each successful CAS.
//   stale <key> <expected version|null> <value>
//            CASes <value> from that version, but holds after the comparison, before the commit:
//            prints `paused` there and goes on at the next stdin line (`go`); then answers
//            `stale won`, `stale lost` or `stale error <message>` (a writer that read long ago).
import "reflect-metadata";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { fsDriver } from "../../adapters/node/fs-driver.js";
import { createStore, StoreError, type Store } from "../../src/storage/store.js";

/** The lines of stdin, taken one at a time by the command loop and by a held writer. */
class Lines {
  private readonly queue: string[] = [];
  private readonly waiters: ((line: string | null) => void)[] = [];
  private ended = false;
  constructor() {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(line);
      else this.queue.push(line);
    });
    lines.on("close", () => {
      this.ended = true;
      for (const waiter of this.waiters.splice(0)) waiter(null);
    });
  }
  next(): Promise<string | null> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The value the loop command writes in step `i`: recognisable and long enough that a torn write would show. */
export function loopValue(child: string, i: number): Uint8Array {
  const head = encoder.encode(`loop-${child}-${i}:`);
  const out = new Uint8Array(head.length + 65536);
  out.set(head);
  for (let j = head.length; j < out.length; j++) out[j] = (j * 31 + i) & 255;
  return out;
}

/** The step `i` if `value` is exactly `loopValue(child, i)`, else null. */
export function loopStep(child: string, value: Uint8Array): number | null {
  const match = new RegExp(`^loop-${child}-(\\d+):`).exec(decoder.decode(value.subarray(0, 64)));
  if (match === null) return null;
  const i = Number(match[1]);
  const expected = loopValue(child, i);
  if (expected.length !== value.length) return null;
  for (let j = 0; j < value.length; j++) if (value[j] !== expected[j]) return null;
  return i;
}

function say(line: string): void {
  process.stdout.write(line + "\n");
}

function isConflict(err: unknown): boolean {
  return err instanceof StoreError && err.code === "CONFLICT";
}

async function waitUntil(at: number): Promise<void> {
  const early = at - Date.now() - 3;
  if (early > 0) await new Promise((resolve) => setTimeout(resolve, early));
  while (Date.now() < at) {
    // spin for the last few milliseconds so that all children start together
  }
}

async function race(store: Store, id: string, key: string, round: string, expected: string, at: number): Promise<void> {
  await waitUntil(at);
  try {
    await store.compareAndSwap(key, encoder.encode(`round-${round}-child-${id}`), expected === "null" ? null : expected);
    say(`${round} won`);
  } catch (err) {
    say(isConflict(err) ? `${round} lost` : `${round} error ${String(err)}`);
  }
}

async function counter(store: Store, key: string, n: number): Promise<void> {
  let successes = 0;
  let conflicts = 0;
  while (successes < n) {
    const current = await store.getVersioned(key);
    const next = current === null ? 1 : Number(decoder.decode(current.value)) + 1;
    try {
      await store.compareAndSwap(key, encoder.encode(String(next)), current?.version ?? null);
      successes++;
    } catch (err) {
      if (!isConflict(err)) throw err;
      conflicts++;
    }
  }
  say(`done ${successes} ${conflicts}`);
}

async function loop(store: Store, id: string, key: string): Promise<void> {
  for (let i = 0; ; i++) {
    await store.put(`obj:loop-${id}-${i}`, encoder.encode(`object ${id} ${i}`));
    const current = await store.getVersioned(key);
    await store.compareAndSwap(key, loopValue(id, i), current?.version ?? null);
    say(`wrote ${i}`);
  }
}

async function stale(store: Store, key: string, expected: string, value: string): Promise<void> {
  try {
    await store.compareAndSwap(key, encoder.encode(value), expected === "null" ? null : expected);
    say("stale won");
  } catch (err) {
    say(isConflict(err) ? "stale lost" : `stale error ${String(err)}`);
  }
}

async function main(): Promise<void> {
  const [base, id] = process.argv.slice(2);
  if (base === undefined || id === undefined) throw new Error("usage: fs-child.ts <base> <id>");
  const store = createStore(fsDriver({ base }));
  const lines = new Lines();
  const held = createStore(
    fsDriver({
      base,
      beforeCommit: async () => {
        say("paused");
        await lines.next();
      },
    }),
  );
  say("ready");
  for (let line = await lines.next(); line !== null; line = await lines.next()) {
    const [command, key, ...args] = line.split(" ");
    if (key === undefined) continue;
    if (command === "race") await race(store, id, key, args[0] ?? "", args[1] ?? "null", Number(args[2]));
    else if (command === "counter") await counter(store, key, Number(args[0]));
    else if (command === "loop") await loop(store, id, key);
    else if (command === "stale") await stale(held, key, args[0] ?? "null", args[1] ?? "");
    else say(`error unknown command ${command}`);
  }
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) await main();
