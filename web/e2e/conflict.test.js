// The conflict prompt, end to end in Chromium with three people (browser
// contexts): Alice and Bob edit, Carol watches. Issue 16, cases 1, 2 and
// the stale "Choose which value" line of case 4.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, gate, people, recordShown, routeWrites, serverDoc, serverHistory, serverUntil, settled, shot, shown, valueIs } from './support.js';

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

const flush = (page) => page.evaluate(() => globalThis.patchdDemo.flush());

/** Adds a line item for each description, typed into its new row, each saved before the next. */
async function addItems(page, descs) {
  for (const [i, desc] of descs.entries()) {
    await page.click('#add-item');
    await page.waitForFunction((n) => document.querySelector(`#items li:nth-child(${n}) input.desc`) === document.activeElement, [i + 1], { timeout: WAIT });
    await page.keyboard.type(desc);
    await flush(page);
    await settled(page);
  }
}

test('a conflict arriving while Alice types never takes the focus nor a keystroke; the value kept is exactly one side', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol'], { debounce: 300 });
  const { alice, bob, carol } = pages;
  await recordShown(carol, '#customer');
  await alice.evaluate(() => {
    globalThis.focusLog = [];
    document.addEventListener('focusin', (e) => globalThis.focusLog.push(e.target.id || e.target.className));
  });
  // Alice's first write reaches the server only after Bob's has committed.
  const bobSaved = gate();
  await routeWrites(alice, async (route, n) => {
    if (n === 1) await bobSaved.wait();
    return route.continue();
  });

  await alice.click('#customer');
  await alice.keyboard.type('Bob');
  await bob.fill('#customer', 'Ann');
  await flush(bob);
  await settled(bob);
  assert.equal((await serverDoc(server, id)).customer, 'Ann');
  await valueIs(carol, '#customer', 'Ann');

  // Alice paused (her write went out after 300 ms, and waits at the gate);
  // she goes on typing, and the conflict arrives between two keystrokes.
  await alice.keyboard.type(' and');
  bobSaved.open();
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  await shot(t, alice, '1-conflict-arrives');
  await alice.keyboard.type(' Sons');

  assert.equal(await alice.inputValue('#customer'), 'Bob and Sons', 'every keystroke went to the field');
  assert.deepEqual(await alice.evaluate(() => [...new Set(globalThis.focusLog)]), ['customer'], 'nothing but the field had the focus');
  assert.equal(await alice.evaluate(() => document.activeElement.id), 'customer');
  assert.equal(await alice.textContent('.conflict h2'), 'Customer was changed by someone else');
  assert.equal(await alice.textContent('.conflict .theirs'), 'Ann');
  assert.equal(await alice.textContent('.conflict .mine'), 'Bob and Sons');
  // What was typed after the write went out waits for the choice, and the
  // status says so rather than "saving" (it said "saving..." until then).
  await alice.waitForFunction(() => document.querySelector('#status').textContent === 'Live · waiting for your choice', null, { timeout: WAIT });
  // No keystroke pressed a button: the server still has Bob's value.
  await settled(bob);
  assert.equal((await serverDoc(server, id)).customer, 'Ann');
  await Promise.all([shot(t, alice, '2-typed-on'), shot(t, carol, '2-typed-on')]);

  // Alice decides, with the mouse.
  await alice.click('.conflict .keep-mine');
  await settled(alice);
  assert.equal((await serverDoc(server, id)).customer, 'Bob and Sons');
  await valueIs(bob, '#customer', 'Bob and Sons');
  await valueIs(carol, '#customer', 'Bob and Sons');
  assert.equal(await alice.locator('.conflict').count(), 0);
  assert.doesNotMatch(await alice.textContent('#activity'), /Choose which value/, 'the request to choose goes with the prompt');
  // Every value ever saved or shown is one person's whole value.
  const saved = (await serverHistory(server, id)).map((v) => v.ops.find((o) => o.path === '/customer')?.value).filter((v) => v !== undefined);
  assert.deepEqual(saved, ['Ann', 'Bob and Sons']);
  assert.ok((await shown(carol, '#customer')).every((v) => ['', 'Ann', 'Bob and Sons'].includes(v)), `carol saw ${await shown(carol, '#customer')}`);
  await Promise.all([shot(t, alice, '3-kept-mine'), shot(t, bob, '3-kept-mine'), shot(t, carol, '3-kept-mine')]);
});

