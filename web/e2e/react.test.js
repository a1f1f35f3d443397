// The React bindings (@patchd/client/react) rendered by React 19 in
// Chromium against a real patchd: a small app, bundled here with esbuild
// from node_modules (React ships CommonJS only) and served by the test on
// the server's own origin through page.route, in StrictMode so that
// effects run twice as they do in development.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, shot } from './support.js';

let server;
let browser;
let bundle;
before(async () => {
  server = await startPatchd();
  browser = await launch();
  const r = await build({
    stdin: { contents: APP, resolveDir: fileURLToPath(new URL('.', import.meta.url)), loader: 'js' },
    bundle: true,
    format: 'esm',
    write: false,
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'silent',
  });
  bundle = r.outputFiles[0].text;
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const APP = `
import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Client } from '../client/patchd.js';
import { useCollection, useDocument } from '../client/react.js';

const client = new Client();
window.renders = [];
window.docs = [];
function Order({ id }) {
  const s = useDocument(client, 'react', id);
  window.renders.push({ id, title: s.value?.title ?? null, status: s.status });
  window.lastDoc = s.doc ?? window.lastDoc;
  if (s.doc && !window.docs.includes(s.doc)) window.docs.push(s.doc);
  if (s.error) return h('p', { id: 'error' }, s.error.type);
  return h('div', null,
    h('p', { id: 'status' }, s.status),
    h('p', { id: 'title' }, s.value?.title ?? ''),
    h('p', { id: 'count' }, String(s.value?.items?.length ?? 0)),
    h('button', { id: 'add', onClick: () => s.patch([{ op: 'add', path: '/items/-', value: { n: 1 } }]) }, 'Add'));
}
function App() {
  const [id, setId] = useState(new URLSearchParams(location.search).get('id'));
  const [shown, setShown] = useState(true);
  Object.assign(window, { setId, setShown });
  return shown ? h(Order, { id }) : h('p', { id: 'gone' }, 'unmounted');
}
createRoot(document.getElementById('root')).render(h(StrictMode, null, h(App)));

// ?list=C also renders collection C, live, ordered by title.
function List({ c }) {
  const { items, status } = useCollection(client, c, { order: '/title' });
  return h('div', null, h('p', { id: 'list-status' }, status), h('ul', { id: 'list' }, items.map((it) => h('li', { key: it.id }, it.value.title))));
}
const listed = new URLSearchParams(location.search).get('list');
if (listed) {
  const el = document.createElement('div');
  document.body.append(el);
  createRoot(el).render(h(StrictMode, null, h(List, { c: listed })));
}
`;

async function put(id, value) {
  const res = await fetch(`${server.url}/docs/react/${id}`, { method: 'PUT', headers: { 'Content-Type': 'application/json', 'If-None-Match': '*' }, body: JSON.stringify(value) });
  assert.equal(res.status, 201);
  return res.headers.get('ETag');
}

async function reactPage(t, who, id, query = '') {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  await ctx.route('**/react-test/**', (route) => {
    const js = route.request().url().endsWith('/app.js');
    route.fulfill({
      contentType: js ? 'text/javascript' : 'text/html',
      body: js ? bundle : '<!doctype html><meta charset="utf-8"><title>useDocument</title><div id="root"></div><script type="module" src="/react-test/app.js"></script>',
    });
  });
  const page = await ctx.newPage();
  page.who = who;
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  // React's warnings are console errors; the 404 of the missing document
  // (the last step) is the browser's own log line, expected.
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('status of 404') && page.errors.push(m.text()));
  await page.goto(`${server.url}/react-test/?id=${id}${query}`);
  t.after(() => assert.deepEqual(page.errors, [], `${who}: errors on the page`));
  return page;
}

const text = (page, sel, want) => page.waitForFunction(([s, w]) => document.querySelector(s)?.textContent === w, [sel, want], { timeout: WAIT });

test('useDocument renders a live document, its edits and others\', and lets go of it', { timeout: 90_000 }, async (t) => {
  const id1 = `r1-${process.pid}`;
  const id2 = `r2-${process.pid}`;
  const etag = await put(id1, { title: 'First', items: [] });
  await put(id2, { title: 'Second', items: [] });
  const alice = await reactPage(t, 'alice', id1);
  const bob = await reactPage(t, 'bob', id1);
  for (const p of [alice, bob]) {
    await text(p, '#title', 'First');
    await text(p, '#status', 'live');
  }
  await shot(t, alice, '1-live');

  // Someone else's edit re-renders both.
  const res = await fetch(`${server.url}/docs/react/${id1}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/merge-patch+json', 'If-Match': etag },
    body: '{"title":"Changed"}',
  });
  assert.equal(res.status, 200);
  await text(alice, '#title', 'Changed');
  await text(bob, '#title', 'Changed');

  // An edit through the hook: shown at once, saved, seen by Bob.
  await alice.click('#add');
  await text(alice, '#count', '1');
  await text(bob, '#count', '1');
  await alice.waitForFunction(() => window.lastDoc.pendingCount === 0, null, { timeout: WAIT });
  const saved = await (await fetch(`${server.url}/docs/react/${id1}`)).json();
  assert.deepEqual(saved.items, [{ n: 1 }]);
  await shot(t, alice, '2-edited');

  // Another id: never a render of the new id with the old document.
  await alice.evaluate((id) => window.setId(id), id2);
  await text(alice, '#title', 'Second');
  await text(alice, '#status', 'live');
  const stale = await alice.evaluate((id) => window.renders.filter((r) => r.id === id && r.title !== null && r.title !== 'Second'), id2);
  assert.deepEqual(stale, []);
  assert.equal(await alice.evaluate(() => window.renders.some((r) => r.title === 'First' && r.status === 'live')), true);
  assert.deepEqual(await alice.evaluate(() => window.docs.map((d) => [d.id.slice(0, 2), d.status])), [
    ['r1', 'closed'],
    ['r2', 'live'],
  ]);

  // The first document was closed when the id changed; the second on unmount.
  await alice.waitForFunction((id) => window.renders.length > 0 && window.lastDoc.id === id, id2);
  await alice.evaluate(() => window.setShown(false));
  await alice.waitForSelector('#gone', { timeout: WAIT });
  await alice.waitForFunction(() => window.lastDoc.status === 'closed', null, { timeout: WAIT });
  assert.deepEqual(await alice.evaluate(() => window.docs.map((d) => d.status)), ['closed', 'closed'], 'every document the hook opened is closed');

  // A document that does not exist: the error, typed.
  await alice.evaluate(() => {
    window.setId('missing-doc');
    window.setShown(true);
  });
  await text(alice, '#error', 'not-found');
  await shot(t, alice, '3-not-found');
});

test('useCollection renders a live, ordered list of a collection', { timeout: 60_000 }, async (t) => {
  const c = `rl-${process.pid}`;
  const id = `r3-${process.pid}`;
  await put(id, { title: 'Third', items: [] });
  const add = async (doc, title) => {
    const etag = (await fetch(`${server.url}/docs/${c}/${doc}`)).headers.get('ETag');
    const headers = { 'Content-Type': 'application/json', ...(etag ? { 'If-Match': etag } : {}) };
    const res = await fetch(`${server.url}/docs/${c}/${doc}`, { method: 'PUT', headers, body: JSON.stringify({ title }) });
    assert.ok(res.ok);
  };
  await add('x', 'Banana');
  await add('y', 'Apple');
  const page = await reactPage(t, 'carol', id, `&list=${c}`);
  await text(page, '#list-status', 'live');
  await text(page, '#list', 'AppleBanana');
  await add('z', 'Avocado');
  await text(page, '#list', 'AppleAvocadoBanana');
  await add('y', 'Cherry');
  await text(page, '#list', 'AvocadoBananaCherry');
  await text(page, '#title', 'Third');
});
