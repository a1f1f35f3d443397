// Undo and revert for the patchd client: the requests behind Doc.undo() and
// Doc.revert(), loaded by patchd.js on the first call. The edits to undo
// are noted by patchd.js itself (Doc._own, Doc._sawVersion); h holds the
// errors and helpers of patchd.js it needs.
import { applyPatch, deepEqual, diff } from './json.js';

// undoNext reverts d's most recent committed edit, once its edits in
// flight are answered (Doc.undo).
export async function undoNext(d, signal, h) {
  await idle(d, signal, h);
  for (;;) {
    const u = d._undo[d._undo.length - 1];
    if (!u) return null;
    if (u.seq === null) u.seq = await findSeq(d, u, signal, h);
    const forget = () => (d._undo = d._undo.filter((x) => x !== u));
    // Not in history: an edit that changed nothing has no version.
    if (u.seq === null) {
      forget();
      continue;
    }
    let r;
    const shown = d.etag;
    try {
      r = await request(d, u.seq, signal, forget, h);
    } catch (err) {
      if (err instanceof h.PatchdError && err.type === 'base-unknown') forget(); // it left history
      // Refused for later versions that are all this client's own undone
      // edits and their undos: undo it over them (undoOverOwn).
      if (!(err instanceof h.ConflictError) || !(r = await undoOverOwn(d, u.seq, err, signal, forget, h))) throw err;
    }
    // An undo that changed nothing wrote no version: its ETag is another's.
    if (r.etag !== shown) {
      (d._undone ??= new Set()).add(u.seq);
      (d._undos ??= []).push({ etag: r.etag, rid: r.replayed ? null : r.rid });
    }
    return { etag: r.etag, value: r.value, rebasedFrom: r.rebasedFrom, seq: u.seq };
  }
}

// revert reverts version seq, anyone's (Doc.revert).
export async function revert(d, seq, signal, h) {
  const r = await request(d, seq, signal, (r) => d._own(r.etag, r.rid, r.replayed, r.sentTick), h);
  return { etag: r.etag, value: r.value, rebasedFrom: r.rebasedFrom };
}

// request sends a revert; on success it calls done(answer) and shows the
// answer.
async function request(d, seq, signal, done, h) {
  // Until its answer is shown: the feed may bring its version first.
  d._reverting.push(seq);
  try {
    return await write(d, 'POST', '/revert', 'application/json', { seq }, signal, done, h);
  } finally {
    d._reverting.splice(d._reverting.indexOf(seq), 1);
  }
}

// write sends a write of d (method to its URL and suffix) against the
// version d shows, and answers it as answer does.
async function write(d, method, suffix, type, body, signal, done, h) {
  if (d._closed) throw new h.NetworkError('closed');
  const c = d.client;
  // Its own key, kept across retries: a retry never writes twice.
  const headers = { 'Content-Type': type, 'Idempotency-Key': h.randomKey(), Accept: 'application/json' };
  if (d.etag) headers['If-Match'] = d.etag;
  const s = h.anySignal(d._abortSends.signal, signal);
  const sentTick = c._tick();
  const res = await c._request(c._url(d.collection, d.id, suffix), { method, headers, body: JSON.stringify(body) }, { signal: s });
  return answer(d, res, body, s, sentTick, done, h);
}

async function answer(d, res, body, s, sentTick, done, h) {
  const c = d.client;
  if (!res.ok) {
    const problem = await h.readProblem(res);
    const current = res.status === 412 ? await c._current(d.collection, d.id, s) : null;
    if (current) h.freeze(current.value);
    if (current && !d._feed) {
      d._setBase({ ...current, seq: null });
      d._render('revert');
    }
    throw res.status === 412 && problem?.type?.endsWith('/rebase-conflict') ? new h.ConflictError(res.status, problem, current, body) : new h.PatchdError(res.status, problem, current);
  }
  const value = h.freeze(await res.json());
  const hd = (k) => res.headers.get(k);
  const r = { value, etag: hd('ETag'), rebasedFrom: hd('Rebased-From'), rid: hd('X-Request-Id'), replayed: hd('Idempotent-Replayed') === 'true', sentTick };
  done(r);
  answered(d, r);
  return r;
}

// answered shows a revert's answer: the new base when not following, else
// laid over the base until the feed brings its version.
function answered(d, r) {
  if (!d._feed) d._setBase({ value: r.value, etag: r.etag, seq: null });
  else if (r.etag !== d._base.etag && !(d._seqs.get(r.etag)?.tick > r.sentTick)) {
    d._pending.push({ kind: 'json-patch', body: diff(d._base.value, r.value), state: 'acked', etag: r.etag, value: r.value, ackTick: d.client._tick() });
  }
  d._render('ack', { rebasedFrom: r.rebasedFrom });
}

