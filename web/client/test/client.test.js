// The client against a real patchd process.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, Client as BaseClient, ConflictError, diff, NetworkError, PatchdError } from '../patchd.js';
import { startPatchd } from './support/patchd.js';

// Every document a test opens is closed at the end, failed tests
// included: a followed document left open would keep reconnecting.
const opened = new Set();
class Client extends BaseClient {
  async open(...args) {
    const d = await super.open(...args);
    opened.add(d);
    return d;
  }
  async create(...args) {
    const d = await super.create(...args);
    opened.add(d);
    return d;
  }
}

let server;
before(async () => {
  server = await startPatchd();
});
after(async () => {
  for (const d of opened) d.close();
  await server?.stop();
});

let n = 0;
const newID = () => `doc-${process.pid}-${++n}`;

/** Resolves once pred(doc) holds, checked after every change; fails after ms. */
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

async function serverGet(c, id) {
  const res = await fetch(`${server.url}/docs/${c}/${id}`);
  return { status: res.status, value: res.status === 200 ? await res.json() : null, etag: res.headers.get('ETag') };
}

/** A fetch that records every request and can fail chosen ones. */
function recordingFetch(fail = () => null) {
  const calls = [];
  const f = async (url, init = {}) => {
    const call = { url: String(url), method: init.method ?? 'GET', headers: { ...init.headers }, body: init.body };
    calls.push(call);
    const injected = fail(call, calls);
    if (injected instanceof Error) throw injected;
    if (injected) return injected;
    return fetch(url, init);
  };
  return { f, calls };
}

/** A fetch over f whose first PATCH waits until release() (a slow network, or offline). */
function holdFirstWrite(f) {
  let release;
  const held = new Promise((r) => (release = r));
  let first = true;
  const slow = async (url, init = {}) => {
    if ((init.method ?? 'GET') === 'PATCH' && first) {
      first = false;
      await held;
    }
    return f(url, init);
  };
  return { slow, release };
}

test('open, patch, merge: If-Match, Idempotency-Key, and the answer applied', async () => {
  const { f, calls } = recordingFetch();
  const client = new Client({ baseURL: server.url, fetch: f });
  const id = newID();
  const doc = await client.create('t', id, { name: 'Ann', n: 1 });
  const e0 = doc.etag;
  assert.match(e0, /^"[0-9a-f]{32}"$/);

  const p = doc.patch([{ op: 'replace', path: '/name', value: 'Bob' }]);
  assert.equal(doc.value.name, 'Bob', 'the edit shows at once');
  assert.equal(doc.pendingCount, 1);
  const res = await p;
  assert.deepEqual(res.value, { name: 'Bob', n: 1 });
  assert.equal(res.rebasedFrom, null);
  assert.equal(doc.etag, res.etag);
  assert.equal(doc.pendingCount, 0);

  const res2 = await doc.merge({ n: 2, extra: true });
  assert.deepEqual(doc.value, { extra: true, name: 'Bob', n: 2 });
  const s = await serverGet('t', id);
  assert.deepEqual(s.value, doc.value);
  assert.equal(s.etag, res2.etag);

  const writes = calls.filter((c) => c.method === 'PATCH');
  assert.equal(writes.length, 2);
  assert.equal(writes[0].headers['If-Match'], e0);
  assert.equal(writes[1].headers['If-Match'], res.etag);
  assert.equal(writes[0].headers['Content-Type'], 'application/json-patch+json');
  assert.equal(writes[1].headers['Content-Type'], 'application/merge-patch+json');
  assert.match(writes[0].headers['Idempotency-Key'], /^[0-9a-f]{32}$/);
  assert.notEqual(writes[0].headers['Idempotency-Key'], writes[1].headers['Idempotency-Key']);
  client.close();
});

test('writes queued behind one another name the version before them', async () => {
  const client = new Client({ baseURL: server.url });
  const doc = await client.create('t', newID(), { s: '' });
  const ps = ['a', 'ab', 'abc'].map((v) => doc.patch([{ op: 'replace', path: '/s', value: v }]));
  const results = await Promise.all(ps);
  assert.deepEqual(doc.value, { s: 'abc' });
  assert.ok(results.every((r) => r.rebasedFrom === null), 'no write was made against a stale version');
  client.close();
});

