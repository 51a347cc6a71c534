// Request parsing and error answers shared by every route: body limits, JSON, zod, and the one error mapping.
import type { Context } from "hono";
import type { z } from "zod";
import { CoordinatorError, errorBody } from "../errors.js";
import { StoreError } from "../storage/store.js";

/**
 * Parses a JSON body against a schema. The body must be declared `application/json` (so a page on
 * another origin cannot send it as a CORS "simple request"); then anything else is INVALID_JSON or
 * INVALID_REQUEST.
 */
export async function readBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const mediaType = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new CoordinatorError("UNSUPPORTED_MEDIA_TYPE", "the request body must be sent as application/json");
  }
  let json: unknown;
  try {
    json = JSON.parse(await c.req.text());
  } catch {
    throw new CoordinatorError("INVALID_JSON", "the request body is not JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join(".") : "body";
    throw new CoordinatorError("INVALID_REQUEST", `${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

/** Maps any error to a CoordinatorError: domain errors as they are, store failures by code, the rest INTERNAL. */
export function toCoordinatorError(err: unknown): CoordinatorError {
  if (err instanceof CoordinatorError) return err;
  if (err instanceof StoreError) {
    if (err.code === "CONFLICT") return new CoordinatorError("STALE", err.message, { cause: err });
    return new CoordinatorError("STORE_UNAVAILABLE", `the store failed: ${err.message}`, { cause: err });
  }
  return new CoordinatorError("INTERNAL", "internal error", { cause: err });
}

/** The JSON error response of a CoordinatorError. */
export function errorResponse(c: Context, err: CoordinatorError): Response {
  return c.json(errorBody(err), err.status as 400);
}
