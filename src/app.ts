// createApp(deps): the Coordinator's Hono app, the one thing every runtime adapter wires up and serves.
import { Hono } from "hono";
import type { Coordinator } from "./coordinator/coordinator.js";
import type { SelfAttestation } from "./coordinator/self-attestation.js";
import { CoordinatorError } from "./errors.js";
import { allowedHostsMiddleware } from "./api/hosts.js";
import { Metrics } from "./api/metrics.js";
import { openApiDocument } from "./api/openapi.js";
import { errorResponse, toCoordinatorError } from "./api/respond.js";
import { v1Routes } from "./api/routes.js";
import type { Log, PeerRoutes } from "./api/routes.js";

export type { Log } from "./api/routes.js";

/** What the app needs. */
export interface AppDeps {
  coordinator: Coordinator;
  log?: Log;
  metrics?: Metrics;
  /**
   * Host names (`name`, `name:port`, IP, `[ipv6]:port`) the app answers for; any other Host gets
   * 421 HOST_NOT_ALLOWED (probes excepted). Left out: every Host is answered.
   */
  allowedHosts?: readonly string[];
  /** The Coordinator's HPKE key and evidence source (`GET /v1/attestation`); left out: EVIDENCE_UNAVAILABLE. */
  selfAttestation?: SelfAttestation;
  /** Peer replicas (POST /v1/peers/seed, and PEERS_READY on recover); left out: no seed is served to peers. */
  peers?: PeerRoutes;
}

const states = ["uninitialized", "recovery-required", "ready", "stale"] as const;
const methods = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
const knownPaths = ["/v1/status", "/v1/manifest", "/v1/manifests", "/v1/seedshares", "/v1/recover", "/v1/mesh/certificate", "/v1/attestation", "/v1/peers/seed", "/healthz", "/readyz", "/metrics", "/v1/openapi.json"];

/** Builds the Hono app over a started Coordinator. */
export function createApp(deps: AppDeps): Hono {
  const { coordinator } = deps;
  const log: Log = deps.log ?? (() => undefined);
  const metrics = deps.metrics ?? new Metrics();
  const app = new Hono();
  // Made on the first request for it, not at start (generating it takes several milliseconds).
  let openapi: ReturnType<typeof openApiDocument> | undefined;
  let reported: string | null = null;

  app.use(async function countRequests(c, next) {
    await next();
    metrics.inc("coordinator_http_requests_total", "HTTP requests by method and status.", {
      method: methods.has(c.req.method) ? c.req.method : "OTHER",
      status: String(c.res.status),
    });
  });
  if (deps.allowedHosts !== undefined) app.use(allowedHostsMiddleware(deps.allowedHosts));

  app.route("/v1", v1Routes(coordinator, metrics, log, deps.selfAttestation, deps.peers));
  app.get("/v1/openapi.json", (c) => c.json((openapi ??= openApiDocument())));
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const { state, damage } = coordinator.status();
    if (damage !== undefined) return c.json({ ready: false, state, damage }, 503);
    return c.json({ ready: state === "ready", state }, state === "ready" ? 200 : 503);
  });
  coordinator.onAudit(function reportAudit(finding, damage) {
    metrics.inc("coordinator_audits_total", "Background re-verifications of the stored state, by result.", { result: finding.kind });
    if (finding.kind === "damaged") {
      log("error", "stored state damaged", { key: finding.damage.key, error: finding.damage.message });
    } else if (finding.kind === "moved") {
      log("warn", "the stored head moved under this Coordinator; it is stale until recovered");
    } else if (finding.kind === "unavailable") {
      log("warn", "re-verification could not read the store", { error: finding.message });
    } else if (reported !== null && damage === null) {
      log("info", "stored state restored", { key: reported });
    }
    reported = damage?.key ?? null;
  });
  app.get("/metrics", (c) => {
    const status = coordinator.status();
    const text = metrics.render([
      ...states.map((s) => ({
        name: "coordinator_state",
        help: "1 for the Coordinator's current state.",
        labels: { state: s },
        value: status.state === s ? 1 : 0,
      })),
      { name: "coordinator_manifest_generation", help: "Generation of the current manifest (0: none).", value: status.generation ?? 0 },
      { name: "coordinator_state_damaged", help: "1 while a stored object is missing or changed (writes are refused).", value: status.damage === undefined ? 0 : 1 },
    ]);
    return c.text(text, 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
  });

  for (const path of knownPaths) {
    app.all(path, () => {
      throw new CoordinatorError("METHOD_NOT_ALLOWED", `method not allowed on ${path}`);
    });
  }
  app.notFound((c) => errorResponse(c, new CoordinatorError("NOT_FOUND", `no route ${c.req.method} ${c.req.path}`)));
  app.onError((err, c) => {
    const mapped = toCoordinatorError(err);
    if (mapped.status >= 500) {
      log("error", "request failed", { path: c.req.path, code: mapped.code, error: String(err instanceof Error && mapped.code === "INTERNAL" ? err.stack : mapped.message) });
    }
    return errorResponse(c, mapped);
  });
  return app;
}