test('a stale edit of another field is rebased; of the same field is a ConflictError with paths and the current value', async () => {
  const client = new Client({ baseURL: server.url });
  const id = newID();
  const alice = await client.create('t', id, { name: 'Ann', email: 'a@x', phone: '1' });
  const bob = await client.open('t', id);
  const e0 = bob.etag;

  await alice.patch([{ op: 'replace', path: '/phone', value: '2' }]);

  const r = await bob.patch([{ op: 'replace', path: '/email', value: 'b@x' }]);
  assert.equal(r.rebasedFrom, e0);
  assert.deepEqual(bob.value, { name: 'Ann', email: 'b@x', phone: '2' });

  const stale = bob.patch([{ op: 'replace', path: '/phone', value: '3' }], { base: e0 });
  assert.equal(bob.value.phone, '3', 'shown at once');
  await assert.rejects(stale, (err) => {
    assert.ok(err instanceof ConflictError);
    assert.ok(err instanceof PatchdError);
    assert.equal(err.status, 412);
    assert.equal(err.type, 'rebase-conflict');
    assert.deepEqual(err.paths, ['/phone']);
    assert.equal(err.conflicts[0].concurrentPath, '/phone');
    assert.deepEqual(err.current.value, { name: 'Ann', email: 'b@x', phone: '2' });
    assert.equal(err.current.etag, r.etag);
    assert.deepEqual(err.mine, [{ op: 'replace', path: '/phone', value: '3' }]);
    return true;
  });
  assert.equal(bob.value.phone, '2', 'the refused edit is taken back');
  client.close();
});

for (const follow of [false, true]) test(`an edit queued behind one that the server rebased over a change of the same field is a conflict, not an overwrite (follow: ${follow})`, async () => {
  // Alice's first edit is held on the way (a slow network, or offline):
  // Bob changes the title meanwhile, and Alice, who has not seen it,
  // edits the title too. Her first edit is rebased over Bob's; her title
  // is made against what she saw, so it must not replace Bob's unseen.
  const { f, calls } = recordingFetch();
  const { slow, release } = holdFirstWrite(f);
  const id = newID();
  const bobClient = new Client({ baseURL: server.url });
  const creator = await bobClient.create('t', id, { customer: '', title: '', notes: '' });
  const aliceClient = new Client({ baseURL: server.url, fetch: slow });
  const alice = await aliceClient.open('t', id, { follow });
  const e0 = alice.etag;

  const customer = alice.patch([{ op: 'replace', path: '/customer', value: 'Acme' }], { base: alice.version() });
  const titleBase = alice.version();
  const notesBase = alice.version();
  const again = alice.version();
  await creator.patch([{ op: 'replace', path: '/title', value: 'Title by B' }]);
  const title = alice.patch([{ op: 'replace', path: '/title', value: 'Title by A' }], { base: titleBase });
  const notes = alice.patch([{ op: 'replace', path: '/notes', value: 'by A' }], { base: notesBase });
  const customer2 = alice.patch([{ op: 'replace', path: '/customer', value: 'Acme Ltd' }], { base: again });
  release();

  assert.equal((await customer).rebasedFrom, e0, 'the first edit was rebased over Bob\'s');
  await assert.rejects(title, (err) => err instanceof ConflictError && err.paths.includes('/title'));
  await notes; // another field: kept
  await customer2; // her own field again: no conflict with herself
  const s = await serverGet('t', id);
  assert.deepEqual(s.value, { customer: 'Acme Ltd', title: 'Title by B', notes: 'by A' });
  assert.ok(calls.filter((c) => c.method === 'PATCH').length >= 4);
  aliceClient.close();
  bobClient.close();
});

test('a second edit of the same line item queued behind the first, rebased over a change of another item, is no conflict with oneself', async () => {
  const { slow, release } = holdFirstWrite(fetch);
  const id = newID();
  const bobClient = new Client({ baseURL: server.url });
  const bob = await bobClient.create('t', id, { items: [{ id: 'a', qty: 1 }, { id: 'b', qty: 1 }] });
  const aliceClient = new Client({ baseURL: server.url, fetch: slow });
  const alice = await aliceClient.open('t', id);
  const qty = (v) => [
    { op: 'test', path: '/items/0/id', value: 'a' },
    { op: 'replace', path: '/items/0/qty', value: v },
  ];
  const one = alice.patch(qty(2), { base: alice.version() });
  const again = alice.version(); // she types on in the same field
  await bob.patch([{ op: 'replace', path: '/items/1/qty', value: 5 }]);
  const two = alice.patch(qty(23), { base: again });
  release();
  assert.ok((await one).rebasedFrom, "the first edit was rebased over Bob's");
  await two;
  const s = await serverGet('t', id);
  assert.deepEqual(s.value.items, [{ id: 'a', qty: 23 }, { id: 'b', qty: 5 }]);
  aliceClient.close();
  bobClient.close();
});

