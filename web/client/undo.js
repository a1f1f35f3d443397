// Undo and revert for the patchd client: the requests behind Doc.undo() and
// Doc.revert(), loaded by patchd.js on the first call. The edits to undo
// are noted by patchd.js itself (Doc._own, Doc._sawVersion); h holds the
// errors and helpers of patchd.js it needs.
import { diff } from './json.js';

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
    try {
      r = await request(d, u.seq, signal, forget, h);
    } catch (err) {
      if (err instanceof h.PatchdError && err.type === 'base-unknown') forget(); // it left history
      throw err;
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
  if (d._closed) throw new h.NetworkError('closed');
  const c = d.client;
  const body = { seq };
  // Its own key, kept across retries: a retry never reverts twice.
  const headers = { 'Content-Type': 'application/json', 'Idempotency-Key': h.randomKey(), Accept: 'application/json' };
  if (d.etag) headers['If-Match'] = d.etag;
  const s = h.anySignal(d._abortSends.signal, signal);
  const sentTick = c._tick();
  // Until its answer is shown: the feed may bring its version first.
  d._reverting.push(seq);
  try {
    const res = await c._request(c._url(d.collection, d.id, '/revert'), { method: 'POST', headers, body: JSON.stringify(body) }, { signal: s });
    return await answer(d, res, body, s, sentTick, done, h);
  } finally {
    d._reverting.splice(d._reverting.indexOf(seq), 1);
  }
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

// findSeq looks an edit's version up in history: the newest that is its
// (the feed has not brought it yet, or brought a reset instead).
async function findSeq(d, u, signal, h) {
  const c = d.client;
  let after = Math.max(0, (d.seq ?? 0) - 100);
  let found = null;
  for (;;) {
    const res = await c._request(c._url(d.collection, d.id, `/history?after=${after}&limit=1000`), { headers: { Accept: 'application/json' }, cache: 'no-store' }, { signal });
    if (!res.ok) throw new h.PatchdError(res.status, await h.readProblem(res));
    const page = await res.json();
    for (const v of page.versions) if (h.ownVersion(u, v)) found = v.seq;
    if (page.next == null) return found;
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
