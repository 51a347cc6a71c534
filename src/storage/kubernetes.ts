// The Kubernetes-object Coordinator driver: one custom resource (or ConfigMap) per store key, compare-and-swap through resourceVersion.
import type { TransactionOptions } from "unstorage";
import { bytesEqual, fromBase64, fromUtf8, toBase64 } from "../encoding.js";
import { bytesOf, ifMatchOf } from "./memory.js";
import { contentVersion, StoreError, type CoordinatorDriver } from "./store.js";
import {
  KubernetesClient,
  KubernetesStoreError,
  type ApiRequest,
  type FetchFunction,
  type RetryPolicy,
  type TokenSource,
  type Verb,
} from "./kubernetes/client.js";

export { KubernetesClient, KubernetesStoreError } from "./kubernetes/client.js";
export type { FetchFunction, KubernetesErrorCode, RetryPolicy, TokenSource, Verb } from "./kubernetes/client.js";

/** The API group and version of the Coordinator's custom resources. */
export const group = "contrast.edgeless.systems";
export const version = "v1";
/** The `app.kubernetes.io/managed-by` value on every object the driver writes. */
export const managedBy = "contrast-coordinator";
/** Label naming the Coordinator that wrote an object. */
export const coordinatorLabel = `${group}/coordinator`;
/** Label naming the store kind (the part of the key before the colon). */
export const kindLabel = `${group}/kind`;

/** A custom resource type of group contrast.edgeless.systems. */
export interface ResourceKind {
  kind: string;
  plural: string;
}

/** Store kinds with a dedicated custom resource; the object name is the key's name. */
export const dedicatedKinds: Readonly<Record<string, ResourceKind>> = {
  policies: { kind: "Policy", plural: "policies" },
  manifests: { kind: "Manifest", plural: "manifests" },
  transitions: { kind: "Transition", plural: "transitions" },
  certificates: { kind: "Certificate", plural: "certificates" },
  keys: { kind: "SealedKey", plural: "sealedkeys" },
  seedshares: { kind: "SeedShareDocument", plural: "seedsharedocuments" },
  histories: { kind: "HistoryIndex", plural: "historyindexes" },
  heads: { kind: "CoordinatorHead", plural: "coordinatorheads" },
};

/** Any other store kind: one generic resource, object name `<kind>.<name>`. */
export const genericKind: ResourceKind = { kind: "StoreObject", plural: "storeobjects" };

/** Settings of the driver. */
export interface KubernetesDriverOptions {
  /** The API server's base URL, e.g. `https://10.96.0.1:443`. */
  server: string;
  /** The namespace every object lives in. */
  namespace: string;
  /** The bearer token, asked for on every request (cache it; re-read on `refresh`). */
  token: TokenSource;
  /** The fetch to use; the Node adapter's trusts the cluster CA. */
  fetch: FetchFunction;
  /** The Coordinator's name: the value of the coordinator label. */
  coordinator: string;
  /** `crd` (default): custom resources of contrast.edgeless.systems/v1; `configmap`: one ConfigMap per key. */
  mode?: "crd" | "configmap";
  /** Objects per list page (default 250). */
  pageSize?: number;
  retry?: Partial<RetryPolicy>;
  sleep?: (ms: number) => Promise<void>;
}

/** A driver with its client exposed (for request counts). */
export type KubernetesDriver = CoordinatorDriver & { client: KubernetesClient; namespace: string; mode: "crd" | "configmap" };

/** Where one store key lives. */
interface Location {
  key: string;
  storeKind: string;
  /** Collection path, e.g. /apis/contrast.edgeless.systems/v1/namespaces/ns/policies */
  collection: string;
  /** `plural.group` or `configmaps`. */
  resource: string;
  apiVersion: string;
  kind: string;
  name: string;
}

/** An object as read: its bytes and the resourceVersion to write against. */
interface Read {
  bytes: Uint8Array;
  resourceVersion: string;
}

const subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Unconditional writes that keep losing a race give up after this many rounds. */
const maxWriteRounds = 10;

/**
 * The Kubernetes driver. Every key `kind:name` is one object: in `crd` mode a custom resource of a
 * dedicated kind (name = the key's name) or the generic StoreObject (name = `kind.name`), in
 * `configmap` mode a ConfigMap named `contrast.kind.name`. The bytes are base64 in `spec.data`
 * (`binaryData.value` for ConfigMaps); a conditional write reads the object, compares the SHA-256
 * of its bytes with `ifMatch`, and PUTs with the resourceVersion it read, so the API server
 * refuses it (409) if anything changed in between. Creation is a POST (409 AlreadyExists: someone
 * else created it). No ownerReferences: deleting the workload never collects the history.
 */
