// Many documents and collections over one stream (POST /events), against
// a real patchd: one stream whatever the number of followed documents, a
// lossless switch when the set changes, listings, and live result sets.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../patchd.js';
import { watch } from '../watch.js';
import { startPatchd } from './support/patchd.js';

let server;
before(async () => {
  server = await startPatchd();
});
after(async () => {
  await server?.stop();
});

let n = 0;
const newID = () => `s-${process.pid}-${++n}`;

/** Resolves once pred() holds, checked after every event of target; fails after ms. */
function until(target, pred, what, ms = 10_000) {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const off = target.subscribe(() => {
      if (pred()) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

/** A fetch that records every request. */
function recordingFetch(answer = () => null) {
  const calls = [];
  const f = async (url, init = {}) => {
    const call = { url: String(url), method: init.method ?? 'GET', body: init.body };
    calls.push(call);
    return answer(call) ?? fetch(url, init);
  };
  return { f, calls };
}

async function openStreams(url = server.url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^patchd_streams (\d+)/m.exec(text)[1]);
}

test('twenty followed documents share one stream, and each gets its changes', async () => {
  const { f, calls } = recordingFetch();
  const client = new Client({ baseURL: server.url, fetch: f });
  const writer = new Client({ baseURL: server.url });
  const ids = Array.from({ length: 20 }, newID);
  const ws = await Promise.all(ids.map((id) => writer.create('m', id, { n: 0 })));
  const before = await openStreams();
  const docs = await Promise.all(ids.map((id) => client.open('m', id, { follow: true })));
  await Promise.all(docs.map((d) => until(d, () => d.status === 'live', 'live')));
  assert.equal((await openStreams()) - before, 1, 'open streams at the server');
  await Promise.all(ws.map((w, i) => w.merge({ n: i + 1 })));
  await Promise.all(docs.map((d, i) => until(d, () => d.value.n === i + 1, `doc ${i}`)));
  const streams = calls.filter((c) => c.url.endsWith('/events'));
  assert.ok(streams.every((c) => c.method === 'POST'), 'no per-document feeds');
  // The documents opened one after another; the set changes were batched.
  assert.ok(streams.length <= 4, `${streams.length} streams opened for 20 documents`);
  for (const d of docs) d.close();
  client.close();
  writer.close();
  // Closing the last document closes the stream.
  for (let i = 0; i < 200 && (await openStreams()) !== before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await openStreams(), before);
});

test('changing the set while a document is written to loses and doubles nothing', async () => {
  const client = new Client({ baseURL: server.url });
  const writer = new Client({ baseURL: server.url });
  const id = newID();
  const w = await writer.create('m', id, { log: [] });
  const doc = await client.open('m', id, { follow: true });
  await until(doc, () => doc.status === 'live', 'live');
  const sources = [];
  doc.subscribe((ev) => ev.type === 'change' && sources.push(ev.source));
  const others = [];
  for (let i = 1; i <= 30; i++) {
    // Every write is followed by a set change: a new stream, resuming.
    await w.patch([{ op: 'add', path: '/log/-', value: i }]);
    const o = await client.create('m', newID(), { i }, { follow: true });
    others.push(o);
    if (i % 3 === 0) others.shift().close();
  }
  await until(doc, () => doc.seq === 31, 'seq 31');
  assert.deepEqual(doc.value.log, Array.from({ length: 30 }, (_, i) => i + 1));
  assert.deepEqual(sources.filter((s) => s !== 'remote'), [], 'every version applied once, as a remote version');
  assert.equal(sources.length, 30);
  for (const o of others) o.close();
  doc.close();
  client.close();
  writer.close();
});

test('list pages through a collection with where, order, limit and bodies', async () => {
  const c = `l${process.pid}`;
  const writer = new Client({ baseURL: server.url });
  for (let i = 0; i < 7; i++) await writer.create(c, `d${i}`, { status: i % 2 ? 'open' : 'paid', total: 10 - i });
  const first = await writer.list(c, { where: { '/status': 'open' }, order: '/total', limit: 2, include: 'body' });
  assert.deepEqual(
    first.items.map((x) => [x.id, x.value.total]),
    [
      ['d5', 5],
      ['d3', 7],
    ],
  );
  assert.equal(first.items[0].seq, 1);
  const second = await writer.list(c, { where: { '/status': 'open' }, order: '/total', limit: 2, include: 'body', after: first.next });
  assert.deepEqual(
    second.items.map((x) => x.id),
    ['d1'],
  );
  assert.equal(second.next, null);
  const plain = await writer.list(c);
  assert.equal(plain.items.length, 7);
  assert.equal(plain.items[0].value, undefined);
  await assert.rejects(writer.list(c, { where: { '/status': { bogus: 1 } } }), (e) => e.status === 400);
  writer.close();
});

test('a watch lists, then follows documents entering, changing, leaving, in order', async () => {
  const c = `w${process.pid}`;
  const writer = new Client({ baseURL: server.url });
  const a = await writer.create(c, 'a', { status: 'open', total: 5 });
  const b = await writer.create(c, 'b', { status: 'paid', total: 1 });
  await writer.create(c, 'c', { status: 'open', total: 9 });
  const client = new Client({ baseURL: server.url });
  const w = watch(client, c, { where: { '/status': 'open' }, order: '-/total' });
  const ids = () => w.items.map((x) => x.id).join(',');
  await until(w, () => w.status === 'live', 'live');
  assert.equal(ids(), 'c,a');
  await a.merge({ total: 20 }); // moves up
  await until(w, () => ids() === 'a,c', 'a first');
  await b.merge({ status: 'open' }); // enters by a patch: read
  await until(w, () => ids() === 'a,c,b', 'b enters');
  assert.equal(w.items[2].value.total, 1);
  await b.merge({ total: 30 });
  await until(w, () => ids() === 'b,a,c', 'b changes');
  await writer.create(c, 'd', { status: 'open', total: 10 }); // enters by a create
  await until(w, () => ids() === 'b,a,d,c', 'd enters');
  await a.merge({ status: 'paid' }); // leaves
  await until(w, () => ids() === 'b,d,c', 'a leaves');
  const gone = await client.open(c, 'c');
  await client.list(c); // (the client lists while watching)
  const res = await fetch(`${server.url}/docs/${c}/c`, { method: 'DELETE', headers: { 'If-Match': gone.etag } });
  assert.equal(res.status, 204);
  await until(w, () => ids() === 'b,d', 'c deleted');
  assert.deepEqual(w.items[0].value, { status: 'open', total: 30 });
  gone.close();
  w.close();
  assert.equal(w.status, 'closed');
  client.close();
  writer.close();
});

test('a watch and documents share the one stream', async () => {
  const c = `x${process.pid}`;
  const writer = new Client({ baseURL: server.url });
  const before = await openStreams();
  const client = new Client({ baseURL: server.url });
  const w = watch(client, c);
  const docs = [];
  for (let i = 0; i < 5; i++) docs.push(await client.create(c, `d${i}`, { i }, { follow: true }));
  await until(w, () => w.items.length === 5 && w.status === 'live', 'five items');
  await Promise.all(docs.map((d) => until(d, () => d.status === 'live', 'live')));
  assert.equal((await openStreams()) - before, 1);
  await (await writer.open(c, 'd3')).merge({ i: 33 });
  await until(w, () => w.items[3].value.i === 33, 'the change in the watch');
  await until(docs[3], () => docs[3].value.i === 33, 'the change in the document');
  for (const d of docs) d.close();
  w.close();
  client.close();
  writer.close();
});

test('a watch misses and doubles no change while the set changes and the stream is cut', { timeout: 60_000 }, async () => {
  const c = `y${process.pid}`;
  // A fetch whose streams the test can cut, like a network failure.
  const bodies = new Set();
  const f = async (url, init) => {
    const res = await fetch(url, init);
    if (!String(url).endsWith('/events')) return res;
    const reader = res.body.getReader();
    let ctl;
    const body = new ReadableStream({
      start: (c) => void (ctl = c),
      async pull(c) {
        const r = await reader.read().catch(() => ({ done: true }));
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel: () => reader.cancel(),
    });
    const cut = () => {
      reader.cancel().catch(() => {});
      ctl.error(new TypeError('network error'));
    };
    bodies.add(cut);
    return new Response(body, { status: res.status, headers: res.headers });
  };
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 20 } });
  const writer = new Client({ baseURL: server.url });
  const logs = [await writer.create(c, 'a', { log: [] }), await writer.create(c, 'b', { log: [] })];
  const w = watch(client, c);
  await until(w, () => w.status === 'live' && w.items.length === 2, 'live');
  const others = [];
  for (let i = 1; i <= 30; i++) {
    await logs[i % 2].patch([{ op: 'add', path: '/log/-', value: i }]);
    if (i % 3 === 0) others.push(await client.open('m', newID(), { follow: true }).catch(() => null));
    if (i % 10 === 5) for (const cut of bodies) cut(); // every stream so far, cut
  }
  const want = (k) => Array.from({ length: 15 }, (_, j) => 2 * j + 1 + k);
  await until(w, () => w.items[0]?.value.log.length === 15 && w.items[1]?.value.log.length === 15, 'every change', 20_000);
  assert.deepEqual(w.items[0].value.log, want(1)); // a has the even writes
  assert.deepEqual(w.items[1].value.log, want(0));
  for (const o of others) o?.close();
  w.close();
  client.close();
  writer.close();
});

