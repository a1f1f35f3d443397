// Type declarations for patchd's JavaScript client (patchd.js).

/** A JSON value as patchd stores it. Numbers go through JavaScript's float64. */
export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };
/** A JSON object: every patchd document is one. */
export type JSONObject = { [key: string]: JSONValue };

/** T deeply read-only: a Doc's value is frozen, shared with every listener. */
export type Frozen<T> = T extends (infer U)[]
  ? ReadonlyArray<Frozen<U>>
  : T extends object
    ? { readonly [K in keyof T]: Frozen<T[K]> }
    : T;

/** One RFC 6902 operation. */
export type Operation =
  | { op: 'add'; path: string; value: JSONValue }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: JSONValue }
  | { op: 'move'; from: string; path: string }
  | { op: 'copy'; from: string; path: string }
  | { op: 'test'; path: string; value: JSONValue };

/** An RFC 9457 problem details body as patchd sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  currentEtag?: string | null;
  baseEtag?: string | null;
  conflicts?: ConflictPair[];
  [member: string]: unknown;
}

/** One conflicting pair of a 412 rebase-conflict. */
export interface ConflictPair {
  clientOp: number;
  clientPath: string;
  concurrentPath: string;
  concurrentVersion: number;
  reason: 'overlap' | 'ancestor-replaced' | 'element-removed' | 'test-invalidated' | 'array-replaced' | string;
}

/** A document's state: value null and etag null when it is deleted. */
export interface Current<T = JSONObject> {
  value: T | null;
  etag: string | null;
}

/** An error answer (4xx or 5xx) from patchd. */
export class PatchdError extends Error {
  constructor(status: number, problem: Problem | null, current?: Current | null);
  /** HTTP status. */
  readonly status: number;
  /** Problem name: "not-found", "rebase-conflict", "base-unknown", ... */
  readonly type: string;
  readonly problem: Problem | null;
  /** For a 412 (of a write or of create()): the document as it is now, read right after the 412; null if it could not be read. */
  readonly current: Current | null;
}

/** A 412 rebase-conflict: the edit overlaps concurrent edits; nothing was written. */
export class ConflictError extends PatchdError {
  constructor(status: number, problem: Problem | null, current: Current | null, mine: Operation[] | JSONObject);
  readonly conflicts: ConflictPair[];
  /** This edit's conflicting JSON Pointers, without duplicates. */
  readonly paths: string[];
  /** The refused edit: JSON Patch ops, or the merge patch. */
  readonly mine: Operation[] | JSONObject;
}

/** The network failed and retries were exhausted, or the client was closed. */
export class NetworkError extends Error {
  constructor(message: string, cause?: unknown);
}

/** An error applying a JSON Patch locally. */
export class PatchApplyError extends Error {
  constructor(message: string, op?: Operation);
  readonly op?: Operation;
}

export interface RetryOptions {
  /** First delay bound in ms (default 250). */
  base?: number;
  /** Largest delay bound in ms (default 10000). */
  max?: number;
  /** Attempts in all before giving up (default Infinity). */
  attempts?: number;
}

export interface ClientOptions {
  /**
   * Server URL, e.g. "http://127.0.0.1:8080"; "" (default) for the page's own
   * origin. Outside a page it must be an absolute http or https URL: the
   * constructor throws a TypeError otherwise.
   */
  baseURL?: string;
  /**
   * Extra request headers (Authorization, say), or a function that returns
   * them (or a promise of them), asked afresh for every request and retry.
   */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  fetch?: typeof fetch;
  retry?: RetryOptions;
  /** ms without a byte (heartbeats included) before a change feed reconnects (default 45000). */
  idleTimeout?: number;
  /** Where unsent edits are kept across reloads: indexedDBStore() from "@patchd/client/idb", or your own. */
  store?: EditStore | null;
  /** One stream for all tabs of the origin (Web Locks + BroadcastChannel); default true where both exist in a page. */
  share?: boolean;
}

/** An unsent edit as a store keeps it: what its replay needs to be the same request. */
export interface StoredEdit {
  key: string;
  /** Orders the edits of a document. */
  n: number;
  kind: 'json-patch' | 'merge-patch';
  body: Operation[] | JSONObject;
  /** The If-Match to send; null while `after` names the stored edit it is queued behind. */
  ifMatch: string | null;
  after: string | null;
  /** With after: the newest server version the value showed when the edit was made. */
  known?: string | null;
  /** The ETag the document had when the edit was made. */
  seen: string | null;
  /** The change feed already brought its version (its answer was lost). */
  landed: boolean;
}

