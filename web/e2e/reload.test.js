// Unsent edits across a reload, end to end in Chromium with three people:
// Alice's writes cannot reach the server (page.route blocks them; the
// first one commits but its answer is lost), she reloads, the network
// comes back. Bob and Carol watch. Issue 16, case 3.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, live, people, routeWrites, serverDoc, serverHistory, serverUntil, settled, shot, valueIs } from './support.js';

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

/**
 * Types text into selector while the page's writes cannot reach the
 * server, and leaves the page with that one edit kept unsent.
 */
async function leaveUnsent(page, selector, text) {
  await routeWrites(page, (route) => route.abort('connectionrefused'));
  await page.fill(selector, text);
  await page.locator(selector).blur();
  await page.waitForSelector('#status[data-state="retrying"]', { timeout: WAIT });
  await storedCount(page, 1);
  await page.goto('about:blank');
}

/** Waits until the page keeps n edits in IndexedDB (its writes are asynchronous). */
async function storedCount(page, n) {
  let kept = await stored(page);
  for (let i = 0; i < 100 && kept.length !== n; i++) kept = await stored(page);
  assert.equal(kept.length, n, `stored ${JSON.stringify(kept)}`);
}

/** The edits the page keeps in IndexedDB. */
function stored(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const req = indexedDB.open('patchd-demo');
        req.onsuccess = () => {
          const db = req.result;
          if (!db.objectStoreNames.contains('edits')) return resolve([]);
          const all = db.transaction('edits').objectStore('edits').getAll();
          all.onsuccess = () => resolve(all.result.map((r) => r.rec));
          all.onerror = () => reject(all.error);
        };
        req.onerror = () => reject(req.error);
      }),
  );
}

test('a reload with unsent edits: warned on leaving, nothing lost, nothing applied twice', { timeout: 120_000 }, async (t) => {
  const { id, pages } = await people(t, browser, server, ['alice', 'bob', 'carol'], { debounce: 300 });
  const { alice, bob, carol } = pages;
  const dialogs = [];
  alice.on('dialog', (d) => {
    dialogs.push(d.type());
    d.accept();
  });

  // The first write commits, but its answer never comes back; every
  // later attempt fails to reach the server.
  await routeWrites(alice, async (route, n) => {
    if (n === 1) {
      await route.fetch();
      return route.abort('connectionreset');
    }
    return route.abort('connectionrefused');
  });
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Stapler');
  await alice.fill('#customer', 'Acme');
  await alice.locator('#customer').blur();
  // Bob and Carol see the line item whose answer was lost, nothing else.
  await bob.waitForSelector('#items li', { timeout: WAIT });
  await carol.waitForSelector('#items li', { timeout: WAIT });
  // Alice's page says it is retrying, and has every edit stored.
  await alice.waitForSelector('#status[data-state="retrying"]', { timeout: WAIT });
  await alice.waitForFunction(() => globalThis.patchdDemo.unsent() >= 2 && globalThis.patchdDemo.unsent() === globalThis.patchdDemo.doc().pendingCount, null, { timeout: WAIT });
  const pending = await alice.evaluate(() => globalThis.patchdDemo.doc().pendingCount);
  await storedCount(alice, pending);
  assert.match(await alice.textContent('#status'), /Not saved yet · the server cannot be reached; trying again.*kept on this device/);
  let saved = await serverDoc(server, id);
  assert.equal(saved.customer, '');
  assert.deepEqual(saved.items.map((it) => it.desc), ['']);
  await Promise.all([shot(t, alice, '1-unsent'), shot(t, bob, '1-unsent')]);

  // Reload: the page asks first, because edits are unsent.
  await alice.reload();
  assert.deepEqual(dialogs, ['beforeunload']);
  // The edits are back on the page, one line item, before any was sent.
  await valueIs(alice, '#customer', 'Acme');
  await valueIs(alice, '#items li:nth-child(1) input.desc', 'Stapler');
  assert.equal(await alice.locator('#items li').count(), 1, 'the line item shown once');
  saved = await serverDoc(server, id);
  assert.equal(saved.customer, '');
  await shot(t, alice, '2-reloaded-still-blocked');

  // The network comes back: everything is sent, each edit once.
  await alice.unroute('**/docs/**');
  await settled(alice, 30_000);
  await live(alice);
  saved = await serverDoc(server, id);
  assert.equal(saved.customer, 'Acme');
  assert.deepEqual(saved.items.map((it) => [it.desc, it.qty]), [['Stapler', 1]]);
  const adds = (await serverHistory(server, id)).filter((v) => v.ops.some((o) => o.op === 'add' && /^\/items\/(-|\d+)$/.test(o.path)));
  assert.equal(adds.length, 1, `the line item was added once: ${JSON.stringify(await serverHistory(server, id), null, 1)}`);
  for (const p of [bob, carol]) {
    await valueIs(p, '#customer', 'Acme');
    await valueIs(p, '#items li:nth-child(1) input.desc', 'Stapler');
    assert.equal(await p.locator('#items li').count(), 1);
  }
  assert.deepEqual(await stored(alice), [], 'nothing left stored');
  assert.equal(await alice.locator('#items li').count(), 1);
  await Promise.all([shot(t, alice, '3-sent'), shot(t, bob, '3-sent'), shot(t, carol, '3-sent')]);

  // Everything saved: leaving asks nothing.
  await alice.reload();
  await live(alice);
  assert.deepEqual(dialogs, ['beforeunload']);
});

