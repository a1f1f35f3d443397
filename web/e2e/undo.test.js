// Undo and the history panel, end to end in Chromium with three people
// (browser contexts) on one document: Alice and Bob edit, Carol watches
// and reverts from the history panel.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, gate, live, ownPage, people, routeWrites, serverDoc, serverHistory, serverUntil, settled, shot, valueIs } from './support.js';

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

async function edit(page, selector, value) {
  await page.fill(selector, value);
  await page.evaluate(() => globalThis.patchdDemo.flush());
  await settled(page);
}

/** The history panel's rows as text, newest first. */
function historyRows(page) {
  return page.$$eval('#history .version', (lis) => lis.map((li) => `${li.dataset.seq} ${li.querySelector('.action').textContent}`));
}

function rowsAre(page, want) {
  return page
    .waitForFunction((n) => document.querySelectorAll('#history .version').length === n, want.length, { timeout: WAIT })
    .then(async () => assert.deepEqual(await historyRows(page), want));
}

function msgHas(page, selector, text) {
  return page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent.includes(t), [selector, text], { timeout: WAIT });
}

test('Alice undoes her edit while Bob edits another field: all see hers gone and his kept; history shows it and a Revert works', { timeout: 120_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol']);
  const { alice, bob, carol } = pages;
  const all = [alice, bob, carol];

  await edit(alice, '#title', 'Title by Alice'); // version 2
  await valueIs(bob, '#title', 'Title by Alice');
  await edit(bob, '#customer', 'Bob Ltd'); // version 3
  for (const p of all) await valueIs(p, '#customer', 'Bob Ltd');
  await Promise.all(all.map((p) => shot(t, p, '1-both-edited')));

  await alice.click('#undo'); // version 4 reverts 2
  for (const p of all) {
    await valueIs(p, '#title', '');
    await valueIs(p, '#customer', 'Bob Ltd');
  }
  await msgHas(alice, '#undo-msg', 'Undid your change (version 2)');
  assert.doesNotMatch(await alice.textContent('#activity'), /Title/, 'her own undo is not "someone else"');
  const saved = await serverDoc(server, id);
  assert.equal(saved.title, '');
  assert.equal(saved.customer, 'Bob Ltd');
  const versions = await serverHistory(server, id);
  assert.equal(versions.at(-1).kind, 'revert');
  assert.equal(versions.at(-1).reverts, 2);
  await Promise.all(all.map((p) => shot(t, p, '2-alice-undid')));

  // Every page's panel shows who changed which field, newest first, live.
  const want = ['4 undid version 2 (Title)', '3 changed Customer', '2 changed Title', '1 created the form'];
  for (const p of all) await rowsAre(p, want);
  // Without tokens there is no actor: the panel names the request instead.
  const whos = await carol.$$eval('#history .version .who', (els) => els.map((e) => e.textContent));
  for (const w of whos) assert.match(w, /^someone \(request .{6}\)$/);
  assert.equal(new Set(whos.slice(0, 3)).size, 3, 'three writes, three request ids');
  assert.equal(await carol.locator('#history .version[data-seq="1"] button.revert').count(), 0, 'the creation cannot be reverted');

  // Carol reverts Bob's version 3 from her panel.
  await carol.click('#history .version[data-seq="3"] button.revert'); // version 5
  for (const p of all) await valueIs(p, '#customer', '');
  await msgHas(carol, '#history .history-msg', 'Reverted version 3.');
  await serverUntil(server, id, (d) => d.customer === '', 'the revert of version 3');
  for (const p of all) await rowsAre(p, ['5 undid version 3 (Customer)', ...want]);
  await Promise.all(all.map((p) => shot(t, p, '3-carol-reverted')));
});

test('Undo again and again takes back two edits of one field, then a line item typed in and added', { timeout: 120_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob']);
  const { alice, bob } = pages;
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Pens');
  await alice.evaluate(() => globalThis.patchdDemo.flush());
  await settled(alice);
  await edit(alice, '#title', 'one');
  await edit(alice, '#title', 'two');
  await alice.click('#undo');
  await serverUntil(server, id, (d) => d.title === 'one', 'the first undo');
  await alice.click('#undo');
  await serverUntil(server, id, (d) => d.title === '', 'the second undo');
  await valueIs(bob, '#title', '');
  await alice.click('#undo'); // what was typed in the line item
  await serverUntil(server, id, (d) => d.items?.[0]?.desc === '', 'the third undo');
  await alice.click('#undo'); // the line item's add
  const doc = await serverUntil(server, id, (d) => (d.items ?? []).length === 0, 'the fourth undo: the line item added');
  assert.equal(doc.title, '');
  assert.doesNotMatch(await alice.textContent('#activity'), /Cannot undo/);
});