test('other errors are PatchdError with the problem type, and are not retried', async () => {
  const { f, calls } = recordingFetch();
  const client = new Client({ baseURL: server.url, fetch: f });
  const doc = await client.create('t', newID(), { a: 1 });
  await assert.rejects(doc.patch([{ op: 'remove', path: '/nope' }]), (err) => {
    assert.ok(err instanceof PatchdError && !(err instanceof ConflictError));
    assert.equal(err.status, 422);
    assert.equal(err.type, 'patch-failed');
    return true;
  });
  assert.equal(calls.filter((c) => c.method === 'PATCH').length, 1);
  assert.deepEqual(doc.value, { a: 1 });
  await assert.rejects(client.open('t', 'missing-' + newID()), (err) => err instanceof PatchdError && err.type === 'not-found');
  client.close();
});

test('network failures and 503 are retried with the same Idempotency-Key; a 4xx never is', async () => {
  let failures = 0;
  const { f, calls } = recordingFetch((call) => {
    if (call.method !== 'PATCH') return null;
    failures++;
    if (failures === 1) return new TypeError('fetch failed');
    if (failures === 2) return new Response('{"type":"/problems/x","status":503}', { status: 503 });
    return null;
  });
  const client = new Client({ baseURL: server.url, fetch: f, retry: { base: 1, max: 5 } });
  const doc = await client.create('t', newID(), { a: 1 });
  const retries = [];
  doc.subscribe((ev) => ev.type === 'retry' && retries.push(ev));
  const r = await doc.patch([{ op: 'replace', path: '/a', value: 2 }]);
  assert.deepEqual(r.value, { a: 2 });
  const writes = calls.filter((c) => c.method === 'PATCH');
  assert.equal(writes.length, 3);
  assert.equal(new Set(writes.map((w) => w.headers['Idempotency-Key'])).size, 1);
  assert.equal(new Set(writes.map((w) => w.headers['If-Match'])).size, 1);
  assert.equal(retries.length, 2);

  // A 4xx answer is final.
  const { f: f2, calls: calls2 } = recordingFetch((call) => (call.method === 'PATCH' ? new Response('{"type":"/problems/too-large","status":413}', { status: 413 }) : null));
  const client2 = new Client({ baseURL: server.url, fetch: f2, retry: { base: 1, max: 5 } });
  const doc2 = await client2.open('t', doc.id);
  await assert.rejects(doc2.patch([{ op: 'replace', path: '/a', value: 3 }]), (err) => err.status === 413);
  assert.equal(calls2.filter((c) => c.method === 'PATCH').length, 1);

  // Giving up after retry.attempts failures.
  const client3 = new Client({ baseURL: server.url, fetch: async () => { throw new TypeError('down'); }, retry: { base: 1, max: 2, attempts: 3 } });
  await assert.rejects(client3.get('t', doc.id), NetworkError);
  client.close();
  client2.close();
  client3.close();
});

test('backoffDelay: full jitter, capped', () => {
  assert.equal(backoffDelay(0, { base: 100, max: 1000 }, () => 1), 100);
  assert.equal(backoffDelay(3, { base: 100, max: 1000 }, () => 1), 800);
  assert.equal(backoffDelay(10, { base: 100, max: 1000 }, () => 1), 1000);
  assert.equal(backoffDelay(10, { base: 100, max: 1000 }, () => 0), 0);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(i % 8);
    assert.ok(d >= 0 && d <= 10_000);
  }
});

