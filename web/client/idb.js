// A store for patchd's client that keeps unsent edits in IndexedDB, so that
// they survive a reload, a crash or a closed tab:
//
//   new Client({ store: indexedDBStore() })
//
// Each edit is kept with what its replay needs to be the same request
// (body, Idempotency-Key, If-Match), from the moment it is made until the
// server answers it. Client.open() restores the edits that no live page
// owns: a page's edits are its own while it lives (a Web Lock held for the
// page's lifetime says so), and those of a page that is gone, or of a Doc
// that was closed, go to the next page that opens the document. Without
// Web Locks (an insecure context) a page adopts every stored edit of the
// document; the server's idempotency keys still apply each edit once.

const STORE = 'edits';

/**
 * Returns a store over the IndexedDB database name (default "patchd").
 * @param {string} [name]
 */
export function indexedDBStore(name = 'patchd') {
  const page = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
  const locks = globalThis.navigator?.locks;
  const lockOf = (p) => `patchd-page:${name}:${p}`;
  // Held until the page goes away; never released otherwise.
  locks?.request(lockOf(page), () => new Promise(() => {}));
  const claimed = new Set(); // edits of this page that a live Doc holds
  const k = (c, id, key) => JSON.stringify([c, id, key]);
  let db = null;

  function open() {
    db ??= new Promise((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'k' }).createIndex('doc', 'doc');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return db;
  }

  // run opens a transaction and resolves with fn's result when it commits.
  async function run(mode, fn) {
    const d = await open();
    return new Promise((resolve, reject) => {
      const tx = d.transaction(STORE, mode);
      const out = fn(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(out.result ?? out.value);
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
  }

  async function adopt(c, id) {
    const held = locks ? new Set((await locks.query()).held.map((l) => l.name)) : new Set();
    const docKey = JSON.stringify([c, id]);
    return run('readwrite', (s) => {
      const out = { value: [] };
      s.index('doc').getAll(docKey).onsuccess = (e) => {
        for (const r of e.target.result) {
          const mine = r.page === page;
          if (mine ? claimed.has(r.k) : held.has(lockOf(r.page))) continue;
          r.page = page;
          claimed.add(r.k);
          s.put(r);
          out.value.push(r.rec);
        }
      };
      return out;
    });
  }

  return {
    /** The stored edits of c/id that no live page or Doc holds, now this page's. */
    load(c, id) {
      // One page at a time, so that two pages opened together do not both adopt.
      return locks ? locks.request(`patchd-adopt:${name}`, () => adopt(c, id)) : adopt(c, id);
    },
    put(c, id, rec) {
      const key = k(c, id, rec.key);
      claimed.add(key);
      return run('readwrite', (s) => s.put({ k: key, doc: JSON.stringify([c, id]), page, rec }));
    },
    delete(c, id, key) {
      claimed.delete(k(c, id, key));
      return run('readwrite', (s) => s.delete(k(c, id, key)));
    },
    /** The edit stays stored, for the next open() of the document. */
    release(c, id, key) {
      claimed.delete(k(c, id, key));
    },
  };
}
