// Compiled by `npm run test:types`: the generic types (issue 14), frozen
// values, signals, async headers, the store and the React hook's types.
// The @ts-expect-error lines must stay errors.
import { Client, applyPatch, type Doc, type DocEvent, type EditStore, type Frozen } from '@patchd/client';
import { indexedDBStore } from '@patchd/client/idb';
import { useDocument, type DocumentState } from '@patchd/client/react';

// An interface, not a type with an index signature: what apps write.
interface Item {
  id: string;
  desc: string;
  qty: number;
}
interface Order {
  title: string;
  urgent: boolean;
  items: Item[];
}

async function generics(): Promise<void> {
  const store: EditStore = indexedDBStore('orders');
  const client = new Client({
    store,
    headers: async () => ({ Authorization: `Bearer ${await Promise.resolve('t')}` }),
  });
  const ac = new AbortController();
  const doc: Doc<Order> = await client.open<Order>('orders', '42', { follow: true, signal: ac.signal });
  const title: string | undefined = doc.value?.title;
  const qty: number | undefined = doc.value?.items[0]?.qty;
  console.log(title, qty);
  // @ts-expect-error: the value is frozen
  doc.value!.title = 'x';
  // @ts-expect-error: so are its arrays
  doc.value?.items.push({ id: 'b', desc: '', qty: 1 });
  // @ts-expect-error: a member Order does not have
  console.log(doc.value?.nope);
  doc.subscribe((ev: DocEvent<Order>) => {
    if (ev.type === 'change') console.log(ev.value?.items.length);
    if (ev.type === 'retry') console.log(ev.attempt, ev.delay, ev.pending);
  });
  const r = await doc.patch([{ op: 'replace', path: '/title', value: 'T' }], { signal: ac.signal });
  const items: Frozen<Item[]> = r.value.items;
  console.log(items);
  for (const x of doc.restored) x.result.then((w) => console.log(w.value.title));
  const got = await client.get<Order>('orders', '42');
  got.value.title = 'a copy may change';
  const created = await client.create<Order>('orders', '43', { title: '', urgent: false, items: [] });
  console.log(created.value?.urgent);

  // applyPatch: the shape expected after the ops, or null (remove "").
  const next = applyPatch<Order>(got.value, [{ op: 'remove', path: '' }]);
  // @ts-expect-error: may be null
  console.log(next.title);
  console.log(next?.title);
  const fromFrozen: Order | null = applyPatch<Order>(doc.value!, [{ op: 'replace', path: '/urgent', value: true }]);
  console.log(fromFrozen);

  // The hook's result, without React's types.
  const state: DocumentState<Order> = useDocument<Order>(client, 'orders', '42');
  if (state.status === 'error') console.log(state.error);
  console.log(state.value?.items[0]?.desc, state.pendingCount, state.doc?.etag);
  await state.patch([{ op: 'add', path: '/items/-', value: { id: 'c', desc: '', qty: 1 } }]);
  // @ts-expect-error: status is a known string
  if (state.status === 'ready') console.log('never');
}
void generics;

// Listings and live result sets keep the document type.
import { watch } from '@patchd/client/watch';
import { useCollection } from '@patchd/client/react';
interface Row {
  status: string;
  total: number;
}
async function rows(client: Client): Promise<number> {
  const page = await client.list<Row>('orders', { where: { '/status': 'open', '/total': { gt: 10 } }, order: '-/total', include: 'body', limit: 50 });
  let sum = page.items.reduce((s, x) => s + (x.value?.total ?? 0), 0);
  const w = watch<Row>(client, 'orders', { where: { '/status': 'open' }, order: '/total' });
  const off = w.subscribe((ev) => {
    if (ev.type === 'change') sum += ev.items[0]?.value.total ?? 0;
  });
  off();
  w.close();
  const state = useCollection<Row>(client, 'orders', { order: '/total' });
  const first: string | undefined = state.items[0]?.value.status;
  return sum + (page.next === null ? 0 : 1) + (first ? 1 : 0);
}
void rows;
