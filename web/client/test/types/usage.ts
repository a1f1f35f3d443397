// Compiled by `npm run test:types` (tsc --noEmit): checks that patchd.d.ts
// describes the client as the README uses it, through the package's
// exports map. The @ts-expect-error lines must stay errors.
import { Client, ConflictError, diff, pointer, type DocEvent, type Operation } from '@patchd/client';

async function example(): Promise<void> {
  const client = new Client({ baseURL: 'http://127.0.0.1:8080', headers: () => ({ Authorization: 'Bearer t' }) });
  const doc = await client.open('forms', '42', { follow: true });
  const off = doc.subscribe((ev: DocEvent) => {
    if (ev.type === 'change' && ev.source === 'remote') console.log(ev.version?.seq, ev.value);
    if (ev.type === 'status') console.log(ev.status satisfies 'idle' | 'connecting' | 'live' | 'offline' | 'closed');
  });
  const base = doc.version();
  const ops: Operation[] = diff({ name: 'Ann' }, { name: 'Bob' });
  try {
    const r = await doc.patch(ops, { base });
    const etag: string = r.etag;
    const from: string | null = r.rebasedFrom;
    console.log(etag, from);
    await doc.merge({ email: 'x@y', gone: null });
  } catch (err) {
    if (err instanceof ConflictError) {
      const paths: string[] = err.paths;
      console.log(paths, err.current?.value, err.conflicts[0]?.reason);
    }
  }
  await doc.patch([{ op: 'add', path: pointer('items', '-'), value: { id: 'a' } }]);
  // @ts-expect-error: an op needs a path
  await doc.patch([{ op: 'remove' }]);
  // @ts-expect-error: values are JSON
  await doc.merge({ when: new Date() });
  if (doc.undoable > 0) {
    try {
      const u = await doc.undo();
      if (u) console.log(u.seq satisfies number, u.etag);
    } catch (err) {
      if (err instanceof ConflictError) doc.forgetUndo();
    }
  }
  const r2 = await doc.revert(3, { signal: AbortSignal.timeout(5000) });
  console.log(r2.rebasedFrom);
  // @ts-expect-error: revert names a seq
  await doc.revert('3');
  off();
  doc.close();
}
void example;

// Presence: announce, move focus, see the others, end.
import { presence, type PresenceSession } from '@patchd/client/presence';
async function presenceUsage(client: Client) {
  const doc = await client.open('forms', '42');
  const p = presence(doc, { name: 'Ann', color: '#c33', focus: null });
  const off = p.subscribe((others: readonly PresenceSession[]) => {
    for (const s of others) console.log(s.name, s.focus ?? '-', s.expires);
    // The server sends null for what a session left out, and for the actor
    // without tokens: the types say so.
    // @ts-expect-error name may be null
    const name: string = others[0].name;
    const shown: string = others[0].name ?? others[0].actor ?? 'someone';
    void name;
    void shown;
  });
  p.focus('/customer');
  await p.set({ data: { typing: true } });
  off();
  p.close();
}
void presenceUsage;
