// patchd's JavaScript client: open a document, edit it with JSON Patch or
// Merge Patch under If-Match, and follow its change feed. No dependencies;
// runs in browsers and in Node.js 18+ (it needs fetch and web streams).

import { applyMerge, applyPatch, clone, deepEqual } from './json.js';
import { readEvents } from './sse.js';

export { applyMerge, applyPatch, clone, deepEqual, diff, escapeToken, parsePointer, pointer, PatchApplyError } from './json.js';
export { readEvents } from './sse.js';

/** An answer from patchd that is an error (4xx or 5xx), with its problem details. */
export class PatchdError extends Error {
  constructor(status, problem, current = null) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.name = 'PatchdError';
    /** HTTP status. */
    this.status = status;
    /** The problem name, e.g. "not-found" (the last segment of the problem type). */
    this.type = typeof problem?.type === 'string' ? problem.type.replace(/^.*\//, '') : '';
    /** The problem+json body as sent. */
    this.problem = problem ?? null;
    /** For a 412, the document as it is now: {value, etag} (value null when deleted). */
    this.current = current;
  }
}

/**
 * A 412 rebase-conflict: the edit overlaps edits that others committed
 * since the version it was made against. Nothing was written.
 */
export class ConflictError extends PatchdError {
  constructor(status, problem, current, ops) {
    super(status, problem, current);
    this.name = 'ConflictError';
    /** The server's conflict list: {clientOp, clientPath, concurrentPath, concurrentVersion, reason}. */
    this.conflicts = Array.isArray(problem?.conflicts) ? problem.conflicts : [];
    /** The JSON Pointers of this edit that conflict, without duplicates. */
    this.paths = [...new Set(this.conflicts.map((c) => c.clientPath))];
    /** The edit that was refused, as JSON Patch ops (or the merge patch object). */
    this.mine = ops;
  }
}

/** The network failed and the client gave up (or was closed) before an answer came. */
export class NetworkError extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = 'NetworkError';
  }
}

const RETRY_STATUS = new Set([502, 503, 504]);

// randomKey returns 128 random bits as hex. crypto.getRandomValues, unlike
// randomUUID, also exists on pages that are not a secure context.
function randomKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * Delay before retry number attempt (0-based): "full jitter", a uniform
 * random delay up to base * 2^attempt, capped.
 */
export function backoffDelay(attempt, { base = 250, max = 10_000 } = {}, random = Math.random) {
  return random() * Math.min(max, base * 2 ** attempt);
}

function encodeName(s) {
  return encodeURIComponent(s);
}

/** Connects to one patchd server. */
export class Client {
  /**
   * @param {object} [options]
   * @param {string} [options.baseURL] server URL, e.g. "http://127.0.0.1:8080"; "" for the page's origin
   * @param {object|function} [options.headers] extra request headers (e.g. Authorization), or a function returning them
   * @param {typeof fetch} [options.fetch]
   * @param {object} [options.retry] {base, max, attempts}: backoff for network failures and 502/503/504
   * @param {number} [options.idleTimeout] ms without a byte on a change feed before it reconnects (default 45000)
   */
  constructor(options = {}) {
    this.baseURL = (options.baseURL ?? '').replace(/\/+$/, '');
    this._headers = options.headers ?? {};
    this._fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this.retry = { base: 250, max: 10_000, attempts: Infinity, ...options.retry };
    this.idleTimeout = options.idleTimeout ?? 45_000;
    this._online = new Set(); // wake-ups waiting for the network to come back
    this._ticks = 0; // orders local happenings; only compared, never shown
    this._onOnline = () => {
      for (const wake of [...this._online]) wake();
    };
    globalThis.addEventListener?.('online', this._onOnline);
  }

  /** Stops listening for the browser's online events. Open documents stay open. */
  close() {
    globalThis.removeEventListener?.('online', this._onOnline);
  }

  _tick() {
    return ++this._ticks;
  }

  _url(collection, id, suffix = '') {
    return `${this.baseURL}/docs/${encodeName(collection)}${id === undefined ? '' : '/' + encodeName(id)}${suffix}`;
  }

