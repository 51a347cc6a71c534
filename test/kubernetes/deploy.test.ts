// deploy/ renders with `kubectl kustomize`, and the rendered base has what the issue asks of it: three replicas, a PodDisruptionBudget, a headless Service for peer discovery, least-privilege RBAC (test/kubernetes/peers.test.ts applies it to a real API server).
import { execFile, execFileSync } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { projectRoot } from "./apiserver.js";

const execFileP = promisify(execFile);

function hasKubectl(): boolean {
  try {
    execFileSync("kubectl", ["version", "--client"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const kubectl = hasKubectl();
if (!kubectl && process.env.CI === "true") throw new Error("CI=true: kubectl is needed to render deploy/");

/** The rendered documents, split at `---`. */
function documents(yaml: string): string[] {
  return yaml.split(/^---$/m).map((d) => d.trim()).filter((d) => d !== "");
}

const kindOf = (doc: string) => /^kind: (\S+)$/m.exec(doc)?.[1];
const nameOf = (doc: string) => /^metadata:\n(?: {2}.*\n)*? {2}name: (\S+)$/m.exec(doc)?.[1];

describe.skipIf(!kubectl)(`deploy/ (kustomize base)${kubectl ? "" : " (skipped: kubectl not installed)"}`, () => {
  let docs: string[];

  beforeAll(async () => {
    const { stdout } = await execFileP("kubectl", ["kustomize", join(projectRoot, "deploy")], { timeout: 60_000 });
    docs = documents(stdout);
  });

  it("renders the CRDs, ServiceAccount, Role, RoleBinding, StatefulSet and Service", () => {
    const kinds = docs.map((d) => `${kindOf(d)}/${nameOf(d)}`).sort();
    expect(kinds).toEqual(
      [
        "CustomResourceDefinition/certificates.contrast.edgeless.systems",
        "CustomResourceDefinition/coordinatorheads.contrast.edgeless.systems",
        "CustomResourceDefinition/historyindexes.contrast.edgeless.systems",
        "CustomResourceDefinition/manifests.contrast.edgeless.systems",
        "CustomResourceDefinition/policies.contrast.edgeless.systems",
        "CustomResourceDefinition/sealedkeys.contrast.edgeless.systems",
        "CustomResourceDefinition/seedsharedocuments.contrast.edgeless.systems",
        "CustomResourceDefinition/storeobjects.contrast.edgeless.systems",
        "CustomResourceDefinition/transitions.contrast.edgeless.systems",
        "PodDisruptionBudget/coordinator",
        "Role/coordinator",
        "RoleBinding/coordinator",
        "Service/coordinator",
        "Service/coordinator-peers",
        "ServiceAccount/coordinator",
        "StatefulSet/coordinator",
      ].sort(),
    );
  });

  it("gives every CRD a structural schema with spec.data as base64", () => {
    for (const crd of docs.filter((d) => kindOf(d) === "CustomResourceDefinition")) {
      expect(crd).toMatch(/openAPIV3Schema:\n\s+description: .+/);
      expect(crd).toMatch(/data:\n\s+description: .+\n\s+pattern: .+\n\s+type: string/);
      expect(crd).toMatch(/scope: Namespaced/);
      expect(crd).not.toMatch(/x-kubernetes-preserve-unknown-fields/);
    }
  });

  it("grants only get, create and update on the Coordinator's resources and list on EndpointSlices, in its namespace", () => {
    const role = docs.find((d) => kindOf(d) === "Role")!;
    expect(role).toMatch(/namespace: contrast/);
    expect(role).toContain(
      [
        "rules:",
        "- apiGroups:",
        "  - contrast.edgeless.systems",
        "  resources:",
        "  - policies",
        "  - manifests",
        "  - transitions",
        "  - certificates",
        "  - sealedkeys",
        "  - seedsharedocuments",
        "  - historyindexes",
        "  - coordinatorheads",
        "  verbs:",
        "  - get",
        "  - create",
        "  - update",
        "- apiGroups:",
        "  - discovery.k8s.io",
        "  resources:",
        "  - endpointslices",
        "  verbs:",
        "  - list",
      ].join("\n"),
    );
    expect(role.split("- apiGroups:")).toHaveLength(3);
    expect(role).not.toMatch(/\*|watch|delete|secrets|pods/);
    const binding = docs.find((d) => kindOf(d) === "RoleBinding")!;
    expect(binding).toContain("subjects:\n- kind: ServiceAccount\n  name: coordinator\n  namespace: contrast");
    expect(docs.some((d) => kindOf(d) === "ClusterRole" || kindOf(d) === "ClusterRoleBinding")).toBe(false);
  });

  it("runs three non-root replicas, started in parallel, with probes, requests and a read-only root filesystem", () => {
    const sts = docs.find((d) => kindOf(d) === "StatefulSet")!;
    expect(sts).toMatch(/\n {2}replicas: 3\n/);
    expect(sts).toMatch(/\n {2}podManagementPolicy: Parallel\n/);
    expect(sts).toMatch(/\n {2}serviceName: coordinator-peers\n/);
    expect(sts).toMatch(/livenessProbe:\n\s+failureThreshold: \d+\n\s+httpGet:\n\s+path: \/healthz/);
    expect(sts).toMatch(/readinessProbe:\n\s+httpGet:\n\s+path: \/readyz/);
    expect(sts).toMatch(/requests:\n\s+cpu: \S+\n\s+memory: \S+/);
    expect(sts).toMatch(/runAsNonRoot: true/);
    expect(sts).toMatch(/readOnlyRootFilesystem: true/);
    expect(sts).toMatch(/serviceAccountName: coordinator/);
    expect(sts).toMatch(/- kubernetes\n/);
    expect(sts).not.toMatch(/ownerReferences|volumeClaimTemplates/);
  });

  it("sets the Coordinator's evidence to configfs-tsm and its peers to the headless Service, without weakening the securityContext", () => {
    const sts = docs.find((d) => kindOf(d) === "StatefulSet")!;
    const env = (name: string) => new RegExp(`- name: ${name}\\n\\s+value: (\\S+)\\n`).exec(sts)?.[1];
    expect(env("CONTRAST_EVIDENCE")).toBe("tsm");
    expect(env("CONTRAST_PEERS")).toBe("kubernetes:service=coordinator-peers");
    // Peers address each other by Pod IP: the Pod's own IP is an allowed host, from the downward API.
    expect(sts).toMatch(/- name: POD_IP\n\s+valueFrom:\n\s+fieldRef:\n\s+fieldPath: status\.podIP\n/);
    expect(env("CONTRAST_ALLOWED_HOSTS")!.split(",")).toContain("$(POD_IP)");
    // No host directory, no root, no privilege, no added capability for the evidence.
    expect(sts).toMatch(/runAsUser: 65532/);
    expect(sts).toMatch(/capabilities:\n\s+drop:\n\s+- ALL\n/);
    expect(sts).not.toMatch(/hostPath|privileged|add:|runAsUser: 0|volumes:/);
  });

  it("has a headless Service with not-ready addresses for discovery, and a PodDisruptionBudget that keeps 2", () => {
    const peers = docs.find((d) => kindOf(d) === "Service" && nameOf(d) === "coordinator-peers")!;
    expect(peers).toMatch(/\n {2}clusterIP: None\n/);
    expect(peers).toMatch(/\n {2}publishNotReadyAddresses: true\n/);
    expect(peers).toMatch(/\n {2}selector:\n {4}app\.kubernetes\.io\/name: coordinator$/m);
    expect(peers).toMatch(/- name: http\n {4}port: 1313\n/);
    const pdb = docs.find((d) => kindOf(d) === "PodDisruptionBudget")!;
    expect(pdb).toMatch(/^apiVersion: policy\/v1$/m);
    expect(pdb).toMatch(/\n {2}minAvailable: 2\n/);
    expect(pdb).toMatch(/\n {2}selector:\n {4}matchLabels:\n {6}app\.kubernetes\.io\/name: coordinator$/m);
    const sts = docs.find((d) => kindOf(d) === "StatefulSet")!;
    expect(sts).toMatch(/template:\n\s+metadata:\n\s+labels:\n\s+app\.kubernetes\.io\/name: coordinator\n/);
  });
});
