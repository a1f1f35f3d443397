// An in-memory store of unsent edits with the semantics of idb.js, for
// tests in Node.js (which has no IndexedDB): several pages share one
// storage; a page's records are its own while it lives; load adopts those
// of dead pages and the ones a closed Doc released.
export function sharedStorage() {
  const records = new Map(); // c/id/key -> record with page
  let pages = 0;
  return {
    records,
    /** One page's view of the storage: the store a Client takes. */
    page() {
      const me = ++pages;
      let alive = true;
      const claimed = new Set();
      const k = (c, id, key) => JSON.stringify([c, id, key]);
      return {
        kill() {
          alive = false;
        },
        async load(c, id) {
          if (!alive) return [];
          const out = [];
          for (const [key, r] of records) {
            if (r.c !== c || r.id !== id || (r.page === me && claimed.has(key)) || (r.page !== me && r.alive())) continue;
            r.page = me;
            r.alive = () => alive;
            claimed.add(key);
            out.push(structuredClone(r.rec));
          }
          return out;
        },
        async put(c, id, rec) {
          if (!alive) return;
          const key = k(c, id, rec.key);
          claimed.add(key);
          records.set(key, { c, id, page: me, alive: () => alive, rec: structuredClone(rec) });
        },
        async delete(c, id, key) {
          if (!alive) return;
          claimed.delete(k(c, id, key));
          records.delete(k(c, id, key));
        },
        async release(c, id, key) {
          if (alive) claimed.delete(k(c, id, key));
        },
      };
    },
  };
}
