// One change stream for everything a Client follows: documents and
// collections over POST /events, reopened when the set changes, and, in a
// browser, shared by all tabs of an origin (one tab holds the stream, the
// others get its events over a BroadcastChannel).
import { readEvents } from './sse.js';

// Answers retried like a network failure: 429 and 503 (the server did not
// take the request; Retry-After says when to come back), 502 and 504.
export const RETRY = new Set([429, 502, 503, 504]);

/**
 * The stream of one Client. Documents register themselves with addDoc
 * (they dedupe by seq); collection subscriptions with addCol (they dedupe
 * by seq per document). A set change opens a new stream resuming every
 * subscription where it is, and closes the old one once the new one has
 * sent ready, so that nothing is skipped.
 */
export class Hub {
  constructor(client, share, one) {
    this.client = client;
    this.one = one; // a document following its own feed, on a server without POST /events
    this.docs = new Map(); // "c\0id" -> Set<Doc>
    this.cols = new Map(); // c -> Set<col subscription>
    this.cursors = new Map(); // c -> the cursor of the last change handled
    this.conns = []; // streams open or opening, oldest first
    this.legacy = false; // the server has no POST /events
    this.retryMs = 2000;
    this.attempt = 0;
    this.peers = new Map(); // leader: tab -> its subscriptions
    this.leader = !share;
    // A follower that streams on its own (share.js): 'stall' while the
    // leader does not answer, 'told' when the leader's stream could not
    // carry the others' subscriptions; null while it follows.
    this.solo = null;
    // A leader whose union was refused streams only its own set.
    this.alone = false;
    // Offline: drop the streams (not a wait to reconnect, which online ends).
    this._off = () => {
      for (const c of this.conns) c.gate || c.ac.abort();
    };
    globalThis.addEventListener?.('offline', this._off);
    // Sharing is loaded when used: pages that follow nothing, and
    // Node.js, never load it.
    if (share)
      import('./share.js').then(
        (m) => this.closed || m.share(this),
        () => ((this.leader = true), this.kick()),
      );
  }

  close() {
    this.closed = true;
    for (const set of this.docs.values()) for (const d of set) d.unfollow();
    for (const set of this.cols.values()) for (const s of set) s.status('closed');
    for (const c of this.conns) c.ac.abort();
    this.conns = [];
    clearTimeout(this.timer);
    globalThis.removeEventListener?.('offline', this._off);
    this.unshare?.();
  }

  _post(m) {
    this.bc?.postMessage(m);
  }

  addDoc(doc) {
    const k = doc.collection + '\0' + doc.id;
    if (!this.docs.has(k)) this.docs.set(k, new Set());
    this.docs.get(k).add(doc);
    doc._hubTick = ++this.client._ticks;
    doc._setStatus('connecting');
    this.kick();
  }

  removeDoc(doc) {
    const k = doc.collection + '\0' + doc.id;
    const s = this.docs.get(k);
    if (s?.delete(doc) && !s.size) {
      this.docs.delete(k);
      this.kick();
    }
  }

  addCol(sub) {
    if (!this.cols.has(sub.c)) this.cols.set(sub.c, new Set());
    this.cols.get(sub.c).add(sub);
    sub.tick = ++this.client._ticks;
    this.kick();
  }

  removeCol(sub) {
    const s = this.cols.get(sub.c);
    if (!s?.delete(sub)) return;
    if (!s.size) {
      this.cols.delete(sub.c);
      this.cursors.delete(sub.c);
    }
    this.kick(); // the filter may change too
  }

  // _mine is this tab's subscription set: documents with the seq they
  // have (null: they need a snapshot), collections with their where
  // (null when two subscriptions of one collection filter differently:
  // the stream can hold a collection once) and cursor.
  _mine() {
    const docs = [];
    for (const [k, set] of this.docs) {
      const [c, id] = k.split('\0');
      let after = Infinity;
      for (const d of set) after = d._base.seq === null ? null : after === null ? null : Math.min(after, d._base.seq);
      docs.push({ c, id, after });
    }
    const cols = [];
    for (const [c, set] of this.cols) {
      const wheres = new Set([...set].map((s) => JSON.stringify(s.where ?? null)));
      cols.push({ c, where: wheres.size === 1 ? JSON.parse([...wheres][0]) : null, after: this.cursors.get(c) ?? null });
    }
    // p: presence.js wants the documents' presence events.
    return { docs, cols, p: this.pres?.size > 0 };
  }

