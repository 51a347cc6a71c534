// Which validators a Coordinator runs (`--attestation sev-snp,tdx`, or the insecure simulated one) and which roots they pin.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { productFromName } from "./snp/certificates.js";
import type { SnpTrustAnchor } from "./snp/certificates.js";
import type { SnpProduct } from "./snp/report.js";
import { amdTrustAnchors } from "./snp/amd-roots.js";
import { snpValidator } from "./snp/validator.js";
import { tdxValidator } from "./tdx/validator.js";
import { simulatedValidator } from "./validator.js";
import type { AttestationValidator, Validators } from "./validator.js";

/** A validator that can be switched on. */
export type AttestationMode = "sev-snp" | "tdx" | "insecure-simulated";

const modes: readonly AttestationMode[] = ["sev-snp", "tdx", "insecure-simulated"];

/** Parses `none` or a comma-separated list of modes; throws an Error whose message says what is allowed. */
export function parseAttestationModes(text: string): AttestationMode[] {
  const trimmed = text.trim();
  if (trimmed === "none") return [];
  const out: AttestationMode[] = [];
  for (const part of trimmed.split(",").map((p) => p.trim())) {
    if (!(modes as readonly string[]).includes(part)) {
      throw new Error(`must be none or a comma-separated list of ${modes.join(", ")}, not ${JSON.stringify(text)}`);
    }
    if (!out.includes(part as AttestationMode)) out.push(part as AttestationMode);
  }
  return out;
}

/** Roots that replace the built-in ones: SEV-SNP ARKs (with their ASK/ASVK) and a TDX root. */
export interface AttestationRoots {
  snp: SnpTrustAnchor[];
  tdx: string | undefined;
}

/**
 * Reads a PEM bundle of roots to pin instead of AMD's and Intel's (a test TEE, or a private CA):
 * certificates named `ARK-<product>`, `SEV-<product>` (ASK) and `SEV-VLEK-<product>` (ASVK) are
 * SEV-SNP roots; any other self-signed certificate is the TDX root (at most one).
 */
export function parseAttestationRoots(pem: string): AttestationRoots {
  let certificates: x509.X509Certificate[];
  try {
    certificates = x509.PemConverter.decode(pem).map((der) => new x509.X509Certificate(der));
  } catch (err) {
    throw new Error(`not a PEM bundle of certificates (${(err as Error).message})`, { cause: err });
  }
  const byProduct = new Map<SnpProduct, Partial<SnpTrustAnchor>>();
  let tdx: string | undefined;
  for (const cert of certificates) {
    const cn = cert.subjectName.getField("CN")[0] ?? "";
    const match = /^(ARK|SEV|SEV-VLEK)-(\w+)$/.exec(cn);
    const product = match === null ? null : productFromName(match[2]!);
    if (match !== null && product !== null) {
      const anchor = byProduct.get(product) ?? { product };
      const der = new Uint8Array(cert.rawData);
      if (match[1] === "ARK") anchor.ark = der;
      else if (match[1] === "SEV") anchor.ask = der;
      else anchor.asvk = der;
      byProduct.set(product, anchor);
    } else if (cert.subject === cert.issuer) {
      if (tdx !== undefined) throw new Error("more than one TDX root in the bundle");
      tdx = cert.toString("pem");
    } else {
      throw new Error(`${cert.subject} is neither a SEV-SNP root (ARK/ASK/ASVK) nor a self-signed TDX root`);
    }
  }
  const snp: SnpTrustAnchor[] = [];
  for (const [product, anchor] of byProduct) {
    if (anchor.ark === undefined) throw new Error(`the bundle has an ASK or ASVK for ${product} but no ARK-${product}`);
    snp.push(anchor as SnpTrustAnchor);
  }
  return { snp, tdx };
}

/** The validators of the given modes, pinning `roots` instead of the built-in ones for each platform the roots name. */
export function validatorsFor(enabled: readonly AttestationMode[], roots?: AttestationRoots): Validators {
  const out = new Map<string, AttestationValidator>();
  for (const mode of enabled) {
    const validator =
      mode === "sev-snp"
        ? snpValidator(roots === undefined || roots.snp.length === 0 ? amdTrustAnchors() : roots.snp)
        : mode === "tdx"
          ? tdxValidator(roots?.tdx)
          : simulatedValidator;
    out.set(validator.type, validator);
  }
  return out;
}