test('keep mine never shows theirs in between', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol'], { debounce: 60_000 });
  const { alice, bob, carol } = pages;

  // A field: Bob commits first, Alice's edit made before it conflicts.
  await alice.fill('#title', 'Title by Alice');
  await bob.fill('#title', 'Title by Bob');
  await flush(bob);
  await settled(bob);
  await valueIs(carol, '#title', 'Title by Bob');
  await flush(alice);
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  await recordShown(alice, '#title');
  await recordShown(carol, '#title');
  // Hold the answer to keep mine, to look at the page meanwhile.
  const answer = gate();
  const sent = gate();
  await routeWrites(alice, async (route) => {
    sent.open();
    const response = await route.fetch();
    await answer.wait();
    return route.fulfill({ response });
  });
  await alice.click('.conflict .keep-mine');
  await sent.wait();
  assert.equal(await alice.inputValue('#title'), 'Title by Alice', 'the field shows what is being kept');
  await shot(t, alice, '1-keep-mine-in-flight');
  answer.open();
  await settled(alice);
  await valueIs(carol, '#title', 'Title by Alice');
  await valueIs(bob, '#title', 'Title by Alice');
  assert.deepEqual((await shown(alice, '#title')).filter((v) => v !== 'Title by Alice'), [], 'theirs never shown after keep mine');
  assert.deepEqual(await shown(carol, '#title'), ['Title by Alice']);
  assert.equal((await serverDoc(server, id)).title, 'Title by Alice');
  assert.doesNotMatch(await alice.textContent('#activity'), /Choose which value/);
  await Promise.all([shot(t, alice, '2-kept'), shot(t, carol, '2-kept')]);
});

test('keep mine on a line item someone removed puts it back with the text; the heading says removed', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol'], { debounce: 60_000 });
  const { alice, bob, carol } = pages;
  // Alice edits a line item's description while Bob removes it.
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Pens');
  await alice.fill('#items li:nth-child(1) input.qty', '3');
  await flush(alice);
  await settled(alice);
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Pens');
  await valueIs(carol, '#items li:nth-child(1) input.qty', '3');
  await alice.fill('#items li:nth-child(1) input.desc', 'Blue pens');
  await bob.click('#items li:nth-child(1) button.remove');
  await settled(bob);
  await carol.waitForFunction(() => document.querySelectorAll('#items li').length === 0, null, { timeout: WAIT });
  await flush(alice);
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  const heading = await alice.textContent('.conflict h2');
  assert.equal(heading, 'Line item 1 was removed by someone else');
  assert.match(await alice.textContent('.conflict .conflict-text'), /removed this line item/);
  assert.equal(await alice.textContent('.conflict .mine'), 'Blue pens');
  assert.doesNotMatch(await alice.textContent('#activity'), /changed/, 'the activity line says removed too');
  assert.match(await alice.textContent('#activity'), /removed it/);
  await Promise.all([shot(t, alice, '2-item-removed'), shot(t, bob, '2-item-removed')]);

  await alice.click('.conflict .keep-mine');
  await settled(alice);
  const saved = await serverUntil(server, id, (d) => d.items.length === 1, 'the item back');
  assert.deepEqual(saved.items.map((it) => [it.desc, it.qty]), [['Blue pens', 3]]);
  for (const p of [bob, carol]) {
    await valueIs(p, '#items li:nth-child(1) input.desc', 'Blue pens');
    await valueIs(p, '#items li:nth-child(1) input.qty', '3');
  }
  assert.equal(await alice.inputValue('#items li:nth-child(1) input.desc'), 'Blue pens');
  assert.doesNotMatch(await alice.textContent('#activity'), /Choose which value/);
  await Promise.all([shot(t, alice, '3-item-back'), shot(t, bob, '3-item-back'), shot(t, carol, '3-item-back')]);
});

test('an open prompt shows their value as it changes; keep mine on a line item then keeps it over the value shown, not an older one', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob'], { debounce: 60_000 });
  const { alice, bob } = pages;
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Pens');
  await flush(alice);
  await settled(alice);
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Pens');
  // Both edit the description; Bob's is saved first.
  await alice.fill('#items li:nth-child(1) input.desc', 'Pens (A)');
  await bob.fill('#items li:nth-child(1) input.desc', 'Blue pens (B)');
  await flush(bob);
  await settled(bob);
  await alice.locator('#notes').focus(); // leaving the field saves it
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  assert.equal(await alice.textContent('.conflict .theirs'), 'Blue pens (B)');
  // Bob changes it again while Alice's prompt is open: the prompt follows.
  await bob.fill('#items li:nth-child(1) input.desc', 'Red pens (B, later)');
  await flush(bob);
  await settled(bob);
  await alice.waitForFunction(() => document.querySelector('.conflict .theirs')?.textContent === 'Red pens (B, later)', null, { timeout: WAIT });
  await shot(t, alice, '1-prompt-follows');
  await alice.click('.conflict .keep-mine');
  await settled(alice);
  assert.equal(await alice.locator('.conflict').count(), 0);
  const saved = await serverUntil(server, id, (d) => d.items[0].desc === 'Pens (A)', "Alice's value kept");
  assert.equal(saved.items.length, 1);
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Pens (A)');
});

