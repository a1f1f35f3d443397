// Presence against a real patchd with a short --presence-ttl: two clients
// see each other's sessions appear, move focus, end, and expire.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../patchd.js';
import { presence } from '../presence.js';
import { startPatchd } from './support/patchd.js';

let server;
before(async () => {
  server = await startPatchd(['--presence-ttl', '2s']);
});
after(async () => {
  await server?.stop();
});

/** Resolves once pred(others) holds, checked on every change of p; fails after ms. */
function until(p, pred, what, ms = 10_000) {
  if (pred(p.others)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}; others: ${JSON.stringify(p.others)}`));
    }, ms);
    const off = p.subscribe((others) => {
      if (pred(others)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

async function openDoc(client, id) {
  try {
    await client.create('forms', id, { customer: '' });
  } catch {
    // made by the other client
  }
  return client.open('forms', id);
}

test('two clients see each other appear, move focus and leave; the stream asks for presence', async () => {
  const bodies = [];
  const f = (url, init) => {
    if (String(url).endsWith('/events') && init?.method === 'POST') bodies.push(JSON.parse(init.body));
    return fetch(url, init);
  };
  const a = new Client({ baseURL: server.url, fetch: f });
  const b = new Client({ baseURL: server.url });
  const id = `p-${process.pid}-1`;
  const da = await openDoc(a, id);
  const db = await openDoc(b, id);
  const pa = presence(da, { name: 'Ann', color: '#c33' });
  const pb = presence(db, { name: 'Bob', color: '#33c' });
  try {
    await until(pb, (o) => o.some((s) => s.name === 'Ann' && s.color === '#c33' && s.focus === null), "Ann's session at Bob");
    await until(pa, (o) => o.length === 1 && o[0].name === 'Bob', "Bob's session at Ann (and not her own)");
    assert.ok(bodies.some((x) => x.presence === true), 'a stream body has "presence": true');
    pa.focus('/customer');
    await until(pb, (o) => o.some((s) => s.name === 'Ann' && s.focus === '/customer'), 'Ann in /customer');
    pa.focus(null);
    await until(pb, (o) => o.some((s) => s.name === 'Ann' && s.focus === null), 'Ann out of /customer');
    pa.close();
    await until(pb, (o) => !o.some((s) => s.name === 'Ann'), 'Ann gone after close');
  } finally {
    pa.close();
    pb.close();
    a.close();
    b.close();
  }
});

test('a session that is not renewed expires, and one that is renewed does not', async () => {
  const a = new Client({ baseURL: server.url });
  const b = new Client({ baseURL: server.url });
  const id = `p-${process.pid}-2`;
  const da = await openDoc(a, id);
  const db = await openDoc(b, id);
  // Ann renews every 500 ms (the TTL is 2 s); Cy, announced once with a
  // renewal far off, stands for a page that crashed.
  const pa = presence(da, { name: 'Ann', renew: 500 });
  const pc = presence(da, { name: 'Cy', renew: 3_600_000 });
  const pb = presence(db, { name: 'Bob', renew: 500 });
  try {
    await until(pb, (o) => o.some((s) => s.name === 'Cy') && o.some((s) => s.name === 'Ann'), 'Ann and Cy at Bob');
    await until(pb, (o) => !o.some((s) => s.name === 'Cy'), 'Cy expired');
    assert.ok(pb.others.some((s) => s.name === 'Ann'), 'Ann, renewed, is still there');
  } finally {
    pc.close(); // 404: it expired
    pa.close();
    pb.close();
    a.close();
    b.close();
  }
});

test('after a restart of the server, the sessions are announced again at once, not at the next renewal', async (t) => {
  const srv = await startPatchd(); // --presence-ttl 30s: nothing expires during the test
  t.after(() => srv.stop());
  const a = new Client({ baseURL: srv.url });
  const b = new Client({ baseURL: srv.url });
  const id = `p-${process.pid}-restart`;
  await a.create('forms', id, { customer: '' });
  const da = await a.open('forms', id);
  // Bob's document is live before his presence starts (no status event
  // comes to it then), Ann's not yet.
  const db = await b.open('forms', id, { follow: true });
  for (const t0 = Date.now(); db.status !== 'live'; await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() - t0 > 10_000) assert.fail(`Bob's document is ${db.status}`);
  }
  const pa = presence(da, { name: 'Ann', renew: 600_000 });
  const pb = presence(db, { name: 'Bob', renew: 600_000 });
  try {
    await until(pb, (o) => o.some((s) => s.name === 'Ann'), "Ann's session at Bob");
    await until(pa, (o) => o.some((s) => s.name === 'Bob'), "Bob's session at Ann");
    // The server forgets every session (they live in its memory).
    await srv.restart();
    const t0 = Date.now();
    for (;;) {
      const res = await fetch(`${srv.url}/docs/forms/${id}/presence`).catch(() => null);
      const names = res?.ok ? (await res.json()).sessions.map((s) => s.name).sort() : [];
      if (names.join() === 'Ann,Bob') break;
      if (Date.now() - t0 > 8_000) assert.fail(`8 s after the restart the server lists ${JSON.stringify(names)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await until(pb, (o) => o.some((s) => s.name === 'Ann'), "Ann's session at Bob");
  } finally {
    pa.close();
    pb.close();
    a.close();
    b.close();
  }
});
