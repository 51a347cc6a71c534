// `contrast mesh-cert`: the workload side, as an initializer does it: a fresh key, evidence, and the mesh certificate files.
import * as fsp from "node:fs/promises";
import { resolve } from "node:path";
import { pem } from "../../../src/client/keys.js";
import { sha256, subtle } from "../../../src/crypto/provider.js";
import { toBase64, toHex } from "../../../src/encoding.js";
import { CliError, usageError } from "../errors.js";
import { clientOf, patiently, requiredFlag, stringFlag } from "../context.js";
import type { Context } from "../context.js";
import { exists, publicMode, readInput, secretMode, writeFileAtomic } from "../workspace.js";

/** The files mesh-cert writes into -o DIR. */
const outputs = ["key.pem", "cert-chain.pem", "mesh-ca.pem", "coordinator-root-ca.pem", "workload-secret"] as const;

/** Evidence kinds the CLI can present. */
const attestationKinds = ["insecure-simulated"] as const;

/** Runs `contrast mesh-cert`. */
export async function meshCert(ctx: Context): Promise<void> {
  const policyPath = requiredFlag(ctx.flags, "policy", "pass the workload's policy file: --policy FILE");
  const outDir = requiredFlag(ctx.flags, "output", "pass the directory to write the key and certificates to: -o DIR");
  const attestation = stringFlag(ctx.flags, "attestation");
  if (attestation === undefined) {
    throw usageError(
      "no attestation evidence to present",
      "only --attestation insecure-simulated exists for now (development and tests only: it proves nothing)",
    );
  }
  if (!(attestationKinds as readonly string[]).includes(attestation)) {
    throw usageError(`--attestation ${attestation}: unknown kind`, `the kinds are: ${attestationKinds.join(", ")}`);
  }
  const policy = await readInput(policyPath, "pass the workload's policy file with --policy");
  const policyHash = toHex(await sha256(policy));
  const client = clientOf(ctx);
  // key.pem is a private key nobody else has: replacing it by surprise would strand whatever uses it.
  const dir = resolve(outDir);
  const present: string[] = [];
  for (const name of outputs) if (await exists(resolve(dir, name))) present.push(name);
  if (present.length > 0 && ctx.flags["force"] !== true) {
    throw new CliError(
      "OUTPUT_EXISTS",
      `${outDir}/ already holds ${present.join(", ")}, which this would replace (key.pem by a new private key)`,
      "pass another -o DIR, or --force to replace them; nothing was requested",
    );
  }

  const pair = (await subtle().generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array(await subtle().exportKey("spki", pair.publicKey));
  const pkcs8 = new Uint8Array(await subtle().exportKey("pkcs8", pair.privateKey));
  const result = await patiently(
    ctx,
    client.baseUrl,
    () => client.meshCertificate({ publicKey: toBase64(spki), evidence: { type: attestation, policyHash } }),
    ["RECOVERY_REQUIRED", "STALE", "NOT_INITIALIZED"],
  );

  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new CliError("WRITE_FAILED", `cannot create ${outDir}: ${(err as Error).message}`, "check the path and its permissions");
  }
  await writeFileAtomic(resolve(dir, "key.pem"), pem(pkcs8, "PRIVATE KEY"), secretMode);
  await writeFileAtomic(resolve(dir, "cert-chain.pem"), result.certChain, publicMode);
  await writeFileAtomic(resolve(dir, "mesh-ca.pem"), result.meshCA, publicMode);
  await writeFileAtomic(resolve(dir, "coordinator-root-ca.pem"), result.rootCA, publicMode);
  await writeFileAtomic(resolve(dir, "workload-secret"), result.workloadSecret + "\n", secretMode);

  ctx.out.result({ coordinator: client.baseUrl, policyHash: result.policyHash, workloadSecretID: result.workloadSecretID, output: dir });
  ctx.out.line(`issued a mesh certificate for workload ${result.workloadSecretID} (policy ${result.policyHash})`);
  ctx.out.line(`wrote ${outDir}/: ${outputs.join(", ")}${present.length > 0 ? ` (replaced ${present.join(", ")}: --force)` : ""}`);
}