test('a line item removed while Alice edits it is named and put back where it was, whatever was added since', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob'], { debounce: 60_000 });
  const { alice, bob } = pages;
  await addItems(alice, ['Apples', 'Bananas', 'Cherries']);
  await valueIs(bob, '#items li:nth-child(3) input.desc', 'Cherries');
  // Alice edits the second item; Bob removes it and the one above it,
  // and adds two more.
  await alice.fill('#items li:nth-child(2) input.desc', 'Green bananas');
  await bob.click('#items li:nth-child(2) button.remove');
  await settled(bob);
  await bob.click('#items li:nth-child(1) button.remove');
  await settled(bob);
  for (const desc of ['Dates', 'Figs']) {
    await bob.click('#add-item');
    await bob.keyboard.type(desc);
    await flush(bob);
    await settled(bob);
  }
  await serverUntil(server, id, (d) => d.items.length === 3, "Bob's items");
  await alice.waitForFunction(() => document.querySelectorAll('#items li').length === 4, null, { timeout: WAIT });
  await flush(alice);
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  assert.equal(await alice.textContent('.conflict h2'), 'Line item 2 was removed by someone else');
  await alice.click('.conflict .keep-mine');
  await settled(alice);
  const saved = await serverUntil(server, id, (d) => d.items.length === 4, 'the item back');
  assert.deepEqual(saved.items.map((it) => it.desc), ['Green bananas', 'Cherries', 'Dates', 'Figs']);
});

test('a line item moved by someone else while Alice edits it is saved where it is now, without asking her', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob'], { debounce: 60_000 });
  const { alice, bob } = pages;
  await addItems(alice, ['Apples', 'Bananas', 'Cherries']);
  await valueIs(bob, '#items li:nth-child(3) input.desc', 'Cherries');
  // Alice changes the third item's description; before her edit is sent,
  // a program moves that item to the top.
  await alice.fill('#items li:nth-child(3) input.desc', 'Red cherries');
  const before = await fetch(`${server.url}/docs/demo/${id}`);
  const moved = await fetch(`${server.url}/docs/demo/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': before.headers.get('etag') },
    body: JSON.stringify([{ op: 'move', from: '/items/2', path: '/items/0' }]),
  });
  assert.equal(moved.status, 200);
  await flush(alice);
  const saved = await serverUntil(server, id, (d) => d.items[0].desc === 'Red cherries', "Alice's description on the moved item");
  assert.deepEqual(saved.items.map((it) => it.desc), ['Red cherries', 'Apples', 'Bananas']);
  await settled(alice);
  assert.equal(await alice.locator('.conflict').count(), 0, 'no prompt: nobody else changed these fields');
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Red cherries');
});

test('a line item moved and changed by someone else while Alice edits the same field asks her, not overwrites', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice'], { debounce: 60_000 });
  const { alice } = pages;
  await addItems(alice, ['Apples', 'Bananas', 'Cherries']);
  await alice.fill('#items li:nth-child(3) input.desc', 'Red cherries');
  const before = await fetch(`${server.url}/docs/demo/${id}`);
  const changed = await fetch(`${server.url}/docs/demo/${id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json-patch+json', 'If-Match': before.headers.get('etag') },
    body: JSON.stringify([
      { op: 'move', from: '/items/2', path: '/items/0' },
      { op: 'replace', path: '/items/0/desc', value: 'Sour cherries' },
    ]),
  });
  assert.equal(changed.status, 200);
  await flush(alice);
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  assert.equal(await alice.textContent('.conflict .theirs'), 'Sour cherries');
  assert.equal(await alice.textContent('.conflict .mine'), 'Red cherries');
  assert.equal((await serverDoc(server, id)).items[0].desc, 'Sour cherries', 'nothing overwritten before she chooses');
});

test('a change that cannot be saved (the form was deleted) says so in the status, not "all changes saved"', { timeout: 90_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice'], { debounce: 60_000 });
  const { alice } = pages;
  // Alice's write reaches the server only after the form is deleted.
  const deleted = gate();
  await routeWrites(alice, async (route) => {
    await deleted.wait();
    return route.continue();
  });
  await alice.fill('#title', 'Title by Alice');
  await flush(alice);
  const res = await fetch(`${server.url}/docs/demo/${id}`, { method: 'DELETE', headers: { 'If-Match': '*' } });
  assert.equal(res.status, 204);
  deleted.open();
  await alice.waitForFunction(() => /not saved/.test(document.querySelector('#status').textContent), null, { timeout: WAIT });
});
