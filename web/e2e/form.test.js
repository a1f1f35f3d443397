// Browser end-to-end tests of the collaborative form demo: two people (two
// browser contexts, so two separate sessions) edit one document through the
// page the patchd binary serves, in real headless Chromium. Each step leaves
// screenshots in e2e/artifacts/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startPatchd } from '../client/test/support/patchd.js';
import { artifacts, launch } from './browser.js';
import { gate, ownPage, routeWrites, serverUntil } from './support.js';

let server;
let browser;
const WAIT = 15_000; // longest wait for one thing to show on a page

before(async () => {
  server = await startPatchd();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

let docs = 0;
/** Opens the form for one fresh document in two browser contexts. */
async function twoPeople(t, { debounce = 300 } = {}) {
  const id = `e2e-${process.pid}-${++docs}`;
  const url = `${server.url}/?id=${id}&debounce=${debounce}`;
  const pages = [];
  for (const who of ['alice', 'bob']) {
    const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 } });
    t.after(() => ctx.close());
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    page.who = who;
    await page.goto(url);
    await live(page);
    pages.push(page);
  }
  t.after(() => {
    for (const p of pages) assert.deepEqual(p.errors, [], `${p.who}: errors on the page`);
  });
  return { id, alice: pages[0], bob: pages[1] };
}

function live(page) {
  return page.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
}

/** Waits until every write of the page is answered and the page is live. */
function settled(page) {
  return page.waitForFunction(
    () => {
      const d = globalThis.patchdDemo?.doc();
      return d && d.status === 'live' && d.pendingCount === 0 && document.querySelector('#status').dataset.state === 'live';
    },
    null,
    { timeout: WAIT },
  );
}

function valueIs(page, selector, want) {
  return page.waitForFunction(([s, w]) => document.querySelector(s)?.value === w, [selector, want], { timeout: WAIT });
}

async function shot(t, page, step) {
  const name = `${t.name.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '')}--${step}--${page.who}.png`;
  await page.screenshot({ path: join(artifacts, name), fullPage: true });
}

async function serverDoc(id) {
  const res = await fetch(`${server.url}/docs/demo/${id}`);
  assert.equal(res.status, 200);
  return res.json();
}

/**
 * Puts schema on a fresh collection named after prefix and opens the form
 * of document id in it, in a context of its own; the test ends with no
 * error on the page. Returns the page and the collection.
 */