test('an undo or a revert of a field someone changed later is refused, says so, and changes nothing', { timeout: 120_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol']);
  const { alice, bob, carol } = pages;

  await edit(alice, '#title', 'Alice'); // version 2
  await valueIs(bob, '#title', 'Alice');
  await edit(bob, '#title', 'Bob'); // version 3
  await valueIs(alice, '#title', 'Bob');
  const before = await serverHistory(server, id);

  await alice.click('#undo');
  await msgHas(alice, '#undo-msg', 'Cannot undo your last change: Title was changed again later (version 3); that change is kept.');
  await shot(t, alice, '1-undo-refused');
  assert.deepEqual(await serverHistory(server, id), before, 'nothing was written');
  assert.equal(await alice.inputValue('#title'), 'Bob');

  await carol.waitForSelector('#history .version[data-seq="3"]', { timeout: WAIT });
  await carol.click('#history .version[data-seq="2"] button.revert');
  await msgHas(carol, '#history .history-msg', 'Could not revert version 2: Title was changed again later (version 3)');
  await shot(t, carol, '2-revert-refused');
  assert.deepEqual(await serverHistory(server, id), before, 'nothing was written');

  // Alice skips the edit she could not undo: Undo then has nothing left.
  await alice.click('#undo-msg button.skip-undo');
  await alice.click('#undo');
  await msgHas(alice, '#undo-msg', 'Nothing of yours to undo.');

  // Ctrl+Z outside a text field undoes (here: the checkbox Carol just
  // ticked); in a text field it is the browser's own undo of typing.
  await carol.click('#urgent');
  await settled(carol);
  await serverUntil(server, id, (d) => d.urgent === true, 'urgent ticked');
  await carol.focus('#notes');
  await carol.keyboard.press('Control+z');
  // An undo disables the button at once, before any request.
  assert.equal(await carol.isDisabled('#undo'), false, 'Ctrl+Z in a text field left Undo alone');
  assert.equal(await carol.evaluate(() => globalThis.patchdDemo.doc().undoable), 1);
  await carol.focus('#urgent');
  await carol.keyboard.press('Control+z');
  await serverUntil(server, id, (d) => d.urgent === false, 'urgent undone by Ctrl+Z');
  await bob.waitForFunction(() => document.querySelector('#urgent').checked === false, null, { timeout: WAIT });
  await shot(t, bob, '3-ctrl-z');
});

test('the history panel loads the newest versions first and older ones on demand', { timeout: 60_000 }, async (t) => {
  const id = `e2e-history-${process.pid}-${Date.now().toString(36)}`;
  const url = `${server.url}/docs/demo/${id}`;
  let res = await fetch(url, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title: '', customer: '', email: '', notes: '', urgent: false, items: [] }) });
  assert.equal(res.status, 201);
  for (let i = 1; i <= 24; i++) {
    const field = i % 2 ? 'notes' : 'email';
    res = await fetch(url, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': res.headers.get('ETag') },
      body: JSON.stringify([{ op: 'replace', path: `/${field}`, value: `v${i}` }]),
    });
    assert.equal(res.status, 200);
  }
  const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.who = 'dana';
  await page.goto(`${server.url}/?id=${id}`);
  await live(page);
  const seqs = () => page.$$eval('#history .version', (lis) => lis.map((li) => Number(li.dataset.seq)));
  await page.waitForFunction(() => document.querySelectorAll('#history .version').length === 20, null, { timeout: WAIT });
  assert.deepEqual(await seqs(), Array.from({ length: 20 }, (_, i) => 25 - i));
  assert.equal(await page.textContent('#history .version[data-seq="25"] .action'), 'changed Email');
  assert.equal(await page.textContent('#history .version[data-seq="24"] .action'), 'changed Notes');
  await page.click('#history .history-older');
  await page.waitForFunction(() => document.querySelectorAll('#history .version').length === 25, null, { timeout: WAIT });
  assert.deepEqual(await seqs(), Array.from({ length: 25 }, (_, i) => 25 - i));
  assert.equal(await page.isHidden('#history .history-older'), true, 'nothing older than the first version');
  await shot(t, page, '1-all-versions');
});