  /** The set changed: (re)open the stream soon, once for many changes. */
  kick() {
    if (this.legacy) return;
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.leader && !this.solo) return this.tell?.(); // share.js: tell the leader
      // A tab told to stream on its own does so while it is visible.
      if (this.solo === 'told' && globalThis.document?.visibilityState === 'hidden') return;
      // One stream opening at a time: a change made meanwhile waits for its ready.
      if (this.conns.some((c) => !c.ready)) return;
      this._open();
    }, 10);
  }

  // _body is the request: this tab's set and, for the leader, every
  // follower's, each document from the lowest seq anyone has.
  _body() {
    const docs = new Map();
    const cols = new Map();
    const sets = [this._mine(), ...(this.alone ? [] : this.peers.values())];
    for (const s of sets) {
      for (const d of s.docs) {
        const k = d.c + '\0' + d.id;
        const was = docs.get(k);
        if (!was) docs.set(k, { ...d });
        else was.after = was.after === null || d.after === null ? null : Math.min(was.after, d.after);
      }
      for (const c of s.cols) {
        const was = cols.get(c.c);
        if (!was) cols.set(c.c, { ...c });
        else {
          if (JSON.stringify(was.where) !== JSON.stringify(c.where)) was.where = null;
          was.after ??= c.after;
        }
      }
    }
    for (const c of cols.values()) c.after = this.cursors.get(c.c) ?? c.after;
    return {
      ...(sets.some((s) => s.p) && { presence: true }),
      docs: [...docs.values()].map(({ c, id, after }) => (after === null ? { c, id } : { c, id, after })),
      collections: [...cols.values()].map(({ c, where, after }) => ({ c, ...(where && { where }), ...(after && { after }) })),
    };
  }

  async _open() {
    if (this.solo === 'told' && globalThis.document?.visibilityState === 'hidden') return; // see kick
    this.dirty = false;
    const client = this.client;
    const body = this._body();
    const tick = ++client._ticks;
    const covers = {};
    if (!this.alone) for (const [tab, p] of this.peers) covers[tab] = p.tick;
    if (!body.docs.length && !body.collections.length) {
      for (const c of this.conns) c.ac.abort();
      this.conns = [];
      return;
    }
    const conn = { ac: new AbortController(), ready: false, tick };
    this.conns.push(conn);
    let idle;
    const watch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => conn.ac.abort(), client.idleTimeout);
    };
    let wait = null;
    let got = false;
    try {
      watch();
      const one = this.one;
      const h = { Accept: 'text/event-stream' };
      if (!one) h['Content-Type'] = 'application/json';
      else if (one._base.seq !== null) h['Last-Event-ID'] = String(one._base.seq);
      const res = await client._fetch(one ? client._url(one.collection, one.id, '/events') : `${client.baseURL}/events`, {
        method: one ? 'GET' : 'POST',
        headers: await client._headersFor(h),
        body: one ? undefined : JSON.stringify(body),
        signal: conn.ac.signal,
        cache: 'no-store',
      });
      if (!one && (res.status === 404 || res.status === 405)) return this._legacy();
      if (RETRY.has(res.status)) {
        wait = client._retryAfter(res);
        throw new Error(String(res.status));
      }
      if (res.status >= 400 && res.status < 500) {
        this.conns = this.conns.filter((c) => c !== conn);
        if (this.leader && !this.alone && Object.keys(covers).length) {
          // Another tab's subscription may be what was refused: this
          // tab goes on with its own, and each other tab on its own.
          this.alone = true;
          this._post({ t: 'solo' });
          this.kick();
          return;
        }
        // Never retried: the request itself is wrong.
        const error = await client._problem(res);
        for (const set of this.docs.values()) for (const d of set) d._feedError(error);
        for (const set of this.cols.values()) for (const s of set) s.error(error);
        return;
      }
      if (!res.ok || !res.body) throw new Error(String(res.status));
      const cols = body.collections.map((c) => c.c);
      for await (const ev of readEvents(res.body)) {
        watch();
        if (ev.retry !== undefined) this.retryMs = ev.retry;
        if (ev.event === undefined) continue;
        let d;
        try {
          d = JSON.parse(ev.data);
        } catch {
          continue;
        }
        got = true;
        if (one) Object.assign(d, { c: one.collection, id: one.id });
        if (ev.event === 'ready' || (one && !conn.ready)) {
          const named = {};
          cols.forEach((c, i) => (named[c] = d.cursors?.[i]));
          this._dispatch('ready', named, tick);
          conn.ready = true;
          this.attempt = 0;
          // The older streams are covered by this one now.
          for (const c of this.conns.splice(0, this.conns.indexOf(conn))) c.ac.abort();
          if (this.leader) this._post({ t: 'ready', covers });
          this._ready(tick);
          if (this.dirty) this.kick();
        }
        if (ev.event !== 'ready') this._dispatch(ev.event, d, tick);
      }
    } catch {
      // network failure, idle timeout, abort, or an answer to retry
    } finally {
      clearTimeout(idle);
    }
    if (!this.conns.includes(conn) || this.closed) return; // replaced or closed
    this.conns = this.conns.filter((c) => c !== conn);
    // A newer stream is opening: it covers this one's subscriptions.
    if (this.conns.some((c) => !c.ready)) return;
    if (!this.conns.length) this._status(globalThis.navigator?.onLine === false ? 'offline' : 'connecting');
    const delay = wait ?? (got ? this.retryMs * (0.5 + Math.random() / 2) : Math.max(this.retryMs / 4, client._backoff(this.attempt++)));
    const gate = new AbortController();
    this.conns.push({ ac: gate, ready: false, gate: true });
    await client._sleep(delay, gate.signal, wait === null);
    if (gate.signal.aborted) return;
    this.conns = this.conns.filter((c) => c.ac !== gate);
    if (this.leader || this.solo) this._open();
  }

  // _solo starts (why: 'stall' or 'told') or ends (null) a follower's own
  // stream (share.js).
  _solo(why) {
    if (this.solo === why || this.closed) return;
    const was = this.solo;
    this.solo = why;
    if (why && !was) {
      this._status('connecting', false);
      this.kick();
    } else if (!why) {
      for (const c of this.conns) c.ac.abort();
      this.conns = [];
      this.alone = false;
      this._soloEnded?.(); // share.js: the solo slot's lock is free again
      this._soloEnded = null;
    }
  }

  _legacy() {
    if (this.legacy) return;
    this.legacy = true;
    this._post({ t: 'legacy' });
    this.conns = [];
    for (const set of this.docs.values()) for (const d of set) d._legacyFollow();
    for (const set of this.cols.values()) for (const s of set) s.error(new Error('no POST /events'));
  }

  _status(s, post = true) {
    if (post && this.leader) this._post({ t: 'status', s });
    for (const set of this.docs.values()) for (const d of set) d._setStatus(s);
    for (const set of this.cols.values()) for (const c of set) c.status(s);
  }

  // _ready: a stream opened at tick covers every subscription made before.
  _ready(tick) {
    for (const set of this.docs.values()) for (const d of set) if (d._hubTick < tick) d._setStatus('live');
    for (const set of this.cols.values()) for (const s of set) if (s.tick < tick) s.ready();
  }

  _dispatch(e, d, tick) {
    if (this.leader) this._post({ t: 'ev', e, d });
    if (e === 'ready') {
      for (const [c, cur] of Object.entries(d)) if (cur && !this.cursors.has(c) && this.cols.has(c)) this.cursors.set(c, cur);
      return;
    }
    if (e === 'change' || e === 'reset-collection') {
      if (!this.cols.has(d.c)) return;
      this.cursors.set(d.c, d.cursor);
      for (const s of [...this.cols.get(d.c)]) s.event(e, d);
      return;
    }
    const k = d.c + '\0' + d.id;
    if (e === 'presence') return this.pres?.get(k)?.forEach((f) => f(d.sessions));
    const set = this.docs.get(k);
    if (!set) return;
    for (const doc of [...set]) if (!doc._onEvent({ event: e, d }, tick)) this.kick(); // out of step: reopen for a snapshot
  }
}
