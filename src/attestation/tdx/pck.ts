// The SGX extension of Intel PCK certificates (OID 1.2.840.113741.1.13.1): an ASN.1 schema to read it and, for the test TEE, to write it.
//
// Intel encodes it as SEQUENCE OF SEQUENCE { OID, value }, nested for TCB and Configuration
// (Intel SGX PCK Certificate and CRL Profile, §1.3.5):
//   .1 PPID OCTET STRING (16)            .2 TCB SEQUENCE { .2.1 .. .2.16 INTEGER (SGX TCB components),
//   .3 PCE-ID OCTET STRING (2)                             .2.17 INTEGER (PCESVN), .2.18 OCTET STRING (CPUSVN, 16) }
//   .4 FMSPC OCTET STRING (6)            .5 SGX Type ENUMERATED (0 standard, 1 scalable, 2 scalable with integrity)
//   .6 PlatformInstanceID OCTET STRING (16, platform CA only)
//   .7 Configuration SEQUENCE { .7.1 dynamicPlatform, .7.2 cachedKeys, .7.3 SMTEnabled: BOOLEAN } (platform CA only)
import { AsnArray, AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";
import type * as x509 from "@peculiar/x509";
import { fromHex, toHex } from "../../encoding.js";
import { AttestationError } from "../errors.js";

/** The OID of the SGX extension. */
export const sgxExtensionOid = "1.2.840.113741.1.13.1";

/** SGX Type 2: a platform with memory integrity (Contrast's `MemoryIntegrity`). */
export const sgxTypeScalableWithIntegrity = 2;

/** The fields of a PCK certificate's SGX extension. Byte fields are lower-case hex. */
export interface PckExtensions {
  ppid: string;
  tcb: {
    /** The 16 SGX TCB component SVNs (.2.1 .. .2.16). */
    components: number[];
    pceSvn: number;
    cpuSvn: string;
  };
  pceId: string;
  fmspc: string;
  /** 0 standard, 1 scalable, 2 scalable with integrity. */
  sgxType: number;
  platformInstanceId?: string;
  configuration?: { dynamicPlatform?: boolean; cachedKeys?: boolean; smtEnabled?: boolean };
}

// The schema: one generic entry type whose value is a CHOICE of the types Intel uses.
// Decorators are applied as plain calls (the project compiles without experimentalDecorators).
// Defined on first use: the ASN.1 library is not loaded at start, only when a PCK certificate is read or made.
interface SgxValue {
  integer?: number;
  octets?: ArrayBuffer;
  bool?: boolean;
  enumerated?: number;
  sequence?: SgxEntries;
}
interface SgxEntry {
  id: string;
  value: SgxValue;
}
type SgxEntries = SgxEntry[];
interface SgxSchema {
  SgxEntry: new () => SgxEntry;
  SgxEntries: new (items?: SgxEntry[]) => SgxEntries;
}
let sgxSchema: SgxSchema | undefined;

function schema(): SgxSchema {
  if (sgxSchema !== undefined) return sgxSchema;
  class SgxValue {
    integer?: number;
    octets?: ArrayBuffer;
    bool?: boolean;
    enumerated?: number;
    sequence?: SgxEntries;
  }
  class SgxEntry {
    id = "";
    value = new SgxValue();
  }
  class SgxEntries extends AsnArray<SgxEntry> {}
  AsnType({ type: AsnTypeTypes.Choice })(SgxValue);
  AsnProp({ type: AsnPropTypes.Integer })(SgxValue.prototype, "integer");
  AsnProp({ type: AsnPropTypes.OctetString })(SgxValue.prototype, "octets");
  AsnProp({ type: AsnPropTypes.Boolean })(SgxValue.prototype, "bool");
  AsnProp({ type: AsnPropTypes.Enumerated })(SgxValue.prototype, "enumerated");
  AsnProp({ type: SgxEntries })(SgxValue.prototype, "sequence");
  AsnType({ type: AsnTypeTypes.Sequence })(SgxEntry);
  AsnProp({ type: AsnPropTypes.ObjectIdentifier })(SgxEntry.prototype, "id");
  AsnProp({ type: SgxValue })(SgxEntry.prototype, "value");
  AsnType({ type: AsnTypeTypes.Sequence, itemType: SgxEntry })(SgxEntries);
  return (sgxSchema = { SgxEntry, SgxEntries });
}

function malformed(message: string, cause?: unknown): never {
  throw new AttestationError("TDX_PCK_EXTENSIONS_MALFORMED", message, cause === undefined ? undefined : { cause });
}

function entries(list: SgxEntries, prefix: string): Map<string, SgxValue> {
  const out = new Map<string, SgxValue>();
  for (const entry of list) {
    if (!entry.id.startsWith(prefix + ".")) malformed(`unexpected OID ${entry.id} under ${prefix}`);
    const suffix = entry.id.slice(prefix.length + 1);
    if (out.has(suffix)) malformed(`OID ${entry.id} appears twice`);
    out.set(suffix, entry.value);
  }
  return out;
}

function octets(map: Map<string, SgxValue>, key: string, length: number): string {
  const v = map.get(key)?.octets;
  if (v === undefined || v.byteLength !== length) malformed(`SGX extension .${key} must be an OCTET STRING of ${length} bytes`);
  return toHex(new Uint8Array(v));
}

function integer(map: Map<string, SgxValue>, key: string, max: number): number {
  const v = map.get(key)?.integer;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) malformed(`SGX extension .${key} must be an INTEGER in 0..${max}`);
  return v;
}

