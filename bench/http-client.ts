// The benches' load generator: a keep-alive node:http POSTer of JSON, which costs the bench process about a third of what fetch does per request.
import { Agent, request as httpRequest } from "node:http";

/** What a POST answered. */
export interface Posted {
  status: number;
  text: string;
}

/** POSTs JSON bodies to `url` over at most `clients` kept-alive connections; each request fails after `timeoutMs`. */
export function keepAlivePoster(url: string, opts: { clients: number; timeoutMs: number }): { post: (body: string) => Promise<Posted>; close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.clients });
  const target = new URL(url);
  const post = (body: string): Promise<Posted> =>
    new Promise((ok, fail) => {
      const req = httpRequest(
        {
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: "POST",
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          timeout: opts.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => ok({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", fail);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)));
      req.on("error", fail);
      req.end(body);
    });
  return { post, close: () => agent.destroy() };
}
