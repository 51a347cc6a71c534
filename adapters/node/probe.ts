// Checks at start that the configured store can work at all, so a store that never could fails the start instead of the first set.
import { coordinatorLabel, dedicatedKinds, group, kindLabel, managedBy, version, type KubernetesDriver } from "../../src/storage/kubernetes.js";
import { toHex } from "../../src/encoding.js";
import { randomBytes } from "../../src/crypto/provider.js";
import { probeKind, probeStore, StoreError, type Store } from "../../src/storage/store.js";

/** How long the start-up probe may take before the store counts as unusable. */
export const probeTimeoutMs = 30_000;

/**
 * Probes a Kubernetes store without leaving anything behind: for every resource the Coordinator
 * writes (each of its custom resources, or ConfigMaps in `configmap` mode) a server-side dry-run create
 * (`?dryRun=All`) of an object named `probe.<name>.<32 hex>` (dots: never a Coordinator name, never
 * a SHA-256 hex, so never a real object's name). The API server authenticates, authorizes (RBAC
 * `create`), checks that the resource exists and validates the object against its schema, and
 * persists nothing, so nothing has to be deleted (the Role grants no delete) and nothing can show
 * up in a list. A 409 AlreadyExists also proves that `create` was allowed. Throws a StoreError.
 */
export async function probeKubernetes(driver: KubernetesDriver, coordinator: string): Promise<void> {
  const ns = driver.namespace;
  const name = `probe.${coordinator}.${toHex(randomBytes(16))}`;
  const labels = { "app.kubernetes.io/managed-by": managedBy, [coordinatorLabel]: coordinator, [kindLabel]: probeKind };
  const targets =
    driver.mode === "configmap"
      ? [
          {
            collection: `/api/v1/namespaces/${ns}/configmaps`,
            resource: "configmaps",
            object: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `contrast.${probeKind}.${name}`, namespace: ns, labels }, binaryData: { value: "" } },
          },
        ]
      : Object.values(dedicatedKinds).map((rk) => ({
          collection: `/apis/${group}/${version}/namespaces/${ns}/${rk.plural}`,
          resource: `${rk.plural}.${group}`,
          object: { apiVersion: `${group}/${version}`, kind: rk.kind, metadata: { name, namespace: ns, labels }, spec: { data: "" } },
        }));
  for (const t of targets) {
    const req = { method: "POST" as const, path: t.collection, verb: "create" as const, resource: t.resource, namespace: ns };
    const answer = await driver.client.send({ ...req, query: { dryRun: "All" }, body: t.object });
    if (answer.status === 404) {
      const cause = driver.client.failure(req, answer.status, (answer.body ?? {}) as object);
      const hint = driver.mode === "configmap" ? `does namespace "${ns}" exist?` : `is deploy/crds.yaml applied, and does namespace "${ns}" exist?`;
      throw new StoreError("UNAVAILABLE", `kubernetes: cannot create ${t.resource} in namespace "${ns}" (${hint}): ${cause.message}`, { cause });
    }
    if (answer.status === 409) {
      const reason = (answer.body as { reason?: unknown } | null)?.reason;
      if (reason !== "AlreadyExists") throw driver.client.failure(req, answer.status, (answer.body ?? {}) as object);
    }
  }
}

/**
 * The start-up probe of the Node adapter: `probeKubernetes` for a Kubernetes store, else
 * `probeStore` (create, read back and remove one `probes:` object). Rejects with a StoreError if
 * the store fails or does not answer within `timeoutMs`.
 */
export async function probeAtStart(
  target: { kubernetes: KubernetesDriver } | { store: Store },
  coordinator: string,
  timeoutMs: number = probeTimeoutMs,
): Promise<void> {
  const probe = "kubernetes" in target ? probeKubernetes(target.kubernetes, coordinator) : probeStore(target.store, coordinator);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreError("UNAVAILABLE", `the store did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    await Promise.race([probe, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
