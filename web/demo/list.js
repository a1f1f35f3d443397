// The list page of the demo: a live list of a collection's documents,
// filtered by one field and ordered by another, each row opening the
// document's form. It follows the collection over the same one stream as
// every other page of this browser.
import { Client } from '/ui/client/patchd.js';
import { watch } from '/ui/client/watch.js';
import { askToken, authHeaders } from '/ui/token.js';

const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.search);
const collection = params.get('c') || 'demo';
const client = new Client({ headers: authHeaders });
let current = null;
let shown = null; // the choices the list follows

function text(v) {
  return typeof v === 'string' ? v : '';
}

function render() {
  const rows = current.items.map((it) => {
    const v = it.value ?? {};
    const tr = document.createElement('tr');
    tr.dataset.id = it.id;
    const a = document.createElement('a');
    a.href = `/?c=${encodeURIComponent(collection)}&id=${encodeURIComponent(it.id)}`;
    a.textContent = text(v.title) || it.id;
    const cells = [a, text(v.customer), v.urgent === true ? 'yes' : '', Array.isArray(v.items) ? String(v.items.length) : ''];
    for (const c of cells) {
      const td = document.createElement('td');
      td.append(c);
      tr.append(td);
    }
    return tr;
  });
  $('#list tbody').replaceChildren(...rows);
  $('#count').textContent = `${rows.length} ${rows.length === 1 ? 'order' : 'orders'}`;
}

function status() {
  const s = current.status;
  const el = $('#status');
  el.dataset.state = s === 'live' ? 'live' : s === 'offline' ? 'offline' : 'connecting';
  el.textContent = s === 'live' ? 'Live' : s === 'offline' ? 'Offline: waiting for the network' : s === 'error' ? `Stopped: ${current.error?.message}` : 'Connecting…';
  const refused = current.error?.status;
  if (s === 'error' && (refused === 401 || refused === 403)) askToken($('#signin'), refused, current.error.message);
}

// query follows the collection as the selects say, and puts their choice
// in the address: a reload, a shared link and Back show the same list.
function query() {
  current?.close();
  const urgent = $('#urgent').value;
  const order = $('#order').value;
  shown = { urgent, order };
  const url = new URL(location.href);
  // Only what differs from the page's defaults: an empty parameter is not
  // one the server takes.
  for (const [k, v] of Object.entries({ urgent, order })) {
    if (v && v !== DEFAULTS[k]) url.searchParams.set(k, v);
    else url.searchParams.delete(k);
  }
  if (!order) url.searchParams.set('order', 'id');
  history.replaceState(null, '', url);
  current = watch(client, collection, { where: urgent ? { '/urgent': urgent === 'true' } : null, order: order || null });
  current.subscribe((ev) => (ev.type === 'change' ? render() : status()));
  render();
  status();
}

$('#collection').textContent = collection;
// The address's choices, where the selects have them ("id" is the order
// by id, whose option's value is empty).
const DEFAULTS = { urgent: '', order: '/title' };
const sel = { urgent: params.get('urgent'), order: params.get('order') === 'id' ? '' : params.get('order') };
for (const [k, v] of Object.entries(sel)) {
  const el = $(`#${k}`);
  el.value = v !== null && [...el.options].some((o) => o.value === v) ? v : DEFAULTS[k];
}
$('#query').addEventListener('change', query);
query();
// A page restored by Back keeps its script's state, but the browser may
// have put other values back into the selects: follow what they show.
addEventListener('pageshow', () => {
  if ($('#urgent').value !== shown.urgent || $('#order').value !== shown.order) query();
});

// For the browser tests: the live result set.
globalThis.patchdList = { watch: () => current };