/** Keeps unsent edits. Every method may return a promise. */
export interface EditStore {
  /** The edits of c/id that no live page or Doc holds; they become the caller's. */
  load(collection: string, id: string): StoredEdit[] | Promise<StoredEdit[]>;
  put(collection: string, id: string, edit: StoredEdit): unknown;
  delete(collection: string, id: string, key: string): unknown;
  /** A closed Doc lets go of an unsent edit: the next load may take it. */
  release?(collection: string, id: string, key: string): unknown;
}

/** An event of the change feed: one committed version (API.md, "Change feed"). */
export interface VersionEvent {
  seq: number;
  /** null after a delete. */
  etag: string | null;
  at: string;
  kind: 'put' | 'json-patch' | 'merge-patch' | 'delete' | 'revert';
  ops: Operation[];
  rebasedFrom: string | null;
  /** The token's name (or "token:" and 8 hex digits); null without tokens. */
  actor?: string | null;
  /** The X-Request-Id of the write. */
  requestId?: string | null;
  /** On a version of kind revert: the seq it undid. */
  reverts?: number;
}

export type Status = 'idle' | 'connecting' | 'live' | 'offline' | 'closed';

/**
 * Why the value changed: local (an edit was made), ack (the server took an
 * edit), revert (the server refused one), remote (someone else's version),
 * own (the feed brought this client's version), snapshot or reset (the feed
 * sent the whole document).
 */
export type ChangeSource = 'local' | 'ack' | 'revert' | 'remote' | 'own' | 'snapshot' | 'reset' | 'restore';

export type DocEvent<T = JSONObject> =
  | {
      type: 'change';
      source: ChangeSource;
      value: Frozen<T> | null;
      etag: string | null;
      /** For remote and own: the version applied. */
      version?: VersionEvent;
      /** For ack: the ETag the edit was rebased from, or null. */
      rebasedFrom?: string | null;
      /** For local JSON Patch edits: the ops. */
      ops?: Operation[];
      /** For snapshot and reset. */
      seq?: number;
    }
  | { type: 'status'; status: Status }
  | { type: 'error'; error: PatchdError }
  | {
      type: 'retry';
      kind: 'json-patch' | 'merge-patch';
      /** 1 for the first retry. */
      attempt: number;
      /** ms until it (Retry-After when the server sent one). */
      delay: number;
      /** Why: a network error, or the PatchdError of a 429, 502, 503 or 504. */
      error: unknown;
      /** Edits not yet acknowledged. */
      pending: number;
    };

/**
 * A version that an edit is made against: an ETag, or "after this client's
 * own edit" (with known, the newest server version the value showed then).
 */
export type Base = string | { etag: string | null } | { after: unknown; known?: string | null };

export interface WriteOptions {
  /** The version the edit was made against (default: the value as it is now). */
  base?: Base;
  /** Takes the edit back while it is queued or in flight (an edit in flight may have been committed). */
  signal?: AbortSignal;
}

export interface WriteResult<T = JSONObject> {
  etag: string;
  value: Frozen<T>;
  /** The ETag the edit was rebased from (the Rebased-From header), or null. */
  rebasedFrom: string | null;
}

/** What undo() resolves with: the revert's answer, and the seq of the version it undid. */
export interface UndoResult<T = JSONObject> extends WriteResult<T> {
  seq: number;
}

/** An edit restored from the store by open(), sent again; result settles with its answer. */
export interface RestoredEdit<T = JSONObject> {
  kind: 'json-patch' | 'merge-patch';
  body: Operation[] | JSONObject;
  result: Promise<WriteResult<T>>;
}

/** Connects to one patchd server. */
export class Client {
  constructor(options?: ClientOptions);
  readonly baseURL: string;
  retry: Required<RetryOptions>;
  idleTimeout: number;
  readonly store: EditStore | null;
  /** Whether the tabs of the origin share one stream. */
  readonly share: boolean;
  /** GET a document. */
  get<T extends object = JSONObject>(collection: string, id: string, options?: { signal?: AbortSignal }): Promise<{ value: T; etag: string }>;
  /** Reads a document and keeps it; {follow: true} also follows its change feed. Restores the store's unsent edits. */
  open<T extends object = JSONObject>(collection: string, id: string, options?: { follow?: boolean; signal?: AbortSignal }): Promise<Doc<T>>;
  /** Creates a document that must not exist yet (PUT with If-None-Match: *); 412 with current if it does. */
  create<T extends object = JSONObject>(collection: string, id: string, value: T, options?: { follow?: boolean; signal?: AbortSignal }): Promise<Doc<T>>;
  /** Lists a page of a collection (GET /docs/{c}); pass the answer's next as after for the next page. */
  list<T extends object = JSONObject>(collection: string, options?: ListOptions): Promise<ListPage<T>>;
  /** Stops listening for the browser's online events and closes the stream. */
  close(): void;
}

