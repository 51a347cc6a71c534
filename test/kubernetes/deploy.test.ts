// deploy/ renders with `kubectl kustomize`, and the rendered base has what the issue asks of it (the API server test applies it for real).
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
        "CustomResourceDefinition/manifests.contrast.edgeless.systems",
        "CustomResourceDefinition/policies.contrast.edgeless.systems",
        "CustomResourceDefinition/sealedkeys.contrast.edgeless.systems",
        "CustomResourceDefinition/seedsharedocuments.contrast.edgeless.systems",
        "CustomResourceDefinition/storeobjects.contrast.edgeless.systems",
        "CustomResourceDefinition/transitions.contrast.edgeless.systems",
        "Role/coordinator",
        "RoleBinding/coordinator",
        "Service/coordinator",
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

  it("grants only get, create and update on the Coordinator's six resources, in its namespace", () => {
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
        "  - coordinatorheads",
        "  verbs:",
        "  - get",
        "  - create",
        "  - update",
      ].join("\n"),
    );
    expect(role.split("- apiGroups:")).toHaveLength(2);
    const binding = docs.find((d) => kindOf(d) === "RoleBinding")!;
    expect(binding).toContain("subjects:\n- kind: ServiceAccount\n  name: coordinator\n  namespace: contrast");
    expect(docs.some((d) => kindOf(d) === "ClusterRole" || kindOf(d) === "ClusterRoleBinding")).toBe(false);
  });

  it("runs one non-root replica with probes, requests and a read-only root filesystem", () => {
    const sts = docs.find((d) => kindOf(d) === "StatefulSet")!;
    expect(sts).toMatch(/replicas: 1\n/);
    expect(sts).toMatch(/livenessProbe:\n\s+failureThreshold: \d+\n\s+httpGet:\n\s+path: \/healthz/);
    expect(sts).toMatch(/readinessProbe:\n\s+httpGet:\n\s+path: \/readyz/);
    expect(sts).toMatch(/requests:\n\s+cpu: \S+\n\s+memory: \S+/);
    expect(sts).toMatch(/runAsNonRoot: true/);
    expect(sts).toMatch(/readOnlyRootFilesystem: true/);
    expect(sts).toMatch(/serviceAccountName: coordinator/);
    expect(sts).toMatch(/- kubernetes\n/);
    expect(sts).not.toMatch(/ownerReferences|volumeClaimTemplates/);
  });
});