async function schemaPage(t, prefix, schema, id, extra = async () => {}, ready = live) {
  const c = `${prefix}${process.pid}`;
  const put = await fetch(`${server.url}/schemas/${c}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(schema) });
  assert.equal(put.status, 201);
  return { page: await formPage(t, c, id, 'alice', extra, ready), c };
}

/** Opens the form of document id of collection c in a context of its own. */
async function formPage(t, c, id, who, extra = async () => {}, ready = live) {
  const { page, errors } = await ownPage(t, browser, who);
  page.on('console', (m) => m.type() === 'error' && /Content Security Policy/.test(m.text()) && errors.push(m.text()));
  t.after(() => assert.deepEqual(errors, [], `${who}: errors on the page`));
  await extra(page);
  await page.goto(`${server.url}/?c=${c}&id=${id}&debounce=100`);
  await ready(page);
  return page;
}

/** Waits until the page shows its form as a draft, not yet created. */
function drafted(page) {
  return page.waitForSelector('#status[data-state="draft"]', { timeout: WAIT });
}

/** Sends both pages' edits at the same moment. */
function flushBoth(a, b) {
  return Promise.all([a.evaluate(() => globalThis.patchdDemo.flush()), b.evaluate(() => globalThis.patchdDemo.flush())]);
}

test('two people edit different fields at the same moment: both edits persist and show on both pages', { timeout: 90_000 }, async (t) => {
  const { id, alice, bob } = await twoPeople(t, { debounce: 60_000 }); // sent by flushBoth, not by a pause
  await shot(t, alice, '1-opened');
  await Promise.all([alice.fill('#customer', 'Ann Smith'), bob.fill('#email', 'bob@example.com')]);
  await Promise.all([shot(t, alice, '2-typed'), shot(t, bob, '2-typed')]);
  await flushBoth(alice, bob);

  for (const p of [alice, bob]) {
    await valueIs(p, '#customer', 'Ann Smith');
    await valueIs(p, '#email', 'bob@example.com');
    await settled(p);
  }
  const saved = await serverDoc(id);
  assert.equal(saved.customer, 'Ann Smith');
  assert.equal(saved.email, 'bob@example.com');
  // Both edits were made against the same version: the one that committed
  // second was rebased over the first, and its page says so, quietly.
  const marks = [await alice.textContent('[data-mark="customer"]'), await bob.textContent('[data-mark="email"]')];
  assert.deepEqual(marks.filter((m) => m === 'merged').length, 1, `marks ${JSON.stringify(marks)}`);
  assert.equal(await alice.locator('.conflict').count(), 0);
  assert.equal(await bob.locator('.conflict').count(), 0);
  await Promise.all([shot(t, alice, '3-merged'), shot(t, bob, '3-merged')]);
});

test('two people edit the same field: the second gets the conflict prompt', { timeout: 90_000 }, async (t) => {
  const { id, alice, bob } = await twoPeople(t, { debounce: 60_000 });
  await Promise.all([alice.fill('#title', 'Title by Alice'), bob.fill('#title', 'Title by Bob')]);
  await flushBoth(alice, bob);

  // Exactly one of them is asked.
  await alice.waitForFunction(() => true);
  const prompted = await Promise.race([
    alice.waitForSelector('.conflict', { timeout: WAIT }).then(() => alice),
    bob.waitForSelector('.conflict', { timeout: WAIT }).then(() => bob),
  ]);
  const other = prompted === alice ? bob : alice;
  const mine = prompted === alice ? 'Title by Alice' : 'Title by Bob';
  const theirs = prompted === alice ? 'Title by Bob' : 'Title by Alice';
  await settled(other);
  assert.equal(await other.locator('.conflict').count(), 0, 'the first to commit is not asked');
  assert.equal((await serverDoc(id)).title, theirs);
  assert.equal(await prompted.textContent('.conflict h2'), 'Title was changed by someone else');
  assert.equal(await prompted.textContent('.conflict .theirs'), theirs);
  assert.equal(await prompted.textContent('.conflict .mine'), mine);
  assert.equal(await prompted.getAttribute('#title', 'aria-invalid'), 'true');
  assert.equal(await prompted.inputValue('#title'), mine, 'the prompt keeps what was typed');
  await Promise.all([shot(t, prompted, '1-conflict'), shot(t, other, '1-conflict')]);

  // Keep mine: it overwrites theirs on purpose, and the other page shows it.
  await prompted.click('.conflict .keep-mine');
  await valueIs(other, '#title', mine);
  await settled(prompted);
  assert.equal((await serverDoc(id)).title, mine);
  assert.equal(await prompted.locator('.conflict').count(), 0);
  await Promise.all([shot(t, prompted, '2-kept-mine'), shot(t, other, '2-kept-mine')]);

  // Again on the notes, and this time take theirs.
  await Promise.all([alice.fill('#notes', 'Notes by Alice'), bob.fill('#notes', 'Notes by Bob')]);
  await flushBoth(alice, bob);
  const prompted2 = await Promise.race([
    alice.waitForSelector('.conflict', { timeout: WAIT }).then(() => alice),
    bob.waitForSelector('.conflict', { timeout: WAIT }).then(() => bob),
  ]);
  const theirs2 = prompted2 === alice ? 'Notes by Bob' : 'Notes by Alice';
  await shot(t, prompted2, '3-conflict-notes');
  await prompted2.click('.conflict .take-theirs');
  await valueIs(prompted2, '#notes', theirs2);
  await settled(prompted2);
  assert.equal((await serverDoc(id)).notes, theirs2);
  assert.equal(await prompted2.locator('.conflict').count(), 0);
  await Promise.all([shot(t, alice, '4-took-theirs'), shot(t, bob, '4-took-theirs')]);
});

test('a line item added in one page appears in the other, and a removal too', { timeout: 90_000 }, async (t) => {
  const { id, alice, bob } = await twoPeople(t);
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Blue pens');
  await alice.fill('#items li:nth-child(1) input.qty', '12');
  await bob.waitForSelector('#items li', { timeout: WAIT });
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Blue pens');
  await valueIs(bob, '#items li:nth-child(1) input.qty', '12');
  await Promise.all([shot(t, alice, '1-added'), shot(t, bob, '1-added')]);

  // Bob adds a second one; Alice removes the first.
  await bob.click('#add-item');
  await bob.waitForSelector('#items li:nth-child(2) input.desc:focus', { timeout: WAIT });
  await bob.keyboard.type('Paper');
  await valueIs(alice, '#items li:nth-child(2) input.desc', 'Paper');
  await settled(bob);
  await alice.click('#items li:nth-child(1) button.remove');
  await bob.waitForFunction(() => document.querySelectorAll('#items li').length === 1, null, { timeout: WAIT });
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Paper');
  await settled(alice);
  await settled(bob);
  const saved = await serverDoc(id);
  assert.deepEqual(saved.items.map((it) => [it.desc, it.qty]), [['Paper', 1]]);
  await Promise.all([shot(t, alice, '2-removed'), shot(t, bob, '2-removed')]);
});

test("a quantity clicked or tabbed into is selected whole: typing a number replaces the 1 a new line item starts with", { timeout: 90_000 }, async (t) => {
  const { id, alice } = await twoPeople(t);
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Blue pens');
  await valueIs(alice, '#items li:nth-child(1) input.qty', '1');
  await alice.click('#items li:nth-child(1) input.qty');
  await alice.keyboard.type('3');
  await valueIs(alice, '#items li:nth-child(1) input.qty', '3');
  await alice.click('#add-item');
  await alice.waitForSelector('#items li:nth-child(2) input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Paper');
  await alice.keyboard.press('Tab');
  await alice.keyboard.type('5');
  await valueIs(alice, '#items li:nth-child(2) input.qty', '5');
  await settled(alice);
  const saved = await serverDoc(id);
  assert.deepEqual(saved.items.map((it) => [it.desc, it.qty]), [['Blue pens', 3], ['Paper', 5]]);
  await shot(t, alice, '1-typed');
});

test('a line item moved by someone else while Alice types in it keeps her cursor and every key', { timeout: 90_000 }, async (t) => {
  const { id, alice } = await twoPeople(t);
  for (const text of ['First', 'Second']) {
    await alice.click('#add-item');
    await alice.waitForSelector('#items li:last-child input.desc:focus', { timeout: WAIT });
    await alice.keyboard.type(text);
    await settled(alice);
  }
  // Alice types in the second row; meanwhile someone takes the first row
  // out and puts it back last (not a move of hers, which would conflict):
  // her row comes first.
  await alice.click('#items li:nth-child(2) input.desc');
  await alice.keyboard.press('End');
  await alice.keyboard.type(' row');
  const first = (await serverDoc(id)).items[0];
  const res = await fetch(`${server.url}/docs/demo/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': '*' },
    body: JSON.stringify([{ op: 'remove', path: '/items/0' }, { op: 'add', path: '/items/-', value: first }]),
  });
  assert.equal(res.status, 200, await res.text());
  await valueIs(alice, '#items li:nth-child(2) input.desc', 'First');
  // The row moved with the cursor in it: what she types next still lands there.
  assert.equal(await alice.evaluate(() => document.activeElement?.closest('li')?.querySelector('input.desc')?.value), 'Second row');
  await alice.keyboard.type(' and more');
  await settled(alice);
  const saved = await serverDoc(id);
  assert.deepEqual(saved.items.map((it) => it.desc), ['Second row and more', 'First']);
});

