// A live, ordered result set of a collection: a listing kept up to date by
// the collection's changes on the Client's one stream.
import { applyPatch, parsePointer } from './json.js';

// rank orders JSON types as the server does: null, false, true, numbers,
// strings, arrays, objects; a missing member last.
function rank(v) {
  if (v === undefined) return 9;
  if (v === null || typeof v === 'boolean') return v === null ? 0 : v ? 2 : 1;
  return typeof v === 'number' ? 3 : typeof v === 'string' ? 4 : Array.isArray(v) ? 5 : 6;
}

function at(v, path) {
  for (const k of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

/**
 * Watches a collection with client: a live result set ordered by order
 * (else by id) of the documents matching where, over the client's one
 * stream. Returns a Watch.
 */
export function watch(client, collection, options) {
  return new Watch(client, collection, options);
}

/**
 * A live result set: items ({id, etag, seq, value}, in the listing's
 * order), status (connecting, live, offline, closed or error), error.
 * It follows the collection from before it lists it, and applies every
 * change newer than the listed seq of its document.
 */
export class Watch {
  constructor(client, collection, { where = null, order = null, signal } = {}) {
    this.client = client;
    this.collection = collection;
    this.where = where;
    this.order = order;
    this.items = Object.freeze([]);
    this.status = 'connecting';
    this.error = null;
    this._path = order ? parsePointer(order.replace(/^-/, '')) : null;
    this._desc = order?.[0] === '-' ? -1 : 1;
    this._byId = new Map();
    this._seqs = new Map(); // id -> the last seq handled, of members and leavers alike
    this._stale = new Set(); // ids whose value was read, newer than their seq maybe
    this._buf = null; // changes that come while listing
    this._listeners = new Set();
    this._ac = new AbortController();
    this._sub = {
      c: collection,
      where,
      event: (e, d) => this._event(e, d),
      ready: () => (this._listed ? this._set('live') : this._list()),
      status: (s) => this._set(s),
      error: (err) => this._fail(err),
    };
    // A bad where or order is refused here, by a listing of one item,
    // rather than by the stream, which the client's documents (and other
    // tabs) share.
    client.list(collection, { where, order, limit: 1, signal: this._ac.signal }).then(
      () => {
        const hub = client._hubFor();
        if (this._ac.signal.aborted) return;
        if (hub.legacy) this._fail(new Error('this server has no POST /events'));
        else hub.addCol(this._sub);
      },
      (err) => this._ac.signal.aborted || this._fail(err),
    );
    signal?.addEventListener('abort', () => this.close(), { once: true });
  }

  /** Calls listener on every change ({type: "change"}) and status ({type: "status"}). Returns a function that removes it. */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Stops watching. */
  close() {
    this._ac.abort();
    this.client._hub?.removeCol(this._sub);
    this._set('closed');
  }

  _emit(ev) {
    for (const l of [...this._listeners]) l(ev);
  }

  _set(s) {
    if (this.status === s || this.status === 'closed' || (s === 'live' && !this._listed)) return;
    this.status = s;
    this._emit({ type: 'status', status: s });
  }

  _fail(err) {
    this.error = err;
    this.client._hub?.removeCol(this._sub);
    this._set('error');
  }

  _compare(a, b) {
    if (this._path) {
      const x = at(a.value, this._path);
      const y = at(b.value, this._path);
      const rx = rank(x);
      const ry = rank(y);
      if (rx !== ry) return rx === 9 || ry === 9 ? rx - ry : (rx - ry) * this._desc;
      if (rx === 3 && x !== y) return (x - y) * this._desc;
      if (rx > 3) {
        const [sx, sy] = rx === 4 ? [x, y] : [JSON.stringify(x), JSON.stringify(y)];
        if (sx !== sy) return (sx < sy ? -1 : 1) * this._desc;
      }
    }
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  _changed() {
    this.items = Object.freeze([...this._byId.values()].sort((a, b) => this._compare(a, b)));
    this._emit({ type: 'change', items: this.items });
  }

  // _list lists the whole result set, every page, while the stream's
  // changes wait; then it applies those newer than what was listed.
  async _list() {
    if (this._buf) return void (this._again = true);
    this._buf = [];
    try {
      const byId = new Map();
      let after = null;
      do {
        const page = await this.client.list(this.collection, { where: this.where, order: this.order, include: 'body', limit: 1000, after, signal: this._ac.signal });
        for (const it of page.items) byId.set(it.id, Object.freeze(it));
        after = page.next;
      } while (after != null);
      this._byId = byId;
      this._stale.clear();
      for (const it of byId.values()) this._seqs.set(it.id, Math.max(it.seq, this._seqs.get(it.id) ?? 0));
    } catch (err) {
      this._buf = null;
      if (!this._ac.signal.aborted) this._fail(err);
      return;
    }
    const buf = this._buf;
    this._buf = null;
    this._listed = true;
    for (const d of buf) this._apply(d);
    this._changed();
    this._set('live');
    if (this._again) {
      this._again = false;
      this._list();
    }
  }

  _event(e, d) {
    if (e === 'reset-collection' || (this.where && e === 'change' && d.match === undefined)) {
      // Changes were lost, or the stream carries another filter (two
      // watches of the collection filter differently): list again.
      this._listed = false;
      return this._list();
    }
    if (this._buf) this._buf.push(d);
    else if (this._apply(d)) this._changed();
  }

  // _apply applies one change; false when nothing changed.
  _apply(d) {
    const known = this._seqs.get(d.id);
    if (known !== undefined && d.seq <= known) return false; // already applied (two streams overlap)
    this._seqs.set(d.id, d.seq);
    const item = this._byId.get(d.id);
    if (d.etag === null || d.match === false) return this._byId.delete(d.id);
    let value;
    try {
      if (!this._stale.has(d.id) && (!item || item.seq === d.seq - 1)) value = applyPatch(item ? item.value : null, d.ops);
    } catch {
      // not a whole value: read it below
    }
    if (value === undefined) {
      if (item?.etag !== d.etag) this._read(d.id, d.seq);
      else {
        this._stale.delete(d.id);
        this._byId.set(d.id, Object.freeze({ ...item, seq: d.seq }));
      }
      return false;
    }
    this._stale.delete(d.id);
    this._byId.set(d.id, Object.freeze({ id: d.id, etag: d.etag, seq: d.seq, value: Object.freeze(value) }));
    return true;
  }

  // _read reads a document whose change could not be applied (it entered
  // the result set by a patch): its value now, unless a change came since.
  async _read(id, seq) {
    let doc = null;
    try {
      doc = await this.client.get(this.collection, id, { signal: this._ac.signal });
    } catch {
      // gone, or closed: a change will say
    }
    if (this._seqs.get(id) !== seq || this._buf || !doc) return;
    this._stale.add(id);
    this._byId.set(id, Object.freeze({ id, etag: doc.etag, seq, value: Object.freeze(doc.value) }));
    this._changed();
  }
}