/** Starts patchd with --tokens and a tokens file holding lines; stopped when t ends. */
async function tokenServer(t, lines) {
  const dir = mkdtempSync(join(tmpdir(), 'patchd-tokens-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'tokens'), lines, { mode: 0o600 });
  const authd = await startPatchd(['--tokens', join(dir, 'tokens')]);
  t.after(() => authd.stop());
  return authd;
}

test('with tokens the history panel names the people', { timeout: 60_000 }, async (t) => {
  const tokens = { alice: 'alice-token-0123456789', bob: 'bob-token-0123456789ab' };
  const authd = await tokenServer(t, `${tokens.alice} write name=alice\n${tokens.bob} write name=bob\n`);
  const id = `e2e-actors-${process.pid}-${Date.now().toString(36)}`;
  const pages = {};
  for (const who of ['alice', 'bob']) {
    // The browser adds the token to every request (the sign-in test below types it).
    const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 }, extraHTTPHeaders: { Authorization: `Bearer ${tokens[who]}` } });
    t.after(() => ctx.close());
    const page = await ctx.newPage();
    page.who = who;
    await page.goto(`${authd.url}/?id=${id}&debounce=300`);
    await live(page);
    pages[who] = page;
  }
  const { alice, bob } = pages;
  await edit(alice, '#title', 'Hello');
  await valueIs(bob, '#title', 'Hello');
  await edit(bob, '#customer', 'Bob Ltd');
  for (const p of [alice, bob]) {
    await p.waitForFunction(() => document.querySelectorAll('#history .version').length === 3, null, { timeout: WAIT });
    const rows = await p.$$eval('#history .version', (lis) => lis.map((li) => `${li.querySelector('.who').textContent} ${li.querySelector('.action').textContent}`));
    assert.deepEqual(rows, ['bob changed Customer', 'alice changed Title', 'alice created the form']);
  }
  // Presence names them as History does: by their tokens' names.
  await alice.waitForSelector('#people .avatar[title="bob"]', { timeout: WAIT });
  await bob.waitForSelector('#people .avatar[title="alice"]', { timeout: WAIT });
  await bob.focus('#notes');
  assert.equal(await alice.locator('.field:has(#notes) .editing').textContent({ timeout: WAIT }), 'bob is editing');
  await shot(t, alice, '1-named');
});

test('a write refused to a read-only token asks for another, and sends what was typed with it', { timeout: 60_000 }, async (t) => {
  const reader = 'dave-reads-0123456789';
  const writer = 'erin-writes-0123456789';
  const authd = await tokenServer(t, `${reader} read name=dave\n${writer} write name=erin\n`);
  const id = `e2e-reader-${process.pid}-${Date.now().toString(36)}`;
  const made = await fetch(`${authd.url}/docs/demo/${id}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${writer}` },
    body: JSON.stringify({ title: '', customer: '', email: '', notes: '', urgent: false, items: [] }),
  });
  assert.equal(made.status, 201);
  const { page, errors } = await ownPage(t, browser, 'dave');
  await page.goto(`${authd.url}/?id=${id}&debounce=100`);
  await page.waitForSelector('#signin form #token', { timeout: WAIT });
  await page.fill('#token', reader);
  await Promise.all([page.waitForEvent('load'), page.click('#signin button')]);
  await live(page);
  await page.fill('#title', 'Typed while reading');
  // Refused while the focus is still in the field: the token is asked for
  // without taking the keyboard, and typing goes on in the field.
  await page.waitForSelector('#signin form #token', { timeout: WAIT });
  assert.match(await page.textContent('#signin'), /may not do this here/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'title');
  await page.keyboard.type(' on');
  assert.equal(await page.inputValue('#token'), '');
  await page.locator('#title').blur();
  assert.equal(await page.inputValue('#title'), 'Typed while reading on', 'the typed text is kept');
  await page.fill('#token', writer);
  await page.click('#signin button');
  await settled(page);
  assert.equal(await page.$('#signin form'), null);
  const res = await fetch(`${authd.url}/docs/demo/${id}/history`, { headers: { Authorization: `Bearer ${writer}` } });
  const { versions } = await res.json();
  assert.deepEqual(
    versions.map((v) => v.actor),
    ['erin', 'erin'],
  );
  const doc = await (await fetch(`${authd.url}/docs/demo/${id}`, { headers: { Authorization: `Bearer ${writer}` } })).json();
  assert.equal(doc.title, 'Typed while reading on');
  assert.deepEqual(errors, []);
});

