// Many documents, one connection, in Chromium: a page following more
// documents than the browser's six HTTP/1.1 connections per origin, twenty
// tabs of the demo in one browser, and one page following 500 documents
// and a collection. The server counts its open streams (patchd_streams).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, live } from './support.js';

let server;
let browser;
before(async () => {
  server = await startPatchd();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openStreams() {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(/^patchd_streams (\d+)/m.exec(text)[1]);
}

/** Waits until the server has want streams open. */
async function streamsAre(want) {
  const t0 = Date.now();
  for (;;) {
    const n = await openStreams();
    if (n === want) return;
    if (Date.now() - t0 > WAIT) assert.fail(`${n} streams open, want ${want}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function put(c, id, value) {
  const res = await fetch(`${server.url}/docs/${c}/${id}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(value) });
  assert.ok(res.ok, `PUT ${c}/${id}: ${res.status}`);
}

async function merge(c, id, value) {
  const etag = (await fetch(`${server.url}/docs/${c}/${id}`)).headers.get('ETag');
  const res = await fetch(`${server.url}/docs/${c}/${id}`, { method: 'PATCH', headers: { 'Content-Type': 'application/merge-patch+json', 'If-Match': etag }, body: JSON.stringify(value) });
  assert.ok(res.ok, `PATCH ${c}/${id}: ${res.status}`);
}

async function blankPage(t) {
  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  t.after(() => assert.deepEqual(errors, [], 'errors on the page'));
  await page.goto(`${server.url}/ui/list.html?c=none-${process.pid}`);
  return page;
}

/**
 * Opens n tabs of the demo on document id in one browser context, live and
 * sharing one stream, and returns them with the one that holds it.
 */
async function demoTabs(t, id, n) {
  const ctx = await browser.newContext({ viewport: { width: 820, height: 700 } });
  t.after(() => ctx.close());
  const pages = [];
  for (let i = 0; i < n; i++) {
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    await page.goto(`${server.url}/?id=${id}&debounce=50`);
    await live(page);
    pages.push(page);
  }
  await streamsAre(1);
  const isLeader = await Promise.all(pages.map((p) => p.evaluate(() => globalThis.patchdDemo.doc().client._hubFor().leader)));
  assert.equal(isLeader.filter(Boolean).length, 1, 'one tab holds the stream');
  const leader = pages[isLeader.indexOf(true)];
  return { pages, leader, followers: pages.filter((p) => p !== leader) };
}

/** Opens an alert in page and returns it, left open (Playwright dismisses it otherwise). */
async function alertLeftOpen(page) {
  const dialog = new Promise((resolve) => page.once('dialog', resolve));
  await page.evaluate(() => setTimeout(() => alert('Leave this open'), 0));
  return dialog;
}

test('one page follows seven documents: every one gets its changes', { timeout: 60_000 }, async (t) => {
  const c = `seven${process.pid}`;
  const ids = Array.from({ length: 7 }, (_, i) => `d${i}`);
  for (const id of ids) await put(c, id, { n: 0 });
  const page = await blankPage(t);
  await page.evaluate(
    async ([c, ids]) => {
      const { Client } = await import('/ui/client/patchd.js');
      const client = new Client();
      globalThis.docs = await Promise.all(ids.map((id) => client.open(c, id, { follow: true })));
    },
    [c, ids],
  );
  await page.waitForFunction(() => globalThis.docs.every((d) => d.status === 'live'), null, { timeout: WAIT });
  for (const [i, id] of ids.entries()) await merge(c, id, { n: i + 1 });
  await page.waitForFunction((n) => globalThis.docs.every((d, i) => d.value.n === i + 1) && globalThis.docs.length === n, ids.length, { timeout: WAIT });
});

test('twenty tabs of the demo in one browser: all live over one stream, each edit seen by all', { timeout: 180_000 }, async (t) => {
  await streamsAre(0); // the pages of the tests before are gone
  const before = 0;
  const id = `tabs-${process.pid}`;
  const { pages } = await demoTabs(t, id, 20);
  // One tab holds the stream for all.
  await streamsAre(before + 1);
  // Each tab saves an edit of its own: a line of notes in a field of its own.
  await Promise.all(pages.map((p, i) => p.evaluate((i) => globalThis.patchdDemo.doc().merge({ [`tab${i}`]: i }), i)));
  for (const p of pages) {
    await p.waitForFunction(() => Array.from({ length: 20 }, (_, i) => globalThis.patchdDemo.doc().value[`tab${i}`] === i).every(Boolean), null, { timeout: WAIT });
  }
  // The tab holding the stream closes: another takes over, and nothing is lost.
  // Edits made while the stream changes hands all arrive.
  await pages.shift().close();
  for (let i = 0; i < 5; i++) await merge('demo', id, { [`handover${i}`]: i });
  await merge('demo', id, { title: 'After the first tab closed' });
  for (const p of pages) {
    await p.waitForFunction(
      () => document.querySelector('#title').value === 'After the first tab closed' && [0, 1, 2, 3, 4].every((i) => globalThis.patchdDemo.doc().value[`handover${i}`] === i),
      null,
      { timeout: WAIT },
    );
  }
  await streamsAre(before + 1);
  for (const p of pages) assert.deepEqual(p.errors, []);
});

test('one page follows 500 documents and watches their collection over one stream', { timeout: 180_000 }, async (t) => {
  const c = `many${process.pid}`;
  const ids = Array.from({ length: 500 }, (_, i) => `d${String(i).padStart(3, '0')}`);
  for (let i = 0; i < ids.length; i += 50) await Promise.all(ids.slice(i, i + 50).map((id, j) => put(c, id, { n: 0, k: i + j })));
  await streamsAre(0);
  const before = 0;
  const page = await blankPage(t);
  const requests = [];
  page.on('request', (r) => r.url().endsWith('/events') && requests.push(r.method()));
  await page.evaluate(
    async ([c, ids]) => {
      const { Client } = await import('/ui/client/patchd.js');
      const { watch } = await import('/ui/client/watch.js');
      const client = new Client();
      globalThis.docs = await Promise.all(ids.map((id) => client.open(c, id, { follow: true })));
      globalThis.w = watch(client, c, { where: { '/n': { gt: 0 } }, order: '-/k' });
    },
    [c, ids],
  );
  await page.waitForFunction(() => globalThis.docs.every((d) => d.status === 'live') && globalThis.w.status === 'live', null, { timeout: 60_000 });
  // The list page's own (empty) watch and the 500 documents: one stream.
  await streamsAre(before + 1);
  const changed = [0, 99, 250, 498, 499];
  for (const i of changed) await merge(c, ids[i], { n: i + 1 });
  await page.waitForFunction((changed) => changed.every((i) => globalThis.docs[i].value.n === i + 1), changed, { timeout: WAIT });
  await page.waitForFunction(() => globalThis.w.items.map((x) => x.value.k).join() === '499,498,250,99,0', null, { timeout: WAIT });
  assert.ok(
    requests.every((m) => m === 'POST'),
    'no per-document feeds',
  );
  assert.ok(requests.length < 20, `${requests.length} streams opened`);
  await streamsAre(before + 1);
});

test('the list page: live rows, a filter and an order, a row opens the form; one stream for both pages', { timeout: 90_000 }, async (t) => {
  await streamsAre(0);
  const c = `orders${process.pid}`;
  await put(c, 'a', { title: 'Apples', customer: 'Zoe', urgent: false, items: [] });
  await put(c, 'b', { title: 'Bread', customer: 'Yan', urgent: true, items: [{ id: 'x', desc: 'rye', qty: 1 }] });
  const ctx = await browser.newContext({ viewport: { width: 820, height: 900 } });
  t.after(() => ctx.close());
  const list = await ctx.newPage();
  const errors = [];
  list.on('pageerror', (e) => errors.push(e.message));
  await list.goto(`${server.url}/ui/list.html?c=${c}`);
  await list.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  const rows = () => list.$$eval('#list tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent).join('|')));
  const rowsAre = (want) => list.waitForFunction((w) => [...document.querySelectorAll('#list tbody tr')].map((tr) => tr.dataset.id).join() === w, want, { timeout: WAIT });
  await rowsAre('a,b');
  assert.deepEqual(await rows(), ['Apples|Zoe||0', 'Bread|Yan|yes|1']);
  // A screen reader hears the table's name, and the count as rows come and go.
  assert.match(await list.locator('main').ariaSnapshot(), /table "Orders"/);
  assert.equal(await list.getAttribute('#count', 'aria-live'), 'polite');
  // A row opens the order's form, in the same browser: the two pages share one stream.
  const [form] = await Promise.all([ctx.waitForEvent('page'), list.click('#list tbody tr[data-id="a"] a', { modifiers: ['Control'] })]);
  await form.waitForLoadState();
  assert.match(form.url(), new RegExp(`\\?c=${c}&id=a$`));
  await live(form);
  await form.fill('#title', 'Avocados');
  await form.locator('#title').blur();
  await list.waitForFunction(() => document.querySelector('#list tbody tr[data-id="a"] a').textContent === 'Avocados', null, { timeout: WAIT });
  await streamsAre(1);
  // Ordered by customer: Yan before Zoe; urgent only: Bread alone; a new urgent order enters.
  await list.selectOption('#order', '/customer');
  await rowsAre('b,a');
  await list.selectOption('#urgent', 'true');
  await rowsAre('b');
  await put(c, 'c', { title: 'Cheese', customer: 'Xia', urgent: true, items: [] });
  await rowsAre('c,b');
  await merge(c, 'b', { urgent: false });
  await rowsAre('c');
  // The choices are in the address: a row opened in the same tab and Back
  // show the list the selects say.
  assert.match(list.url(), /[?&]urgent=true(&|$)/);
  await list.selectOption('#order', '-/title');
  await put(c, 'd', { title: 'Dates', customer: 'Wu', urgent: true, items: [] });
  await rowsAre('d,c');
  await Promise.all([list.waitForURL(/\?c=.*&id=d$/), list.click('#list tbody tr[data-id="d"] a')]);
  await live(list);
  await list.goBack();
  await list.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  await rowsAre('d,c');
  assert.equal(await list.inputValue('#urgent'), 'true');
  assert.equal(await list.inputValue('#order'), '-/title');
  // Ordered by id: the address says so in a way the server takes, and a
  // reload shows the same list.
  await list.selectOption('#order', '');
  await rowsAre('c,d');
  await list.reload();
  await list.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  await rowsAre('c,d');
  assert.equal(await list.inputValue('#order'), '');
  // An address with values the page does not know shows the defaults.
  await list.goto(`${server.url}/ui/list.html?c=${c}&urgent=bogus&order=/nope`);
  await list.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  assert.equal(await list.inputValue('#urgent'), '');
  assert.equal(await list.inputValue('#order'), '/title');
  // The filter and order fit on one line at this width.
  const tops = await list.$$eval('#query select', (els) => els.map((el) => Math.round(el.getBoundingClientRect().top)));
  assert.equal(new Set(tops).size, 1, `the selects are on one line: ${tops}`);
  assert.deepEqual(errors, []);
});

test('a dialog left open in the tab holding the stream: the other tabs stream on their own meanwhile, then follow it again', { timeout: 120_000 }, async (t) => {
  await streamsAre(0);
  const id = `dialog-${process.pid}`;
  const { pages, leader, followers } = await demoTabs(t, id, 3);
  const open = await alertLeftOpen(leader);
  await merge('demo', id, { title: 'While the dialog is open' });
  for (const p of followers) await p.waitForFunction(() => document.querySelector('#title').value === 'While the dialog is open', null, { timeout: WAIT });
  // A follower's edit still reaches the other follower.
  await followers[0].evaluate(() => globalThis.patchdDemo.doc().merge({ customer: 'Typed in a follower' }));
  await followers[1].waitForFunction(() => document.querySelector('#customer').value === 'Typed in a follower', null, { timeout: WAIT });
  for (const p of followers) assert.equal(await p.getAttribute('#status', 'data-state'), 'live');

  await open.dismiss();
  await merge('demo', id, { title: 'After the dialog' });
  for (const p of pages) await p.waitForFunction(() => document.querySelector('#title').value === 'After the dialog', null, { timeout: WAIT });
  // The followers follow the leader's stream again: one stream for all.
  await streamsAre(1);
  for (const p of pages) assert.deepEqual(p.errors, []);
});

test('tabs under tokens of different scopes: the union the first tab opens is refused, and every tab streams what its token may read', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'patchd-tokens-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tokens = { narrow: 'narrow-token-0123456789', wide: 'wide-token-0123456789ab' };
  writeFileSync(join(dir, 'tokens'), `${tokens.narrow} write forms\n${tokens.wide} write forms demo\n`, { mode: 0o600 });
  const authd = await startPatchd(['--tokens', join(dir, 'tokens')]);
  t.after(() => authd.stop());
  const send = async (method, path, body, headers = {}) => {
    const res = await fetch(`${authd.url}${path}`, { method, headers: { Authorization: `Bearer ${tokens.wide}`, ...headers }, body: JSON.stringify(body) });
    assert.ok(res.ok, `${method} ${path}: ${res.status}`);
  };
  await send('PUT', '/docs/forms/a', { n: 0 }, { 'Content-Type': 'application/json' });
  await send('PUT', '/docs/demo/a', { n: 0 }, { 'Content-Type': 'application/json' });

  const ctx = await browser.newContext();
  t.after(() => ctx.close());
  const tabs = [];
  // The first tab (the leader) may read forms only; the others read demo.
  for (const [token, c] of [['narrow', 'forms'], ['wide', 'demo'], ['wide', 'demo']]) {
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    await page.goto(`${authd.url}/openapi.json`);
    await page.evaluate(
      async ([token, c]) => {
        const { Client } = await import('/ui/client/patchd.js');
        const client = new Client({ headers: { Authorization: `Bearer ${token}` } });
        globalThis.doc = await client.open(c, 'a', { follow: true });
        globalThis.hub = client._hubFor();
      },
      [tokens[token], c],
    );
    tabs.push(page);
  }
  assert.equal(await tabs[0].evaluate(() => globalThis.hub.leader), true);
  for (const p of tabs) await p.waitForFunction(() => globalThis.doc.status === 'live', null, { timeout: WAIT });
  const etag = async (c) => (await fetch(`${authd.url}/docs/${c}/a`, { headers: { Authorization: `Bearer ${tokens.wide}` } })).headers.get('ETag');
  const mergeHeaders = { 'Content-Type': 'application/merge-patch+json' };
  await send('PATCH', '/docs/demo/a', { n: 1 }, { ...mergeHeaders, 'If-Match': await etag('demo') });
  await send('PATCH', '/docs/forms/a', { n: 2 }, { ...mergeHeaders, 'If-Match': await etag('forms') });
  await tabs[0].waitForFunction(() => globalThis.doc.value.n === 2, null, { timeout: WAIT });
  for (const p of tabs.slice(1)) await p.waitForFunction(() => globalThis.doc.value.n === 1, null, { timeout: WAIT });
  for (const p of tabs) assert.deepEqual(p.errors, []);
});

test('a dialog in the leader of seven tabs: at most two others stream on their own, and every tab still saves', { timeout: 150_000 }, async (t) => {
  await streamsAre(0);
  const id = `dialog7-${process.pid}`;
  const { pages, leader, followers } = await demoTabs(t, id, 7);
  const open = await alertLeftOpen(leader);
  await merge('demo', id, { title: 'While the dialog is open' });
  // Followers that stream on their own see it.
  const seen = () => Promise.all(followers.map((p) => p.evaluate(() => document.querySelector('#title').value === 'While the dialog is open')));
  for (const t0 = Date.now(); (await seen()).filter(Boolean).length < 2; ) {
    if (Date.now() - t0 > WAIT) assert.fail('no two followers saw the edit made while the leader was blocked');
    await new Promise((r) => setTimeout(r, 100));
  }
  // Over the next pings of every follower (each every 2 s), no more than
  // two of them open a stream: the browser keeps connections for writes.
  let most = 0;
  for (const t0 = Date.now(); Date.now() - t0 < 5000; await new Promise((r) => setTimeout(r, 100))) most = Math.max(most, await openStreams());
  assert.ok(most <= 3, `${most} streams open: the leader's and more than two others`);
  // Every follower still saves: the browser has connections left for writes.
  await Promise.all(followers.map((p, i) => p.evaluate((i) => globalThis.patchdDemo.doc().merge({ [`f${i}`]: i }), i)));
  await open.dismiss();
  for (const p of pages) {
    await p.waitForFunction((n) => Array.from({ length: n }, (_, i) => globalThis.patchdDemo.doc().value[`f${i}`] === i).every(Boolean), followers.length, { timeout: WAIT });
  }
  await streamsAre(1);
  for (const p of pages) assert.deepEqual(p.errors, []);
});
