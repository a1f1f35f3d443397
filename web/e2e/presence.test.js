// Presence in the demo, end to end in Chromium with three people (browser
// contexts) on one document: avatars of the others, "… is editing" on the
// field someone is in, gone on blur, on close (DELETE: sooner than the
// server's 30 s TTL) and, for a page that died without saying so, on
// expiry (a second server with a 2 s TTL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPatchd } from '../client/test/support/patchd.js';
import { launch } from './browser.js';
import { WAIT, live, shot } from './support.js';

let server;
let shortTTL;
let browser;
before(async () => {
  server = await startPatchd(); // --presence-ttl 30s
  shortTTL = await startPatchd(['--presence-ttl', '2s']);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
  await shortTTL?.stop();
});

/** Opens the demo on document id of srv for each name, in a context each. */
async function open(t, srv, id, names, renew) {
  const pages = {};
  for (const name of names) {
    const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 } });
    t.after(() => ctx.close().catch(() => {}));
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    page.who = name;
    page.ctx = ctx;
    await page.goto(`${srv.url}/?id=${id}&name=${name}${renew ? `&renew=${renew}` : ''}`);
    await live(page);
    pages[name] = page;
  }
  return pages;
}

test('Ben sees Ann and Cy, where Ann is editing, gone on blur, and Ann gone when she closes her page', async (t) => {
  const id = `e2e-presence-${process.pid}-${Date.now().toString(36)}`;
  const { Ann: ann, Ben: ben } = await open(t, server, id, ['Ann', 'Ben', 'Cy']);
  await ben.waitForSelector('#people .avatar[title="Ann"]', { timeout: WAIT });
  await ben.waitForSelector('#people .avatar[title="Cy"]', { timeout: WAIT });
  assert.equal(await ben.locator('#people .avatar[title="Ben"]').count(), 0, 'Ben does not see himself');
  assert.equal(await ben.locator('#people .avatar[title="Ann"]').textContent(), 'A');
  // A screen reader reads the names, not the initials.
  const read = await ben.locator('#people').ariaSnapshot();
  assert.match(read, /Also here: (Ann, Cy|Cy, Ann)/, read);
  assert.doesNotMatch(read, /\bA\b.*\bC\b/, read);
  await shot(t, ben, '1-avatars');

  await ann.focus('#customer');
  const mark = ben.locator('.field:has(#customer) .editing');
  await mark.waitFor({ timeout: WAIT });
  assert.equal(await mark.textContent(), 'Ann is editing');
  assert.equal(await ann.locator('.editing').count(), 0, 'Ann sees no mark of her own');
  await shot(t, ben, '2-ann-editing-customer');

  await ann.locator('#customer').blur();
  await mark.waitFor({ state: 'detached', timeout: WAIT });

  // Gone well before the 30 s TTL: the page ended its session.
  await ann.close({ runBeforeUnload: false });
  await ben.waitForSelector('#people .avatar[title="Ann"]', { state: 'detached', timeout: WAIT });
  assert.equal(await ben.locator('#people .avatar[title="Cy"]').count(), 1, 'Cy is still here');
  await shot(t, ben, '3-ann-gone');
  for (const p of [ann, ben]) assert.deepEqual(p.errors, [], `${p.who}: errors on the page`);
});

test("a page that dies without ending its session goes from the others' forms when it expires", async (t) => {
  const id = `e2e-presence-ttl-${process.pid}-${Date.now().toString(36)}`;
  const { Ben: ben, Cy: cy } = await open(t, shortTTL, id, ['Ben', 'Cy'], 500);
  // Cy's page dies without ending its session: its DELETE never leaves.
  await cy.route('**/presence/**', (route) => (route.request().method() === 'DELETE' ? route.abort() : route.continue()));
  await ben.waitForSelector('#people .avatar[title="Cy"]', { timeout: WAIT });
  await cy.ctx.close();
  await ben.waitForSelector('#people .avatar[title="Cy"]', { state: 'detached', timeout: WAIT });
  assert.ok(await ben.locator('#people').isHidden(), 'nobody else is here');
  await shot(t, ben, 'cy-expired');
  assert.deepEqual(ben.errors, [], 'Ben: errors on the page');
});

