// The `contrast` command-line tool: parses flags with node:util, runs one command, and turns every failure into one stderr line and an exit status.
import "reflect-metadata";
import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";
import packageJson from "../../package.json" with { type: "json" };
import { parseDuration } from "../../src/client/retry.js";
import { CliError, errorLine, exitCodes, toCliError, usageError } from "./errors.js";
import { Output } from "./context.js";
import type { Context, FlagValues } from "./context.js";
import { defaultSeedShareOwnerBits, generate } from "./commands/generate.js";
import { meshCert } from "./commands/mesh-cert.js";
import { recover } from "./commands/recover.js";
import { seedshareCheck } from "./commands/seedshare.js";
import { seedshareApprove } from "./commands/approve.js";
import { set } from "./commands/set.js";
import { status } from "./commands/status.js";
import { verify } from "./commands/verify.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

const globalOptions: Options = {
  coordinator: { type: "string", short: "c" },
  workspace: { type: "string", short: "w" },
  timeout: { type: "string" },
  ca: { type: "string" },
  "insecure-skip-attestation": { type: "boolean" },
  "coordinator-reference-values": { type: "string" },
  "attestation-roots": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
};

interface Command {
  /** A required second word, e.g. `check` of `contrast seedshare check`. */
  subcommand?: string;
  summary: string;
  usage: string;
  options: Options;
  /** Lines describing the command's own flags. */
  flags: string[];
  run: (ctx: Context) => Promise<void>;
}

const commands: Record<string, Command> = {
  generate: {
    summary: "(re)write manifest.json from policies/ and the owner keys; create missing keys of this workspace",
    usage:
      "contrast generate [--seedshare-owner-key FILE]... [--threshold N] [--add-seedshare-owner-key FILE]... [--add-workload-owner-key FILE]... [--disable-updates]",
    options: {
      "add-workload-owner-key": { type: "string", multiple: true },
      "seedshare-owner-key": { type: "string", multiple: true },
      "add-seedshare-owner-key": { type: "string", multiple: true },
      threshold: { type: "string" },
      "disable-updates": { type: "boolean" },
      "seedshare-owner-bits": { type: "string" },
    },
    flags: [
      "--seedshare-owner-key FILE      (repeatable) the seed-share owners are exactly these RSA keys (PEM, public or private),",
      "                                in this order; without it: those of manifest.json, or a new seedshare-owner.pem",
      "--threshold N                   recovery needs N of the seed-share owners (default: manifest.json's, else 1)",
      "--add-seedshare-owner-key FILE  (repeatable) also give a seed share to this RSA key",
      "--add-workload-owner-key FILE   also allow this ECDSA P-384 key (PEM, public or private) to update the manifest",
      "--disable-updates               list no workload owner: the manifest can never be updated",
      `--seedshare-owner-bits N        size of a newly generated seedshare-owner.pem (default ${defaultSeedShareOwnerBits}, at least 3072)`,
    ],
    run: generate,
  },
  set: {
    summary: "send manifest.json and its policies; writes seed-shares.json (first set, new owners) and the CA files",
    usage: "contrast set -c URL [--workload-owner-key FILE]",
    options: { "workload-owner-key": { type: "string" } },
    flags: ["--workload-owner-key FILE  sign an update with this key instead of workload-owner.pem"],
    run: set,
  },
  verify: {
    summary: "fetch the history, check it offline, write verify/, compare the newest manifest with manifest.json",
    usage: "contrast verify -c URL",
    options: {},
    flags: [],
    run: verify,
  },
  recover: {
    summary: "submit this owner's seed share to a restarted Coordinator and print the progress",
    usage: "contrast recover -c URL [--seedshare-owner-key FILE] [--reset] [--insecure-http] [--force]",
    options: { "seedshare-owner-key": { type: "string", multiple: true }, reset: { type: "boolean" }, "insecure-http": { type: "boolean" }, force: { type: "boolean" } },
    flags: [
      "--seedshare-owner-key FILE  decrypt (or, with --reset, sign) with this RSA private key instead of seedshare-owner.pem",
      "--reset                     discard the shares received so far in an unfinished recovery (sends no share; signed by this owner)",
      "--insecure-http             with --insecure-skip-attestation: send the share over a plain http:// URL anyway",
      "                            (anyone on the way can pose as the Coordinator); attested, the share is sealed to it",
      "--force                     send the share even though the Coordinator saw a ready peer replica (else PEERS_READY:",
      "                            it recovers from that peer by itself). Risk: the replicas can split into two histories,",
      "                            since this one loads whatever head the store holds (an older one after a rollback)",
    ],
    run: recover,
  },
  seedshare: {
    subcommand: "check",
    summary: "offline: check that this owner's share in seed-shares.json decrypts and matches its commitment",
    usage: "contrast seedshare check [--seedshare-owner-key FILE]",
    options: { "seedshare-owner-key": { type: "string", multiple: true } },
    flags: ["--seedshare-owner-key FILE  decrypt with this RSA private key instead of seedshare-owner.pem"],
    run: seedshareCheck,
  },
  "seedshare approve": {
    subcommand: "approve",
    summary: "approve manifest.json's change of the seed-share owners or threshold; writes approvals/<owner>.json",
    usage: "contrast seedshare approve -c URL [--seedshare-owner-key FILE]",
    options: { "seedshare-owner-key": { type: "string", multiple: true } },
    flags: ["--seedshare-owner-key FILE  sign with this RSA private key instead of seedshare-owner.pem"],
    run: seedshareApprove,
  },
  status: {
    summary: "show the Coordinator's state, name, generation, latest transition and recovery progress",
    usage: "contrast status -c URL",
    options: {},
    flags: [],
    run: status,
  },
  "mesh-cert": {
    summary: "get a mesh certificate as a workload would: a nonce, then evidence bound to the key and nonce (configfs-tsm, a file, or simulated)",
    usage:
      "contrast mesh-cert -c URL (--nonce [--key FILE] | --attestation tsm [--tsm-path DIR] -o DIR [--key FILE] | --evidence FILE --key FILE -o DIR | --policy FILE -o DIR --attestation insecure-simulated [--key FILE]) [--force]",
    options: {
      policy: { type: "string" },
      output: { type: "string", short: "o" },
      attestation: { type: "string" },
      evidence: { type: "string" },
      "tsm-path": { type: "string" },
      key: { type: "string" },
      nonce: { type: "boolean" },
      force: { type: "boolean" },
    },
    flags: [
      "--nonce                           only ask the Coordinator for a nonce and print it (--json: {nonce}); good for 5 minutes, once",
      "--evidence FILE                   present this workload evidence (JSON: amd-sev-snp or intel-tdx, made for a nonce and --key)",
      "--key FILE                        the workload's private key (PEM/DER, PKCS#8/SEC1, EC P-256 or P-384); the certificate is for it",
      "                                  (required with --evidence; without it a fresh P-384 key is made and written as key.pem)",
      "--policy FILE                     with --attestation insecure-simulated: the workload's policy (its hash must be in the manifest)",
      "-o, --output DIR                  where to write [key.pem,] cert-chain.pem, mesh-ca.pem, coordinator-root-ca.pem, workload-secret",
      "--attestation tsm                 inside the workload's SEV-SNP or TDX guest: ask a nonce, get evidence for the key and nonce",
      "                                  from Linux configfs-tsm, present it",
      "--tsm-path DIR                    with --attestation tsm: the configfs-tsm report directory (default /sys/kernel/config/tsm/report)",
      "--attestation insecure-simulated  present simulated evidence (development and tests only)",
      "--force                           replace those files if DIR already holds some (else that is refused)",
    ],
    run: meshCert,
  },
};

