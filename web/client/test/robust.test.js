// The client under rate limits, overload, aborts and token refresh, against
// a real patchd process.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, NetworkError } from '../patchd.js';
import { startPatchd } from './support/patchd.js';

let server;
const docs = [];
before(async () => {
  server = await startPatchd();
});
after(async () => {
  for (const d of docs) d.close();
  await server?.stop();
});

let n = 0;
const newID = () => `robust-${process.pid}-${++n}`;
const keep = (d) => (docs.push(d), d);

function waitFor(doc, pred, what, ms = 10_000) {
  if (pred(doc)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}; value ${JSON.stringify(doc.value)}, status ${doc.status}`));
    }, ms);
    const off = doc.subscribe(() => {
      if (pred(doc)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

/** A fetch that records every request and can answer chosen ones itself. */
function recordingFetch(answer = () => null) {
  const calls = [];
  const f = async (url, init = {}) => {
    const call = { url: String(url), method: init.method ?? 'GET', headers: { ...init.headers }, at: Date.now() };
    calls.push(call);
    const injected = await answer(call, calls, init);
    if (injected instanceof Error) throw injected;
    if (injected) return injected;
    return fetch(url, init);
  };
  return { f, calls };
}

const problem = (status, name, headers = {}) =>
  new Response(JSON.stringify({ type: `/problems/${name}`, title: name, status, detail: name }), {
    status,
    headers: { 'Content-Type': 'application/problem+json', ...headers },
  });

test('a 429 write is retried after Retry-After, with the same Idempotency-Key', { timeout: 60_000 }, async () => {
  let limited = 0;
  const { f, calls } = recordingFetch((call) => (call.method === 'PATCH' && limited++ === 0 ? problem(429, 'rate-limited', { 'Retry-After': '1' }) : null));
  // The backoff alone would retry within 2 ms: only Retry-After makes it wait.
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 2 } });
  const doc = keep(await client.create('r', newID(), { a: 1 }));
  const retries = [];
  doc.subscribe((ev) => ev.type === 'retry' && retries.push(ev));
  const r = await doc.patch([{ op: 'replace', path: '/a', value: 2 }]);
  assert.deepEqual(r.value, { a: 2 });
  const writes = calls.filter((c) => c.method === 'PATCH');
  assert.equal(writes.length, 2);
  assert.equal(writes[0].headers['Idempotency-Key'], writes[1].headers['Idempotency-Key']);
  assert.ok(writes[1].at - writes[0].at >= 990, `retried after ${writes[1].at - writes[0].at} ms`);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].attempt, 1);
  assert.equal(retries[0].delay, 1000);
  assert.equal(retries[0].error.status, 429);
  client.close();
});

test('a 503 with Retry-After as an HTTP date is waited out; a 409 idempotency-key-in-use is retried', { timeout: 60_000 }, async () => {
  let n503 = 0;
  let n409 = 0;
  const { f, calls } = recordingFetch((call) => {
    if (call.method === 'GET' && n503++ === 0) return problem(503, 'overloaded', { 'Retry-After': new Date(Date.now() + 1500).toUTCString() });
    if (call.method === 'PATCH' && n409++ === 0) return problem(409, 'idempotency-key-in-use');
    return null;
  });
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 2 } });
  const id = newID();
  await new Client({ baseURL: server.url }).create('r', id, { a: 1 });
  const doc = keep(await client.open('r', id));
  const gets = calls.filter((c) => c.method === 'GET');
  assert.equal(gets.length, 2);
  // An HTTP date has whole seconds: at least 0.5 s of the 1.5 s remain.
  assert.ok(gets[1].at - gets[0].at >= 490, `retried after ${gets[1].at - gets[0].at} ms`);
  const r = await doc.patch([{ op: 'replace', path: '/a', value: 2 }]);
  assert.deepEqual(r.value, { a: 2 });
  assert.equal(calls.filter((c) => c.method === 'PATCH').length, 2);
  // Another 409 is an answer, not a reason to retry.
  const { f: f2, calls: calls2 } = recordingFetch((call) => (call.method === 'PATCH' ? problem(409, 'patch-conflict') : null));
  const doc2 = keep(await new Client({ baseURL: server.url, fetch: f2 }).open('r', id));
  await assert.rejects(doc2.patch([{ op: 'replace', path: '/a', value: 3 }]), (err) => err.status === 409);
  assert.equal(calls2.filter((c) => c.method === 'PATCH').length, 1);
  client.close();
});

test('a 429 on the change feed waits for Retry-After and connects again, instead of stopping', { timeout: 60_000 }, async () => {
  let limited = 0;
  const { f, calls } = recordingFetch((call) => (call.url.endsWith('/events') && limited++ === 0 ? problem(429, 'rate-limited', { 'Retry-After': '1' }) : null));
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 2 } });
  const writer = new Client({ baseURL: server.url });
  const id = newID();
  const w = keep(await writer.create('r', id, { n: 0 }));
  const doc = keep(await client.open('r', id, { follow: true }));
  const errors = [];
  doc.subscribe((ev) => ev.type === 'error' && errors.push(ev.error));
  await waitFor(doc, (d) => d.status === 'live', 'live after the 429');
  await w.merge({ n: 1 });
  await waitFor(doc, (d) => d.value.n === 1, 'the remote edit');
  const feeds = calls.filter((c) => c.url.endsWith('/events'));
  assert.equal(feeds.length, 2);
  assert.ok(feeds[1].at - feeds[0].at >= 990, `reconnected after ${feeds[1].at - feeds[0].at} ms`);
  assert.deepEqual(errors, []);
  client.close();
  writer.close();
});

test('under a real --rate limit, a burst of writes and a feed all get through', { timeout: 60_000 }, async () => {
  const limited = await startPatchd(['--rate', '2']);
  try {
    const client = new Client({ baseURL: limited.url, retry: { base: 1, max: 2 } });
    const id = newID();
    const a = await client.create('r', id, { log: [] });
    const b = await client.open('r', id, { follow: true });
    const statuses = [];
    const { f } = recordingFetch(async (call, _, init) => {
      const res = await fetch(call.url, init);
      statuses.push(res.status);
      return res;
    });
    const c = await new Client({ baseURL: limited.url, fetch: f, retry: { base: 1, max: 2 } }).open('r', id);
    const writes = [];
    for (let i = 0; i < 5; i++) writes.push(c.patch([{ op: 'add', path: '/log/-', value: i }]));
    await Promise.all(writes);
    assert.ok(statuses.includes(429), `statuses ${statuses}`);
    await waitFor(b, (d) => d.value.log.length === 5, 'all five writes on the feed', 20_000);
    assert.deepEqual(b.value.log, [0, 1, 2, 3, 4]);
    a.close();
    b.close();
    c.close();
    client.close();
  } finally {
    await limited.stop();
  }
});

test('every call takes an AbortSignal', { timeout: 60_000 }, async () => {
  const id = newID();
  await new Client({ baseURL: server.url }).create('r', id, { a: 1 });
  // get and open: aborted before and during.
  const client = new Client({ baseURL: server.url });
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(client.get('r', id, { signal: ac.signal }), { name: 'AbortError' });
  await assert.rejects(client.open('r', id, { signal: ac.signal }), { name: 'AbortError' });
  await assert.rejects(client.create('r', newID(), {}, { signal: ac.signal }), { name: 'AbortError' });

  // A write stuck retrying, and one queued behind it: both can be taken back.
  let down = true;
  const { f, calls } = recordingFetch((call) => (call.method === 'PATCH' && down ? new TypeError('fetch failed') : null));
  const c2 = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 5 } });
  const doc = keep(await c2.open('r', id));
  const first = new AbortController();
  const second = new AbortController();
  const p1 = doc.patch([{ op: 'replace', path: '/a', value: 2 }], { signal: first.signal });
  const p2 = doc.patch([{ op: 'add', path: '/b', value: true }], { signal: second.signal });
  assert.deepEqual(doc.value, { a: 2, b: true });
  await waitFor(doc, () => calls.filter((c) => c.method === 'PATCH').length >= 3, 'retries');
  second.abort();
  await assert.rejects(p2, { name: 'AbortError' });
  assert.deepEqual(doc.value, { a: 2 });
  first.abort(new Error('user gave up'));
  await assert.rejects(p1, /user gave up/);
  assert.deepEqual(doc.value, { a: 1 });
  assert.equal(doc.pendingCount, 0);
  const sent = calls.filter((c) => c.method === 'PATCH').length;
  down = false;
  // The doc goes on working, and nothing aborted is sent later.
  await doc.patch([{ op: 'replace', path: '/a', value: 5 }]);
  assert.equal(calls.filter((c) => c.method === 'PATCH').length, sent + 1);
  const res = await fetch(`${server.url}/docs/r/${id}`);
  assert.deepEqual(await res.json(), { a: 5 });
});

test('headers may be an async function, asked afresh for every request (token refresh)', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'patchd-tokens-'));
  writeFileSync(join(dir, 'tokens'), 'first-token-0123456789 write\nsecond-token-0123456789 write\n', { mode: 0o600 });
  const authd = await startPatchd(['--tokens', join(dir, 'tokens')]);
  try {
    let asked = 0;
    let token = 'first-token-0123456789';
    const client = new Client({
      baseURL: authd.url,
      retry: { base: 1, max: 2 },
      headers: async () => {
        asked++;
        await new Promise((r) => setTimeout(r, 1));
        return { Authorization: `Bearer ${token}` };
      },
    });
    const id = newID();
    const a = await client.create('r', id, { a: 1 });
    const b = await client.open('r', id, { follow: true });
    await waitFor(b, (d) => d.status === 'live', 'the feed live with the async header');
    token = 'second-token-0123456789';
    await a.patch([{ op: 'replace', path: '/a', value: 2 }]);
    await waitFor(b, (d) => d.value.a === 2, 'the edit on the feed');
    assert.ok(asked >= 4, `asked ${asked} times`);
    a.close();
    b.close();
    client.close();
    // Without the header: 401, so the header really was sent.
    const res = await fetch(`${authd.url}/docs/r/${id}`);
    assert.equal(res.status, 401);
  } finally {
    await authd.stop();
  }
});

test('close() rejects a write stuck retrying with NetworkError', { timeout: 60_000 }, async () => {
  const id = newID();
  await new Client({ baseURL: server.url }).create('r', id, { a: 1 });
  const { f } = recordingFetch((call) => (call.method === 'PATCH' ? new TypeError('fetch failed') : null));
  const doc = await new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 5 } }).open('r', id);
  const p = doc.patch([{ op: 'replace', path: '/a', value: 2 }]);
  doc.close();
  await assert.rejects(p, NetworkError);
});