test('a page that went offline catches up on reconnect, and sends what was typed meanwhile', { timeout: 90_000 }, async (t) => {
  const { id, alice, bob } = await twoPeople(t);
  await alice.fill('#customer', 'Before');
  await valueIs(bob, '#customer', 'Before');

  await bob.context().setOffline(true);
  await bob.waitForSelector('#status[data-state="offline"]', { timeout: WAIT });
  await alice.fill('#customer', 'Changed while Bob was away');
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Stapler');
  await settled(alice);
  let failedWhileOffline = 0;
  bob.on('requestfailed', (r) => r.method() === 'PATCH' && failedWhileOffline++);
  await bob.fill('#notes', 'Typed offline');
  await bob.locator('#notes').blur();
  // Bob saw none of it: the page was really cut off.
  assert.equal(await bob.inputValue('#customer'), 'Before');
  assert.equal(await bob.locator('#items li').count(), 0);
  assert.equal((await serverDoc(id)).notes, '');
  await bob.waitForFunction(() => document.querySelector('#status').textContent.includes('your changes will be sent'), null, { timeout: WAIT });
  await Promise.all([shot(t, alice, '1-bob-offline'), shot(t, bob, '1-bob-offline')]);
  // Offline, the edit is not sent again and again: it waits for the network.
  await bob.waitForTimeout(3000);
  assert.ok(failedWhileOffline <= 1, `${failedWhileOffline} PATCHes tried in 3 s offline`);

  await bob.context().setOffline(false);
  await valueIs(bob, '#customer', 'Changed while Bob was away');
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Stapler');
  await valueIs(alice, '#notes', 'Typed offline');
  await settled(bob);
  const saved = await serverDoc(id);
  assert.equal(saved.notes, 'Typed offline');
  assert.equal(saved.customer, 'Changed while Bob was away');
  assert.deepEqual(saved.items.map((it) => it.desc), ['Stapler']);
  await Promise.all([shot(t, alice, '2-back-online'), shot(t, bob, '2-back-online')]);
});

