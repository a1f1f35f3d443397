// Helpers of the browser tests: people (browser contexts) on one document
// of the demo, waits on conditions, screenshots, and the server's view.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts } from './browser.js';

export const WAIT = 15_000; // longest wait for one thing to show on a page

let docs = 0;
/**
 * Opens the form for one fresh document in a browser context per name
 * (separate sessions and storage). Returns {id, url, pages: {name: page}}.
 */
export async function people(t, browser, server, names, { debounce = 300 } = {}) {
  const id = `e2e-${process.pid}-${Date.now().toString(36)}-${++docs}`;
  const url = `${server.url}/?id=${id}&debounce=${debounce}`;
  const pages = {};
  for (const who of names) {
    const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 } });
    t.after(() => ctx.close());
    const page = await ctx.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    page.who = who;
    await page.goto(url);
    await live(page);
    pages[who] = page;
  }
  t.after(() => {
    for (const p of Object.values(pages)) assert.deepEqual(p.errors, [], `${p.who}: errors on the page`);
  });
  return { id, url, pages };
}

export function live(page) {
  return page.waitForSelector('#status[data-state="live"]', { timeout: WAIT });
}

/** Waits until every write of the page is answered and the page is live. */
export function settled(page, timeout = WAIT) {
  return page.waitForFunction(
    () => {
      const d = globalThis.patchdDemo?.doc();
      return d && d.status === 'live' && (globalThis.patchdDemo.unsent?.() ?? d.pendingCount) === 0 && document.querySelector('#status').dataset.state === 'live';
    },
    null,
    { timeout },
  );
}

export function valueIs(page, selector, want, timeout = WAIT) {
  return page.waitForFunction(([s, w]) => document.querySelector(s)?.value === w, [selector, want], { timeout });
}

export async function shot(t, page, step) {
  const name = `${t.name.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80)}--${step}--${page.who}.png`;
  await page.screenshot({ path: join(artifacts, name), fullPage: true });
}

export async function serverDoc(server, id, c = 'demo') {
  const res = await fetch(`${server.url}/docs/${c}/${id}`);
  assert.equal(res.status, 200);
  return res.json();
}

export async function serverHistory(server, id) {
  const res = await fetch(`${server.url}/docs/demo/${id}/history`);
  assert.equal(res.status, 200);
  return (await res.json()).versions;
}

/** Waits until the server's document (of collection c) satisfies pred. */
export async function serverUntil(server, id, pred, what, { timeout = WAIT, c = 'demo' } = {}) {
  const t0 = Date.now();
  for (;;) {
    const d = await serverDoc(server, id, c);
    if (pred(d)) return d;
    if (Date.now() - t0 > timeout) assert.fail(`timed out waiting for ${what}; server has ${JSON.stringify(d)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Records every value the page's script writes into the control, so that
 * a test can tell what was shown in between, however briefly.
 */
export function recordShown(page, selector) {
  return page.evaluate((s) => {
    const el = document.querySelector(s);
    const d = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value');
    el.shown = [];
    Object.defineProperty(el, 'value', {
      configurable: true,
      get() {
        return d.get.call(this);
      },
      set(v) {
        this.shown.push(String(v));
        d.set.call(this, v);
      },
    });
  }, selector);
}

export function shown(page, selector) {
  return page.evaluate((s) => document.querySelector(s).shown, selector);
}

/** A gate: open() lets waiters through. */
export function gate() {
  let open;
  const p = new Promise((r) => (open = r));
  return { wait: () => p, open };
}

/**
 * Routes the page's PATCH requests to the server through handler(route,
 * n), n counting from 1; returns the requests seen.
 */
export async function routeWrites(page, handler) {
  const seen = [];
  await page.route('**/docs/**', async (route) => {
    const req = route.request();
    if (req.method() !== 'PATCH') return route.fallback();
    seen.push(req.postData());
    return handler(route, seen.length);
  });
  return seen;
}

/**
 * Opens a page of who in a browser context of its own, closed when t ends;
 * errors collects the page's errors.
 */
export async function ownPage(t, browser, who) {
  const ctx = await browser.newContext({ viewport: { width: 820, height: 1000 } });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.who = who;
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return { ctx, page, errors };
}
