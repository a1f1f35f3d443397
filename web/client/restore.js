// Restoring a document's unsent edits from the client's store (see idb.js):
// loaded by Client.open() when the client has a store, so that pages
// without one never load it.

// restore queues the edits d's store kept, in the order they were made,
// and sends them again with their Idempotency-Keys.
export async function restore(d) {
  const s = d.client.store;
  if (!s) return;
  let recs;
  try {
    recs = [...((await s.load(d.collection, d.id)) ?? [])].sort((a, b) => a.n - b.n);
  } catch {
    return; // a store that fails loses durability, not the document
  }
  const byKey = new Map();
  for (const r of recs) {
    const e = { kind: r.kind, body: r.body, key: r.key, n: r.n, seen: r.seen, landed: r.landed, restored: true, state: 'queued' };
    // Queued behind an edit that is no longer stored (answered before
    // its successor learnt so): the version seen when it was made.
    e.base = r.after == null ? r.ifMatch : byKey.has(r.after) ? { after: byKey.get(r.after), known: r.known ?? null } : r.seen;
    const result = new Promise((resolve, reject) => Object.assign(e, { resolve, reject }));
    result.catch(() => {});
    byKey.set(r.key, e);
    d._pending.push(e);
    d.restored.push({ kind: e.kind, body: e.body, result });
  }
  if (recs.length) {
    d._render('restore');
    d._pump();
  }
}