test('a line item added while the feed is down, rebased over a row someone else added: what is typed in it saves', { timeout: 90_000 }, async (t) => {
  const { id, alice } = await twoPeople(t);
  // Alice's change feed stays down: only her writes reach the server, so
  // her page does not see the other row until the test lets it.
  const feed = (url) => url.pathname.endsWith('/events');
  await alice.route(feed, (route) => route.abort());
  await alice.context().setOffline(true);
  await alice.waitForSelector('#status[data-state="offline"]', { timeout: WAIT });
  await alice.context().setOffline(false);
  // Her row's add is held on its way while someone else adds a row first
  // (hers is rebased over it) and she types in hers.
  const add = gate();
  let held = false;
  await routeWrites(alice, async (route, n) => {
    if (n === 1) {
      held = true;
      await add.wait();
    }
    return route.continue();
  });
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  for (const t0 = Date.now(); !held; await alice.waitForTimeout(20)) {
    if (Date.now() - t0 > WAIT) assert.fail("Alice's add never went out");
  }
  const res = await fetch(`${server.url}/docs/demo/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': '*' },
    body: JSON.stringify([{ op: 'add', path: '/items/-', value: { id: 'theirs', desc: 'Theirs', qty: 1 } }]),
  });
  assert.equal(res.status, 200, await res.text());
  await alice.keyboard.type('Mine');
  add.open();
  const saved = await serverUntil(server, id, (d) => d.items?.some((it) => it.desc === 'Mine'), "Alice's text in her row");
  assert.deepEqual(saved.items.map((it) => it.desc).sort(), ['Mine', 'Theirs']);
  await alice.unroute(feed);
  await settled(alice);
  const rows = await alice.$$eval('#items li input.desc', (els) => els.map((e) => e.value));
  assert.deepEqual(rows, (await serverDoc(id)).items.map((it) => it.desc));
});

test('the page is plain and accessible: every control has a label, the status is announced', { timeout: 60_000 }, async (t) => {
  const { alice } = await twoPeople(t);
  await alice.click('#add-item');
  await alice.waitForSelector('#items li', { timeout: WAIT });
  const unlabeled = await alice.evaluate(() =>
    [...document.querySelectorAll('input, textarea, button')]
      .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim())))
      .map((el) => el.outerHTML),
  );
  assert.deepEqual(unlabeled, []);
  assert.equal(await alice.getAttribute('#status', 'role'), 'status');
  assert.equal(await alice.getAttribute('html', 'lang'), 'en');
});

test('a save the schema refuses keeps what was typed, marked, sent once; the corrected text saves', { timeout: 90_000 }, async (t) => {
  const patches = [];
  const id = `refused-${process.pid}`;
  const { page, c } = await schemaPage(t, 'e2eschema', { type: 'object', properties: { title: { type: 'string', maxLength: 10 } } }, id, (page) =>
    page.on('response', (r) => r.request().method() === 'PATCH' && patches.push(r.status())),
  );

  await page.fill('#title', 'Quarterly report');
  await page.locator('#title').blur();
  await page.waitForSelector('#title[aria-invalid="true"]', { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'error', null, { timeout: WAIT });
  await shot(t, page, '1-refused');
  assert.equal(await page.inputValue('#title'), 'Quarterly report', 'the typed text is kept');
  const status = await page.textContent('#status');
  assert.match(status, /Title: /, 'the status names the field by its label');
  assert.deepEqual(patches, [422], 'the refused write is sent once');
  // The field says why itself, and a screen reader reads it with the field.
  const mark = await page.textContent('[data-mark="title"]');
  assert.match(mark, /not saved: .*10/, 'the mark by the field says why');
  const describedBy = await page.getAttribute('#title', 'aria-describedby');
  assert.equal(describedBy && (await page.textContent(`#${describedBy}`)), mark, 'the field is described by its mark');
  // A change from someone else to another field leaves the refused text alone.
  const cur = await fetch(`${server.url}/docs/${c}/${id}`);
  const res = await fetch(`${server.url}/docs/${c}/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': cur.headers.get('ETag') },
    body: JSON.stringify([{ op: 'replace', path: '/customer', value: 'Acme' }]),
  });
  assert.equal(res.status, 200);
  await valueIs(page, '#customer', 'Acme');
  assert.equal(await page.inputValue('#title'), 'Quarterly report');

  await page.fill('#title', 'Quarterly');
  await page.locator('#title').blur();
  await settled(page);
  assert.equal(await page.getAttribute('#title', 'aria-invalid'), null);
  const saved = await (await fetch(`${server.url}/docs/${c}/${id}`)).json();
  assert.equal(saved.title, 'Quarterly');
  assert.equal(saved.customer, 'Acme');
});

test('a collection whose schema refuses an empty email: the form opens all the same, and a typed email saves', { timeout: 60_000 }, async (t) => {
  const { page, c } = await schemaPage(t, 'e2eemail', { type: 'object', properties: { email: { type: 'string', format: 'email' } } }, 'new');
  await page.fill('#email', 'ann@example.com');
  await page.locator('#email').blur();
  await settled(page);
  const saved = await (await fetch(`${server.url}/docs/${c}/new`)).json();
  assert.equal(saved.email, 'ann@example.com');

  // A wrong email is refused; emptying the field then removes it.
  await page.fill('#email', 'not an email');
  await page.locator('#email').blur();
  await page.waitForSelector('#email[aria-invalid="true"]', { timeout: WAIT });
  await page.fill('#email', '');
  await page.locator('#email').blur();
  await settled(page);
  assert.equal(await page.getAttribute('#email', 'aria-invalid'), null);
  const cleared = await (await fetch(`${server.url}/docs/${c}/new`)).json();
  assert.equal(Object.hasOwn(cleared, 'email'), false, JSON.stringify(cleared));
});

test('a schema that lists only some of the form and wants a line item: the form opens, and adding an item saves it', { timeout: 60_000 }, async (t) => {
  const schema = {
    type: 'object',
    additionalProperties: false,
    properties: { title: { type: 'string' }, customer: { type: 'string' }, items: { type: 'array', minItems: 1 } },
  };
  const { page, c } = await schemaPage(t, 'e2eclosed', schema, 'some');
  await page.click('#add-item');
  await page.waitForSelector('#items li.item input.desc', { timeout: WAIT });
  await page.fill('#items li.item input.desc', 'Paper');
  await page.locator('#items li.item input.desc').blur();
  await settled(page);
  const saved = await (await fetch(`${server.url}/docs/${c}/some`)).json();
  assert.deepEqual(
    saved.items.map((it) => it.desc),
    ['Paper'],
  );
  assert.equal(saved.email, undefined, 'a member the schema does not list is left out');
});

test('a schema that refuses every empty form: the form is a draft until Create, and a draft joins a document created meanwhile', { timeout: 90_000 }, async (t) => {
  const schema = {
    type: 'object',
    required: ['title'],
    properties: { title: { type: 'string', minLength: 1 }, email: { type: 'string', format: 'email' }, items: { type: 'array', items: { type: 'object', properties: { qty: { type: 'integer', minimum: 1 } } } } },
  };
  const { page: alice, c } = await schemaPage(t, 'e2edraft', schema, 'd', async () => {}, drafted);
  const bob = await formPage(t, c, 'd', 'bob', async () => {}, drafted);
  assert.equal((await fetch(`${server.url}/docs/${c}/d`)).status, 404, 'nothing is created before Create');
  await shot(t, alice, '1-draft');

  // Create with an empty title: refused, the field marked, nothing written.
  await alice.fill('#customer', 'Acme');
  await alice.click('#create');
  await alice.waitForSelector('#title[aria-invalid="true"]', { timeout: WAIT });
  assert.match(await alice.textContent('#activity'), /Title: /);
  assert.equal((await fetch(`${server.url}/docs/${c}/d`)).status, 404);
  await alice.fill('#title', 'Q1 order');
  await alice.click('#add-item');
  await alice.fill('#items li.item input.desc', 'Paper');
  // A reload finds the draft again.
  alice.once('dialog', (d) => d.accept());
  await alice.reload();
  await drafted(alice);
  assert.equal(await alice.inputValue('#title'), 'Q1 order');
  assert.equal(await alice.inputValue('#customer'), 'Acme');
  assert.equal(await alice.inputValue('#items li.item input.desc'), 'Paper');
  await alice.click('#create');
  await settled(alice);
  await shot(t, alice, '2-created');
  let saved = await (await fetch(`${server.url}/docs/${c}/d`)).json();
  assert.equal(saved.title, 'Q1 order');
  assert.equal(saved.customer, 'Acme');
  assert.deepEqual(
    saved.items.map((it) => it.desc),
    ['Paper'],
  );

  // Bob's draft, begun before Alice created the document: his notes join
  // hers, his title asks which to keep, his line item is added.
  await bob.fill('#title', 'Q1');
  await bob.fill('#notes', 'deliver Monday');
  await bob.click('#add-item');
  await bob.fill('#items li.item input.desc', 'Ink');
  await bob.click('#create');
  await bob.waitForSelector('.conflict .keep-mine', { timeout: WAIT });
  await shot(t, bob, '3-joined');
  await bob.click('.conflict .keep-mine');
  await settled(bob);
  saved = await (await fetch(`${server.url}/docs/${c}/d`)).json();
  assert.equal(saved.title, 'Q1');
  assert.equal(saved.customer, 'Acme');
  assert.equal(saved.notes, 'deliver Monday');
  assert.deepEqual(saved.items.map((it) => it.desc).sort(), ['Ink', 'Paper']);
  await valueIs(alice, '#notes', 'deliver Monday');
});

test('a draft left in the browser joins the document someone else created since', { timeout: 60_000 }, async (t) => {
  const schema = { type: 'object', required: ['title'], properties: { title: { type: 'string', minLength: 1 } } };
  const { page, c } = await schemaPage(t, 'e2eleft', schema, 'l', async () => {}, drafted);
  await page.fill('#notes', 'typed in a draft');
  const made = await fetch(`${server.url}/docs/${c}/l`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title: 'Made elsewhere' }) });
  assert.equal(made.status, 201);
  page.once('dialog', (d) => d.accept());
  await page.reload();
  await settled(page);
  await valueIs(page, '#notes', 'typed in a draft');
  // The joined field is sent after the typing pause.
  await page.waitForFunction(() => globalThis.patchdDemo.unsent() === 0, null, { timeout: WAIT });
  await settled(page);
  const doc = await (await fetch(`${server.url}/docs/${c}/l`)).json();
  assert.deepEqual([doc.title, doc.notes], ['Made elsewhere', 'typed in a draft']);
  // Saved: the stored draft is gone.
  await page.waitForFunction((k) => localStorage.getItem(k) === null, `patchd-draft:${c}/l`, { timeout: WAIT });
});

test('a required field emptied is refused once, marked, and saves when filled again', { timeout: 60_000 }, async (t) => {
  const patches = [];
  const schema = { type: 'object', required: ['customer'], properties: { customer: { type: 'string', minLength: 2 } } };
  const c = `e2ereq${process.pid}`;
  const put = await fetch(`${server.url}/schemas/${c}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(schema) });
  assert.equal(put.status, 201);
  const made = await fetch(`${server.url}/docs/${c}/r`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ customer: 'Acme' }) });
  assert.equal(made.status, 201);
  const page = await formPage(t, c, 'r', 'alice', (p) => p.on('response', (r) => r.request().method() === 'PATCH' && patches.push(r.status())));
  await page.fill('#customer', '');
  await page.locator('#customer').blur();
  await page.waitForSelector('#customer[aria-invalid="true"]', { timeout: WAIT });
  await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'error', null, { timeout: WAIT });
  assert.match(await page.textContent('#status'), /Customer: required/);
  // The refusal is final: nothing more is sent until the field changes.
  const n = patches.length;
  assert.ok(n <= 2, `${n} PATCHes for one emptied field`);
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 1500)));
  assert.equal(patches.length, n, 'the refused field is not sent again by itself');
  await page.fill('#customer', 'Acme Ltd');
  await page.locator('#customer').blur();
  await settled(page);
  assert.equal((await (await fetch(`${server.url}/docs/${c}/r`)).json()).customer, 'Acme Ltd');
});