test("one person's tabs are one avatar for the others, and none for each other", async (t) => {
  const id = `e2e-presence-tabs-${process.pid}-${Date.now().toString(36)}`;
  const { Ann: ann, Ben: ben } = await open(t, server, id, ['Ann', 'Ben']);
  // Ann opens the form in two more tabs of her browser.
  const tabs = [ann];
  for (let i = 0; i < 2; i++) {
    const p = await ann.ctx.newPage();
    await p.goto(`${server.url}/?id=${id}&name=Ann`);
    await live(p);
    tabs.push(p);
  }
  for (const p of tabs) await p.waitForSelector('#people .avatar[title="Ben"]', { timeout: WAIT });
  // Ben's form has heard from every tab of Ann's once it lists three sessions.
  await ben.waitForFunction(() => globalThis.patchdDemo.presence()?.others.length === 3, null, { timeout: WAIT });
  assert.equal(await ben.locator('#people .avatar').count(), 1, "Ann's three tabs show as one person");
  for (const p of tabs) {
    await p.waitForFunction(() => globalThis.patchdDemo.presence()?.others.length === 3, null, { timeout: WAIT });
    assert.deepEqual(await p.$$eval('#people .avatar', (a) => a.map((e) => e.title)), ['Ben'], "a tab of Ann's shows only Ben");
  }
  await shot(t, ben, 'ann-three-tabs');
});

test('a page that is not a secure context (plain HTTP to another machine) still announces itself', async (t) => {
  const id = `e2e-presence-insecure-${process.pid}-${Date.now().toString(36)}`;
  const ctx = await browser.newContext();
  t.after(() => ctx.close().catch(() => {}));
  // As on http://192.168.x.y: no crypto.randomUUID there.
  await ctx.addInitScript(() => {
    delete Crypto.prototype.randomUUID;
  });
  const ann = await ctx.newPage();
  const errors = [];
  ann.on('pageerror', (e) => errors.push(e.message));
  await ann.goto(`${server.url}/?id=${id}&name=Ann`);
  await live(ann);
  const { Ben: ben } = await open(t, server, id, ['Ben']);
  await ben.waitForSelector('#people .avatar[title="Ann"]', { timeout: WAIT });
  assert.deepEqual(errors, [], 'errors on the page');
});

test('a page that lost its connection shows nobody as here until it is back', async (t) => {
  const id = `e2e-presence-off-${process.pid}-${Date.now().toString(36)}`;
  const { Ann: ann, Ben: ben } = await open(t, server, id, ['Ann', 'Ben']);
  await ben.waitForSelector('#people .avatar[title="Ann"]', { timeout: WAIT });
  await ann.focus('#customer');
  await ben.locator('.field:has(#customer) .editing').waitFor({ timeout: WAIT });

  // What Ben knew of Ann is stale once his stream is gone: not shown.
  await ben.context().setOffline(true);
  await ben.waitForSelector('#status[data-state="offline"]', { timeout: WAIT });
  await ben.waitForSelector('#people .avatar', { state: 'detached', timeout: WAIT });
  assert.equal(await ben.locator('.editing').count(), 0, 'no "is editing" mark while offline');
  assert.equal(await ben.locator('#people').isHidden(), true);
  await shot(t, ben, '1-offline');

  await ben.context().setOffline(false);
  await live(ben);
  await ben.waitForSelector('#people .avatar[title="Ann"]', { timeout: WAIT });
  await ben.locator('.field:has(#customer) .editing').waitFor({ timeout: WAIT });
  await shot(t, ben, '2-back');
  for (const p of [ann, ben]) assert.deepEqual(p.errors, [], `${p.who}: errors on the page`);
});
