// doc.undo() and doc.revert() against a real patchd process: a selective
// undo of this client's own edits, rebased over what others did since.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ConflictError, PatchdError } from '../patchd.js';
import { startPatchd } from './support/patchd.js';

let server;
const opened = new Set();
before(async () => {
  server = await startPatchd();
});
after(async () => {
  for (const d of opened) d.close();
  await server?.stop();
});

let n = 0;
const newID = () => `undo-${process.pid}-${++n}`;

/** Two people on one new document, both following its change feed. */
async function twoPeople(value, aliceFetch) {
  const id = newID();
  const alice = await new Client({ baseURL: server.url, fetch: aliceFetch }).create('t', id, value, { follow: true });
  const bob = await new Client({ baseURL: server.url }).open('t', id, { follow: true });
  opened.add(alice);
  opened.add(bob);
  return { id, alice, bob };
}

function waitFor(doc, pred, what, ms = 10_000) {
  if (pred(doc)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}; value ${JSON.stringify(doc.value)}`));
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

async function serverGet(id) {
  const res = await fetch(`${server.url}/docs/t/${id}`);
  assert.equal(res.status, 200);
  return { value: await res.json(), etag: res.headers.get('ETag') };
}

/** The error p rejects with; the test fails if it resolves (why says why it should not). */
function refused(p, why) {
  return p.then(
    () => assert.fail(why),
    (e) => e,
  );
}

async function history(id) {
  const res = await fetch(`${server.url}/docs/t/${id}/history`);
  return (await res.json()).versions;
}

test('undo over a concurrent edit of another field: the revert and the other edit both hold', async () => {
  // The body of the answer to Alice's revert comes after her feed brought
  // its version (its headers before).
  let doc = null;
  const feedFirst = async (url, init) => {
    const res = await fetch(url, init);
    if (!String(url).endsWith('/revert')) return res;
    const text = await res.text();
    const later = async () => {
      await waitFor(doc, (d) => d.seq >= 4, 'the revert at Alice’s feed');
      return text;
    };
    return { ok: res.ok, status: res.status, headers: res.headers, text: later, json: async () => JSON.parse(await later()) };
  };
  const { id, alice, bob } = await twoPeople({ title: 'Draft', customer: '' }, feedFirst);
  doc = alice;
  await alice.patch([{ op: 'replace', path: '/title', value: 'Final' }]);
  await waitFor(bob, (d) => d.value.title === 'Final', "Alice's edit at Bob's");
  await bob.patch([{ op: 'replace', path: '/customer', value: 'Bob & Co' }]);
  assert.equal(alice.undoable, 1);
  assert.equal(bob.undoable, 1);
  const sources = { alice: [], bob: [] };
  alice.subscribe((ev) => ev.version?.kind === 'revert' && sources.alice.push(ev.source));
  bob.subscribe((ev) => ev.version?.kind === 'revert' && sources.bob.push(ev.source));

  const r = await alice.undo();
  assert.equal(r.seq, 2, "Alice's edit was version 2");
  assert.ok(r.rebasedFrom, 'rebased over Bob’s later version');
  assert.deepEqual(r.value, { title: 'Draft', customer: 'Bob & Co' });
  assert.equal(alice.undoable, 0);
  assert.deepEqual((await serverGet(id)).value, { title: 'Draft', customer: 'Bob & Co' });
  for (const d of [alice, bob]) await waitFor(d, (d) => d.value.title === 'Draft' && d.value.customer === 'Bob & Co', 'the undo everywhere');

  // The feed's version of the undo is Alice's own, though it came before
  // the answer.
  assert.deepEqual(sources, { alice: ['own'], bob: ['remote'] });
  const last = (await history(id)).pop();
  assert.equal(last.kind, 'revert');
  assert.equal(last.reverts, 2);
  // Nothing more of Alice's to undo; Bob's edit is Bob's.
  assert.equal(await alice.undo(), null);
  assert.equal(bob.undoable, 1);
});

test('undo over a later edit of the same field rejects with ConflictError and changes nothing', async () => {
  const { id, alice, bob } = await twoPeople({ title: 'Draft', customer: '' });
  await alice.patch([{ op: 'replace', path: '/title', value: 'Alice' }]);
  await waitFor(bob, (d) => d.value.title === 'Alice', "Alice's edit at Bob's");
  await bob.patch([{ op: 'replace', path: '/title', value: 'Bob' }]);
  const before = await serverGet(id);
  const versions = (await history(id)).length;

  const err = await refused(alice.undo(), 'undo should have been refused');
  assert.ok(err instanceof ConflictError, `got ${err}`);
  assert.equal(err.type, 'rebase-conflict');
  assert.deepEqual(err.mine, { seq: 2 });
  assert.ok(err.conflicts.some((c) => c.concurrentVersion === 3), `the conflict names Bob's version: ${JSON.stringify(err.conflicts)}`);
  assert.deepEqual(err.current?.value, { title: 'Bob', customer: '' });

  const now = await serverGet(id);
  assert.equal(now.etag, before.etag, 'nothing was written');
  assert.equal((await history(id)).length, versions);
  await waitFor(alice, (d) => d.value.title === 'Bob', "Bob's edit at Alice's");
  assert.equal(alice.undoable, 1, 'the edit stays on the stack for the user to decide');

  // The user gives it up: nothing left to undo.
  assert.equal(alice.forgetUndo(), true);
  assert.equal(await alice.undo(), null);
});

