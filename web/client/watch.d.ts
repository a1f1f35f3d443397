// Type declarations for watch.js: live result sets of a collection.
import type { Client, Frozen, JSONObject, Where } from './patchd.js';

export interface WatchOptions {
  where?: Where;
  /** A JSON Pointer, "-" in front for descending; default: by id. */
  order?: string;
  signal?: AbortSignal;
}

/** One document of a live result set. */
export interface WatchItem<T = JSONObject> {
  readonly id: string;
  readonly etag: string;
  readonly seq: number;
  readonly value: Frozen<T>;
}

export type WatchStatus = 'connecting' | 'live' | 'offline' | 'closed' | 'error';

export type WatchEvent<T = JSONObject> = { type: 'change'; items: ReadonlyArray<WatchItem<T>> } | { type: 'status'; status: WatchStatus };

/** A live result set: listed, then kept up to date by the collection's changes. */
export class Watch<T extends object = JSONObject> {
  readonly collection: string;
  readonly where: Where | null;
  readonly order: string | null;
  /** The matching documents in order (frozen; a new array on every change). */
  readonly items: ReadonlyArray<WatchItem<T>>;
  readonly status: WatchStatus;
  /** Why the watch stopped (status "error"), else null. */
  readonly error: unknown;
  subscribe(listener: (ev: WatchEvent<T>) => void): () => void;
  close(): void;
}

/** Watches collection over client's one stream. */
export function watch<T extends object = JSONObject>(client: Client, collection: string, options?: WatchOptions): Watch<T>;