test('following: remote edits, own edits, deletes and re-creation reach the other client', async () => {
  const client = new Client({ baseURL: server.url });
  const id = newID();
  const a = await client.create('t', id, { title: '', items: [] });
  const b = await client.open('t', id, { follow: true });
  const remote = [];
  b.subscribe((ev) => ev.type === 'change' && ev.source === 'remote' && remote.push(ev));
  await waitFor(b, (d) => d.status === 'live' && d.seq === 1, 'b live at seq 1');

  await a.patch([{ op: 'replace', path: '/title', value: 'Hello' }]);
  await a.patch([{ op: 'add', path: '/items/-', value: { id: 'i1', desc: 'Pens' } }]);
  await waitFor(b, (d) => d.seq === 3, 'seq 3');
  assert.deepEqual(b.value, { title: 'Hello', items: [{ id: 'i1', desc: 'Pens' }] });
  assert.equal(b.etag, a.etag);
  assert.equal(remote.length, 2);
  assert.equal(remote[1].version.kind, 'json-patch');
  assert.deepEqual(remote[1].version.ops, [{ op: 'add', path: '/items/-', value: { id: 'i1', desc: 'Pens' } }]);

  // b's own edit, while following: never shown twice, and the feed's
  // version of it is "own".
  const own = [];
  b.subscribe((ev) => ev.type === 'change' && ev.source === 'own' && own.push(ev));
  const seen = [];
  const off = b.subscribe((ev) => ev.type === 'change' && seen.push(ev.value.items.length));
  await b.patch([{ op: 'add', path: '/items/-', value: { id: 'i2', desc: 'Ink' } }]);
  await waitFor(b, (d) => d.seq === 4 && d.pendingCount === 0, 'seq 4');
  off();
  assert.ok(seen.every((len) => len === 2), `item counts seen: ${seen}`);
  assert.equal(own.length, 1);

  // A delete reaches b as a null value, a re-creation as the new one.
  const del = await fetch(`${server.url}/docs/t/${id}`, { method: 'DELETE', headers: { 'If-Match': b.etag } });
  assert.equal(del.status, 204);
  await waitFor(b, (d) => d.seq === 5, 'the delete');
  assert.equal(b.value, null);
  assert.equal(b.etag, null);
  await client.create('t', id, { again: true });
  await waitFor(b, (d) => d.seq === 6, 'the re-creation');
  assert.deepEqual(b.value, { again: true });
  b.close();
  assert.equal(b.status, 'closed');
  client.close();
});

