// The few Workers runtime types the adapter uses (Durable Objects and their SQLite storage), declared here instead of pulling in @cloudflare/workers-types.

/** A value SQLite hands back: BLOB columns arrive as ArrayBuffer. */
export type SqlValue = ArrayBuffer | string | number | null;

/** The cursor `sql.exec` returns. */
export interface SqlCursor<T> {
  toArray(): T[];
}

/** A Durable Object's SQLite database (`ctx.storage.sql`); every call is synchronous. */
export interface SqlStorage {
  exec<T = Record<string, SqlValue>>(query: string, ...bindings: (ArrayBuffer | string | number | null)[]): SqlCursor<T>;
}

/** A SQLite-backed Durable Object's storage. */
export interface DurableObjectStorage {
  readonly sql: SqlStorage;
  /** Runs `fn` as one SQLite transaction: all of its writes or none (a throw rolls back). */
  transactionSync<T>(fn: () => T): T;
}

/** The identifier of one Durable Object instance. */
export interface DurableObjectId {
  toString(): string;
}

/** What the runtime gives a Durable Object's constructor. */
export interface DurableObjectState {
  readonly id: DurableObjectId;
  readonly storage: DurableObjectStorage;
  /** Keeps the object alive until the promise settles (background work after a response). */
  waitUntil?(promise: Promise<unknown>): void;
}

/** A handle to one Durable Object instance. */
export interface DurableObjectStub {
  fetch(request: Request): Promise<Response>;
}

/** A Durable Object namespace binding. */
export interface DurableObjectNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): DurableObjectStub;
}
