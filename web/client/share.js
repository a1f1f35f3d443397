// One change stream for all tabs of an origin: the tab that holds a Web
// Lock named after the server is the leader; it opens the stream for the
// union of every tab's subscriptions and passes its events to the others
// over a BroadcastChannel. When the leader tab goes, another tab gets the
// lock and opens the stream again from the seqs and cursors it has seen.
// The hub (hub.js) loads this module in browsers only.

/** Makes hub share its stream with the other tabs of the page's origin. */
export function share(hub) {
  const name = `patchd ${new URL(hub.client.baseURL || '/', globalThis.location?.href).href}`;
  const bc = new BroadcastChannel(name);
  const quit = new AbortController();
  const bye = () => hub._post({ t: 'bye', tab: hub.tab });
  hub.bc = bc;
  hub.tab = Math.random().toString(36).slice(2);
  // A follower tells the leader its set; the leader's ready says when a
  // stream covers it.
  hub.tell = () => {
    const { docs, cols, p } = hub._mine();
    hub.sent = ++hub.client._ticks;
    hub.dirty = false;
    hub._post({ t: 'set', tab: hub.tab, tick: hub.sent, docs, cols, p });
  };
  bc.onmessage = ({ data: m }) => {
    if (m.t === 'leader') {
      if (!hub.leader) hub.kick();
    } else if (hub.leader) {
      if (m.t === 'set') hub.peers.set(m.tab, m);
      if (m.t === 'set' || (m.t === 'bye' && hub.peers.delete(m.tab))) hub.kick();
    } else if (m.t === 'ev') hub._dispatch(m.e, m.d, hub.sent);
    else if (m.t === 'ready') {
      if (m.covers[hub.tab] !== undefined) hub._ready(m.covers[hub.tab]);
    } else if (m.t === 'status') hub._status(m.s, false);
    else if (m.t === 'legacy') hub._legacy();
  };
  hub.unshare = () => {
    bye();
    globalThis.removeEventListener('pagehide', bye);
    quit.abort();
    bc.close();
  };
  globalThis.addEventListener('pagehide', bye);
  hub.kick(); // a follower tells the leader its set
  navigator.locks
    .request(name, { signal: quit.signal }, () => {
      hub.leader = true;
      hub._post({ t: 'leader' });
      hub.kick();
      return new Promise((resolve) => quit.signal.addEventListener('abort', resolve));
    })
    .catch(() => {});
}