/** A listing filter: JSON Pointers mapped to a value (equality) or to operators. */
export type Where = { [pointer: string]: JSONValue | WhereOps };

/** The operators of a where filter; all must hold. */
export interface WhereOps {
  eq?: JSONValue;
  ne?: JSONValue;
  lt?: JSONValue;
  le?: JSONValue;
  gt?: JSONValue;
  ge?: JSONValue;
  in?: JSONValue[];
  exists?: boolean;
  prefix?: string;
}

export interface ListOptions {
  where?: Where;
  /** A JSON Pointer, "-" in front for descending. */
  order?: string;
  /** 1 to 1000 (default 100). */
  limit?: number;
  /** The next of the previous page. */
  after?: string | null;
  /** "body" adds each document's value. */
  include?: 'body';
  signal?: AbortSignal;
}

/** One listed document; value with include: "body". */
export interface ListItem<T = JSONObject> {
  id: string;
  etag: string;
  seq: number;
  value?: T;
}

export interface ListPage<T = JSONObject> {
  items: ListItem<T>[];
  /** Pass as after for the next page; null on the last page. */
  next: string | null;
}

/** One document, kept up to date. */
export class Doc<T extends object = JSONObject> {
  readonly client: Client;
  collection: string;
  readonly id: string;
  /** The last server state with this client's unacknowledged edits laid over it; frozen. */
  readonly value: Frozen<T> | null;
  /** ETag of the newest server state known (an acknowledged write's, before the feed brings it). */
  readonly etag: string | null;
  /** seq of the last version the change feed applied, else null. */
  readonly seq: number | null;
  readonly status: Status;
  /** Edits not yet acknowledged. */
  readonly pendingCount: number;
  /** Edits an earlier page (or closed Doc) left unsent, restored by open() and sent again. */
  readonly restored: RestoredEdit<T>[];
  subscribe(listener: (event: DocEvent<T>) => void): () => void;
  /** The version the next edit is made against; pass it later as {base}. */
  version(): Base;
  /** RFC 6902 JSON Patch under If-Match, with an Idempotency-Key. */
  patch(ops: readonly Operation[], options?: WriteOptions): Promise<WriteResult<T>>;
  /** RFC 7396 Merge Patch under If-Match, with an Idempotency-Key. */
  merge(patch: JSONObject, options?: WriteOptions): Promise<WriteResult<T>>;
  /** How many of this client's committed edits undo() can still revert. */
  readonly undoable: number;
  /**
   * Reverts this client's most recent committed edit (after its edits in flight are answered),
   * rebased over later versions; null when there is none. ConflictError when a later version
   * changed the same thing: the edit stays next to undo (forgetUndo() drops it).
   */
  undo(options?: { signal?: AbortSignal }): Promise<UndoResult<T> | null>;
  /** Drops the edit undo() would revert next; false when there is none. */
  forgetUndo(): boolean;
  /** Reverts version seq, anyone's (POST .../revert); undo() can take it back. */
  revert(seq: number, options?: { signal?: AbortSignal }): Promise<WriteResult<T>>;
  /** Follows the change feed; remote versions are applied to value. */
  follow(): this;
  unfollow(): void;
  /** Stops the feed and retries; pending writes reject with NetworkError (and stay in the store, if any). */
  close(): void;
}

export function createClient(options?: ClientOptions): Client;

/** Delay before retry `attempt` (0-based): uniform in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt: number, options?: RetryOptions, random?: () => number): number;

/**
 * Applies RFC 6902 ops to a copy of value; throws PatchApplyError. T is the
 * shape the caller expects after the ops; null when they remove "" (the
 * server's form of a delete).
 */
export function applyPatch<T = JSONValue>(value: T | Frozen<T>, ops: readonly Operation[]): T | null;
/** Applies an RFC 7396 merge patch to a copy of value. */
export function applyMerge(value: JSONValue | undefined, patch: JSONValue): JSONValue;
export function deepEqual(a: unknown, b: unknown): boolean;
export function clone<T>(value: T): T;

export interface DiffOptions {
  /** Member that identifies array elements (e.g. "id"): keyed arrays are edited element by element. */
  key?: string;
}
/** The ops that turn before into after (JSON values, frozen or not), field by field: form edits as JSON Patch. */
export function diff(before: unknown, after: unknown, options?: DiffOptions): Operation[];

/** Builds a JSON Pointer from segments: pointer("items", 0, "desc") is "/items/0/desc". */
export function pointer(...segments: Array<string | number>): string;
export function parsePointer(pointer: string): string[];
export function escapeToken(token: string | number): string;

/** A Server-Sent Events parser over a fetch body. */
export function readEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ id: string; event: string; data: string } | { comment: string } | { retry: number }, void, unknown>;