  _headersFor(extra) {
    const base = typeof this._headers === 'function' ? this._headers() : this._headers;
    return { ...base, ...extra };
  }

  // sleep waits ms, or less if the network comes back or signal aborts.
  _sleep(ms, signal) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this._online.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this._online.add(done);
      signal?.addEventListener('abort', done);
    });
  }

  /**
   * fetch with retries: network failures and 502/503/504 are retried with
   * backoff and jitter, up to retry.attempts; any other answer (every 4xx
   * included) is returned as it is. onRetry(attempt, error) is told of each
   * failure.
   */
  async _request(url, init, { signal, onRetry } = {}) {
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new NetworkError('closed');
      let res;
      let err;
      try {
        res = await this._fetch(url, { ...init, signal });
        if (!RETRY_STATUS.has(res.status)) return res;
        err = new PatchdError(res.status, await readProblem(res));
      } catch (e) {
        if (signal?.aborted) throw new NetworkError('closed', e);
        err = e;
      }
      if (attempt + 1 >= this.retry.attempts) {
        if (res) return res;
        throw new NetworkError(`request failed: ${err?.message ?? err}`, err);
      }
      onRetry?.(attempt, err);
      await this._sleep(backoffDelay(attempt, this.retry), signal);
    }
  }

  /** Reads a document: GET. Throws PatchdError("not-found") when there is none. */
  async get(collection, id, { signal } = {}) {
    const res = await this._request(this._url(collection, id), { headers: this._headersFor({ Accept: 'application/json' }), cache: 'no-store' }, { signal });
    if (!res.ok) throw new PatchdError(res.status, await readProblem(res));
    return { value: await res.json(), etag: res.headers.get('ETag') };
  }

  /**
   * Opens a document: reads it and returns a Doc that keeps its value and
   * ETag. With {follow: true} it also follows the change feed.
   */
  async open(collection, id, { follow = false } = {}) {
    const { value, etag } = await this.get(collection, id);
    const doc = new Doc(this, collection, id, value, etag);
    if (follow) doc.follow();
    return doc;
  }

  /**
   * Creates a document that must not exist yet (PUT with If-None-Match: *)
   * and returns it open. Throws PatchdError with status 412 if it exists.
   */
  async create(collection, id, value, { follow = false } = {}) {
    const res = await this._request(this._url(collection, id), {
      method: 'PUT',
      headers: this._headersFor({ 'Content-Type': 'application/json', 'If-None-Match': '*', 'Idempotency-Key': randomKey() }),
      body: JSON.stringify(value),
    });
    if (!res.ok) throw new PatchdError(res.status, await readProblem(res));
    const doc = new Doc(this, collection, id, await res.json(), res.headers.get('ETag'));
    if (follow) doc.follow();
    return doc;
  }
}

