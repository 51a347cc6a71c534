// Request parsing and error answers shared by every route: body limits, JSON, zod, and the one error mapping.
import type { Context } from "hono";
import type { z } from "zod";
import { CoordinatorError, errorBody } from "../errors.js";
import { StoreError } from "../storage/store.js";

/**
 * How request bodies are read: one of a declared content-length above `small` goes into one buffer
 * of that size, allocated up front (smaller ones are buffered as their bytes arrive, so a client that
 * declares a size and sends nothing costs nothing); no body is read past `max` bytes, which is above
 * every route's body limit.
 */
const bodyReading = { small: 64 * 1024, max: 64 * 1024 * 1024 } as const;

const utf8Decoder = new TextDecoder();

function tooLarge(): CoordinatorError {
  return new CoordinatorError("PAYLOAD_TOO_LARGE", `the request body is larger than ${bodyReading.max} bytes`);
}

/**
 * The request body's bytes, read once and copied as little as possible: a large body of a declared
 * content-length chunk by chunk into one buffer of that size (not the chunks and then their
 * concatenation); one without (chunked, or already buffered by the body limit, which then comes as one
 * chunk) as its one chunk, or its chunks concatenated. No text is left in Hono's body cache for the rest
 * of the request either.
 */
async function bodyBytes(c: Context): Promise<Uint8Array> {
  const raw = c.req.raw;
  const contentLength = c.req.header("content-length");
  const declared =
    contentLength !== undefined && /^\d+$/.test(contentLength) && c.req.header("transfer-encoding") === undefined ? Number(contentLength) : undefined;
  // Read before `body` is touched: on Node, reading `body` makes the full web Request and its stream
  // (a large share of a mesh certificate's cost); a request without a body reads as empty here too.
  if (declared !== undefined && declared <= bodyReading.small) return new Uint8Array(await raw.arrayBuffer());
  if (raw.body === null) return new Uint8Array(0);
  if (declared !== undefined && declared > bodyReading.max) throw tooLarge();
  const reader = raw.body.getReader();
  if (declared !== undefined) {
    const bytes = new Uint8Array(declared);
    let offset = 0;
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      if (offset + next.value.length > declared) throw new CoordinatorError("INVALID_REQUEST", "the request body is longer than its content-length");
      bytes.set(next.value, offset);
      offset += next.value.length;
    }
    return offset === declared ? bytes : bytes.subarray(0, offset);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    total += next.value.length;
    if (total > bodyReading.max) throw tooLarge();
    chunks.push(next.value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

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
  let text: string;
  try {
    text = utf8Decoder.decode(await bodyBytes(c));
  } catch (err) {
    if (err instanceof CoordinatorError) throw err;
    throw new CoordinatorError("INVALID_JSON", "the request body could not be read");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
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