/** Reads the SGX extension of a PCK certificate; throws TDX_PCK_EXTENSIONS_MALFORMED if it is missing or not as Intel encodes it. */
export function readPckExtensions(certificate: x509.X509Certificate): PckExtensions {
  const extension = certificate.getExtension(sgxExtensionOid);
  if (extension === null) malformed("the PCK certificate has no SGX extension");
  let parsed: SgxEntries;
  try {
    parsed = AsnConvert.parse(extension.value, schema().SgxEntries);
  } catch (err) {
    malformed("the SGX extension is not valid DER of the expected shape", err);
  }
  const top = entries(parsed, sgxExtensionOid);
  const tcbList = top.get("2")?.sequence;
  if (tcbList === undefined) malformed("SGX extension .2 (TCB) must be a SEQUENCE");
  const tcb = entries(tcbList, `${sgxExtensionOid}.2`);
  const components: number[] = [];
  for (let i = 1; i <= 16; i++) components.push(integer(tcb, String(i), 255));
  const sgxType = top.get("5")?.enumerated;
  if (typeof sgxType !== "number" || sgxType < 0 || sgxType > 2) malformed("SGX extension .5 (SGX type) must be ENUMERATED 0..2");
  const result: PckExtensions = {
    ppid: octets(top, "1", 16),
    tcb: { components, pceSvn: integer(tcb, "17", 0xffff), cpuSvn: octets(tcb, "18", 16) },
    pceId: octets(top, "3", 2),
    fmspc: octets(top, "4", 6),
    sgxType,
  };
  if (top.has("6")) result.platformInstanceId = octets(top, "6", 16);
  const configList = top.get("7");
  if (configList !== undefined) {
    if (configList.sequence === undefined) malformed("SGX extension .7 (configuration) must be a SEQUENCE");
    const config = entries(configList.sequence, `${sgxExtensionOid}.7`);
    const flag = (key: string): boolean | undefined => {
      const value = config.get(key);
      if (value === undefined) return undefined;
      if (typeof value.bool !== "boolean") malformed(`SGX extension .7.${key} must be a BOOLEAN`);
      return value.bool;
    };
    result.configuration = {};
    const dynamicPlatform = flag("1");
    const cachedKeys = flag("2");
    const smtEnabled = flag("3");
    if (dynamicPlatform !== undefined) result.configuration.dynamicPlatform = dynamicPlatform;
    if (cachedKeys !== undefined) result.configuration.cachedKeys = cachedKeys;
    if (smtEnabled !== undefined) result.configuration.smtEnabled = smtEnabled;
  }
  return result;
}

function entry(id: string, value: Partial<SgxValue>): SgxEntry {
  const e = new (schema().SgxEntry)();
  e.id = id;
  Object.assign(e.value, value);
  return e;
}

function bytesOf(hex: string): ArrayBuffer {
  return fromHex(hex).slice().buffer;
}

/** DER of an SGX extension value with the given fields, in Intel's order and encoding (for the test TEE). */
export function encodePckExtensions(fields: PckExtensions): ArrayBuffer {
  const oid = (suffix: string): string => `${sgxExtensionOid}.${suffix}`;
  const tcb = new (schema().SgxEntries)([
    ...fields.tcb.components.map((svn, i) => entry(oid(`2.${i + 1}`), { integer: svn })),
    entry(oid("2.17"), { integer: fields.tcb.pceSvn }),
    entry(oid("2.18"), { octets: bytesOf(fields.tcb.cpuSvn) }),
  ]);
  const list = new (schema().SgxEntries)([
    entry(oid("1"), { octets: bytesOf(fields.ppid) }),
    entry(oid("2"), { sequence: tcb }),
    entry(oid("3"), { octets: bytesOf(fields.pceId) }),
    entry(oid("4"), { octets: bytesOf(fields.fmspc) }),
    entry(oid("5"), { enumerated: fields.sgxType }),
  ]);
  if (fields.platformInstanceId !== undefined) list.push(entry(oid("6"), { octets: bytesOf(fields.platformInstanceId) }));
  if (fields.configuration !== undefined) {
    const c = fields.configuration;
    const config = new (schema().SgxEntries)();
    if (c.dynamicPlatform !== undefined) config.push(entry(oid("7.1"), { bool: c.dynamicPlatform }));
    if (c.cachedKeys !== undefined) config.push(entry(oid("7.2"), { bool: c.cachedKeys }));
    if (c.smtEnabled !== undefined) config.push(entry(oid("7.3"), { bool: c.smtEnabled }));
    list.push(entry(oid("7"), { sequence: config }));
  }
  return AsnConvert.serialize(list);
}