test('line items under a schema that needs their description: a new row waits on the page until it is filled in', { timeout: 60_000 }, async (t) => {
  const schema = {
    type: 'object',
    properties: { items: { type: 'array', items: { type: 'object', required: ['desc'], properties: { desc: { type: 'string', minLength: 1 }, qty: { type: 'integer', minimum: 1 } } } } },
  };
  const { page, c } = await schemaPage(t, 'e2edesc', schema, 'lines');
  await page.click('#add-item');
  await page.waitForSelector('#items li.item input.desc', { timeout: WAIT });
  // The row shows at once; what the page says of it comes with the server's refusal.
  await page.waitForFunction(() => /not saved yet/.test(document.querySelector('#activity').textContent), null, { timeout: WAIT });
  assert.equal((await (await fetch(`${server.url}/docs/${c}/lines`)).json()).items.length, 0);
  await page.fill('#items li.item input.desc', 'Paper');
  await page.locator('#items li.item input.desc').blur();
  await settled(page);
  const saved = await (await fetch(`${server.url}/docs/${c}/lines`)).json();
  assert.deepEqual(
    saved.items.map((it) => [it.desc, it.qty]),
    [['Paper', 1]],
  );
  // The row, now in the document, is edited as any other.
  await page.fill('#items li.item input.qty', '3');
  await page.locator('#items li.item input.qty').blur();
  await settled(page);
  assert.equal((await (await fetch(`${server.url}/docs/${c}/lines`)).json()).items[0].qty, 3);
  assert.equal(await page.locator('#items li.item').count(), 1);
});