test('undo goes back through own edits newest first, after edits in flight are answered', async () => {
  const { id, alice } = await twoPeople({ a: 0, b: 0 });
  alice.patch([{ op: 'replace', path: '/a', value: 1 }]);
  alice.patch([{ op: 'replace', path: '/b', value: 1 }]);
  // Called while both are unanswered: it undoes the second.
  const r1 = await alice.undo();
  assert.equal(r1.seq, 3);
  assert.deepEqual((await serverGet(id)).value, { a: 1, b: 0 });
  const r2 = await alice.undo();
  assert.equal(r2.seq, 2);
  assert.deepEqual((await serverGet(id)).value, { a: 0, b: 0 });
  await waitFor(alice, (d) => d.value.a === 0 && d.value.b === 0, 'both undone in the value');
  assert.equal(await alice.undo(), null);
});

test('undo goes back through own edits of the same field, over its own undos', async () => {
  const { id, alice, bob } = await twoPeople({ title: '', items: [{ id: 'i1', desc: 'pens' }] });
  await alice.patch([{ op: 'replace', path: '/title', value: 'one' }]);
  await alice.patch([{ op: 'replace', path: '/title', value: 'two' }]);
  await alice.patch([{ op: 'add', path: '/items/1', value: { id: 'i2', desc: 'ink' } }]);
  await alice.patch([{ op: 'test', path: '/items/1/id', value: 'i2' }, { op: 'replace', path: '/items/1/desc', value: 'blue ink' }]);
  // Bob edits another field meanwhile: it stays.
  await waitFor(bob, (d) => d.value.items.length === 2, "Alice's item at Bob's");
  await bob.patch([{ op: 'add', path: '/customer', value: 'Acme' }]);
  await waitFor(alice, (d) => d.value.customer === 'Acme', "Bob's edit at Alice's");
  // The revert route refuses each undo after the first for the versions
  // of the edits undone before it: undo() goes on all the same.
  await alice.undo(); // the description
  assert.deepEqual((await serverGet(id)).value.items, [{ id: 'i1', desc: 'pens' }, { id: 'i2', desc: 'ink' }]);
  await alice.undo(); // the item's add
  assert.deepEqual((await serverGet(id)).value.items, [{ id: 'i1', desc: 'pens' }]);
  await alice.undo(); // title two
  assert.equal((await serverGet(id)).value.title, 'one');
  await alice.undo(); // title one
  assert.deepEqual((await serverGet(id)).value, { title: '', customer: 'Acme', items: [{ id: 'i1', desc: 'pens' }] });
  await waitFor(alice, (d) => d.value.title === '' && d.value.items.length === 1, 'every undo in the value');
  assert.equal(await alice.undo(), null);
});

test('undo over its own undo is still refused when someone else changed the field since', async () => {
  const { id, alice, bob } = await twoPeople({ title: '' });
  await alice.patch([{ op: 'replace', path: '/title', value: 'one' }]);
  await alice.patch([{ op: 'replace', path: '/title', value: 'two' }]);
  await alice.undo();
  await waitFor(bob, (d) => d.value.title === 'one', "Alice's undo at Bob's");
  await bob.patch([{ op: 'replace', path: '/title', value: 'Bob' }]);
  await waitFor(alice, (d) => d.value.title === 'Bob', "Bob's edit at Alice's");
  const err = await refused(alice.undo(), 'undo should have been refused');
  assert.ok(err instanceof ConflictError, `got ${err}`);
  assert.equal((await serverGet(id)).value.title, 'Bob', "Bob's edit stays");
});