test('with tokens the demo asks for one, and works with it; the list page too', { timeout: 60_000 }, async (t) => {
  const token = 'carol-token-0123456789';
  const authd = await tokenServer(t, `${token} write name=carol\n`);
  const id = `e2e-signin-${process.pid}-${Date.now().toString(36)}`;
  const { ctx, page, errors } = await ownPage(t, browser, 'carol');
  // No request but the API's is refused: no favicon.ico asked for.
  const refused = [];
  page.on('response', (r) => r.status() === 401 && !new URL(r.url()).pathname.startsWith('/docs/') && refused.push(r.url()));
  await page.goto(`${authd.url}/?id=${id}&debounce=100`);
  await page.waitForSelector('#signin form #token', { timeout: WAIT });
  assert.match(await page.textContent('#signin'), /needs a token/);
  // A wrong token is refused and asked for again.
  await page.fill('#token', 'not-a-token-0123456789');
  await Promise.all([page.waitForEvent('load'), page.click('#signin button')]);
  await page.waitForSelector('#signin form #token', { timeout: WAIT });
  assert.match(await page.textContent('#signin'), /did not accept this token/);
  await page.fill('#token', token);
  await Promise.all([page.waitForEvent('load'), page.click('#signin button')]);
  await live(page);
  assert.equal(await page.$('#signin form'), null);
  await edit(page, '#title', 'Signed in');
  // Another window opened from the page has the tab's token (same origin,
  // its session storage copied): it needs no sign-in.
  const [other] = await Promise.all([ctx.waitForEvent('page'), page.click('#new-window')]);
  await live(other);
  assert.equal(await other.$('#signin form'), null);
  await other.close();
  const res = await fetch(`${authd.url}/docs/demo/${id}/history`, { headers: { Authorization: `Bearer ${token}` } });
  const { versions } = await res.json();
  assert.deepEqual(
    versions.map((v) => v.actor),
    ['carol', 'carol'],
  );
  // The tab keeps the token: the list page of the same tab is live too.
  await page.goto(`${authd.url}/ui/list.html?c=demo`);
  await page.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
  await page.waitForFunction((id) => document.querySelector(`#list tbody tr[data-id="${id}"]`), id, { timeout: WAIT });
  await shot(t, page, '1-list-signed-in');
  assert.deepEqual(errors, []);
  assert.deepEqual(refused, [], 'requests outside the API refused for the token');
});

test('a deleted form brought back by Revert: the page says so, History names it, and an edit refused meanwhile is sent', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob']);
  const { alice, bob } = pages;
  await edit(alice, '#title', 'Before');
  await valueIs(bob, '#title', 'Before');
  // Bob's next write reaches the server only after the form is deleted.
  const arrived = gate();
  const held = gate();
  await routeWrites(bob, async (route) => {
    arrived.open();
    await held.wait();
    return route.continue();
  });
  await bob.fill('#notes', 'Typed by Bob');
  await bob.evaluate(() => globalThis.patchdDemo.flush());
  await arrived.wait();
  const del = await fetch(`${server.url}/docs/demo/${id}`, { method: 'DELETE', headers: { 'If-Match': '*' } });
  assert.equal(del.status, 204);
  await alice.waitForFunction(() => /This document was deleted/.test(document.querySelector('#activity').textContent), null, { timeout: WAIT });
  held.open();
  await bob.waitForSelector('.mark[data-refused]', { timeout: WAIT });

  // Alice reverts the delete from History.
  const delSeq = (await serverHistory(server, id)).at(-1).seq;
  // What the activity line says, every line (another may follow at once).
  await alice.evaluate(() => {
    const el = document.querySelector('#activity');
    globalThis.said = [];
    new MutationObserver(() => globalThis.said.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
  });
  await alice.click(`#history .version[data-seq="${delSeq}"] button.revert`);
  await alice.waitForFunction(() => globalThis.said.includes('This document is back.'), null, { timeout: WAIT });
  // The revert is the version after the delete (Bob's edit may follow it).
  await alice.waitForFunction(
    (seq) => document.querySelector(`#history .version[data-seq="${seq + 1}"] .action`)?.textContent === `undid version ${seq} (brought the form back)`,
    delSeq,
    { timeout: WAIT },
  );
  await valueIs(alice, '#title', 'Before');
  // Bob's refused edit is sent again now that the form exists.
  await serverUntil(server, id, (d) => d?.notes === 'Typed by Bob', "Bob's notes saved after the form came back");
  await settled(bob);
  assert.equal(await bob.locator('.mark[data-refused]').count(), 0);
  await valueIs(alice, '#notes', 'Typed by Bob');
  await Promise.all([shot(t, alice, '1-back'), shot(t, bob, '1-back')]);
});