test('line items kept on the page: a quantity alone is sent once, rows stay in place, a row removed while on its way is not kept, one added offline keeps its text', { timeout: 90_000 }, async (t) => {
  const schema = {
    type: 'object',
    properties: { items: { type: 'array', items: { type: 'object', required: ['desc'], properties: { desc: { type: 'string', minLength: 1 }, qty: { type: 'integer', minimum: 1 } } } } },
  };
  const patches = [];
  let hold = null; // a gate for the next add of a whole line item
  const { page, c } = await schemaPage(t, 'e2ekept', schema, 'k', (p) =>
    routeWrites(p, async (route) => {
      patches.push(route.request().postData());
      const g = hold;
      if (g && /"op":"add","path":"\/items\/\d+"/.test(route.request().postData() ?? '')) {
        hold = null;
        await g.wait();
      }
      return route.continue();
    }),
  );
  const rows = () => page.$$eval('#items li.item', (lis) => lis.map((li) => [li.querySelector('input.desc').value, li.querySelector('input.qty').value]));
  const serverItems = async () => (await (await fetch(`${server.url}/docs/${c}/k`)).json()).items.map((it) => it.desc);
  // Three rows, none saved yet; a quantity typed alone is refused once.
  for (let i = 0; i < 3; i++) {
    await page.click('#add-item');
    await page.waitForFunction((n) => document.querySelectorAll('#items li.item').length === n, i + 1, { timeout: WAIT });
  }
  const n0 = patches.length;
  await page.locator('#items li.item input.qty').nth(0).fill('7');
  await page.locator('#title').click();
  await page.waitForFunction(() => document.querySelector('#items li.item .mark').textContent !== '', null, { timeout: WAIT });
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 1500)));
  assert.ok(patches.length - n0 <= 1, `${patches.length - n0} PATCHes for one quantity typed`);
  // The last row filled first stays where it is.
  await page.locator('#items li.item input.desc').nth(2).fill('third');
  await page.locator('#title').click();
  await page.waitForFunction(async () => globalThis.patchdDemo.unsent() === 0, null, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('#items li.item')[2].querySelector('input.desc').value === 'third', null, { timeout: WAIT });
  await page.locator('#items li.item input.desc').nth(0).fill('first');
  await page.locator('#title').click();
  await page.locator('#items li.item input.desc').nth(1).fill('second');
  await page.locator('#title').click();
  await settled(page);
  assert.deepEqual(
    (await rows()).map((r) => r[0]),
    ['first', 'second', 'third'],
  );
  assert.deepEqual(await serverItems(), ['first', 'second', 'third']);
  // A row removed while its add is on its way is not kept.
  hold = gate();
  const held = hold;
  await page.click('#add-item');
  await page.waitForFunction(() => document.querySelectorAll('#items li.item').length === 4, null, { timeout: WAIT });
  await page.locator('#items li.item input.desc').nth(3).fill('gone');
  await page.locator('#title').click();
  await page.locator('#items li.item .remove').nth(3).click();
  held.open();
  await settled(page);
  await page.waitForFunction(() => document.querySelectorAll('#items li.item').length === 3, null, { timeout: WAIT });
  assert.deepEqual(await serverItems(), ['first', 'second', 'third']);
  // Added and typed offline: kept, and saved once back online.
  await page.context().setOffline(true);
  await page.click('#add-item');
  await page.waitForFunction(() => document.querySelectorAll('#items li.item').length === 4, null, { timeout: WAIT });
  await page.locator('#items li.item input.desc').nth(3).fill('offline item');
  await page.locator('#title').click();
  await page.context().setOffline(false);
  await page.waitForFunction(() => globalThis.patchdDemo.unsent() === 0 && document.querySelector('#status').dataset.state === 'live', null, { timeout: 30_000 });
  assert.deepEqual(await serverItems(), ['first', 'second', 'third', 'offline item']);
  assert.equal((await rows()).length, 4);
});