export function kubernetesDriver(opts: KubernetesDriverOptions): KubernetesDriver {
  const mode = opts.mode ?? "crd";
  const ns = opts.namespace;
  const pageSize = opts.pageSize ?? 250;
  const client = new KubernetesClient({
    server: opts.server,
    token: opts.token,
    fetch: opts.fetch,
    ...(opts.retry === undefined ? {} : { retry: opts.retry }),
    ...(opts.sleep === undefined ? {} : { sleep: opts.sleep }),
  });
  if (!subdomain.test(ns) || ns.length > 63) throw new StoreError("INVALID_KEY", `invalid namespace ${JSON.stringify(ns)}`);

  function typeOf(storeKind: string): Omit<Location, "key" | "storeKind" | "name"> & { dedicated: boolean } {
    if (mode === "configmap") {
      return { collection: `/api/v1/namespaces/${ns}/configmaps`, resource: "configmaps", apiVersion: "v1", kind: "ConfigMap", dedicated: false };
    }
    const dedicated = dedicatedKinds[storeKind];
    const rk = dedicated ?? genericKind;
    return {
      collection: `/apis/${group}/${version}/namespaces/${ns}/${rk.plural}`,
      resource: `${rk.plural}.${group}`,
      apiVersion: `${group}/${version}`,
      kind: rk.kind,
      dedicated: dedicated !== undefined,
    };
  }

  function locate(key: string): Location {
    const at = key.indexOf(":");
    const storeKind = key.slice(0, at);
    const keyName = key.slice(at + 1);
    if (at <= 0 || !/^[a-z][a-z0-9-]{0,62}$/.test(storeKind) || keyName === "") {
      throw new StoreError("INVALID_KEY", `invalid store key ${JSON.stringify(key)}: expected kind:name`);
    }
    const type = typeOf(storeKind);
    const name = mode === "configmap" ? `contrast.${storeKind}.${keyName}` : type.dedicated ? keyName : `${storeKind}.${keyName}`;
    if (name.length > 253 || !subdomain.test(name)) {
      throw new StoreError("INVALID_KEY", `store key ${JSON.stringify(key)} cannot be a Kubernetes object name (${JSON.stringify(name)})`);
    }
    return { key, storeKind, name, collection: type.collection, resource: type.resource, apiVersion: type.apiVersion, kind: type.kind };
  }

  function request(loc: Location, method: ApiRequest["method"], verb: Verb, body?: unknown): Promise<Awaited<ReturnType<KubernetesClient["send"]>>> {
    const path = method === "POST" ? loc.collection : `${loc.collection}/${loc.name}`;
    return client.send({ method, path, verb, resource: loc.resource, namespace: ns, name: loc.name, ...(body === undefined ? {} : { body }) });
  }

  function failure(loc: Location, method: ApiRequest["method"], verb: Verb, status: number, body: unknown): KubernetesStoreError {
    const path = method === "POST" ? loc.collection : `${loc.collection}/${loc.name}`;
    return client.failure({ method, path, verb, resource: loc.resource, namespace: ns, name: loc.name }, status, (body ?? {}) as object);
  }

  /** The bytes an object holds; a malformed object is an error naming the key. */
  function bytesOfObject(loc: Location, obj: unknown): Read {
    const o = obj as { metadata?: { resourceVersion?: unknown }; spec?: { data?: unknown }; binaryData?: Record<string, unknown> } | null;
    const rv = o?.metadata?.resourceVersion;
    const data = mode === "configmap" ? (o?.binaryData === undefined ? undefined : (o.binaryData.value ?? "")) : o?.spec?.data;
    if (typeof rv !== "string" || typeof data !== "string") {
      throw new KubernetesStoreError("K8S_MALFORMED_OBJECT", `${loc.resource} "${loc.name}" (store key ${loc.key}) has no data`, {
        verb: "get",
        resource: loc.resource,
      });
    }
    try {
      return { bytes: fromBase64(data), resourceVersion: rv };
    } catch {
      throw new KubernetesStoreError("K8S_MALFORMED_OBJECT", `${loc.resource} "${loc.name}" (store key ${loc.key}) holds invalid base64`, {
        verb: "get",
        resource: loc.resource,
      });
    }
  }

  async function read(loc: Location): Promise<Read | null> {
    const answer = await request(loc, "GET", "get");
    if (answer.status === 404) return null;
    if (answer.status === 409) throw failure(loc, "GET", "get", answer.status, answer.body);
    return bytesOfObject(loc, answer.body);
  }

  /** The object to POST or PUT for bytes (with the resourceVersion for a PUT). */
  function objectFor(loc: Location, bytes: Uint8Array, resourceVersion?: string): unknown {
    const metadata: Record<string, unknown> = {
      name: loc.name,
      namespace: ns,
      labels: {
        "app.kubernetes.io/managed-by": managedBy,
        [coordinatorLabel]: opts.coordinator,
        [kindLabel]: loc.storeKind,
      },
    };
    if (resourceVersion !== undefined) metadata.resourceVersion = resourceVersion;
    const data = toBase64(bytes);
    if (mode === "configmap") return { apiVersion: "v1", kind: "ConfigMap", metadata, binaryData: { value: data } };
    return { apiVersion: loc.apiVersion, kind: loc.kind, metadata, spec: { data, ...(loc.storeKind === "heads" ? headSummary(bytes) : {}) } };
  }

  async function create(loc: Location, bytes: Uint8Array): Promise<"created" | "exists"> {
    const answer = await request(loc, "POST", "create", objectFor(loc, bytes));
    if (answer.status === 409) {
      // An earlier attempt whose answer was lost may have created it: the same bytes mean it did.
      if (answer.ambiguous) {
        const now = await read(loc);
        if (now !== null && bytesEqual(now.bytes, bytes)) return "created";
      }
      return "exists";
    }
    if (answer.status === 404) throw failure(loc, "POST", "create", answer.status, answer.body);
    return "created";
  }

  async function replace(loc: Location, bytes: Uint8Array, resourceVersion: string): Promise<"replaced" | "conflict" | "gone"> {
    const answer = await request(loc, "PUT", "update", objectFor(loc, bytes, resourceVersion));
    if (answer.status === 409 || answer.status === 404) {
      if (answer.ambiguous) {
        const now = await read(loc);
        if (now !== null && now.resourceVersion !== resourceVersion && bytesEqual(now.bytes, bytes)) return "replaced";
      }
      return answer.status === 409 ? "conflict" : "gone";
    }
    return "replaced";
  }

  function conflict(loc: Location, why: string): KubernetesStoreError {
    return new KubernetesStoreError("K8S_CONFLICT", `${loc.key} has changed: ${why}`, { verb: "update", resource: loc.resource, code: "CONFLICT" });
  }

  async function write(key: string, value: unknown, topts: TransactionOptions | undefined): Promise<void> {
    const ifMatch = ifMatchOf(topts);
    const bytes = bytesOf(value, key);
    const loc = locate(key);

    if (ifMatch === null) {
      if ((await create(loc, bytes)) === "exists") throw conflict(loc, "it exists already");
      return;
    }
    if (typeof ifMatch === "string") {
      const current = await read(loc);
      if (current === null) throw conflict(loc, "it does not exist");
      if ((await contentVersion(current.bytes)) !== ifMatch) throw conflict(loc, "its content version differs");
      const result = await replace(loc, bytes, current.resourceVersion);
      if (result !== "replaced") throw conflict(loc, result === "gone" ? "it was removed" : "another writer changed it");
      return;
    }
    // Unconditional: create (one request for a new object), else replace whatever is there
    // (an equal value is left alone, so content-addressed objects are never rewritten).
    for (let round = 0; round < maxWriteRounds; round++) {
      if ((await create(loc, bytes)) === "created") return;
      const current = await read(loc);
      if (current === null) continue;
      if (bytesEqual(current.bytes, bytes)) return;
      if ((await replace(loc, bytes, current.resourceVersion)) === "replaced") return;
    }
    throw conflict(loc, `still changing after ${maxWriteRounds} attempts`);
  }

  async function remove(key: string): Promise<void> {
    const loc = locate(key);
    const answer = await request(loc, "DELETE", "delete");
    if (answer.status === 409) throw failure(loc, "DELETE", "delete", answer.status, answer.body);
  }

  /** Every key of one store kind, or of every kind when `storeKind` is null, page by page. */
  async function list(storeKind: string | null): Promise<string[]> {
    const types: { storeKind: string | null; type: ReturnType<typeof typeOf> }[] = [];
    if (storeKind !== null) types.push({ storeKind, type: typeOf(storeKind) });
    else if (mode === "configmap") types.push({ storeKind: null, type: typeOf("any") });
    else {
      for (const k of Object.keys(dedicatedKinds)) types.push({ storeKind: k, type: typeOf(k) });
      types.push({ storeKind: null, type: typeOf("") });
    }
    const keys: string[] = [];
    for (const { storeKind: sk, type } of types) {
      const selector = [`app.kubernetes.io/managed-by=${managedBy}`];
      if (sk !== null) selector.push(`${kindLabel}=${sk}`);
      let restarts = 0;
      let cont: string | undefined;
      const found: string[] = [];
      do {
        let answer;
        try {
          answer = await client.send({
            method: "GET",
            path: type.collection,
            query: { labelSelector: selector.join(","), limit: String(pageSize), continue: cont },
            verb: "list",
            resource: type.resource,
            namespace: ns,
          });
        } catch (err) {
          // The continue token expired (the history changed too much meanwhile): start this list again.
          if (err instanceof KubernetesStoreError && err.apiCode === "K8S_EXPIRED" && restarts < 2) {
            restarts++;
            found.length = 0;
            cont = undefined;
            continue;
          }
          throw err;
        }
        if (answer.status !== 200) {
          throw client.failure({ method: "GET", path: type.collection, verb: "list", resource: type.resource, namespace: ns }, answer.status, (answer.body ?? {}) as object);
        }
        const page = answer.body as { items?: { metadata?: { name?: string; labels?: Record<string, string> } }[]; metadata?: { continue?: string } };
        for (const item of page.items ?? []) {
          const name = item.metadata?.name ?? "";
          const itemKind = item.metadata?.labels?.[kindLabel];
          const key = keyOf(type.dedicated ? sk : null, name, itemKind);
          if (key !== null) found.push(key);
        }
        cont = page.metadata?.continue || undefined;
      } while (cont !== undefined);
      keys.push(...found);
    }
    return [...new Set(keys)].sort();
  }

  /** The store key of an object, or null if the object does not belong to the store. */
  function keyOf(dedicatedStoreKind: string | null, name: string, labelKind: string | undefined): string | null {
    if (dedicatedStoreKind !== null) return `${dedicatedStoreKind}:${name}`;
    const rest = mode === "configmap" ? (name.startsWith("contrast.") ? name.slice("contrast.".length) : null) : name;
    if (rest === null) return null;
    const dot = rest.indexOf(".");
    if (dot <= 0) return null;
    const k = rest.slice(0, dot);
    if (labelKind !== undefined && labelKind !== k) return null;
    return `${k}:${rest.slice(dot + 1)}`;
  }

  function kindOfBase(base: string | undefined): string | null {
    const b = (base ?? "").replace(/:+$/, "");
    if (b === "") return null;
    const k = b.split(":")[0]!;
    return k;
  }

  return {
    name: "coordinator-kubernetes",
    options: opts,
    client,
    namespace: ns,
    mode,
    async hasItem(key) {
      return (await read(locate(key))) !== null;
    },
    async getItem(key) {
      const r = await read(locate(key));
      return r === null ? null : fromUtf8(r.bytes);
    },
    async getItemRaw(key) {
      const r = await read(locate(key));
      return r === null ? null : r.bytes;
    },
    setItem(key, value, topts) {
      return write(key, value, topts);
    },
    setItemRaw(key, value, topts) {
      return write(key, value, topts);
    },
    removeItem(key) {
      return remove(key);
    },
    async getKeys(base) {
      const prefix = base ?? "";
      const keys = await list(kindOfBase(base));
      return keys.filter((k) => k.startsWith(prefix));
    },
    async clear(base) {
      const prefix = base ?? "";
      for (const k of await list(kindOfBase(base))) if (k.startsWith(prefix)) await remove(k);
    },
  };
}

/**
 * Plain-text fields of a head for `kubectl get` (generation, recovery threshold, latest transition).
 * Informational only: the signed bytes in `spec.data` are what the Coordinator reads and verifies.
 */
function headSummary(bytes: Uint8Array): Record<string, unknown> {
  try {
    const head = JSON.parse(fromUtf8(bytes)) as { generation?: unknown; latestTransition?: unknown; recovery?: { threshold?: unknown; shares?: unknown } };
    const out: Record<string, unknown> = {};
    if (Number.isSafeInteger(head.generation)) out.generation = head.generation;
    if (typeof head.latestTransition === "string" && /^[0-9a-f]{64}$/.test(head.latestTransition)) out.latestTransition = head.latestTransition;
    if (Number.isSafeInteger(head.recovery?.threshold)) out.threshold = head.recovery!.threshold;
    if (Number.isSafeInteger(head.recovery?.shares)) out.shares = head.recovery!.shares;
    return out;
  } catch {
    return {};
  }
}
