// React bindings for patchd's client: useDocument(client, c, id) opens and
// follows a document for as long as a component shows it, and re-renders
// on every change, through useSyncExternalStore; useCollection(client, c,
// {where, order}) does the same for a live result set. React is a peer
// dependency of this entry only: the core client has no dependencies.
import { useCallback, useEffect, useState, useSyncExternalStore } from 'react';
import { watch } from './watch.js';

const NONE = Object.freeze({ value: null, etag: null, seq: null, status: 'loading', pendingCount: 0 });
const snapshots = new WeakMap(); // Doc -> its last snapshot

// snapshotOf returns the same object for as long as nothing it holds
// changed, as useSyncExternalStore requires.
function snapshotOf(doc) {
  const last = snapshots.get(doc);
  const { value, etag, seq, status, pendingCount } = doc;
  if (last && last.value === value && last.etag === etag && last.seq === seq && last.status === status && last.pendingCount === pendingCount) return last;
  const s = Object.freeze({ value, etag, seq, status, pendingCount });
  snapshots.set(doc, s);
  return s;
}

const noop = () => () => {};
const notOpen = () => Promise.reject(new Error('patchd: the document is not open yet'));

/**
 * Opens collection/id with client while the component is mounted (and
 * follows its change feed unless options.follow is false); closes it when
 * the component unmounts or the arguments change. Returns {value, etag,
 * seq, status, pendingCount, error, doc, patch, merge}: status is
 * "loading" until the document is open, then the Doc's status; error is
 * set when opening failed (a PatchdError with type "not-found", say).
 */
export function useDocument(client, collection, id, options = {}) {
  const follow = options.follow ?? true;
  const key = JSON.stringify([collection, id, follow]);
  const [opened, setOpened] = useState(null); // {client, key, doc} or {client, key, error}

  useEffect(() => {
    const ac = new AbortController();
    let doc = null;
    client.open(collection, id, { follow, signal: ac.signal }).then(
      (d) => {
        if (ac.signal.aborted) d.close();
        else setOpened({ client, key, doc: (doc = d) });
      },
      (error) => {
        if (!ac.signal.aborted) setOpened({ client, key, error });
      },
    );
    return () => {
      ac.abort();
      doc?.close();
    };
  }, [client, key]);

  // What another document (or client) opened is never shown for this one.
  const current = opened && opened.client === client && opened.key === key ? opened : null;
  const doc = current?.doc ?? null;
  const subscribe = useCallback((onChange) => (doc ? doc.subscribe(onChange) : noop()), [doc]);
  const get = () => (doc ? snapshotOf(doc) : NONE);
  const snap = useSyncExternalStore(subscribe, get, get);
  const patch = useCallback((ops, o) => (doc ? doc.patch(ops, o) : notOpen()), [doc]);
  const merge = useCallback((p, o) => (doc ? doc.merge(p, o) : notOpen()), [doc]);
  return {
    ...snap,
    status: current?.error ? 'error' : snap.status,
    error: current?.error ?? null,
    doc,
    patch,
    merge,
  };
}

const EMPTY = Object.freeze({ items: Object.freeze([]), status: 'loading', error: null });

/**
 * Watches collection with client while the component is mounted: the
 * documents matching options.where, ordered by options.order, kept live.
 * Returns {items, status, error}; items are {id, etag, seq, value}.
 */
export function useCollection(client, collection, options = {}) {
  const key = JSON.stringify([collection, options.where ?? null, options.order ?? null]);
  const [w, setW] = useState(null);
  useEffect(() => {
    const made = watch(client, collection, { where: options.where, order: options.order });
    setW(made);
    return () => made.close();
  }, [client, key]);
  const subscribe = useCallback((onChange) => (w ? w.subscribe(onChange) : noop()), [w]);
  const get = () => {
    if (!w) return EMPTY;
    const last = snapshots.get(w);
    if (last && last.items === w.items && last.status === w.status) return last;
    const s = Object.freeze({ items: w.items, status: w.status, error: w.error });
    snapshots.set(w, s);
    return s;
  };
  return useSyncExternalStore(subscribe, get, get);
}