test('an edit restored after a reload that someone else overtook: the prompt offers what was typed, and keep mine saves it', { timeout: 120_000 }, async (t) => {
  const { id, url, pages } = await people(t, browser, server, ['alice', 'bob'], { debounce: 300 });
  const { alice, bob } = pages;
  alice.on('dialog', (d) => d.accept());
  await alice.fill('#title', 'before');
  await alice.locator('#title').blur();
  await serverUntil(server, id, (d) => d.title === 'before', 'the first title saved');
  await valueIs(bob, '#title', 'before');

  // Alice's next edit cannot reach the server; she leaves the page with it
  // unsent, and Bob changes the same field meanwhile.
  await leaveUnsent(alice, '#title', 'before ALICE');
  await bob.fill('#title', 'before BOB');
  await bob.locator('#title').blur();
  await serverUntil(server, id, (d) => d.title === 'before BOB', "Bob's title saved");

  // Alice comes back: her restored edit conflicts with Bob's, and the
  // prompt offers her text, not his twice.
  await alice.unroute('**/docs/**');
  await alice.goto(url);
  await alice.waitForSelector('.conflict', { timeout: WAIT });
  assert.equal(await alice.textContent('.conflict .theirs'), 'before BOB');
  assert.equal(await alice.textContent('.conflict .mine'), 'before ALICE');
  await valueIs(alice, '#title', 'before ALICE');
  await shot(t, alice, '1-restored-conflict');
  await alice.click('.conflict .keep-mine');
  await serverUntil(server, id, (d) => d.title === 'before ALICE', "Alice's kept title saved");
  await valueIs(bob, '#title', 'before ALICE');
  await settled(alice);
  await shot(t, alice, '2-kept-mine');
});

test('an edit restored after a reload, of a line item someone else removed meanwhile: what was typed is said, not dropped silently', { timeout: 120_000 }, async (t) => {
  const { id, url, pages } = await people(t, browser, server, ['alice', 'bob'], { debounce: 300 });
  const { alice, bob } = pages;
  alice.on('dialog', (d) => d.accept());
  await alice.click('#add-item');
  await alice.waitForSelector('#items li input.desc:focus', { timeout: WAIT });
  await alice.keyboard.type('Pens');
  await alice.locator('#items li input.desc').blur();
  await serverUntil(server, id, (d) => d.items?.[0]?.desc === 'Pens', 'the line item saved');
  await valueIs(bob, '#items li:nth-child(1) input.desc', 'Pens');

  await leaveUnsent(alice, '#items li input.desc', 'Blue pens');
  await bob.click('#items li:nth-child(1) button.remove');
  await serverUntil(server, id, (d) => d.items?.length === 0, 'the line item removed');

  await alice.unroute('**/docs/**');
  await alice.goto(url);
  await alice.waitForFunction(() => /removed by someone else meanwhile; your edit of it was not saved \(description Blue pens\)/.test(document.body.textContent), null, { timeout: WAIT });
  await settled(alice);
  assert.deepEqual((await serverDoc(server, id)).items, []);
  assert.deepEqual(await stored(alice), [], 'nothing left stored');
  await shot(t, alice, '1-said');
});
