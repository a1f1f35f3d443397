// Presence for the patchd client: who else has a document open, and which
// field they are in. A session is announced with PUT
// /docs/{c}/{id}/presence/{session}, renewed before the server's
// --presence-ttl runs out, and ended with DELETE; the others' sessions
// come as `presence` events on the client's one stream.

/**
 * Announces this page's session on doc (which starts following) and
 * tells listeners the other sessions. options: name, color, focus (a JSON
 * Pointer or null), data, renew (ms between renewals, default 10000: a
 * third of the server's default TTL), session (an id, default random).
 */
export function presence(doc, { name = '', color = '', focus = null, data = null, renew = 10_000, session } = {}) {
  return new Presence(doc, { name, color, focus, data }, renew, session);
}

/** One presence session on a document, and the others' sessions. */
export class Presence {
  constructor(doc, me, renew, session) {
    this.doc = doc;
    this.me = me;
    this.session = session ?? Array.from(crypto.getRandomValues(new Uint8Array(16)), (x) => x.toString(16).padStart(2, '0')).join('');
    /** The other live sessions of the document, as GET .../presence lists them. */
    this.others = [];
    this._listeners = new Set();
    this._url = doc.client._url(doc.collection, doc.id, '/presence/' + this.session);
    this._ac = new AbortController();
    this._key = doc.collection + '\0' + doc.id;
    this._on = (sessions) => {
      this.others = sessions.filter((s) => s.session !== this.session);
      for (const f of [...this._listeners]) f(this.others);
    };
    doc.follow();
    const hub = doc.client._hubFor();
    this._hub = hub;
    hub.pres ??= new Map();
    if (!hub.pres.has(this._key)) hub.pres.set(this._key, new Set());
    hub.pres.get(this._key).add(this._on);
    hub.kick();
    this._timer = setInterval(() => this._put(), renew);
    // Back after the stream was lost (a server restarted, the network
    // back): announced at once, not at the next renewal.
    this._live = doc.status === 'live';
    this._off = doc.subscribe((ev) => {
      if (ev.type !== 'status') return;
      if (ev.status !== 'live') this._lost ||= this._live;
      else if (this._lost) {
        this._lost = false;
        this._put();
      }
      this._live = ev.status === 'live';
    });
    this._bye = () => this.close();
    globalThis.addEventListener?.('pagehide', this._bye);
    this._put();
  }

  /** Calls listener(others) on every change; returns the unsubscribe function. */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Changes name, color, focus or data, and announces it. */
  set(fields) {
    Object.assign(this.me, fields);
    clearTimeout(this._soon);
    return this._put();
  }

  /** Moves the focus (a JSON Pointer, or null); announced after 150 ms of quiet. */
  focus(pointer) {
    if (this.me.focus === pointer) return;
    this.me.focus = pointer;
    clearTimeout(this._soon);
    this._soon = setTimeout(() => this._put(), 150);
  }

  // _put announces the session, one PUT at a time: a change made while
  // one is in flight is sent when it is answered. Retries (429 with
  // Retry-After, 503, network failures) are the client's.
  async _put() {
    if (this._closed) return;
    if (this._sending) return (this._again = true);
    this._sending = true;
    try {
      const c = this.doc.client;
      const res = await c._request(this._url, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(this.me) }, { signal: this._ac.signal });
      if (!res.ok) this.error = await c._problem(res);
    } catch (err) {
      this.error = err;
    } finally {
      this._sending = false;
    }
    if (this._again) {
      this._again = false;
      this._put();
    }
  }

  /** Ends the session (DELETE, best effort, also while the page unloads) and stops listening. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this._timer);
    clearTimeout(this._soon);
    this._off();
    this._ac.abort();
    globalThis.removeEventListener?.('pagehide', this._bye);
    const set = this._hub.pres.get(this._key);
    set?.delete(this._on);
    if (!set?.size) {
      this._hub.pres.delete(this._key);
      this._hub.kick();
    }
    const c = this.doc.client;
    c._headersFor({})
      .then((headers) => c._fetch(this._url, { method: 'DELETE', headers, keepalive: true }))
      .catch(() => {});
  }
}
