// The OpenAPI 3.1 document, generated from the same zod schemas that validate the requests.
import { z } from "zod";
import * as s from "./schemas.js";

function json(schema: z.ZodType) {
  return { content: { "application/json": { schema: z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) } } };
}

function errors(...codes: number[]) {
  return Object.fromEntries(codes.map((code) => [String(code), { description: "error", ...json(s.errorResponse) }]));
}

/** Builds the OpenAPI document. */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: { title: "Contrast Coordinator", version: "1" },
    paths: {
      "/v1/status": { get: { summary: "State, generation, recovery progress", responses: { 200: { description: "status", ...json(s.statusResponse) } } } },
      "/v1/manifest": {
        post: {
          summary: "Set the first manifest or update it",
          requestBody: { required: true, ...json(s.setManifestRequest) },
          responses: { 200: { description: "set", ...json(s.setManifestResponse) }, ...errors(400, 403, 409, 413, 503) },
        },
      },
      "/v1/manifests": {
        get: { summary: "The history with exact bytes", responses: { 200: { description: "history", ...json(s.historyResponse) }, ...errors(409, 502) } },
      },
      "/v1/attestation": {
        get: {
          summary: "The Coordinator's own evidence, binding the client's nonce, its HPKE key, its name and the state it holds",
          parameters: [{ name: "nonce", in: "query", required: true, description: "32 bytes, hex", schema: { type: "string", pattern: "^[0-9a-f]{64}$" } }],
          responses: { 200: { description: "evidence" }, ...errors(400, 404, 405, 503) },
        },
      },
      "/v1/seedshares": {
        get: {
          summary: "The encrypted seed-share document of the current recovery seed, in every state but uninitialized",
          responses: { 200: { description: "seed shares", ...json(s.seedSharesResponse) }, ...errors(404, 409, 502, 503) },
        },
      },
      "/v1/recover": {
        post: {
          summary: "Submit one seed share; with threshold t the t-th distinct share completes the recovery",
          requestBody: { required: true, ...json(s.recoverRequest) },
          responses: { 200: { description: "progress or recovered", ...json(s.recoverResponse) }, ...errors(400, 403, 409, 502, 503) },
        },
        delete: {
          summary: "Discard the shares of an unfinished recovery (signed by one seed-share owner over the attempt's nonce)",
          requestBody: { required: true, ...json(s.resetRecoveryRequest) },
          responses: { 200: { description: "reset", ...json(s.recoverResponse) }, ...errors(400, 403, 409, 502, 503) },
        },
      },
      "/v1/peers/seed": {
        post: {
          summary: "A peer replica asks for the root seed: {} answers 401 with a nonce; its evidence for that nonce and its HPKE key answers the seed sealed to that key",
          requestBody: { required: true, ...json(s.peerSeedRequest) },
          responses: { 200: { description: "sealed root seed", ...json(s.peerSeedResponse) }, 401: { description: "a nonce to bind", ...json(s.errorResponse) }, ...errors(400, 403, 404, 409, 503) },
        },
      },
      "/v1/mesh/certificate": {
        post: {
          summary: "Issue a mesh certificate to an attested workload",
          requestBody: { required: true, ...json(s.meshCertificateRequest) },
          responses: { 200: { description: "certificate", ...json(s.meshCertificateResponse) }, ...errors(400, 401, 403, 409, 503) },
        },
      },
      "/v1/openapi.json": { get: { summary: "This document", responses: { 200: { description: "OpenAPI 3.1" } } } },
      "/healthz": { get: { summary: "Liveness", responses: { 200: { description: "alive" } } } },
      "/readyz": { get: { summary: "Readiness: ready only in state ready", responses: { 200: { description: "ready" }, 503: { description: "not ready" } } } },
      "/metrics": { get: { summary: "Prometheus metrics", responses: { 200: { description: "text" } } } },
    },
  };
}