test('text typed while Create is on its way is kept and saved, and two tabs keep drafts of their own', { timeout: 60_000 }, async (t) => {
  const schema = { type: 'object', required: ['title'], properties: { title: { type: 'string', minLength: 1 } } };
  const put = gate();
  let holding = false; // Create's PUT is held, not the page's first try
  const { page, c } = await schemaPage(
    t,
    'e2ecreating',
    schema,
    'w',
    (p) =>
      p.route('**/docs/**', async (route) => {
        if (holding && route.request().method() === 'PUT') await put.wait();
        return route.continue();
      }),
    drafted,
  );
  // Another tab of the same browser types a draft of its own after this
  // one did.
  await page.fill('#title', 'Q2');
  const other = await page.context().newPage();
  await other.goto(`${server.url}/?c=${c}&id=w&debounce=100`);
  await drafted(other);
  await other.fill('#title', '');
  await other.fill('#notes', 'from the other tab');
  page.once('dialog', (d) => d.accept());
  await page.reload();
  await drafted(page);
  assert.equal(await page.inputValue('#title'), 'Q2', "the other tab's draft did not replace this one's");
  holding = true;
  await page.click('#create');
  await page.fill('#customer', 'typed meanwhile');
  put.open();
  await page.waitForFunction(() => globalThis.patchdDemo.doc() !== null, null, { timeout: WAIT });
  await settled(page);
  await valueIs(page, '#customer', 'typed meanwhile');
  const doc = await (await fetch(`${server.url}/docs/${c}/w`)).json();
  assert.deepEqual([doc.title, doc.customer], ['Q2', 'typed meanwhile']);
});