test('a stream cut off mid-way resumes after the seq it had and misses nothing', async () => {
  let cut = null;
  let release = null;
  let hold = null;
  const { f, calls } = recordingFetch();
  const cutting = async (url, init) => {
    if (String(url).endsWith('/events')) {
      if (hold) await hold;
      const res = await f(url, init);
      // Wrap the body so the test can break the connection.
      const reader = res.body.getReader();
      let cancelled = false;
      const body = new ReadableStream({
        async pull(c) {
          const r = await Promise.race([reader.read(), new Promise((resolve) => (cut = () => resolve({ cut: true })))]);
          if (r.cut || cancelled) {
            reader.cancel();
            c.error(new TypeError('network error'));
            return;
          }
          if (r.done) c.close();
          else c.enqueue(r.value);
        },
        cancel() {
          cancelled = true;
          reader.cancel();
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    }
    return f(url, init);
  };
  const client = new Client({ baseURL: server.url, fetch: cutting, retry: { base: 1, max: 20 } });
  const writer = new Client({ baseURL: server.url });
  const id = newID();
  const w = await writer.create('t', id, { n: 0, log: [] });
  const doc = await client.open('t', id, { follow: true });
  await waitFor(doc, (d) => d.status === 'live', 'live');

  for (let i = 1; i <= 3; i++) await w.patch([{ op: 'replace', path: '/n', value: i }, { op: 'add', path: '/log/-', value: i }]);
  await waitFor(doc, (d) => d.seq === 4, 'seq 4');

  // Cut the stream, and hold the reconnection until more writes happened.
  hold = new Promise((resolve) => (release = resolve));
  cut();
  await waitFor(doc, (d) => d.status !== 'live', 'the feed to notice the cut');
  for (let i = 4; i <= 8; i++) await w.patch([{ op: 'replace', path: '/n', value: i }, { op: 'add', path: '/log/-', value: i }]);
  hold = null;
  release();
  await waitFor(doc, (d) => d.seq === 9, 'seq 9');
  assert.deepEqual(doc.value, { n: 8, log: [1, 2, 3, 4, 5, 6, 7, 8] });
  assert.equal(doc.etag, w.etag);
  const feeds = calls.filter((c) => c.url.endsWith('/events')).map((c) => JSON.parse(c.body));
  assert.deepEqual(feeds[0].docs, [{ c: 't', id }]);
  assert.deepEqual(feeds[feeds.length - 1].docs, [{ c: 't', id, after: 4 }]);
  doc.close();
  client.close();
  writer.close();
});

test('a feed whose resume point was pruned gets a reset and the current value', async () => {
  const pruning = await startPatchd(['--history-versions', '2', '--history-age', '0']);
  try {
    let hold = null;
    let release;
    let conn = null;
    const f = async (url, init) => {
      if (String(url).endsWith('/events')) {
        if (hold) await hold;
        conn = init.signal;
      }
      return fetch(url, init);
    };
    const client = new Client({ baseURL: pruning.url, fetch: f, retry: { base: 1, max: 20 } });
    const writer = new Client({ baseURL: pruning.url });
    const id = newID();
    const w = await writer.create('t', id, { n: 0 });
    const doc = await client.open('t', id, { follow: true });
    const sources = [];
    doc.subscribe((ev) => ev.type === 'change' && sources.push(ev.source));
    await waitFor(doc, (d) => d.status === 'live' && d.seq === 1, 'live');
    hold = new Promise((resolve) => (release = resolve));
    doc.unfollow(); // drops the stream; seq 1 is remembered
    for (let i = 1; i <= 5; i++) await w.merge({ n: i });
    doc.follow();
    release();
    await waitFor(doc, (d) => d.seq === 6, 'seq 6');
    assert.deepEqual(doc.value, { n: 5 });
    assert.ok(sources.includes('reset'), `sources ${sources}`);
    assert.ok(conn);
    doc.close();
    client.close();
    writer.close();
  } finally {
    await pruning.stop();
  }
});

test('a feed for a document that does not exist reports the error and stops', async () => {
  const client = new Client({ baseURL: server.url });
  const id = newID();
  const doc = await client.create('t', id, {});
  await fetch(`${server.url}/docs/t/${id}`, { method: 'DELETE', headers: { 'If-Match': doc.etag } });
  const ghost = new Client({ baseURL: server.url });
  const d2 = (await ghost.open('t', 'never-' + id).catch((e) => e));
  assert.ok(d2 instanceof PatchdError && d2.status === 404);
  // Following a deleted document works: its snapshot is null.
  doc.follow();
  await waitFor(doc, (d) => d.status === 'live' && d.seq === 2, 'live on the deleted document');
  assert.equal(doc.value, null);
  doc.close();
  // A collection name the server refuses: one error event, then idle.
  const bad = await client.create('t', newID(), {});
  bad.collection = 'bad name';
  const errors = [];
  bad.subscribe((ev) => ev.type === 'error' && errors.push(ev.error));
  bad.follow();
  await waitFor(bad, () => errors.length === 1, 'the error event');
  assert.equal(errors[0].status, 400);
  await waitFor(bad, (d) => d.status === 'idle', 'idle');
  client.close();
  ghost.close();
});

test('form edits made with diff from a stale version land on the right line item', async () => {
  const client = new Client({ baseURL: server.url });
  const id = newID();
  const items = [{ id: 'a', desc: 'A' }, { id: 'b', desc: 'B' }, { id: 'c', desc: 'C' }];
  const alice = await client.create('t', id, { items });
  const bob = await client.open('t', id);
  const stale = bob.version();
  // Alice removes the first item: every index after it shifts.
  await alice.patch(diff(alice.value, { items: items.slice(1) }, { key: 'id' }));
  // Bob edits item c, at index 2 in the version he saw.
  const ops = diff(bob.value, { items: [items[0], items[1], { id: 'c', desc: 'C2' }] }, { key: 'id' });
  assert.deepEqual(ops, [{ op: 'test', path: '/items/2/id', value: 'c' }, { op: 'replace', path: '/items/2/desc', value: 'C2' }]);
  const r = await bob.patch(ops, { base: stale });
  assert.ok(r.rebasedFrom);
  assert.deepEqual(r.value, { items: [{ id: 'b', desc: 'B' }, { id: 'c', desc: 'C2' }] });
  // Bob edits item a, which Alice removed: a conflict, not a wrong write.
  const ops2 = diff({ items }, { items: [{ id: 'a', desc: 'A2' }, items[1], items[2]] }, { key: 'id' });
  await assert.rejects(bob.patch(ops2, { base: stale }), (err) => err instanceof ConflictError && err.paths.includes('/items/0/desc'));
  client.close();
});

test('a baseURL that cannot be requested is refused at once, not retried forever', () => {
  for (const baseURL of [undefined, '', 'not a url', 'ftp://example.com', '/api']) {
    assert.throws(() => new Client(baseURL === undefined ? {} : { baseURL }), TypeError, `baseURL ${baseURL}`);
  }
  assert.equal(new Client({ baseURL: 'http://127.0.0.1:1/' }).baseURL, 'http://127.0.0.1:1');
  assert.equal(new Client({ baseURL: 'https://example.com/patchd' }).baseURL, 'https://example.com/patchd');
});
