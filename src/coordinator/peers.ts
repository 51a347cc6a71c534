// Where a Coordinator finds its peer replicas: the directory interface, and the static list of `--peers URL,URL`.

/** Lists the base URLs of the Coordinator replicas that may serve this one (its own URL may be among them). */
export interface PeerDirectory {
  /** What the directory is, for logs (e.g. `static list of 2` or `EndpointSlices of coordinator-peers`). */
  readonly description: string;
  /** The peers' base URLs now, e.g. `http://10.0.0.7:1313`; an empty list when none is known. Throws only for a configuration error. */
  list(): Promise<string[]>;
}

/** A fixed list of peer base URLs. */
export function staticPeers(urls: readonly string[]): PeerDirectory {
  const list = urls.map((u) => u.replace(/\/+$/, ""));
  return {
    description: `static list of ${list.length}`,
    list: async () => [...list],
  };
}