const globalHelp = [
  "-c, --coordinator URL   the Coordinator's base URL, e.g. http://127.0.0.1:1313 (environment CONTRAST_COORDINATOR)",
  "-w, --workspace DIR     the workspace directory (default: the current directory)",
  "    --timeout DURATION  how long to wait for an unreachable Coordinator, and the bound of every request (default 3m;",
  "                        e.g. 30s, 0 to try once); given explicitly, also how long to wait while it is recovered or set up",
  "    --ca FILE           also trust this CA (PEM) for an https:// Coordinator's certificate",
  "    --coordinator-reference-values FILE",
  "                        check the Coordinator's evidence against this manifest (or JSON with its Policies and",
  "                        ReferenceValues) instead of the current verified manifest or manifest.json",
  "    --attestation-roots FILE",
  "                        pin these PEM roots instead of AMD's and Intel's (a test TEE, a private CA)",
  "    --insecure-skip-attestation",
  "                        do not check the Coordinator's evidence (also CONTRAST_INSECURE_SKIP_ATTESTATION=1):",
  "                        whoever answers at its address is trusted with manifests and seed shares; development only",
  "    --json              machine-readable output on stdout",
  "-h, --help              this help; contrast COMMAND --help for a command's",
  "    --version           the version",
];

function help(command?: string): string {
  if (command !== undefined) {
    const c = commands[command]!;
    return [`${c.usage}`, "", c.summary, "", ...(c.flags.length > 0 ? ["flags:", ...c.flags.map((f) => `  ${f}`), ""] : []), "global flags:", ...globalHelp.map((f) => `  ${f}`), ""].join("\n");
  }
  return [
    "contrast: set up, verify and recover a Contrast Coordinator",
    "",
    "usage: contrast COMMAND [flags]",
    "",
    "commands:",
    ...Object.entries(commands).map(([name, c]) => `  ${`${name.split(" ")[0]}${c.subcommand === undefined ? "" : ` ${c.subcommand}`}`.padEnd(18)} ${c.summary}`),
    "",
    "global flags:",
    ...globalHelp.map((f) => `  ${f}`),
    "",
    "exit status: 0 success, 1 failure, 2 usage mistake. Documentation: docs/cli.md",
    "",
  ].join("\n");
}

const durationExamples = "a duration is e.g. 30s, 3m, 1m30s or 500ms; 0 tries once";