test('an undo that changed nothing does not make someone else’s equal version count as its own', async () => {
  const { id, alice, bob } = await twoPeople({ title: '' });
  await alice.patch([{ op: 'replace', path: '/title', value: 'zero' }]); // 2
  await alice.patch([{ op: 'replace', path: '/title', value: 'a' }]); // 3
  await waitFor(bob, (d) => d.value.title === 'a', "Alice's edit at Bob's");
  await bob.patch([{ op: 'replace', path: '/title', value: 'zero' }]); // 4: the same content as 2
  await waitFor(alice, (d) => d.value.title === 'zero', "Bob's edit at Alice's");
  await alice.undo(); // of 3: Bob already wrote what it would; nothing written
  const err = await refused(alice.undo(), 'undo of 2 should have been refused: Bob wrote the title since');
  assert.ok(err instanceof ConflictError, `got ${err}`);
  assert.equal((await serverGet(id)).value.title, 'zero', "Bob's title stays");
});

test('an undo refused with a full list of conflicts (the server names at most 50) is not taken as over its own', async () => {
  const fields = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}`, '']));
  const { id, alice, bob } = await twoPeople(fields);
  const all = (v) => Object.keys(fields).map((f) => ({ op: 'replace', path: `/${f}`, value: v }));
  await alice.patch(all('one')); // 2
  await alice.patch(all('two')); // 3
  await alice.undo(); // 4
  await waitFor(bob, (d) => d.value.f0 === 'one', "Alice's undo at Bob's");
  await bob.patch([{ op: 'replace', path: '/f0', value: 'Bob' }]); // 5
  await bob.patch([{ op: 'replace', path: '/f0', value: 'one' }]); // 6: back as it was
  await waitFor(alice, (d) => d.etag === bob.etag, "Bob's edits at Alice's");
  const err = await refused(alice.undo(), 'undo of 2 should have been refused: Bob wrote f0 since');
  assert.ok(err instanceof ConflictError, `got ${err}`);
  assert.equal((await serverGet(id)).value.f0, 'one', "Bob's f0 stays");
});

test('revert of anyone’s version: undoable by its author; a version that left history is base-unknown', async () => {
  const id = newID();
  const pruned = await startPatchd(['--history-versions', '2', '--history-age', '0']);
  try {
    const alice = await new Client({ baseURL: pruned.url }).create('t', id, { x: 0 }, { follow: true });
    opened.add(alice);
    const bob = await new Client({ baseURL: pruned.url }).open('t', id, { follow: true });
    opened.add(bob);
    await bob.patch([{ op: 'replace', path: '/x', value: 1 }]);
    await waitFor(alice, (d) => d.value.x === 1, "Bob's edit at Alice's");
    // Alice reverts Bob's version 2, then undoes her revert.
    const r = await alice.revert(2);
    assert.deepEqual(r.value, { x: 0 });
    assert.equal(alice.undoable, 1);
    await alice.undo();
    await waitFor(bob, (d) => d.value.x === 1, 'the revert undone at Bob’s');
    // Versions 1 to 4 exist; only the newest two are kept.
    const err = await alice.revert(2).then(
      () => assert.fail('revert of a pruned version should fail'),
      (e) => e,
    );
    assert.ok(err instanceof PatchdError && !(err instanceof ConflictError));
    assert.equal(err.type, 'base-unknown');
  } finally {
    for (const d of opened) d.close();
    await pruned.stop();
  }
});

test('a Doc that does not follow the feed finds its versions in history, and shows the undo at once', async () => {
  const id = newID();
  const client = new Client({ baseURL: server.url });
  const doc = await client.create('t', id, { a: 0, b: 0 });
  opened.add(doc);
  await doc.patch([{ op: 'replace', path: '/a', value: 1 }]);
  // Someone else's edit, and an edit that changes nothing (no version).
  const other = await new Client({ baseURL: server.url }).open('t', id);
  opened.add(other);
  await other.patch([{ op: 'replace', path: '/b', value: 2 }]);
  await doc.patch([{ op: 'replace', path: '/a', value: 1 }]);
  assert.equal(doc.undoable, 2);

  const r = await doc.undo();
  assert.equal(r.seq, 2, 'the no-op edit was skipped, the one before undone');
  assert.deepEqual(doc.value, { a: 0, b: 2 });
  assert.equal(doc.etag, (await serverGet(id)).etag);
  assert.equal(doc.undoable, 0);
});
