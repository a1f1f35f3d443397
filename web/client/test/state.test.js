// What a Doc says about itself (etag, value), what a 412 carries, and
// unsent edits kept in a store across a reload, replayed exactly once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, NetworkError, PatchdError } from '../patchd.js';
import { startPatchd } from './support/patchd.js';
import { sharedStorage } from './support/store.js';

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
const newID = () => `state-${process.pid}-${++n}`;
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

function until(pred, what, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const check = () => {
      if (pred()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 5);
    };
    check();
  });
}

async function history(c, id) {
  const res = await fetch(`${server.url}/docs/${c}/${id}/history`);
  return (await res.json()).versions;
}

/** A fetch whose change feed delivers nothing until released. */
function heldFeed() {
  let release;
  const held = new Promise((r) => (release = r));
  const f = async (url, init) => {
    const res = await fetch(url, init);
    if (!String(url).endsWith('/events')) return res;
    // Everything up to the end of the snapshot event goes through, however
    // the server splits it into chunks (its head may come alone); what
    // follows waits for release.
    const reader = res.body.getReader();
    const text = new TextDecoder();
    let seen = '';
    const started = () => {
      const at = seen.indexOf('event: snapshot');
      return at >= 0 && seen.indexOf('\n\n', at) >= 0;
    };
    const body = new ReadableStream({
      async pull(ctl) {
        if (started()) await held;
        const r = await reader.read();
        if (r.done) return ctl.close();
        seen += text.decode(r.value, { stream: true });
        ctl.enqueue(r.value);
      },
      cancel: () => reader.cancel(),
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  return { f, release };
}

test('doc.etag is the written version right after await patch(), also while following', { timeout: 30_000 }, async () => {
  const { f, release } = heldFeed();
  const client = new Client({ baseURL: server.url, fetch: f });
  const id = newID();
  await new Client({ baseURL: server.url }).create('s', id, { a: 1 });
  const doc = keep(await client.open('s', id, { follow: true }));
  await waitFor(doc, (d) => d.status === 'live' && d.seq === 1, 'live');
  const r = await doc.patch([{ op: 'replace', path: '/a', value: 2 }]);
  // The feed has not brought the version yet: the answer says what it is.
  assert.equal(doc.seq, 1);
  assert.equal(doc.etag, r.etag);
  assert.deepEqual(doc.value, { a: 2 });
  assert.deepEqual(doc.version(), { etag: r.etag });
  release();
  await waitFor(doc, (d) => d.seq === 2, 'the feed to bring it');
  assert.equal(doc.etag, r.etag);
  assert.deepEqual(doc.value, { a: 2 });
});

test('doc.value is frozen: changing it throws instead of silently diverging', { timeout: 30_000 }, async () => {
  const client = new Client({ baseURL: server.url });
  const doc = keep(await client.create('s', newID(), { a: 1, items: [{ id: 'x', qty: 1 }] }));
  const values = [];
  doc.subscribe((ev) => ev.type === 'change' && values.push(ev.value));
  assert.throws(() => {
    doc.value.a = 2;
  }, TypeError);
  assert.throws(() => {
    doc.value.items[0].qty = 5;
  }, TypeError);
  assert.throws(() => doc.value.items.push({}), TypeError);
  assert.throws(() => {
    doc.value = {};
  }, TypeError);
  const p = doc.patch([{ op: 'replace', path: '/a', value: 3 }]);
  assert.ok(Object.isFrozen(doc.value) && Object.isFrozen(doc.value.items[0]), 'the view with a pending edit is frozen too');
  const r = await p;
  assert.ok(Object.isFrozen(r.value));
  assert.ok(values.every((v) => Object.isFrozen(v)));
  assert.deepEqual(doc.value, { a: 3, items: [{ id: 'x', qty: 1 }] });
  // get() hands out a copy of its own, which the caller may change.
  const g = await client.get('s', doc.id);
  g.value.a = 9;
  assert.equal(doc.value.a, 3);
});

test('create() of a document that exists: 412 with current', { timeout: 30_000 }, async () => {
  const client = new Client({ baseURL: server.url });
  const id = newID();
  const doc = keep(await client.create('s', id, { first: true }));
  await assert.rejects(client.create('s', id, { second: true }), (err) => {
    assert.ok(err instanceof PatchdError);
    assert.equal(err.status, 412);
    assert.deepEqual(err.current, { value: { first: true }, etag: doc.etag });
    return true;
  });
});

test('a write whose answer was lost is retried with its Idempotency-Key and committed once', { timeout: 30_000 }, async () => {
  let lose = true;
  const f = async (url, init = {}) => {
    const res = await fetch(url, init);
    if (init.method === 'PATCH' && lose) {
      lose = false;
      throw new TypeError('connection reset'); // committed, but the answer never came
    }
    return res;
  };
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 2 } });
  const id = newID();
  const doc = keep(await client.create('s', id, { items: [] }));
  const r = await doc.patch([{ op: 'add', path: '/items/-', value: 'once' }]);
  assert.deepEqual(r.value, { items: ['once'] });
  assert.equal((await history('s', id)).length, 2, 'the create and one add');
});