/** What to say about a missing flag value: the examples of a duration for --timeout, else where to look. */
function valueHint(flag: string): string {
  return flag === "--timeout" ? durationExamples : "see contrast --help";
}

function parse(args: string[], options: Options): { values: FlagValues; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: values as FlagValues, positionals };
  } catch (err) {
    const message = (err as Error).message;
    // node:util's own words for a value that starts with "-" or is missing are about its syntax, not the mistake.
    const ambiguous = /^Option '(-[\w-]+)' argument is ambiguous/.exec(message);
    if (ambiguous !== null) {
      const flag = ambiguous[1]!;
      const long = flag.startsWith("--") ? flag : `--${Object.entries(options).find(([, o]) => o.short === flag.slice(1))?.[0] ?? flag.slice(1)}`;
      const value = args[args.indexOf(flag) + 1] ?? "";
      if (long === "--timeout") throw usageError(`--timeout ${value}: a duration cannot be negative`, durationExamples);
      throw usageError(`${flag} ${value}: the value of ${long} starts with "-", like a flag`, `if it is the value, write ${long}=${value}`);
    }
    const missing = /^Option '(-[\w-]+)(?:, (-[\w-]+))? <value>' argument missing/.exec(message);
    if (missing !== null) {
      const flag = missing[2] ?? missing[1]!;
      throw usageError(`${flag} needs a value`, valueHint(flag));
    }
    throw usageError(message.replace(/\. To specify a positional argument.*$/s, ""));
  }
}

/** Runs the CLI with the given arguments; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let out = new Output(args.includes("--json"));
  try {
    const allOptions: Options = { ...globalOptions };
    for (const c of Object.values(commands)) Object.assign(allOptions, c.options);
    const first = parse(args, allOptions);
    const name = first.positionals[0];
    if (first.values.version === true) {
      process.stdout.write(`contrast ${packageJson.version}\n`);
      return exitCodes.ok;
    }
    if (name === undefined || name === "help") {
      const topic = first.positionals[1];
      if (topic !== undefined && commands[topic] === undefined) throw usageError(`unknown command ${JSON.stringify(topic)}`);
      if (name === undefined && first.values.help !== true) {
        process.stderr.write(help());
        return exitCodes.usage;
      }
      process.stdout.write(help(topic));
      return exitCodes.ok;
    }
    // A command with several subcommands has one entry per subcommand, keyed "word subcommand".
    const key = commands[`${name} ${first.positionals[1]}`] !== undefined ? `${name} ${first.positionals[1]}` : name;
    const command = commands[key];
    if (command === undefined) throw usageError(`unknown command ${JSON.stringify(name)}`, `the commands are: ${Object.keys(commands).filter((k) => !k.includes(" ")).join(", ")}`);
    const { values, positionals } = parse(args, { ...globalOptions, ...command.options });
    if (values.help === true) {
      process.stdout.write(help(key));
      return exitCodes.ok;
    }
    const words = command.subcommand === undefined ? 1 : 2;
    if (command.subcommand !== undefined && positionals[1] !== command.subcommand) {
      throw usageError(
        positionals[1] === undefined ? `contrast ${name} needs a subcommand` : `unknown subcommand ${JSON.stringify(`${name} ${positionals[1]}`)}`,
        `usage: ${command.usage}`,
      );
    }
    if (positionals.length > words) throw usageError(`unexpected argument ${JSON.stringify(positionals[words])}`, `usage: ${command.usage}`);
    let timeoutMs = 3 * 60_000;
    if (typeof values.timeout === "string") {
      try {
        timeoutMs = parseDuration(values.timeout);
      } catch (err) {
        throw usageError(`--timeout: ${(err as Error).message}`, durationExamples);
      }
    }
    out = new Output(values.json === true);
    const ctx: Context = {
      workspace: typeof values.workspace === "string" ? values.workspace : ".",
      coordinator: typeof values.coordinator === "string" ? values.coordinator : process.env.CONTRAST_COORDINATOR,
      timeoutMs,
      timeoutGiven: typeof values.timeout === "string",
      deadline: Date.now() + timeoutMs,
      out,
      flags: values,
    };
    await command.run(ctx);
    return exitCodes.ok;
  } catch (err) {
    out.clearProgress();
    const cliError = toCliError(err);
    if (cliError.code === "INTERNAL" && process.env.CONTRAST_DEBUG === "1") process.stderr.write(`${(err as Error).stack}\n`);
    if (out.json) process.stdout.write(JSON.stringify({ error: { code: cliError.code, message: cliError.message, hint: cliError.hint } }, null, 2) + "\n");
    process.stderr.write(errorLine(cliError) + "\n");
    return cliError.exitCode;
  }
}

// A reader that stops early (`contrast verify | head -1`) closes stdout: that ends the output, not
// the command, which finishes its work (files, memory) and exits with its own status; later writes
// to the closed stream are dropped by Node.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE" || err.code === "ERR_STREAM_DESTROYED") return;
  throw err;
});

// Set the exit code and let pending output drain, rather than calling process.exit().
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

export { CliError };