test('a watch with a bad filter fails alone: the documents on the stream go on', async () => {
  const client = new Client({ baseURL: server.url });
  const writer = new Client({ baseURL: server.url });
  const id = newID();
  const w0 = await writer.create('m', id, { n: 0 });
  const doc = await client.open('m', id, { follow: true });
  await until(doc, () => doc.status === 'live', 'live');
  const bad = watch(client, 'm', { where: { '/n': { near: 1 } } });
  await until(bad, () => bad.status === 'error', 'the error');
  assert.equal(bad.error.status, 400);
  await w0.merge({ n: 1 });
  await until(doc, () => doc.value.n === 1, 'the change');
  assert.equal(doc.status, 'live');
  doc.close();
  client.close();
  writer.close();
});

test('a server without POST /events: each document follows its own feed', async () => {
  const { f, calls } = recordingFetch((call) => (call.method === 'POST' && call.url.endsWith('/events') ? new Response('', { status: 404 }) : null));
  const client = new Client({ baseURL: server.url, fetch: f });
  const writer = new Client({ baseURL: server.url });
  const id = newID();
  const w = await writer.create('m', id, { n: 0 });
  const doc = await client.open('m', id, { follow: true });
  await until(doc, () => doc.status === 'live', 'live');
  await w.merge({ n: 1 });
  await until(doc, () => doc.value.n === 1, 'the change');
  assert.ok(calls.some((c) => c.method === 'GET' && c.url.endsWith(`/m/${id}/events`)));
  doc.close();
  client.close();
  writer.close();
});
