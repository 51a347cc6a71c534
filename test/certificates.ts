// Certificate checks the end-to-end suites share: PEM splitting, signature checks, and G2 (cross-verification) with @peculiar/x509 and openssl.
import "reflect-metadata";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { X509Certificate, X509ChainBuilder } from "@peculiar/x509";
import { expect } from "vitest";

const execFileP = promisify(execFile);

/** The PEM certificate blocks of a bundle, in order. */
export function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

/** True if `issuer`'s key made `cert`'s signature. */
export function signedBy(cert: X509Certificate, issuer: X509Certificate): Promise<boolean> {
  return cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
}

/** Runs `openssl verify`; resolves with whether it passed and its output instead of throwing. */
export async function opensslVerify(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await execFileP("/usr/bin/openssl", ["verify", ...args]);
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}${e.message}` };
  }
}

/** What a mesh-certificate answer carries: leaf + intermediate, and the two CA certificates. */
export interface IssuedCertificate {
  certChain: string;
  rootCA: string;
  meshCA: string;
}

/**
 * G2: the leaf issued `after` verifies with the root CA and the mesh CA handed out `before`, and the
 * leaf from `before` with those handed out `after` — by signature checks and a chain build in
 * process, and by `openssl verify` on files written to `dir`. A leaf without its intermediate must
 * not verify against the root (negative control).
 */
export async function expectCrossVerified(before: IssuedCertificate, after: IssuedCertificate, dir: string): Promise<void> {
  const [newLeafPem, newInterPem] = pemBlocks(after.certChain);
  const [oldLeafPem, oldInterPem] = pemBlocks(before.certChain);
  expect(newLeafPem && newInterPem && oldLeafPem && oldInterPem, "each chain is leaf + intermediate").toBeTruthy();

  const rootOld = new X509Certificate(before.rootCA);
  const meshOld = new X509Certificate(before.meshCA);
  const newLeaf = new X509Certificate(newLeafPem!);
  const newInter = new X509Certificate(newInterPem!);
  expect(await signedBy(newLeaf, meshOld)).toBe(true);
  expect(await signedBy(newInter, rootOld)).toBe(true);
  expect(await signedBy(new X509Certificate(oldLeafPem!), new X509Certificate(after.meshCA))).toBe(true);
  expect(await signedBy(new X509Certificate(oldInterPem!), new X509Certificate(after.rootCA))).toBe(true);
  const chain = await new X509ChainBuilder({ certificates: [newInter, rootOld] }).build(newLeaf);
  expect(chain.map((c) => c.subject)).toEqual([newLeaf.subject, newInter.subject, rootOld.subject]);

  mkdirSync(dir, { recursive: true });
  const file = (name: string, pem: string) => {
    writeFileSync(join(dir, name), pem);
    return join(dir, name);
  };
  const f = {
    rootOld: file("root-old.pem", before.rootCA),
    meshOld: file("mesh-old.pem", before.meshCA),
    rootNew: file("root-new.pem", after.rootCA),
    meshNew: file("mesh-new.pem", after.meshCA),
    newLeaf: file("leaf-new.pem", newLeafPem!),
    newInter: file("inter-new.pem", newInterPem!),
    oldLeaf: file("leaf-old.pem", oldLeafPem!),
    oldInter: file("inter-old.pem", oldInterPem!),
  };
  const checks: [string, string[]][] = [
    ["new leaf via root (before)", ["-CAfile", f.rootOld, "-untrusted", f.newInter, f.newLeaf]],
    ["new leaf via mesh CA (before)", ["-CAfile", f.meshOld, f.newLeaf]],
    ["old leaf via root (after)", ["-CAfile", f.rootNew, "-untrusted", f.oldInter, f.oldLeaf]],
    ["old leaf via mesh CA (after)", ["-CAfile", f.meshNew, f.oldLeaf]],
  ];
  for (const [what, args] of checks) {
    const result = await opensslVerify(args);
    expect(result.ok, `${what}: ${result.output}`).toBe(true);
    expect(result.output, what).toMatch(/: OK/);
  }
  expect((await opensslVerify(["-CAfile", f.rootOld, f.newLeaf])).ok, "a leaf without its intermediate").toBe(false);
}
