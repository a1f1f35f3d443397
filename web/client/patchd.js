// patchd's JavaScript client: open a document, edit it with JSON Patch or
// Merge Patch under If-Match, and follow its change feed. No dependencies;
// runs in browsers and in Node.js 18+ (it needs fetch and web streams).

import { applyMerge, applyPatch, clone, deepEqual, diff } from './json.js';
import { Hub, RETRY } from './hub.js';

// How long a failed request waits while the browser is offline, unless the
// network comes back first (the online event ends the wait).
const OFFLINE_RETRY = 60_000;

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

// retryAfter reads Retry-After (seconds or an HTTP date) as ms, or null.
function retryAfter(res) {
  const h = res.headers.get('Retry-After')?.trim();
  if (!h) return null;
  const t = /^\d+$/.test(h) ? Number(h) * 1000 : Date.parse(h) - Date.now();
  return Number.isNaN(t) ? null : Math.max(0, t);
}

// anySignal aborts when any of the signals does (AbortSignal.any, which
// Node.js 18 lacks).
function anySignal(...signals) {
  const list = signals.filter(Boolean);
  if (list.length < 2) return list[0];
  const ac = new AbortController();
  for (const s of list) {
    if (s.aborted) ac.abort(s.reason);
    else s.addEventListener('abort', () => ac.abort(s.reason), { once: true });
  }
  return ac.signal;
}

