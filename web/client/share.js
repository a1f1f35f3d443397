// One change stream for all tabs of an origin: the tab that holds a Web
// Lock named after the server is the leader; it opens the stream for the
// union of every tab's subscriptions and passes its events to the others
// over a BroadcastChannel. When the leader tab goes, another tab gets the
// lock and opens the stream again from the seqs and cursors it has seen.
// The hub (hub.js) loads this module in browsers only.
//
// A leader can hold the lock and pass nothing on: its page is blocked by
// a dialog (alert, "Leave site?") or frozen. A visible follower asks it
// every PING_MS whether it is there; without an answer within STALL_MS,
// it opens a stream of its own ("solo") until the leader answers again.
// At most SOLO_SLOTS tabs do (each holds a Web Lock of its own): the
// browser has six connections per origin, and the writes need some. The
// others say they are reconnecting until the leader answers.
// And when the union is refused (400, 403: another tab's subscription,
// under another token, may be what is wrong), the leader goes on with its
// own subscriptions and tells the others to stream on their own, each
// while it is visible; it tries the union again when a tab leaves.

const PING_MS = 2000;
const STALL_MS = 1500;
const SOLO_SLOTS = 2;

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
  let heard = Date.now(); // when the leader last said anything
  bc.onmessage = ({ data: m }) => {
    if (hub.leader) {
      if (m.t === 'ping') hub._post({ t: 'pong' });
      // Alone, the leader's stream carries no other tab's set.
      if (m.t === 'set' && hub.alone) hub._post({ t: 'solo' });
      if (m.t === 'set') hub.peers.set(m.tab, m);
      if (m.t === 'bye' && hub.peers.delete(m.tab) && hub.alone) {
        // The tab whose subscription was refused may be the one gone: try
        // the union again (refused again, it is alone again).
        hub.alone = false;
        hub._post({ t: 'unsolo' });
      }
      if (m.t === 'set' || m.t === 'bye') hub.kick();
      return;
    }
    if (m.t === 'set' || m.t === 'bye' || m.t === 'ping') return; // another follower's
    heard = Date.now();
    if (m.t === 'leader') {
      // A new leader starts from every tab's set: this one's too.
      hub._solo(null);
      hub.kick();
      return;
    }
    if (m.t === 'solo') return hub._solo('told');
    if (m.t === 'unsolo') {
      hub._solo(null);
      hub.kick();
      return;
    }
    if (stalled) {
      stalled = false;
      hub._status(leaderStatus, false);
    }
    if (hub.solo === 'stall') {
      // The leader answers again: its stream carries this tab's set. The
      // message is handled too: an event may be one this tab's own
      // stream had not brought yet.
      hub._solo(null);
      hub.kick();
    }
    if (hub.solo) return; // the leader's stream is not this tab's
    if (m.t === 'ev') hub._dispatch(m.e, m.d, hub.sent);
    else if (m.t === 'ready') {
      leaderStatus = 'live';
      if (m.covers[hub.tab] !== undefined) hub._ready(m.covers[hub.tab]);
    } else if (m.t === 'status') hub._status((leaderStatus = m.s), false);
    else if (m.t === 'legacy') hub._legacy();
  };
  let leaderStatus = 'live'; // the leader's stream's, as it last said
  let stalled = false; // the leader does not answer, and no solo slot was free
  // soloSlot takes one of the SOLO_SLOTS locks and streams on its own
  // while it holds it; with none free, the tab says it is reconnecting.
  const soloSlot = (i = 0) => {
    if (i >= SOLO_SLOTS) {
      stalled = true;
      hub._status('connecting', false);
      return;
    }
    navigator.locks
      .request(`${name} solo ${i}`, { ifAvailable: true }, (lock) => {
        if (!lock) return soloSlot(i + 1);
        if (hub.leader || hub.solo || hub.closed) return;
        hub._solo('stall');
        // Held until the solo ends (or the page goes).
        return new Promise((resolve) => (hub._soloEnded = resolve));
      })
      .catch(() => {});
  };
  // A tab told to stream on its own does so while it is visible: hidden
  // tabs would take the browser's connections; it catches up when shown.
  const shown = () => {
    if (hub.solo !== 'told') return;
    if (globalThis.document?.visibilityState === 'hidden') {
      for (const c of hub.conns) c.ac.abort();
      hub.conns = [];
      hub._status('connecting', false);
    } else hub.kick();
  };
  globalThis.document?.addEventListener('visibilitychange', shown);
  // Pings go on while the tab streams on its own after a stall: the pong
  // ends it, whether or not anything changes meanwhile.
  const ping = () => {
    const quiet = !globalThis.document || globalThis.document.visibilityState === 'visible';
    if (hub.leader || hub.solo === 'told' || hub.closed || !quiet || (!hub.docs.size && !hub.cols.size)) return;
    const at = Date.now();
    hub._post({ t: 'ping', tab: hub.tab });
    setTimeout(() => {
      if (!hub.leader && !hub.solo && !stalled && !hub.closed && heard < at) soloSlot();
    }, STALL_MS);
  };
  const pinger = setInterval(ping, PING_MS);
  globalThis.document?.addEventListener('visibilitychange', ping);
  hub.unshare = () => {
    bye();
    clearInterval(pinger);
    globalThis.document?.removeEventListener('visibilitychange', ping);
    globalThis.document?.removeEventListener('visibilitychange', shown);
    hub._soloEnded?.();
    globalThis.removeEventListener('pagehide', bye);
    quit.abort();
    bc.close();
  };
  globalThis.addEventListener('pagehide', bye);
  hub.kick(); // a follower tells the leader its set
  navigator.locks
    .request(name, { signal: quit.signal }, () => {
      hub._solo(null);
      hub.leader = true;
      hub._post({ t: 'leader' });
      hub.kick();
      return new Promise((resolve) => quit.signal.addEventListener('abort', resolve));
    })
    .catch(() => {});
}