test('two edits that together break a rule across fields: refused as such, and saved once the other field meets it', { timeout: 90_000 }, async (t) => {
  // Notes are required when the order is urgent.
  const schema = {
    type: 'object',
    if: { properties: { urgent: { const: true } }, required: ['urgent'] },
    then: { properties: { notes: { type: 'string', minLength: 1 } } },
  };
  const { page: alice, c } = await schemaPage(t, 'e2erule', schema, 'x');
  await alice.fill('#notes', 'call first');
  await alice.locator('#notes').blur();
  await settled(alice);
  // Bob's first write is held on its way until Alice's is saved: both
  // are made against the same version.
  const held = gate();
  const bob = await formPage(t, c, 'x', 'bob', (p) => routeWrites(p, async (route, n) => (n === 1 ? held.wait().then(() => route.continue()) : route.continue())));
  await valueIs(bob, '#notes', 'call first');
  await bob.check('#urgent');
  await alice.fill('#notes', '');
  await alice.locator('#notes').blur();
  await settled(alice);
  held.open();
  // Bob's edit merged with Alice's breaks the rule: refused with the
  // rule's reason, and no conflict prompt blames Alice for Urgent.
  await bob.waitForSelector('#urgent[aria-invalid="true"]', { timeout: WAIT });
  await bob.waitForFunction(() => document.querySelector('#status').dataset.state === 'error', null, { timeout: WAIT });
  await shot(t, bob, '1-refused');
  assert.equal(await bob.$('.conflict'), null, 'no conflict prompt');
  assert.match(await bob.textContent('#status'), /Urgent: .*someone else.*Notes may not be empty/);
  assert.equal(await bob.isChecked('#urgent'), true, 'what Bob set is kept on his page');
  let doc = await (await fetch(`${server.url}/docs/${c}/x`)).json();
  assert.equal(doc.urgent, false);
  // Alice fills the notes again; Bob saves another field: his refused
  // Urgent is sent again, and now meets the rule.
  await alice.fill('#notes', 'call first, then ship');
  await alice.locator('#notes').blur();
  await settled(alice);
  await valueIs(bob, '#notes', 'call first, then ship');
  await bob.fill('#customer', 'Acme');
  await bob.locator('#customer').blur();
  await bob.waitForFunction(() => document.querySelector('#urgent').getAttribute('aria-invalid') === null, null, { timeout: WAIT });
  await settled(bob);
  doc = await (await fetch(`${server.url}/docs/${c}/x`)).json();
  assert.equal(doc.urgent, true, JSON.stringify(doc));
  assert.equal(doc.customer, 'Acme');
});

test('once a field refused for another field is saved, the status names the field still refused, not it', { timeout: 90_000 }, async (t) => {
  const schema = {
    type: 'object',
    properties: { email: { type: 'string', pattern: '^[^@ ]+@[^@ ]+$' } },
    if: { properties: { urgent: { const: true } }, required: ['urgent'] },
    then: { properties: { notes: { type: 'string', minLength: 1 } } },
  };
  const { page, c } = await schemaPage(t, 'e2estatus', schema, 's');
  await page.fill('#email', 'not-an-email');
  await page.locator('#email').blur();
  await page.waitForSelector('#email[aria-invalid="true"]', { timeout: WAIT });
  await page.check('#urgent');
  await page.waitForSelector('#urgent[aria-invalid="true"]', { timeout: WAIT });
  assert.match(await page.textContent('#status'), /Urgent: /);
  // Notes filled: Urgent, sent again, now meets the rule; Email is still refused.
  await page.fill('#notes', 'call first');
  await page.locator('#notes').blur();
  await page.waitForFunction(() => document.querySelector('#urgent').getAttribute('aria-invalid') === null, null, { timeout: WAIT });
  const doc = await serverUntil(server, 's', (d) => d.urgent === true, 'Urgent saved', { c });
  assert.deepEqual([doc.urgent, doc.notes, doc.email ?? ''], [true, 'call first', '']);
  // Nothing is on its way: the status says what is left.
  await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'error', null, { timeout: WAIT });
  const status = await page.textContent('#status');
  assert.match(status, /Email: /, 'the status names the field still refused');
  assert.doesNotMatch(status, /Urgent/, 'not the field saved since');
});

test('text typed while a refused edit was on its way is kept and saved', { timeout: 60_000 }, async (t) => {
  const { page, c } = await schemaPage(t, 'e2emin', { type: 'object', properties: { title: { type: 'string', maxLength: 3 } } }, 'typing');
  // The first PATCH is held on its way until the user has typed on.
  let letGo;
  const held = new Promise((resolve) => (letGo = resolve));
  let sent;
  const first = new Promise((resolve) => (sent = resolve));
  let patches = 0;
  await page.route('**/docs/**', async (route) => {
    if (route.request().method() === 'PATCH' && patches++ === 0) {
      sent();
      await held;
    }
    await route.continue();
  });
  await page.fill('#title', 'Too long');
  await first;
  await page.fill('#title', 'Ok');
  letGo();
  await settled(page);
  assert.equal(await page.inputValue('#title'), 'Ok');
  assert.equal(await page.getAttribute('#title', 'aria-invalid'), null);
  const saved = await (await fetch(`${server.url}/docs/${c}/typing`)).json();
  assert.equal(saved.title, 'Ok');
});