// freeze deep-freezes a JSON value in place and returns it: a Doc's value
// is shared with every listener, so nobody may change it.
function freeze(v) {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) freeze(x);
  }
  return v;
}

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
   * @param {object|function} [options.headers] extra request headers (e.g. Authorization), or a function returning them or a promise of them
   * @param {typeof fetch} [options.fetch]
   * @param {object} [options.retry] {base, max, attempts}: backoff for network failures and 429/502/503/504
   * @param {number} [options.idleTimeout] ms without a byte on a change feed before it reconnects (default 45000)
   * @param {object} [options.store] where unsent edits are kept across reloads ({load, put, delete, release}; see idb.js)
   * @param {boolean} [options.share] one stream for all tabs of the origin (default: where Web Locks and BroadcastChannel exist)
   */
  constructor(options = {}) {
    this.baseURL = (options.baseURL ?? '').replace(/\/+$/, '');
    // A URL that cannot be requested is a mistake to say now, not a network
    // failure to retry forever: outside a page ("" has no origin there) or
    // not http(s).
    let url;
    try {
      url = new URL(`${this.baseURL}/docs`, globalThis.location?.href);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new TypeError(
        `patchd: baseURL ${JSON.stringify(options.baseURL ?? '')} is not a server: give an absolute http or https URL${globalThis.location ? '' : ' ("" means the page\'s origin, and there is no page here)'}`,
      );
    }
    this._headers = options.headers ?? {};
    this._fetch = options.fetch ?? ((...a) => globalThis.fetch(...a));
    this.retry = { base: 250, max: 10_000, attempts: Infinity, ...options.retry };
    this.idleTimeout = options.idleTimeout ?? 45_000;
    this.store = options.store ?? null;
    this.share = options.share ?? !!(globalThis.document && globalThis.BroadcastChannel && globalThis.navigator?.locks);
    this._online = new Set(); // wake-ups waiting for the network to come back
    this._ticks = 0; // orders local happenings; only compared, never shown
    this._onOnline = () => {
      for (const wake of [...this._online]) wake();
    };
    globalThis.addEventListener?.('online', this._onOnline);
  }

  /**
   * Stops listening for the browser's online events, and closes the
   * stream: followed documents stop following (they stay open for
   * writes), watches stop.
   */
  close() {
    globalThis.removeEventListener?.('online', this._onOnline);
    this._hub?.close();
    this._hub = null;
  }

  // _hubFor returns the stream every followed document and collection
  // shares, made on first use.
  _hubFor() {
    return (this._hub ??= new Hub(this, this.share));
  }

  async _problem(res) {
    return new PatchdError(res.status, await readProblem(res));
  }

  _retryAfter(res) {
    return retryAfter(res);
  }

  _backoff(attempt) {
    return backoffDelay(attempt, this.retry);
  }

  /**
   * Lists a page of a collection: GET /docs/{c} with where (an object),
   * order (a JSON Pointer, "-" in front for descending), limit, after (the
   * previous page's next) and include ("body" adds each value). Resolves
   * to {items: [{id, etag, seq, value?}], next}.
   */
  async list(collection, options) {
    // list.js: loaded on the first call.
    return (await import('./list.js')).list(this, collection, options);
  }

  _tick() {
    return ++this._ticks;
  }

  // _order numbers stored edits in the order they were made, also across
  // reloads (it starts from the clock).
  _order() {
    return (this._n = Math.max((this._n ?? 0) + 1, Date.now() * 1000));
  }

  _url(collection, id, suffix = '') {
    return `${this.baseURL}/docs/${encodeName(collection)}${id === undefined ? '' : '/' + encodeName(id)}${suffix}`;
  }

  // _headersFor asks for the extra headers afresh on every request, so that
  // a function can hand out a refreshed token.
  async _headersFor(extra) {
    const h = this._headers;
    return { ...(typeof h === 'function' ? await h() : h), ...extra };
  }

  // sleep waits ms, or less if signal aborts or (with online) the network
  // comes back.
  _sleep(ms, signal, online = true) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this._online.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      if (online) this._online.add(done);
      signal?.addEventListener('abort', done);
    });
  }

  /**
   * fetch with retries: network failures, 429, 502, 503 and 504 (and 409
   * idempotency-key-in-use, a retry that overtook its first attempt) are
   * retried with backoff and jitter, or after Retry-After when the answer
   * has one, up to retry.attempts; any other answer is returned as it is.
   * onRetry({attempt, delay, error}) is told of each failure. An aborted
   * signal rejects with its reason.
   */
  async _request(url, init, { signal, onRetry } = {}) {
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let res;
      let err;
      let wait = null;
      try {
        res = await this._fetch(url, { ...init, headers: await this._headersFor(init.headers), signal });
        let retry = RETRY.has(res.status);
        if (res.status === 409 && init.headers?.['Idempotency-Key']) {
          retry = (await readProblem(res.clone()))?.type?.endsWith('/idempotency-key-in-use');
        }
        if (!retry) return res;
        wait = retryAfter(res);
        err = await this._problem(res);
      } catch (e) {
        signal?.throwIfAborted();
        err = e;
      }
      if (attempt + 1 >= this.retry.attempts) {
        if (res) return res;
        throw new NetworkError(`request failed: ${err?.message ?? err}`, err);
      }
      // Offline (the browser says so), trying again before the network
      // is back only fails again: wait for it, checking once a minute.
      const offline = wait === null && globalThis.navigator?.onLine === false;
      const delay = wait ?? (offline ? OFFLINE_RETRY : backoffDelay(attempt, this.retry));
      onRetry?.({ attempt: attempt + 1, delay, error: err });
      // A Retry-After says the server is not ready sooner: coming back
      // online does not cut it short.
      await this._sleep(delay, signal, wait === null);
    }
  }

  /** Reads a document: GET. Throws PatchdError("not-found") when there is none. */
  async get(collection, id, { signal } = {}) {
    const res = await this._request(this._url(collection, id), { headers: { Accept: 'application/json' }, cache: 'no-store' }, { signal });
    if (!res.ok) throw await this._problem(res);
    return { value: await res.json(), etag: res.headers.get('ETag') };
  }

  // _current reads the document after a 412: {value, etag}, both null when
  // it is gone, or null when it cannot be read.
  async _current(collection, id, signal) {
    try {
      return await this.get(collection, id, { signal });
    } catch (e) {
      return e instanceof PatchdError && e.status === 404 ? { value: null, etag: null } : null;
    }
  }

  /**
   * Opens a document: reads it and returns a Doc that keeps its value and
   * ETag. With {follow: true} it also follows the change feed. With a
   * store, edits left unsent by an earlier page (or a closed Doc) are
   * restored and sent again, with their Idempotency-Keys.
   */
  async open(collection, id, { follow = false, signal } = {}) {
    const { value, etag } = await this.get(collection, id, { signal });
    const doc = new Doc(this, collection, id, value, etag);
    // restore.js reads the store: loaded only with one.
    if (this.store) await (await import('./restore.js')).restore(doc);
    if (follow) doc.follow();
    return doc;
  }

  /**
   * Creates a document that must not exist yet (PUT with If-None-Match: *)
   * and returns it open. Throws PatchdError with status 412 and current if
   * it exists.
   */
  async create(collection, id, value, { follow = false, signal } = {}) {
    const res = await this._request(
      this._url(collection, id),
      { method: 'PUT', headers: { 'Content-Type': 'application/json', 'If-None-Match': '*' }, body: JSON.stringify(value) },
      { signal },
    );
    if (!res.ok) {
      const problem = await readProblem(res);
      throw new PatchdError(res.status, problem, res.status === 412 ? await this._current(collection, id, signal) : null);
    }
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
 * with this client's unacknowledged edits laid over it, frozen. `etag` is
 * that of the newest server state this client knows.
 */
export class Doc {
  constructor(client, collection, id, value, etag) {
    this.client = client;
    this.collection = collection;
    this.id = id;
    this._base = { value: freeze(value), etag, seq: null };
    this._baseTick = 0;
    this._pending = []; // edits not yet part of _base, oldest first
    this._listeners = new Set();
    this._recent = new Map(); // etag -> tick, of the last versions the feed applied
    this._status = 'idle';
    this._closed = false;
    this._sending = false;
    this._feed = null; // AbortController of the change feed
    this._abortSends = new AbortController();
    this._value = this._base.value;
    /** Edits restored from the store by open(): [{kind, body, result}]. */
    this.restored = [];
    this._undo = []; // this client's committed versions, oldest first: {etag, rid, seq}
    this._seqs = new Map(); // etag -> {etag, seq, requestId, tick} of the versions the feed brought
    this._undoing = Promise.resolve();
    this._reverting = []; // seqs of the reverts in flight
    this._listeners.add((ev) => this._sawVersion(ev));
  }

  /** The last server state with this client's unacknowledged edits laid over it (frozen). */
  get value() {
    return this._value;
  }

  /**
   * The ETag of the newest server state this client knows: that of its
   * last acknowledged write, even before the feed brings that version.
   */
  get etag() {
    const acked = this._pending.filter((e) => e.state === 'acked').pop();
    return acked ? acked.etag : this._base.etag;
  }

  /** The seq of the last version the change feed applied; else null. */
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
   * value, ...}), status ({type: "status"}), feed error ({type: "error"})
   * and write retry ({type: "retry"}). Returns a function that removes it.
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
    this._base = { ...b, value: freeze(b.value) };
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
    const v = this._viewThrough(null);
    this._value = freeze(v);
    this._emit({ type: 'change', source, value: v, etag: this.etag, ...extra });
  }

  /**
   * The version that the next edit is made against, to pass later as
   * {base} to patch or merge: a form takes it when a field starts being
   * edited, so that a concurrent change of that field is a conflict.
   * Behind this client's own edits it is "after the last of them", and
   * notes the newest server version the value shows (known): if that
   * edit was rebased over others' changes the value did not show yet, an
   * edit of the same things is made against known, so that the server
   * sees it as the conflict it is.
   */
  version() {
    const last = this._pending[this._pending.length - 1];
    if (!last) return { etag: this._base.etag };
    if (last.state === 'acked' && !last.theirs) return { etag: last.etag };
    // The newest version the value shows: that of this client's last
    // answered edit, unless one answered before it brought changes the
    // value does not show yet.
    let known = this._base.etag;
    for (const e of this._pending) {
      if (e.state !== 'acked' || e.theirs) break;
      known = e.etag;
    }
    return { after: last, known };
  }

  // _baseFor is the If-Match of entry: the version its base names, or the
  // one the value showed when it was made (base.known) when the edit it
  // is queued behind was rebased over changes of others that it touches.
  _baseFor(entry) {
    return (entry.base?.after?.theirs && rebased.known(entry)) || this._resolveBase(entry.base);
  }

  // _viewThrough is the value with the pending edits up to entry (all with
  // null) laid over the base: what this client expects entry's version to
  // hold. An edit that no longer applies locally is left out.
  _viewThrough(entry) {
    let v = this._base.value;
    for (const e of this._pending) {
      if (!e.landed) {
        try {
          v = e.kind === 'merge-patch' ? applyMerge(v, e.body) : applyPatch(v, e.body);
        } catch {
          // left out of the view
        }
      }
      if (e === entry) break;
    }
    return v;
  }

  _resolveBase(b) {
    if (typeof b === 'string' || b === null) return b;
    if ('etag' in b) return b.etag;
    const e = b.after;
    if (e.state === 'acked') return e.etag;
    return this._resolveBase(e.base); // it failed: its own base
  }

  // --- the store: unsent edits kept across reloads --------------------

  _store(method, arg) {
    const s = this.client.store;
    if (!s) return;
    try {
      Promise.resolve(s[method]?.(this.collection, this.id, arg)).catch(() => {});
    } catch {
      // a store that fails loses durability, not the edit
    }
  }

  // _save stores an edit with what a replay needs to be the same request:
  // kind, body, Idempotency-Key and If-Match (or the stored edit it is
  // queued behind, while that one is unanswered).
  _save(e) {
    const b = e.base;
    const after = b && typeof b === 'object' && 'after' in b && !['acked', 'failed'].includes(b.after.state) ? b.after.key : null;
    this._store('put', {
      key: e.key,
      n: e.n,
      kind: e.kind,
      body: e.body,
      ifMatch: after ? null : this._baseFor(e),
      after,
      known: b?.known,
      seen: e.seen,
      landed: !!e.landed,
    });
  }

  // _settled: an edit was answered (or refused); those queued behind it
  // now know their If-Match.
  _settled(entry) {
    for (const e of this._pending) if (e.base?.after === entry && e.state !== 'acked') this._save(e);
    this._store('delete', entry.key);
  }

  // --- writes -----------------------------------------------------------

  /**
   * Applies RFC 6902 ops. The value shows them at once; the write is sent
   * in order after this client's earlier writes, with If-Match naming the
   * version the ops were made against (options.base, default: the current
   * value) and an Idempotency-Key kept across retries (and reloads, with a
   * store). Resolves with {etag, value, rebasedFrom} once committed;
   * rejects with ConflictError (412 rebase-conflict), PatchdError (other
   * errors), NetworkError, or options.signal's reason when aborted.
   */
  patch(ops, options = {}) {
    return this._enqueue('json-patch', clone(ops), options);
  }

  /** Applies an RFC 7396 merge patch; otherwise as patch. */
  merge(obj, options = {}) {
    return this._enqueue('merge-patch', clone(obj), options);
  }

  _enqueue(kind, body, { base, signal } = {}) {
    if (this._closed) return Promise.reject(new NetworkError('closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const entry = { kind, body, base: base ?? this.version(), key: randomKey(), n: this.client._order(), seen: this.etag, state: 'queued', signal, resolve, reject };
      signal?.addEventListener(
        'abort',
        () => {
          // Queued: taken back. In flight: the fetch is aborted (the server
          // may have committed it; the feed would then bring it).
          if (entry.state !== 'queued') return;
          this._drop(entry);
          reject(signal.reason);
        },
        { once: true },
      );
      this._pending.push(entry);
      this._save(entry);
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
    const etag = this._baseFor(entry);
    // What this edit's version should hold: the value shown, when nothing
    // is queued behind it (the usual case; no second pass over the edits).
    entry.predicted = this._pending[this._pending.length - 1] === entry ? this._value : this._viewThrough(entry);
    // Loaded ahead, for when the answer says the server rebased the edit.
    rebasedModule().catch(() => {});
    const headers = {
      'Content-Type': entry.kind === 'merge-patch' ? 'application/merge-patch+json' : 'application/json-patch+json',
      'Idempotency-Key': entry.key,
      Accept: 'application/json',
    };
    if (etag) headers['If-Match'] = etag;
    entry.sentTick = c._tick();
    const signal = anySignal(this._abortSends.signal, entry.signal);
    let res;
    try {
      res = await c._request(
        c._url(this.collection, this.id),
        { method: 'PATCH', headers, body: JSON.stringify(entry.body) },
        { signal, onRetry: (r) => this._emit({ type: 'retry', kind: entry.kind, pending: this.pendingCount, ...r }) },
      );
    } catch (err) {
      // Closed: the edit stays stored for the next open().
      this._drop(entry, !this._closed);
      entry.reject(err);
      return;
    }
    if (res.ok) {
      const value = freeze(await res.json());
      const rebasedFrom = res.headers.get('Rebased-From');
      entry.rid = res.headers.get('X-Request-Id');
      // Rebased: the version holds changes of others that this client's
      // value does not show yet, which edits queued behind it must not
      // overwrite unseen (see _baseFor).
      // Without the module (a failed load) the edits queued behind go as
      // before, against this one's version.
      if (rebasedFrom) entry.theirs = (await rebasedModule().catch(() => null))?.theirs(entry.predicted, value);
      entry.predicted = undefined;
      this._ack(entry, value, res.headers.get('ETag'), rebasedFrom, res.headers.get('Idempotent-Replayed') === 'true');
      return;
    }
    const problem = await readProblem(res);
    const current = res.status === 412 ? await c._current(this.collection, this.id, signal) : null;
    if (current) freeze(current.value);
    const err =
      res.status === 412 && problem?.type?.endsWith('/rebase-conflict')
        ? new ConflictError(res.status, problem, current, entry.body)
        : new PatchdError(res.status, problem, current);
    if (current && !this._feed) this._setBase({ ...current, seq: null });
    this._drop(entry);
    entry.reject(err);
  }

  _drop(entry, forget = true) {
    this._pending = this._pending.filter((e) => e !== entry);
    entry.state = 'failed';
    if (forget) this._settled(entry);
    this._render('revert');
  }

  _ack(entry, value, etag, rebasedFrom, replayed) {
    entry.state = 'acked';
    entry.etag = etag;
    entry.value = value;
    entry.ackTick = this.client._tick();
    this._settled(entry);
    const seen = this._recent.get(etag);
    // Not following, or the feed already brought this version, or it is
    // the stored answer to an edit an earlier page sent (so the state
    // this page opened on holds it, and if not the feed brings it): the
    // answer is the new base, or in it.
    if (!this._feed || this._base.etag === etag || (seen !== undefined && seen > entry.sentTick) || (entry.restored && (replayed || entry.landed))) {
      this._pending = this._pending.filter((e) => e !== entry);
      if (!this._feed) this._setBase({ value, etag, seq: null });
    }
    entry.landed = false;
    this._own(etag, entry.rid, replayed, entry.sentTick);
    // Following: the edit stays laid over the base until the feed brings
    // the version with this ETag, so that the value never goes back.
    this._render('ack', { rebasedFrom });
    entry.resolve({ etag, value, rebasedFrom });
  }

  // --- undo: reverting versions ------------------------------------------

  /** How many of this client's committed edits undo() can still revert. */
  get undoable() {
    return this._undo.length;
  }

  // _own notes a committed edit of this client. Its seq comes with the
  // feed, or from history when undo() needs it first. A replayed answer
  // carries another request id than its version.
  _own(etag, rid, replayed, since) {
    if (!etag) return;
    const u = { etag, rid: replayed ? null : rid, seq: null };
    const v = this._seqs.get(etag);
    if (v && v.tick > since && ownVersion(u, v)) u.seq = v.seq;
    this._undo.push(u);
    if (this._undo.length > 100) this._undo.shift();
  }

  // _sawVersion is told every change: a version the feed brought may be
  // one of this client's, its answer here already or still on its way.
  _sawVersion(ev) {
    const v = ev.version;
    if (ev.type !== 'change' || !v?.etag) return;
    // A revert in flight whose version the feed brings before its answer:
    // this client's own (listeners are told after this one).
    if (ev.source === 'remote' && v.kind === 'revert' && this._reverting.includes(v.reverts)) ev.source = 'own';
    const u = this._undo.find((u) => u.seq === null && ownVersion(u, v));
    if (u) u.seq = v.seq;
    this._seqs.delete(v.etag);
    this._seqs.set(v.etag, { etag: v.etag, seq: v.seq, requestId: v.requestId ?? null, tick: this.client._tick() });
    if (this._seqs.size > 256) this._seqs.delete(this._seqs.keys().next().value);
  }

  /**
   * Reverts this client's most recent committed edit, once its edits in
   * flight are answered: POST .../revert, rebased over what others did
   * since. Resolves with {etag, value, rebasedFrom, seq} (seq: the version
   * undone), or null when there is nothing to undo. A 412 rebase-conflict
   * (someone changed the same thing later) rejects with ConflictError and
   * leaves the edit to undo where it was; forgetUndo() drops it.
   */
  undo({ signal } = {}) {
    const run = this._undoing.then(async () => (await undoModule()).undoNext(this, signal, H));
    this._undoing = run.catch(() => {});
    return run;
  }

  /** Forgets the edit undo() would revert next; false when there is none. */
  forgetUndo() {
    return this._undo.pop() !== undefined;
  }

  /**
   * Reverts version seq, anyone's (POST .../revert with {"seq"}), rebased
   * over the versions after it; an edit of this client like any other
   * (undo() reverts it). Resolves with {etag, value, rebasedFrom};
   * rejects with ConflictError (a later version changed the same thing)
   * or PatchdError (base-unknown: seq left history; cannot-revert: it
   * created the document; not-found).
   */
  async revert(seq, { signal } = {}) {
    return (await undoModule()).revert(this, seq, signal, H);
  }


  /** Starts following the change feed (idempotent). Returns this. */
  follow() {
    if (this._feed || this._closed) return this;
    this._feed = new AbortController();
    const hub = this.client._hubFor();
    if (hub.legacy) this._legacyFollow();
    else hub.addDoc(this);
    return this;
  }

  // The server has no POST /events: this document's own change feed
  // (GET /docs/{c}/{id}/events), run by a hub of its own.
  _legacyFollow() {
    if (!this._feed) return;
    this._feedHub = new Hub(this.client, false, this);
    this._feedHub.addDoc(this);
  }

  _feedError(error) {
    this._emit({ type: 'error', error });
    this.unfollow();
  }

  /** Stops following the change feed; edits go on without it. */
  unfollow() {
    this._feed?.abort();
    this._feed = null;
    const own = this._feedHub;
    this._feedHub = null;
    own?.close();
    this.client._hub?.removeDoc(this);
    this._settleAcks();
    if (!this._closed) this._setStatus('idle');
  }

  /**
   * Stops the feed and every retry; pending writes reject with
   * NetworkError. With a store they stay stored: the next open() of this
   * document sends them.
   */
  close() {
    if (this._closed) return;
    this._closed = true;
    this.unfollow();
    for (const e of this._pending) if (e.state !== 'acked') this._store('release', e.key);
    this._abortSends.abort(new NetworkError('closed'));
    for (const e of this._pending.filter((e) => e.state === 'queued')) {
      this._pending = this._pending.filter((x) => x !== e);
      e.state = 'failed';
      e.reject(new NetworkError('closed'));
    }
    this._setStatus('closed');
  }

  // _onEvent applies one feed event; false means local state is out of step
  // and the feed must restart from a snapshot.
  _onEvent(ev, connectTick) {
    let d = ev.d;
    try {
      d ??= JSON.parse(ev.data);
    } catch {
      return true;
    }
    // Two streams overlap while the set of subscriptions changes: a
    // snapshot no newer than what was applied is old news.
    if (ev.event === 'snapshot' && this._base.seq !== null && d.seq <= this._base.seq) return true;
    if (ev.event === 'snapshot' || ev.event === 'reset') {
      this._setBase({ value: d.value, etag: d.etag, seq: d.seq });
      // Acknowledged edits are in this state if they were acknowledged
      // before the request (snapshot) or before now (reset), or if this
      // state is theirs.
      this._pending = this._pending.filter((e) => !(e.state === 'acked' && (ev.event === 'reset' || e.ackTick < connectTick || e.etag === d.etag)));
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
      // Stored too: a replay after a reload must not show it twice.
      if (sending.landed) this._save(sending);
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

// ownVersion: is history entry (or feed version) v the version of this
// client's edit u? Its ETag, and its request id when both are known (the
// answer's X-Request-Id is not readable across origins).
function ownVersion(u, v) {
  return u.etag === v.etag && (!u.rid || !v.requestId || u.rid === v.requestId);
}

// undo.js holds the requests of undo() and revert(), loaded on the first
// call; H is what it needs of this module (passed, not imported: a
// second copy of this module, under another URL, has other classes).
const undoModule = () => import('./undo.js');

// rebased.js: what a rebased write brought (see Doc._baseFor), loaded
// with the first write.
let rebased;
const rebasedModule = async () => (rebased ??= await import('./rebased.js'));
const H = { PatchdError, ConflictError, NetworkError, readProblem, freeze, randomKey, anySignal, ownVersion };

/** Shorthand for new Client(options). */
export function createClient(options) {
  return new Client(options);
}

