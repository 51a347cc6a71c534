// Preloaded (node --import) into a Coordinator by test/cli/strand.test.ts: counts the store's writes and SIGKILLs the process right after the k-th one.
import fsp from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import { sep } from "node:path";

// STRAND_STORE: the fs store's directory; STRAND_KILL_AT: the write after which to die (0: never).
const store = process.env.STRAND_STORE;
const killAt = Number(process.env.STRAND_KILL_AT ?? "0");
let writes = 0;

/**
 * A write the store makes visible: a file renamed into place, a version chain created, a version
 * claimed (the commit point of a head update: its value was written just before). Probes do not
 * count, nor does publishing a claimed value (renaming `.n-<seq>-<id>` to `<seq>`): readers see the
 * same value before and after it.
 */
function counts(target) {
  const path = String(target);
  return store !== undefined && path.startsWith(store + sep) && !path.includes(`${sep}probes${sep}`) && !/\.tmp-[^/]*$/.test(path);
}

/** Wraps fs.promises[name]: after a call whose `target(args)` is a counted write, logs it and, at the k-th, dies. */
function wrap(name, target, extra = () => true) {
  const original = fsp[name];
  fsp[name] = async function (...args) {
    const result = await original.apply(this, args);
    const path = String(target(args));
    if (counts(path) && extra(path)) {
      writes++;
      process.stderr.write(`strand-write ${writes} ${path.slice(store.length + 1)}\n`);
      if (writes === killAt) process.kill(process.pid, "SIGKILL");
    }
    return result;
  };
}

const publishes = (args) => /(^|[/\\])\.n-\d{16}-[0-9a-f]{16}$/.test(String(args[0]));
wrap("rename", (args) => (publishes(args) ? "" : args[1]));
wrap("link", (args) => args[1]);
syncBuiltinESMExports();