// undoOverOwn undoes version seq when its revert was refused (err) only
// for later versions that are this client's own edits undone by undo()
// and those undos: the revert route refuses a version that a later one
// touched, however the later ones cancel out. It rebuilds the document
// before and after seq from history, and sends, as a JSON Patch against
// the version shown now, what puts back seq's changes where the document
// still holds them as seq left them. It resolves with the answer, or null
// when that does not hold (or history does not reach back), and the
// caller reports err.
async function undoOverOwn(d, seq, err, signal, done, h) {
  const later = new Set(err.conflicts.map((c) => c.concurrentVersion));
  // The server lists at most 50 conflicts: a list that long may leave out
  // someone else's version.
  if (!later.size || err.conflicts.length >= 50 || !d._undone || d.value === null || !d.etag) return null;
  // The document as each version left it, from the first: before is the
  // state before seq, after the state seq left.
  let doc = null;
  let last = 0; // the seq doc is at
  let before;
  let after;
  let read = 0;
  try {
    for await (const page of history(d, 0, signal, h)) {
      for (const v of page.versions) {
        if (v.seq <= seq) {
          if (v.seq !== last + 1) return null; // history does not reach back to the first version
          before = doc;
          doc = applyPatch(doc, v.ops);
          last = v.seq;
          if (v.seq === seq) after = doc;
        } else if (later.has(v.seq)) {
          if (!d._undone.has(v.seq) && !d._undos?.some((u) => h.ownVersion(u, v))) return null; // someone else's
          later.delete(v.seq);
        }
      }
      read += page.versions.length;
      if (read >= 1000 && page.next != null) return null; // no more than a default history's versions
    }
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    return null; // a history that does not read or replay
  }
  if (later.size || last < seq) return null;
  const target = putBack(d.value, before, after);
  if (target === conflict || target === absent) return null;
  const ops = diff(d.value, target, { key: 'id' });
  if (!ops.length) return null;
  try {
    return await write(d, 'PATCH', '', 'application/json-patch+json', ops, signal, done, h);
  } catch (e) {
    if (e instanceof h.PatchdError) return null; // refused: the caller reports err
    throw e;
  }
}

const conflict = Symbol('conflict');
const absent = Symbol('absent');

// putBack returns current with what changed from before to after put back
// as it was before, or conflict when current no longer holds it as after
// left it. Objects go member by member; arrays of objects with an "id"
// element by element (an element's move is a conflict); any other value
// whole. absent stands for a missing member.
function putBack(current, before, after) {
  if (deepEqual(before, after)) return current;
  const obj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (obj(current) && obj(before) && obj(after)) {
    const out = { ...current };
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
      const v = putBack(Object.hasOwn(current, k) ? current[k] : absent, Object.hasOwn(before, k) ? before[k] : absent, Object.hasOwn(after, k) ? after[k] : absent);
      if (v === conflict) return conflict;
      if (v === absent) delete out[k];
      else Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true }); // "__proto__" too
    }
    return out;
  }
  const ids = (a) => Array.isArray(a) && a.every((e) => obj(e) && typeof e.id === 'string') && new Set(a.map((e) => e.id)).size === a.length;
  if (ids(current) && ids(before) && ids(after)) {
    const order = (a, b) => a.filter((e) => b.some((x) => x.id === e.id)).map((e) => e.id).join('\u0000');
    if (order(before, after) !== order(after, before)) return conflict; // moved
    let out = [...current];
    for (const e of after) {
      const was = before.find((x) => x.id === e.id);
      const i = out.findIndex((x) => x.id === e.id);
      if (deepEqual(was, e)) continue;
      if (i < 0) return conflict;
      const v = putBack(out[i], was ?? absent, e);
      if (v === conflict) return conflict;
      out = v === absent ? out.filter((x) => x.id !== e.id) : out.map((x) => (x.id === e.id ? v : x));
    }
    for (const [bi, e] of before.entries()) {
      if (after.some((x) => x.id === e.id)) continue;
      if (out.some((x) => x.id === e.id)) return conflict; // back already
      out.splice(Math.min(bi, out.length), 0, e);
    }
    return out;
  }
  return deepEqual(current, after) ? before : conflict;
}

// findSeq looks an edit's version up in history: the newest that is its
// (the feed has not brought it yet, or brought a reset instead).
async function findSeq(d, u, signal, h) {
  let found = null;
  for await (const page of history(d, Math.max(0, (d.seq ?? 0) - 100), signal, h)) {
    for (const v of page.versions) if (h.ownVersion(u, v)) found = v.seq;
  }
  return found;
}

// history yields the pages of d's history after seq after, oldest first.
async function* history(d, after, signal, h) {
  const c = d.client;
  for (;;) {
    const res = await c._request(c._url(d.collection, d.id, `/history?after=${after}&limit=1000`), { headers: { Accept: 'application/json' }, cache: 'no-store' }, { signal });
    if (!res.ok) throw new h.PatchdError(res.status, await h.readProblem(res));
    const page = await res.json();
    yield page;
    if (page.next == null) return;
    after = page.next;
  }
}

// idle resolves once no edit of d is unanswered.
function idle(d, signal, h) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (signal?.aborted) reject(signal.reason);
      else if (d._closed) reject(new h.NetworkError('closed'));
      else if (d.pendingCount === 0) resolve();
      else return;
      off();
      signal?.removeEventListener('abort', check);
    };
    const off = d.subscribe(check);
    signal?.addEventListener('abort', check);
    check();
  });
}
