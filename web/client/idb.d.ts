// Type declarations for idb.js: unsent edits kept in IndexedDB.
import type { EditStore } from './patchd.js';

/**
 * A store over the IndexedDB database `name` (default "patchd"): pass it as
 * `new Client({store})`. A page's edits are its own while it lives; open()
 * restores those of pages that are gone and of closed Docs.
 */
export function indexedDBStore(name?: string): EditStore;
