// Type declarations for react.js: React bindings for patchd's client.
// They need no React types: the hook's result is plain data and functions.
import type { Client, Doc, Frozen, JSONObject, Operation, Status, Where, WriteOptions, WriteResult } from './patchd.js';
import type { WatchItem, WatchStatus } from './watch.js';

export interface UseDocumentOptions {
  /** Follow the change feed (default true). */
  follow?: boolean;
}

export interface DocumentState<T extends object = JSONObject> {
  /** The document as this client sees it (edits laid over); null while loading, on error, or when deleted. */
  value: Frozen<T> | null;
  etag: string | null;
  seq: number | null;
  /** "loading" until open, "error" if opening failed, else the Doc's status. */
  status: Status | 'loading' | 'error';
  pendingCount: number;
  /** Why opening failed (a PatchdError with type "not-found", say), else null. */
  error: unknown;
  /** The open Doc, or null while loading. */
  doc: Doc<T> | null;
  /** doc.patch; rejects while the document is not open yet. */
  patch(ops: readonly Operation[], options?: WriteOptions): Promise<WriteResult<T>>;
  /** doc.merge; rejects while the document is not open yet. */
  merge(patch: JSONObject, options?: WriteOptions): Promise<WriteResult<T>>;
}

/** Opens and follows collection/id while the component is mounted; re-renders on every change. */
export function useDocument<T extends object = JSONObject>(client: Client, collection: string, id: string, options?: UseDocumentOptions): DocumentState<T>;

export interface CollectionState<T = JSONObject> {
  items: ReadonlyArray<WatchItem<T>>;
  /** "loading" before the first render's watch exists, then the watch's status. */
  status: WatchStatus | 'loading';
  error: unknown;
}

/** Watches collection (filtered by where, ordered by order) while the component is mounted. */
export function useCollection<T extends object = JSONObject>(client: Client, collection: string, options?: { where?: Where; order?: string }): CollectionState<T>;