test('unsent edits survive a reload: restored, shown, replayed exactly once', { timeout: 60_000 }, async () => {
  const storage = sharedStorage();
  const id = newID();
  const writer = new Client({ baseURL: server.url });
  await writer.create('s', id, { customer: '', items: [] });

  // Page 1: its first write commits but the answer is lost; then the
  // network to the server is down for writes.
  const page1 = storage.page();
  let patches = 0;
  const f1 = async (url, init = {}) => {
    if (init.method !== 'PATCH') return fetch(url, init);
    if (++patches === 1) {
      await fetch(url, init);
      throw new TypeError('connection reset');
    }
    throw new TypeError('network down');
  };
  const c1 = new Client({ baseURL: server.url, fetch: f1, store: page1, retry: { base: 5, max: 20 } });
  const d1 = await c1.open('s', id, { follow: true });
  await waitFor(d1, (d) => d.status === 'live', 'page 1 live');
  const retries = [];
  d1.subscribe((ev) => ev.type === 'retry' && retries.push(ev));
  const add = d1.patch([{ op: 'add', path: '/items/-', value: { id: 'i1', desc: 'Stapler', qty: 2 } }]);
  const edit = d1.patch([
    { op: 'test', path: '/items/0/id', value: 'i1' },
    { op: 'replace', path: '/items/0/desc', value: 'Red stapler' },
  ]);
  const cust = d1.merge({ customer: 'Acme' }, { base: d1.version() });
  add.catch(() => {});
  edit.catch(() => {});
  cust.catch(() => {});
  // The feed brings the version the lost answer was about: the edit has
  // landed, and the store knows it.
  await waitFor(d1, (d) => d.seq === 2, 'the committed add on the feed');
  await until(() => retries.length >= 2, 'retries');
  assert.deepEqual(d1.value, { customer: 'Acme', items: [{ id: 'i1', desc: 'Red stapler', qty: 2 }] });
  assert.equal(storage.records.size, 3);
  assert.ok([...storage.records.values()].some((r) => r.rec.landed));

  // The page goes away without a word (a reload): nothing more is sent.
  page1.kill();
  d1.close();
  await assert.rejects(add, NetworkError);
  assert.equal(storage.records.size, 3, 'closing a page keeps its unsent edits');

  // Page 2 opens the document with writes still blocked: the edits show.
  let open2 = false;
  let releaseWrites;
  const writes = new Promise((r) => (releaseWrites = r));
  const sent = [];
  const f2 = async (url, init = {}) => {
    if (init.method === 'PATCH') {
      await writes;
      sent.push(init.headers);
    }
    return fetch(url, init);
  };
  const c2 = new Client({ baseURL: server.url, fetch: f2, store: storage.page() });
  const d2 = keep(await c2.open('s', id, { follow: true }));
  open2 = true;
  assert.equal(d2.restored.length, 3);
  assert.equal(d2.pendingCount, 3);
  // The add that landed already is in the server state: shown once.
  assert.deepEqual(d2.value, { customer: 'Acme', items: [{ id: 'i1', desc: 'Red stapler', qty: 2 }] });

  releaseWrites();
  const results = await Promise.all(d2.restored.map((r) => r.result));
  assert.ok(open2);
  await waitFor(d2, (d) => d.pendingCount === 0 && d.seq === 4, 'replayed and on the feed');
  const saved = await (await fetch(`${server.url}/docs/s/${id}`)).json();
  assert.deepEqual(saved, { customer: 'Acme', items: [{ id: 'i1', desc: 'Red stapler', qty: 2 }] });
  assert.deepEqual(d2.value, saved);
  const h = await history('s', id);
  assert.equal(h.length, 4, `versions: ${JSON.stringify(h.map((v) => v.ops))}`);
  assert.equal(h.filter((v) => v.ops.some((o) => o.path === '/items/-')).length, 1, 'the item was added once');
  // The first replay got the stored answer; each kept its key.
  assert.equal(results[0].etag, h[1].etag);
  assert.equal(new Set(sent.map((s) => s['Idempotency-Key'])).size, 3);
  assert.equal(storage.records.size, 0, 'nothing left stored');
});

test('a closed Doc leaves its unsent edits for the next open() in the same page', { timeout: 30_000 }, async () => {
  const storage = sharedStorage();
  const page = storage.page();
  const id = newID();
  await new Client({ baseURL: server.url }).create('s', id, { n: 0 });
  let down = true;
  const f = async (url, init = {}) => {
    if (init.method === 'PATCH' && down) throw new TypeError('network down');
    return fetch(url, init);
  };
  const client = new Client({ baseURL: server.url, fetch: f, store: page, retry: { base: 5, max: 20 } });
  const d1 = await client.open('s', id);
  d1.merge({ n: 1 }).catch(() => {});
  d1.close();
  down = false;
  const d2 = keep(await client.open('s', id));
  assert.deepEqual(d2.value, { n: 1 });
  const [r] = await Promise.all(d2.restored.map((x) => x.result));
  assert.deepEqual(r.value, { n: 1 });
  assert.equal(storage.records.size, 0);
});