async function readProblem(res) {
  try {
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/**
 * One document. `value` is what the user should see: the last server state
 * with this client's unacknowledged edits laid over it. `etag` and `seq` are
 * those of the last server state.
 */
export class Doc {
  constructor(client, collection, id, value, etag) {
    this.client = client;
    this.collection = collection;
    this.id = id;
    this._base = { value, etag, seq: null };
    this._baseTick = 0;
    this._pending = []; // edits not yet part of _base, oldest first
    this._listeners = new Set();
    this._recent = new Map(); // etag -> tick, of the last versions the feed applied
    this._status = 'idle';
    this._closed = false;
    this._sending = false;
    this._feed = null; // AbortController of the change feed
    this.value = value;
  }

  /** The ETag of the last server state this client knows. */
  get etag() {
    return this._base.etag;
  }

  /** The seq of the last server state, once the change feed has told it; else null. */
  get seq() {
    return this._base.seq;
  }

  /** idle (not following), connecting, live, offline or closed. */
  get status() {
    return this._status;
  }

  /** Edits not yet acknowledged by the server. */
  get pendingCount() {
    return this._pending.filter((e) => e.state !== 'acked').length;
  }

  /**
   * Calls listener with every change of value ({type: "change", source,
   * value, ...}), status ({type: "status"}) and feed error ({type: "error"}).
   * Returns a function that removes it.
   */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  _emit(ev) {
    for (const l of [...this._listeners]) {
      try {
        l(ev);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  _setBase(b) {
    this._base = b;
    this._baseTick = this.client._tick();
  }

  // _settleAcks is for when the feed stops: acknowledged edits would wait
  // for it forever. The newest answer becomes the base, unless the feed
  // brought something newer.
  _settleAcks() {
    const acked = this._pending.filter((e) => e.state === 'acked');
    if (acked.length === 0) return;
    const last = acked[acked.length - 1];
    if (last.ackTick > this._baseTick) this._setBase({ value: last.value, etag: last.etag, seq: null });
    this._pending = this._pending.filter((e) => e.state !== 'acked');
    this._render('ack');
  }

  _setStatus(s) {
    if (this._status === s) return;
    this._status = s;
    this._emit({ type: 'status', status: s });
  }

  // _render recomputes value from the base and the pending edits. An edit
  // that no longer applies locally is left out of the view; the server
  // decides whether it applies.
  _render(source, extra = {}) {
    let v = this._base.value;
    for (const e of this._pending) {
      if (e.landed) continue;
      try {
        v = e.kind === 'merge-patch' ? applyMerge(v, e.body) : applyPatch(v, e.body);
      } catch {
        // left out of the view
      }
    }
    this.value = v;
    this._emit({ type: 'change', source, value: v, etag: this._base.etag, ...extra });
  }

  /**
   * The version that the next edit is made against, to pass later as
   * {base} to patch or merge: a form takes it when a field starts being
   * edited, so that a concurrent change of that field is a conflict.
   */
  version() {
    const last = this._pending[this._pending.length - 1];
    if (!last) return { etag: this._base.etag };
    return last.state === 'acked' ? { etag: last.etag } : { after: last };
  }

  _resolveBase(b) {
    if (typeof b === 'string' || b === null) return b;
    if ('etag' in b) return b.etag;
    const e = b.after;
    if (e.state === 'acked') return e.etag;
    return this._resolveBase(e.base); // it failed: its own base
  }

  /**
   * Applies RFC 6902 ops. The value shows them at once; the write is sent
   * in order after this client's earlier writes, with If-Match naming the
   * version the ops were made against (options.base, default: the current
   * value) and an Idempotency-Key kept across retries. Resolves with
   * {etag, value, rebasedFrom} once committed; rejects with ConflictError
   * (412 rebase-conflict), PatchdError (other errors) or NetworkError.
   */
  patch(ops, options = {}) {
    return this._enqueue('json-patch', clone(ops), options);
  }

  /** Applies an RFC 7396 merge patch; otherwise as patch. */
  merge(obj, options = {}) {
    return this._enqueue('merge-patch', clone(obj), options);
  }

  _enqueue(kind, body, options) {
    if (this._closed) return Promise.reject(new NetworkError('closed'));
    return new Promise((resolve, reject) => {
      const entry = { kind, body, base: options.base ?? this.version(), key: randomKey(), state: 'queued', resolve, reject };
      this._pending.push(entry);
      this._render('local', { ops: kind === 'json-patch' ? body : undefined });
      this._pump();
    });
  }

  async _pump() {
    if (this._sending) return;
    this._sending = true;
    try {
      for (;;) {
        const entry = this._pending.find((e) => e.state === 'queued');
        if (!entry) return;
        entry.state = 'sending';
        await this._send(entry);
      }
    } finally {
      this._sending = false;
    }
  }

  async _send(entry) {
    const c = this.client;
    const etag = this._resolveBase(entry.base);
    const headers = {
      'Content-Type': entry.kind === 'merge-patch' ? 'application/merge-patch+json' : 'application/json-patch+json',
      'Idempotency-Key': entry.key,
      Accept: 'application/json',
    };
    if (etag) headers['If-Match'] = etag;
    entry.sentTick = this.client._tick();
    let res;
    try {
      this._abortSends ??= new AbortController();
      res = await c._request(
        c._url(this.collection, this.id),
        { method: 'PATCH', headers: c._headersFor(headers), body: JSON.stringify(entry.body) },
        { signal: this._abortSends.signal, onRetry: () => this._emit({ type: 'retry', kind: entry.kind }) },
      );
    } catch (err) {
      this._drop(entry);
      entry.reject(err);
      return;
    }
    if (res.ok) {
      const value = await res.json();
      this._ack(entry, value, res.headers.get('ETag'), res.headers.get('Rebased-From'));
      return;
    }
    const problem = await readProblem(res);
    let current = null;
    if (res.status === 412) {
      try {
        current = await c.get(this.collection, this.id, { signal: this._abortSends.signal });
      } catch (e) {
        current = e instanceof PatchdError && e.status === 404 ? { value: null, etag: null } : null;
      }
    }
    const err =
      res.status === 412 && problem?.type?.endsWith('/rebase-conflict')
        ? new ConflictError(res.status, problem, current, entry.body)
        : new PatchdError(res.status, problem, current);
    if (current && !this._feed) this._setBase({ ...current, seq: null });
    this._drop(entry);
    entry.reject(err);
  }

  _drop(entry) {
    this._pending = this._pending.filter((e) => e !== entry);
    entry.state = 'failed';
    this._render('revert');
  }

  _ack(entry, value, etag, rebasedFrom) {
    entry.state = 'acked';
    entry.landed = false;
    entry.etag = etag;
    entry.value = value;
    entry.ackTick = this.client._tick();
    const seen = this._recent.get(etag);
    if (!this._feed || this._base.etag === etag || (seen !== undefined && seen > entry.sentTick)) {
      // Not following, or the feed already brought this version: the
      // answer is the new base.
      this._pending = this._pending.filter((e) => e !== entry);
      if (!this._feed) this._setBase({ value, etag, seq: null });
    }
    // Following: the edit stays laid over the base until the feed brings
    // the version with this ETag, so that the value never goes back.
    this._render('ack', { rebasedFrom });
    entry.resolve({ etag, value, rebasedFrom });
  }

  /** Starts following the change feed (idempotent). Returns this. */
  follow() {
    if (this._feed || this._closed) return this;
    this._feed = new AbortController();
    this._runFeed(this._feed.signal);
    return this;
  }

  /** Stops following the change feed; edits go on without it. */
  unfollow() {
    this._feed?.abort();
    this._feed = null;
    this._settleAcks();
    if (!this._closed) this._setStatus('idle');
  }

  /** Stops the feed and every retry; pending writes reject with NetworkError. */
  close() {
    this._closed = true;
    this.unfollow();
    this._abortSends?.abort();
    for (const e of this._pending.filter((e) => e.state === 'queued')) {
      this._pending = this._pending.filter((x) => x !== e);
      e.state = 'failed';
      e.reject(new NetworkError('closed'));
    }
    this._setStatus('closed');
  }

  async _runFeed(signal) {
    const c = this.client;
    let retryMs = 2000;
    let attempt = 0;
    const onOffline = () => this._conn?.abort();
    globalThis.addEventListener?.('offline', onOffline);
    try {
      while (!signal.aborted) {
        if (globalThis.navigator?.onLine === false) {
          this._setStatus('offline');
          await c._sleep(60_000, signal);
          continue;
        }
        this._setStatus('connecting');
        const conn = new AbortController();
        this._conn = conn;
        const stop = () => conn.abort();
        signal.addEventListener('abort', stop);
        let gotEvent = false;
        let idle;
        const watch = () => {
          clearTimeout(idle);
          idle = setTimeout(() => conn.abort(), c.idleTimeout);
        };
        try {
          const headers = { Accept: 'text/event-stream' };
          if (this._base.seq !== null) headers['Last-Event-ID'] = String(this._base.seq);
          const connectTick = this.client._tick();
          watch();
          const res = await c._fetch(c._url(this.collection, this.id, '/events'), {
            headers: c._headersFor(headers),
            signal: conn.signal,
            cache: 'no-store',
          });
          if (res.status >= 400 && res.status < 500) {
            // Never retried: the request itself is wrong (or the document gone).
            const err = new PatchdError(res.status, await readProblem(res));
            this._emit({ type: 'error', error: err });
            this._feed = null;
            this._settleAcks();
            this._setStatus('idle');
            return;
          }
          if (!res.ok || !res.body) throw new PatchdError(res.status, null);
          for await (const ev of readEvents(res.body)) {
            watch();
            if (ev.retry !== undefined) {
              retryMs = ev.retry;
              continue;
            }
            if (ev.comment !== undefined) continue;
            if (!gotEvent) {
              gotEvent = true;
              attempt = 0;
              this._setStatus('live');
            }
            if (!this._onEvent(ev, connectTick)) break; // out of step: reconnect for a snapshot
          }
        } catch {
          // network failure, idle timeout or abort: reconnect below
        } finally {
          clearTimeout(idle);
          signal.removeEventListener('abort', stop);
        }
        if (signal.aborted) return;
        const offline = globalThis.navigator?.onLine === false;
        this._setStatus(offline ? 'offline' : 'connecting');
        // A stream that delivered events and then ended (a server restart,
        // a cut-off) reconnects after the server's retry hint; failures to
        // connect back off further each time.
        const delay = gotEvent ? retryMs * (0.5 + Math.random() / 2) : Math.max(retryMs / 4, backoffDelay(attempt++, c.retry));
        await c._sleep(delay, signal);
      }
    } finally {
      globalThis.removeEventListener?.('offline', onOffline);
    }
  }

  // _onEvent applies one feed event; false means local state is out of step
  // and the feed must restart from a snapshot.
  _onEvent(ev, connectTick) {
    let d;
    try {
      d = JSON.parse(ev.data);
    } catch {
      return true;
    }
    if (ev.event === 'snapshot' || ev.event === 'reset') {
      this._setBase({ value: d.value, etag: d.etag, seq: d.seq });
      // Acknowledged edits are in this state if they were acknowledged
      // before the request (snapshot) or before now (reset).
      this._pending = this._pending.filter((e) => !(e.state === 'acked' && (ev.event === 'reset' || e.ackTick < connectTick)));
      this._render(ev.event, { seq: d.seq });
      return true;
    }
    if (ev.event !== 'version') return true;
    if (this._base.seq !== null && d.seq <= this._base.seq) return true; // already applied
    if (this._base.seq !== null && d.seq !== this._base.seq + 1) {
      this._base.seq = null;
      return false;
    }
    let value;
    try {
      value = applyPatch(this._base.value, d.ops);
    } catch {
      this._base.seq = null;
      return false;
    }
    // The version may be this client's write in flight, its answer not
    // here yet: if the write turns the old state into this one, stop
    // laying it over (it would, say, append a line item twice).
    const sending = this._pending.find((e) => e.state === 'sending');
    if (sending) {
      try {
        const mineNow = sending.kind === 'merge-patch' ? applyMerge(this._base.value, sending.body) : applyPatch(this._base.value, sending.body);
        sending.landed = deepEqual(mineNow, value);
      } catch {
        sending.landed = false;
      }
    }
    this._setBase({ value, etag: d.etag, seq: d.seq });
    this._recent.set(d.etag, this.client._tick());
    if (this._recent.size > 256) this._recent.delete(this._recent.keys().next().value);
    const mine = this._pending.some((e) => e.state === 'acked' && e.etag === d.etag);
    this._pending = this._pending.filter((e) => !(e.state === 'acked' && e.etag === d.etag));
    // "own" also when the write in flight turns the old state into this
    // one: its answer is on its way (or someone made the same change,
    // which looks the same).
    this._render(mine || sending?.landed ? 'own' : 'remote', { version: d });
    return true;
  }
}

/** Shorthand for new Client(options). */
export function createClient(options) {
  return new Client(options);
}
