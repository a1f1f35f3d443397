// The collaborative form demo: one patchd document bound to a form, edited
// by everyone who has the page open. It imports the client as the binary
// serves it; there is no build step.
import { Client, ConflictError, PatchdError, deepEqual, pointer } from '/ui/client/patchd.js';
import { indexedDBStore } from '/ui/client/idb.js';
import { presence } from '/ui/client/presence.js';
import { mountHistory, mountUndo } from '/ui/history.js';
import { askToken, authHeaders } from '/ui/token.js';

const params = new URLSearchParams(location.search);
const collection = params.get('c') || 'demo';
const docID = params.get('id') || 'order';
// How long typing may pause before the edit is sent (ms).
const debounceMs = Number.isFinite(Number(params.get('debounce'))) && params.get('debounce') !== null ? Number(params.get('debounce')) : 500;

const EMPTY = { title: '', customer: '', email: '', notes: '', urgent: false, items: [] };
const LABELS = { title: 'Title', customer: 'Customer', email: 'Email', notes: 'Notes', urgent: 'Urgent' };
const FIELDS = Object.keys(LABELS);

const $ = (sel, root = document) => root.querySelector(sel);
const form = $('#form');
const itemsList = $('#items');
const statusEl = $('#status');
const activity = $('#activity');
const conflictsEl = $('#conflicts');

// Unsent edits are kept in IndexedDB: a reload (or a crash) sends them
// later, each once, with the Idempotency-Key it was first sent with.
const client = new Client({ headers: authHeaders, store: globalThis.indexedDB ? indexedDBStore('patchd-demo') : null });
let doc = null;
// When a write last failed to reach the server and will be tried again.
let retrying = null;
let retryWhy = '';
let retryTimer = null;
// Why the last write was refused for good (not a conflict): the status
// says the edit is not saved until a later write is.
let notSaved = null;

// A field key is a top-level member ("title") or a line item's member
// ("item:<id>:desc"). dirty holds the fields edited and not yet sent, with
// the version the edit began on; conflicted the fields awaiting a choice.
const dirty = new Map();
const conflicted = new Map();
// Fields with a write in flight, and how many: the form keeps showing what
// was sent until the answer, even if the value briefly goes back.
const inflight = new Map();
// Fields whose last write was refused for good (a schema, a bad value):
// the form keeps what was typed, marked, until the field is edited again.
const refused = new Map();
// What the status says of each refused field, so that it names the fields
// still refused once others are saved.
const refusedSaid = new Map();
// The version each refused field's edit was made against: sent again (after
// signing in with a token that may write), it is judged against that one.
const refusedBase = new Map();
// Refused fields whose refusal named only other fields (a rule across
// fields, such as notes required when urgent): sent again once another
// field saves, which may have met the rule.
const refusedElsewhere = new Set();
let flushTimer = null;
let focusItem = null;
// Line items added on this page that the schema refused empty: kept here,
// and added to the document once filled in.
const localItems = new Set();
// Kept line items removed on the page while their add was on its way: the
// add's answer removes them again.
const dropAfterAdd = new Set();

function parseKey(key) {
  const m = /^item:(.*):(desc|qty)$/.exec(key);
  return m ? { item: m[1], field: m[2] } : { field: key };
}

function rowOf(itemID) {
  for (const li of itemsList.children) if (li.dataset.id === itemID) return li;
  return null;
}

function controlFor(key) {
  const k = parseKey(key);
  if (!k.item) return form.querySelector(`[data-key="${k.field}"]`);
  return rowOf(k.item)?.querySelector(`input.${k.field}`) ?? null;
}

function keyOf(el) {
  if (el.dataset.key) return el.dataset.key;
  const li = el.closest('li.item');
  if (!li) return null;
  if (el.classList.contains('desc')) return `item:${li.dataset.id}:desc`;
  if (el.classList.contains('qty')) return `item:${li.dataset.id}:qty`;
  return null;
}

function itemIndex(value, itemID) {
  const items = Array.isArray(value?.items) ? value.items : [];
  return items.findIndex((it) => it?.id === itemID);
}

function valueAt(value, key) {
  const k = parseKey(key);
  if (!k.item) return value?.[k.field];
  const i = itemIndex(value, k.item);
  return i < 0 ? undefined : value.items[i][k.field];
}

function label(key) {
  const k = parseKey(key);
  if (!k.item) return LABELS[k.field];
  return `${itemLabel(k.item)} ${k.field === 'desc' ? 'description' : 'quantity'}`;
}

// itemLabel names a line item by its place in the list as shown (a row
// someone else removed stays shown while it is being edited here).
function itemLabel(itemID) {
  const i = [...itemsList.children].indexOf(rowOf(itemID));
  return i < 0 ? 'Line item' : `Line item ${i + 1}`;
}

function readControl(el) {
  if (el.type === 'checkbox') return el.checked;
  if (el.type === 'number') return el.value === '' || !Number.isFinite(el.valueAsNumber) ? null : el.valueAsNumber;
  return el.value;
}

function writeControl(el, v) {
  if (el.type === 'checkbox') {
    el.checked = v === true;
    return;
  }
  const s = v === null || v === undefined ? '' : String(v);
  if (el.value === s) return;
  if (document.activeElement === el && typeof el.selectionStart === 'number' && el.type !== 'number' && el.type !== 'email') {
    const { selectionStart: a, selectionEnd: b } = el;
    el.value = s;
    el.setSelectionRange(Math.min(a, s.length), Math.min(b, s.length));
  } else {
    el.value = s;
  }
}

function show(v) {
  if (v === undefined) return '(line item removed)';
  if (v === null || v === '') return '(empty)';
  if (v === true) return 'checked';
  if (v === false) return 'not checked';
  return String(v);
}

function say(text) {
  activity.textContent = text;
}

function flash(el) {
  el.classList.add('remote-change');
  requestAnimationFrame(() => requestAnimationFrame(() => el.classList.remove('remote-change')));
}

function markFor(key) {
  const k = parseKey(key);
  if (!k.item) return form.querySelector(`[data-mark="${k.field}"]`);
  return controlFor(key)?.parentElement.querySelector('.mark') ?? null;
}

function setMark(key, text, title = '') {
  const m = markFor(key);
  if (!m) return;
  m.textContent = text;
  m.title = title;
}

// --- status -----------------------------------------------------------

function updateStatus() {
  if (!doc) return;
  if (draftJoining && !dirty.size && !doc.pendingCount && !inflight.size && !conflicted.size && !refused.size && !localItems.size) {
    draftJoining = false;
    forgetDraft();
  }
  // A conflicted field waits for the user's choice, not for the network;
  // leaving the page would still lose what was typed in it.
  let waiting = doc.pendingCount;
  for (const key of dirty.keys()) if (!conflicted.has(key)) waiting++;
  guardUnload(waiting > 0 || conflicted.size > 0 || refused.size > 0 || localItems.size > 0);
  let state = doc.status;
  let text;
  if (waiting && retrying !== null && doc.pendingCount && doc.status !== 'offline') {
    const secs = Math.max(0, Math.ceil((retrying - Date.now()) / 1000));
    statusEl.dataset.state = 'retrying';
    text = `Not saved yet · ${retryWhy}; trying again${secs ? ` in ${secs} s` : ''} · your changes are kept on this device`;
    if (statusEl.textContent !== text) statusEl.textContent = text;
    return;
  }
  switch (doc.status) {
    case 'live':
      state = waiting ? 'saving' : notSaved || localItems.size ? 'error' : 'live';
      text = waiting
        ? 'Live · saving…'
        : conflicted.size
          ? 'Live · waiting for your choice'
          : notSaved
            ? `Live · your last change was not saved: ${notSaved}`
            : localItems.size
              ? `Live · ${localItems.size === 1 ? 'a line item is' : `${localItems.size} line items are`} not saved yet: fill in what is marked`
              : 'Live · all changes saved';
      break;
    case 'offline':
      text = waiting
        ? 'Offline · your changes will be sent when the connection is back'
        : 'Offline · changes from others will appear when the connection is back';
      break;
    case 'closed':
      text = 'Closed';
      break;
    default:
      text = waiting ? 'Reconnecting… · your changes are kept' : 'Connecting…';
  }
  statusEl.dataset.state = state;
  if (statusEl.textContent !== text) statusEl.textContent = text;
}

// While anything is unsent, leaving the page asks first. The listener is
// there only then, so that an idle page stays eligible for the back/forward
// cache.
function warnUnsent(e) {
  e.preventDefault();
  e.returnValue = '';
}
let guarding = false;
function guardUnload(on) {
  if (on === guarding) return;
  guarding = on;
  if (on) addEventListener('beforeunload', warnUnsent);
  else removeEventListener('beforeunload', warnUnsent);
}

function onRetry(ev) {
  retrying = Date.now() + ev.delay;
  // An answer that says to come back later, or no answer at all.
  retryWhy = ev.error instanceof PatchdError ? `the server is busy or unavailable (${ev.error.status})` : 'the server cannot be reached';
  clearInterval(retryTimer);
  retryTimer = setInterval(updateStatus, 1000);
  updateStatus();
}

function answered() {
  if (retrying === null) return;
  retrying = null;
  clearInterval(retryTimer);
}

// --- rendering the document into the form -------------------------------

function busy(key) {
  return dirty.has(key) || conflicted.has(key) || inflight.has(key) || refused.has(key);
}

// shownDeleted says that the page shows the document as deleted.
let shownDeleted = false;

function render(ev) {
  const v = doc.value;
  const enabled = v !== null;
  for (const el of form.querySelectorAll('input, textarea, button')) el.disabled = !enabled;
  if (!enabled) {
    shownDeleted = true;
    say('This document was deleted. Reload the page to start a new one.');
    updateStatus();
    return;
  }
  if (shownDeleted) {
    // Back (its delete reverted, or created again): edits refused while
    // it did not exist are sent again.
    shownDeleted = false;
    say('This document is back.');
    const gone = [...refused].filter(([, err]) => err instanceof PatchdError && err.status === 404).map(([key]) => key);
    // Against the version now: the one they were made against is
    // before the delete.
    for (const key of gone) refusedBase.delete(key);
    if (gone.length) queueMicrotask(() => resendRefused(gone));
  }
  const fromOthers = ev.source === 'remote' || ev.source === 'reset';
  const changed = [];
  for (const f of FIELDS) {
    if (busy(f)) continue;
    const el = controlFor(f);
    const before = readControl(el);
    const want = f === 'urgent' ? v[f] === true : (v[f] ?? '');
    if (!deepEqual(before, want)) {
      writeControl(el, want);
      if (fromOthers) {
        flash(el);
        changed.push(LABELS[f]);
      }
    }
  }
  changed.push(...renderItems(Array.isArray(v.items) ? v.items : [], fromOthers));
  if (fromOthers && changed.length) say(`Someone else changed ${changed.join(', ')}.`);
  // An open conflict shows their value as it is now.
  if (fromOthers) for (const box of conflicted.values()) box.refresh(ev);
  updateStatus();
}

function newRow(itemID) {
  const li = $('#item-row').content.firstElementChild.cloneNode(true);
  li.dataset.id = itemID;
  for (const f of ['desc', 'qty']) {
    const input = li.querySelector(`input.${f}`);
    input.id = `${f}-${itemID}`;
    input.closest('.field').querySelector('label').htmlFor = input.id;
  }
  selectOnFocus(li.querySelector('input.qty'));
  return li;
}

// selectOnFocus selects a quantity whole when it is clicked or tabbed
// into, so that typing a number replaces the 1 a new line item starts
// with rather than making it 13. The mouseup that ends the click would
// put a caret in place of the selection: it is cancelled once.
function selectOnFocus(input) {
  let focusing = false;
  input.addEventListener('focus', () => {
    input.select();
    focusing = true;
  });
  input.addEventListener('mouseup', (e) => {
    if (focusing) e.preventDefault();
    focusing = false;
  });
  input.addEventListener('blur', () => {
    focusing = false;
  });
}

function renderItems(items, fromOthers) {
  const changed = [];
  const want = new Set(items.map((it) => it?.id));
  // Rows of items that are gone, unless someone is editing them here.
  for (const li of [...itemsList.children]) {
    const id = li.dataset.id;
    if (!want.has(id) && !localItems.has(id) && !busy(`item:${id}:desc`) && !busy(`item:${id}:qty`)) {
      li.remove();
      if (fromOthers) changed.push('the line items');
    }
  }
  items.forEach((it, i) => {
    if (typeof it?.id !== 'string') return;
    let li = rowOf(it.id);
    if (!li) {
      li = newRow(it.id);
      if (fromOthers) {
        changed.push('the line items');
        queueMicrotask(() => flash(li.querySelector('input.desc')));
      }
    }
    // In the document's order among the rows it holds; rows kept on this
    // page only (not saved yet) stay where they are.
    const placed = [...itemsList.children].filter((r) => r === li || !localItems.has(r.dataset.id));
    if (placed[i] !== li) {
      if (li.contains(document.activeElement)) {
        // Moving the row that holds the cursor would take the focus out of
        // it, and the keys typed next with it: the rows that must come
        // after it move instead, in their order.
        let after = li;
        for (const r of placed.slice(i, placed.indexOf(li))) {
          after.after(r);
          after = r;
        }
      } else {
        itemsList.insertBefore(li, placed[i] ?? null);
      }
    }
    for (const f of ['desc', 'qty']) {
      const key = `item:${it.id}:${f}`;
      if (busy(key)) continue;
      const el = li.querySelector(`input.${f}`);
      const v = f === 'qty' ? (typeof it.qty === 'number' ? it.qty : null) : (it.desc ?? '');
      if (!deepEqual(readControl(el), v)) {
        writeControl(el, v);
        if (fromOthers && !changed.includes('the line items')) {
          flash(el);
          changed.push(`line item ${i + 1}`);
        }
      }
    }
    li.querySelector('.remove').setAttribute('aria-label', `Remove line item ${i + 1}${it.desc ? ` (${it.desc})` : ''}`);
  });
  $('#no-items').hidden = itemsList.children.length > 0;
  if (focusItem && rowOf(focusItem)) {
    rowOf(focusItem).querySelector('input.desc').focus();
    focusItem = null;
  }
  return [...new Set(changed)];
}

// --- edits ------------------------------------------------------------

function edited(key) {
  if (!dirty.has(key)) {
    // The version this edit is made against: a concurrent change of the
    // same field since then is a conflict, not a silent overwrite. was is
    // the field's value in it.
    const k = parseKey(key);
    dirty.set(key, { base: doc.version(), index: k.item ? itemIndex(doc.value, k.item) : -1, was: valueAt(doc.value, key) });
  }
  refusedBase.delete(key);
  refusedElsewhere.delete(key);
  if (refused.has(key)) {
    controlFor(key)?.removeAttribute('aria-invalid');
    markFor(key)?.removeAttribute('data-refused');
    unrefuse(key);
  }
  setMark(key, '');
}

// unrefuse forgets a field's refusal: the status then names the fields
// still refused, each as it was said, or none.
function unrefuse(key) {
  refused.delete(key);
  refusedSaid.delete(key);
  if (!refused.size) {
    notSaved = null;
    if (activity.textContent.startsWith('Could not save')) say('');
  } else {
    notSaved = [...new Set([...refused.keys()].map((k) => refusedSaid.get(k)).filter(Boolean))].join(' · ') || notSaved;
  }
}

function schedule() {
  clearTimeout(flushTimer);
  flushTimer = setTimeout(flush, debounceMs);
  updateStatus();
}

function opsFor(key, value, index) {
  const k = parseKey(key);
  if (!k.item) return [{ op: 'add', path: pointer(k.field), value }];
  return [
    { op: 'test', path: pointer('items', index, 'id'), value: k.item },
    { op: 'replace', path: pointer('items', index, k.field), value },
  ];
}

// addOps appends to ops the ops that set key to value (a line item's field
// at index), and notes in pathKey which field each op's path is.
function addOps(ops, pathKey, key, value, index) {
  for (const op of opsFor(key, value, index)) {
    ops.push(op);
    pathKey.set(op.path, key);
  }
}

/** Sends every edited field, one write per version the edits began on. */
function flush() {
  clearTimeout(flushTimer);
  flushTimer = null;
  const groups = new Map();
  for (const [key, d] of dirty) {
    if (conflicted.has(key)) continue;
    if (!groups.has(d.base)) groups.set(d.base, []);
    groups.get(d.base).push([key, d]);
  }
  // A line item kept on this page (refused empty) is sent whole, added.
  for (const id of localItems) {
    const keys = [`item:${id}:desc`, `item:${id}:qty`];
    if (!keys.some((key) => dirty.has(key) && !conflicted.has(key)) || keys.some((key) => inflight.has(key))) continue;
    const li = rowOf(id);
    if (!li) continue;
    for (const key of keys) dirty.delete(key);
    const item = { id, desc: readControl(li.querySelector('input.desc')), qty: readControl(li.querySelector('input.qty')) };
    // Where the row is among the saved ones, so that it stays in place.
    const rows = [...itemsList.children];
    const at = rows.slice(0, rows.indexOf(li)).filter((r) => !localItems.has(r.dataset.id) && itemIndex(doc.value, r.dataset.id) >= 0).length;
    const sent = new Map(keys.map((key) => [key, item[parseKey(key).field]]));
    const pathKey = new Map(keys.map((key) => [pointer('items', at, parseKey(key).field), key]));
    send([addItemOp(item, at)], doc.version(), sent, pathKey).then(() => {
      if (dropAfterAdd.delete(id)) {
        // Removed on the page while its add was on its way: removed.
        const i = itemIndex(doc.value, id);
        if (i >= 0) doc.patch([{ op: 'test', path: pointer('items', i, 'id'), value: id }, { op: 'remove', path: pointer('items', i) }]).catch(() => {});
        return;
      }
      const i = itemIndex(doc.value, id);
      if (i < 0) {
        // Refused: text typed in the row meanwhile is sent in its turn.
        if (keys.some((key) => dirty.has(key))) schedule();
        return;
      }
      localItems.delete(id);
      // What was typed in the row while it was on its way is an edit of
      // the item now in the document.
      for (const key of keys) {
        const d = dirty.get(key);
        if (d) Object.assign(d, { base: doc.version(), index: i });
      }
      if (keys.some((key) => dirty.has(key))) schedule();
      updateStatus();
    });
  }
  for (const [base, entries] of groups) {
    const ops = [];
    const sent = new Map();
    const pathKey = new Map();
    const was = new Map();
    for (const [key, d] of entries) {
      if (localItems.has(parseKey(key).item)) continue; // sent above
      dirty.delete(key);
      const el = controlFor(key);
      if (!el || (parseKey(key).item && d.index < 0)) continue;
      const v = readControl(el);
      addOps(ops, pathKey, key, v, d.index);
      sent.set(key, v);
      if (Object.hasOwn(d, 'was')) was.set(key, d.was);
    }
    if (ops.length) send(ops, base, sent, pathKey, false, was);
  }
  updateStatus();
}

// was holds, for the fields it knows, their value in base.
async function send(ops, base, sent, pathKey, again = false, was = null) {
  for (const key of sent.keys()) inflight.set(key, (inflight.get(key) ?? 0) + 1);
  let error = null;
  try {
    const r = await doc.patch(ops, { base });
    if (!refused.size) notSaved = null;
    if (r.rebasedFrom) {
      for (const key of sent.keys()) {
        if (!dirty.has(key)) setMark(key, 'merged', 'Saved. Someone else edited this form at the same time; both edits were kept.');
      }
    }
    saved(sent);
  } catch (err) {
    error = err;
  } finally {
    for (const key of sent.keys()) {
      const n = inflight.get(key) - 1;
      if (n > 0) inflight.set(key, n);
      else inflight.delete(key);
    }
  }
  // No longer on its way when its failure is handled: a field still in
  // flight then has newer text on its way (and a retry counts anew).
  if (error) await failed(error, sent, pathKey, again, base, was);
  // Edits left waiting for this write (a line item's, kept on the page
  // while its add was on its way) go now.
  if (dirty.size && flushTimer === null) schedule();
  if (doc.value !== null) render({ source: 'local' });
  updateStatus();
}

async function failed(err, sent, pathKey, again, base = null, was = null) {
  if (err instanceof PatchdError && err.type === 'patch-failed' && !again) {
    // A line item moved before this edit reached the server: make it
    // again against the server's version now (the page may not show it
    // yet: an add of this page's, rebased over someone else's, is
    // answered before the change feed brings the other row). The test of
    // the item's id keeps it from landing on another item.
    const cur = await client.get(collection, docID).catch(() => null);
    const value = cur?.value ?? doc.value;
    const ops2 = [];
    const pk = new Map();
    for (const [key, v] of sent) {
      const k = parseKey(key);
      const i = k.item ? itemIndex(value, k.item) : -1;
      if (k.item && i < 0) {
        // A line item kept on the page (its add refused): sent whole.
        if (localItems.has(k.item) && !dirty.has(key)) {
          dirty.set(key, { base: doc.version(), index: -1 });
          schedule();
        }
        continue;
      }
      addOps(ops2, pk, key, v, i);
    }
    if (ops2.length) await send(ops2, cur?.etag ?? doc.version(), sent, pk, true, was);
  } else if (err instanceof ConflictError && err.conflicts.some((c) => c.reason === 'schema-violation')) {
    // Made against an older version, it merged with the changes since,
    // but the two together break the collection's rules: a refusal of
    // this edit, said as such, not someone else changing the field.
    refuse(ruleRefusal(err), sent, pathKey, base);
  } else if (err instanceof PatchdError && err.status === 412) {
    await conflict(err, sent, pathKey, base, was);
  } else if (err instanceof PatchdError && err.type === 'schema-violation' && !again && emptiedOnly(sent)) {
    // A field emptied where the schema refuses an empty value ('' is no
    // email): the member goes, as a new form leaves it out.
    const ops2 = [];
    const pk = new Map();
    for (const [key, v] of sent) {
      pk.set(pointer(key), key);
      if (v !== '') ops2.push(...opsFor(key, v, -1));
      else if (doc.value && Object.hasOwn(doc.value, key)) ops2.push({ op: 'remove', path: pointer(key) });
    }
    if (ops2.length) await send(ops2, base ?? doc.version(), sent, pk, true);
  } else {
    refuse(err, sent, pathKey, base);
  }
}

// ruleRefusal is a 412 whose edit, merged with the changes made since its
// version, breaks the schema, as refuse reads a refusal: the schema's
// errors, and a message that says the two together did.
function ruleRefusal(err) {
  const errors = err.conflicts.filter((c) => c.reason === 'schema-violation').flatMap((c) => (Array.isArray(c.errors) ? c.errors : []));
  return { status: 412, problem: { errors }, message: 'together with a change someone else made meanwhile, it breaks the rules of this form', together: true };
}

// friendly says what a schema error means in the words of the form, for
// the keywords a form's schema usually has; else the schema's own message.
function friendly(e) {
  const want = /want (.+)$/.exec(String(e?.message ?? ''))?.[1];
  const n = want !== undefined && /^-?\d+(\.\d+)?$/.test(want) ? want : null;
  switch (e?.keyword) {
    case 'required':
    case 'dependentRequired':
      return 'required';
    case 'minLength':
      return n === null ? e.message : n === '1' ? 'may not be empty' : `needs at least ${n} characters`;
    case 'maxLength':
      return n === null ? e.message : `at most ${n} characters`;
    case 'minimum':
      return n === null ? e.message : `must be at least ${n}`;
    case 'maximum':
      return n === null ? e.message : `must be at most ${n}`;
    case 'minItems':
      return n === null ? e.message : `needs at least ${n} line item${n === '1' ? '' : 's'}`;
    case 'format':
      return /email/.test(e.message) ? 'is not a valid email address' : e.message;
    case 'enum':
    case 'const':
      return 'is not one of the allowed values';
    case 'type':
      return 'has the wrong kind of value';
    default:
      return e?.message ?? '';
  }
}

// fieldErrors spreads a schema's errors over the fields they name: a
// missing required member is named in the message, at the parent.
function fieldErrors(errors) {
  const out = [];
  for (const e of Array.isArray(errors) ? errors : []) {
    // "missing property 'a'", "properties 'a', 'b' required, if 'c' exists"
    const names = String(e.message).split(' required')[0];
    const missing = (e.keyword === 'required' || e.keyword === 'dependentRequired') && e.instancePath === '' ? [...names.matchAll(/'([^']*)'/g)].map((m) => m[1]) : [];
    if (missing.length && missing.every((f) => FIELDS.includes(f))) for (const f of missing) out.push({ ...e, instancePath: pointer(f) });
    else out.push(e);
  }
  return out;
}

// emptiedOnly tells whether a write set only top-level fields, one of them
// to the empty string.
function emptiedOnly(sent) {
  const keys = [...sent.keys()];
  return keys.every((key) => !parseKey(key).item) && keys.some((key) => sent.get(key) === '');
}

// refuse keeps a refused edit's values in the form, marked, and says why
// in the words of the form: the user corrects the text rather than type
// it again. The field is sent again once it is edited.
function refuse(err, sent, pathKey, base = null) {
  const why = new Map(); // key -> the schema's messages about it
  const elsewhere = []; // its messages about other fields
  for (const e of fieldErrors(err.problem?.errors)) {
    const key = keyAt(e.instancePath, pathKey);
    if (key && sent.has(key)) why.set(key, [...(why.get(key) ?? []), friendly(e)]);
    else elsewhere.push(key && label(key) ? `${label(key)} ${friendly(e)}` : friendly(e));
  }
  // A field edited again since it was sent keeps its newer text, which
  // is sent (and judged) in its turn. So is one whose newer text is on its
  // way.
  const keys = (why.size ? [...why.keys()] : [...sent.keys()]).filter((key) => !dirty.has(key) && !inflight.has(key));
  for (const key of keys) {
    const el = controlFor(key);
    if (!el) continue;
    refused.set(key, err);
    if (base) refusedBase.set(key, base);
    // Refused for what other fields hold: sent again once another saves.
    if (!why.has(key) && elsewhere.length) refusedElsewhere.add(key);
    writeControl(el, sent.get(key));
    el.setAttribute('aria-invalid', 'true');
    // Why, shown by the field itself (every refused field, not only the
    // one the status names) and read out with it.
    const reason = why.has(key) ? why.get(key).join('; ') : elsewhere.length ? `${err.message}: ${elsewhere.join('; ')}` : err.message;
    setMark(key, `not saved: ${reason}`, reason);
    const m = markFor(key);
    if (m) {
      m.setAttribute('data-refused', '');
      m.id ||= `mark-${key.replace(/[^A-Za-z0-9_-]/g, '-')}`;
      el.setAttribute('aria-describedby', m.id);
    }
  }
  // Fields refused only because they travelled with a refused one (not
  // the members of a line item kept on the page: it is sent whole, once
  // what is marked is edited).
  for (const key of sent.keys()) if (!keys.includes(key) && !why.has(key) && !localItems.has(parseKey(key).item)) edited(key);
  if (dirty.size) schedule();
  if (!keys.length) return; // all edited again since: their new text is judged next
  notSaved = why.size
    ? keys
        .filter((key) => why.has(key))
        .map((key) => `${label(key)}: ${why.get(key).join('; ')}`)
        .join(' · ')
    : elsewhere.length
      ? `${keys.map(label).join(', ')}: ${err.together ? `${err.message}: ` : ''}${elsewhere.join('; ')}`
      : err.message;
  for (const key of keys) {
    if (!refused.has(key)) continue;
    refusedSaid.set(
      key,
      why.has(key)
        ? `${label(key)}: ${why.get(key).join('; ')}`
        : elsewhere.length
          ? `${label(key)}: ${err.together ? `${err.message}: ` : ''}${elsewhere.join('; ')}`
          : `${label(key)}: ${err.message}`,
    );
  }
  say(`Could not save: ${notSaved}`);
  // A token that may read but not write here: sign in with another, and
  // the refused fields are sent again.
  if (err instanceof PatchdError && (err.status === 401 || err.status === 403)) askToken($('#signin'), err.status, err.message, { then: resendRefused });
}

// saved follows a write that saved: fields refused for what other fields
// held are sent again, once each, as the write may have met the rule.
function saved(sent) {
  const again = [...refusedElsewhere].filter((key) => refused.has(key) && !sent.has(key) && !inflight.has(key) && !dirty.has(key));
  if (!again.length) return;
  for (const key of again) refusedElsewhere.delete(key);
  queueMicrotask(() => resendRefused(again));
}

// resendRefused sends every refused field again, each against the version
// its edit was made against (a line item's against the version shown).
function resendRefused(keys = [...refused.keys()]) {
  for (const key of keys) {
    const base = refusedBase.get(key);
    edited(key);
    if (base && !parseKey(key).item) dirty.get(key).base = base;
  }
  say('');
  flush();
}

// keyAt is the field a JSON Pointer of the document falls in: a
// top-level member, or a line item's member as the write named it.
function keyAt(path, pathKey) {
  if (typeof path !== 'string') return null;
  for (const [p, key] of pathKey) if (path === p || path.startsWith(p + '/')) return key;
  const top = /^\/([^/]*)/.exec(path)?.[1];
  return top && LABELS[top] ? top : null;
}

// sentOf reads back which fields an edit of this page set, and to what:
// for edits restored after a reload, whose answer comes to this page.
function sentOf(ops) {
  const sent = new Map();
  const pathKey = new Map();
  let item = null;
  for (const op of ops) {
    const m = /^\/items\/\d+\/(id|desc|qty)$/.exec(op.path);
    if (m && op.op === 'test' && m[1] === 'id') item = op.value;
    const key = m ? (item && m[1] !== 'id' ? `item:${item}:${m[1]}` : null) : op.path.slice(1);
    if (key && (m || LABELS[key]) && op.op !== 'test') {
      sent.set(key, op.value);
      pathKey.set(op.path, key);
    }
  }
  return { sent, pathKey };
}

// --- conflicts --------------------------------------------------------

function conflict(err, sent, pathKey, base = null, was = null) {
  let keys = err instanceof ConflictError ? [...new Set(err.conflicts.map((c) => pathKey.get(c.clientPath)).filter(Boolean))] : [];
  if (keys.length === 0) keys = [...sent.keys()];
  const current = err.current?.value ?? doc.value;
  // A line item moved by someone else (a move is a removal and an insert)
  // while its field kept the value the edit began from: nobody else
  // changed the field, so the edit is made again where the item is now.
  const moved = keys.filter((key) => movedOnly(err, key, pathKey, was));
  keys = keys.filter((key) => !moved.includes(key));
  let again = null;
  if (moved.length) {
    const ops = [];
    const sent2 = new Map();
    const pk = new Map();
    const was2 = new Map();
    for (const key of moved) {
      const v = sent.get(key);
      addOps(ops, pk, key, v, itemIndex(current, parseKey(key).item));
      sent2.set(key, v);
      was2.set(key, valueAt(current, key));
    }
    again = send(ops, err.current.etag, sent2, pk, false, was2);
  }
  for (const key of sent.keys()) {
    if (keys.includes(key) || moved.includes(key)) continue;
    // Refused only because it travelled with a conflicting edit: send again.
    edited(key);
  }
  if (dirty.size) schedule();
  for (const key of keys) {
    const theirs = valueAt(current, key);
    const el = controlFor(key);
    if (!el) continue;
    if (deepEqual(theirs, sent.get(key))) continue; // both made the same change
    // Nothing newer typed in the field since: it shows what was sent. An
    // edit restored after a reload was refused after the page had shown
    // the document without it, and "mine" is what was typed then.
    if (sent.has(key) && !dirty.has(key) && !inflight.has(key)) writeControl(el, sent.get(key));
    prompt(key, theirs, err.current ?? null, sentIndex(pathKey, key), base);
  }
  return again;
}

// movedOnly reports whether a 412 refused a line item's field only because
// the item moved: its only conflicts are the item's removal (the first half
// of a move) and the test of its id, the item is in the current document,
// and the field holds there the value the edit began from (was).
function movedOnly(err, key, pathKey, was) {
  const k = parseKey(key);
  if (!k.item || !(err instanceof ConflictError) || !err.current?.etag || !was?.has(key)) return false;
  const reasons = err.conflicts.filter((c) => pathKey.get(c.clientPath) === key).map((c) => c.reason);
  if (!reasons.length || !reasons.every((r) => r === 'element-removed' || r === 'test-invalidated')) return false;
  const current = err.current.value;
  return itemIndex(current, k.item) >= 0 && deepEqual(valueAt(current, key), was.get(key));
}

// sentIndex is the index of the line item a write's ops named for key, in
// the version the edit was made against; -1 for a field.
function sentIndex(pathKey, key) {
  for (const [path, k] of pathKey) {
    const m = k === key && /^\/items\/(\d+)\//.exec(path);
    if (m) return Number(m[1]);
  }
  return -1;
}

// prompt asks which value a conflicted field keeps: theirs, as current
// (the document read after the 412; null if unreadable) holds it, or the
// user's. Keep mine is sent against the version whose value the prompt
// shows, so that a change made after it asks again.
function prompt(key, theirs, current, index = -1, editBase = null) {
  conflicted.get(key)?.remove();
  const el = controlFor(key);
  const box = $('#conflict-prompt').content.firstElementChild.cloneNode(true);
  const titleID = `conflict-${key.replace(/[^A-Za-z0-9_-]/g, '-')}`;
  box.querySelector('h2').id = titleID;
  box.setAttribute('aria-labelledby', titleID);
  box.dataset.key = key;
  const removed = theirs === undefined;
  // A removed item is named by where it was when the edit was made: its
  // row, kept while the prompt is, may have moved since.
  const itemName = () => (index >= 0 ? `Line item ${index + 1}` : itemLabel(parseKey(key).item));
  box.querySelector('h2').textContent = removed ? `${itemName()} was removed by someone else` : `${label(key)} was changed by someone else`;
  box.querySelector('.conflict-text').textContent = removed
    ? 'Someone else removed this line item while you were editing it. Keep mine puts it back with what you typed.'
    : 'You and someone else changed this field at the same time. Which value should it keep?';
  box.querySelector('.theirs').textContent = show(theirs);
  box.querySelector('.mine').textContent = show(readControl(el));
  // The version shown: current's, or, once the change feed brings a newer
  // value of the field, the version that holds it.
  let shown = { value: theirs, base: current?.etag ?? doc.version(), doc: current?.value ?? doc.value };
  // The feed may still be behind current: older versions it brings must
  // not move the prompt back. It has caught up once it brings current's
  // version (or shows current's value when the prompt opens).
  let caughtUp = !current || deepEqual(valueAt(doc.value, key), theirs);
  box.refresh = (ev) => {
    if (!caughtUp) {
      caughtUp = ev?.version ? ev.version.etag === current.etag : deepEqual(valueAt(doc.value, key), theirs);
      return;
    }
    const now = valueAt(doc.value, key);
    if (deepEqual(now, shown.value)) return;
    shown = { value: now, base: doc.version(), doc: doc.value };
    box.querySelector('.theirs').textContent = show(now);
  };
  el.setAttribute('aria-invalid', 'true');
  el.setAttribute('aria-describedby', titleID);
  const ask = removed
    ? `${itemName()}: someone else removed it while you were editing it. Choose whether to put it back.`
    : `${label(key)}: someone else changed it too. Choose which value to keep.`;
  const done = () => {
    box.remove();
    conflicted.delete(key);
    dirty.delete(key);
    const c = controlFor(key);
    c?.removeAttribute('aria-invalid');
    c?.removeAttribute('aria-describedby');
    if (activity.textContent === ask) say('');
    render({ source: 'local' });
    updateStatus();
  };
  box.querySelector('.keep-mine').addEventListener('click', () => {
    const c = controlFor(key);
    // Sent before the prompt goes: the field shows what is being kept
    // throughout, never theirs in between.
    keepMine(key, readControl(c), shown.base, shown.doc, index, editBase);
    done();
    c?.focus();
  });
  box.querySelector('.take-theirs').addEventListener('click', () => {
    const c = controlFor(key);
    done();
    c?.focus();
  });
  conflicted.set(key, box);
  conflictsEl.append(box);
  updateStatus();
  // The prompt never takes the focus: the user may be typing in this very
  // field, and a space meant for it must not press a button. The box is
  // an alertdialog and the activity line announces it.
  say(ask);
}

// keepMine sends the user's value of a conflicted field against base, the
// version the prompt showed, whose value is shown. A line item removed
// meanwhile is put back where it was: at index in editBase, the version
// the edit was made against, when the edit named it.
function keepMine(key, mine, base, shown, index = -1, editBase = null) {
  const k = parseKey(key);
  const sent = new Map([[key, mine]]);
  const pathKey = new Map();
  if (k.item && itemIndex(doc.value, k.item) < 0) {
    // The item was removed: add it back where it was, with what this page
    // shows in its row (still there while the prompt is).
    const li = rowOf(k.item);
    const item = { id: k.item, desc: li ? readControl(li.querySelector('input.desc')) : '', qty: li ? readControl(li.querySelector('input.qty')) : 1 };
    item[k.field] = mine;
    const items = Array.isArray(doc.value?.items) ? doc.value.items : [];
    // Where the edit found it, in the version it was made against: the
    // server moves the index over the inserts and removals since.
    if (index >= 0 && editBase) {
      send([{ op: 'add', path: pointer('items', index), value: item }], editBase, sent, pathKey);
      return;
    }
    const at = Math.min(Math.max(0, [...itemsList.children].indexOf(li)), items.length);
    send([{ op: 'add', path: pointer('items', at), value: item }], doc.version(), sent, pathKey);
    return;
  }
  // An item where it is in that version: the server rebases the index
  // over later inserts and removals.
  let i = k.item ? itemIndex(shown, k.item) : -1;
  if (k.item && i < 0) [i, base] = [itemIndex(doc.value, k.item), doc.version()]; // not in it: as now
  const ops = opsFor(key, mine, i);
  for (const op of ops) pathKey.set(op.path, key);
  // Against the version that holds their value, so that this overwrites
  // it on purpose; a newer change by someone else asks again.
  send(ops, base, sent, pathKey);
}

// --- events -------------------------------------------------------------

form.addEventListener('submit', (e) => e.preventDefault());

form.addEventListener('input', (e) => {
  const key = keyOf(e.target);
  if (key && drafting) {
    e.target.removeAttribute('aria-invalid');
    setMark(key, '');
    markFor(key)?.removeAttribute('data-refused');
    guardUnload(true);
    keepDraft();
    return;
  }
  if (!key || !doc) return;
  if (conflicted.has(key)) {
    conflicted.get(key).querySelector('.mine').textContent = show(readControl(e.target));
    return;
  }
  edited(key);
  if (e.target.type === 'checkbox') flush();
  else schedule();
});

form.addEventListener('focusout', (e) => {
  if (keyOf(e.target) && dirty.size) flush();
});

$('#add-item').addEventListener('click', () => {
  const id = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
  const item = { id, desc: '', qty: 1 };
  focusItem = id;
  if (drafting) {
    renderItems([...draftBody().items, item], false);
    keepDraft();
    return;
  }
  // A collection whose schema refused an empty list was created without
  // one: the first item makes it.
  doc.patch([addItemOp(item)]).catch((err) => {
    if (!(err instanceof PatchdError && err.type === 'schema-violation')) {
      say(`Could not add the line item: ${err.message}`);
      return;
    }
    // The schema refuses an empty line item (a description it needs):
    // the row is kept on this page, and saved once it is filled in.
    localItems.add(id);
    // Its row may be shown already (added while offline, typed in since):
    // it is kept, with what was typed, and sent whole if anything was.
    let li = rowOf(id);
    if (!li) {
      li = newRow(id);
      writeControl(li.querySelector('input.desc'), item.desc);
      writeControl(li.querySelector('input.qty'), item.qty);
      itemsList.append(li);
    } else if (readControl(li.querySelector('input.desc')) !== item.desc || readControl(li.querySelector('input.qty')) !== item.qty) {
      dirty.set(`item:${id}:desc`, { base: doc.version(), index: -1 });
      schedule();
    }
    $('#no-items').hidden = true;
    const at = [...itemsList.children].indexOf(li);
    const why = fieldErrors(err.problem?.errors).map((e) => {
      const f = /^\/items\/\d+\/(desc|qty)/.exec(e.instancePath ?? '')?.[1];
      if (f) setMark(`item:${id}:${f}`, 'not saved yet', friendly(e));
      return `${f === 'desc' ? 'its description' : f === 'qty' ? 'its quantity' : 'it'} ${friendly(e)}`;
    });
    say(`Line item ${at + 1} is not saved yet: ${why.join('; ')}. It is saved once filled in.`);
    li.querySelector('input.desc').focus();
    focusItem = null;
    updateStatus();
  });
});

// addItemOp adds item to the document's line items, at index at or last
// (or makes the list, which a schema that refuses an empty one left out
// of a new form).
function addItemOp(item, at = -1) {
  if (!Array.isArray(doc.value?.items)) return { op: 'add', path: '/items', value: [item] };
  return { op: 'add', path: at < 0 || at >= doc.value.items.length ? '/items/-' : pointer('items', at), value: item };
}

itemsList.addEventListener('click', (e) => {
  const btn = e.target.closest('button.remove');
  if (!btn) return;
  const id = btn.closest('li.item').dataset.id;
  if (drafting || localItems.delete(id)) {
    if (!drafting && ['desc', 'qty'].some((f) => inflight.has(`item:${id}:${f}`))) dropAfterAdd.add(id);
    for (const f of ['desc', 'qty']) {
      dirty.delete(`item:${id}:${f}`);
      if (refused.has(`item:${id}:${f}`)) unrefuse(`item:${id}:${f}`);
    }
    btn.closest('li.item').remove();
    $('#no-items').hidden = itemsList.children.length > 0;
    $('#add-item').focus();
    if (drafting) keepDraft();
    else updateStatus();
    return;
  }
  const i = itemIndex(doc.value, id);
  for (const f of ['desc', 'qty']) {
    dirty.delete(`item:${id}:${f}`);
    conflicted.get(`item:${id}:${f}`)?.remove();
    conflicted.delete(`item:${id}:${f}`);
  }
  if (i < 0) {
    render({ source: 'local' });
    return;
  }
  doc
    .patch([
      { op: 'test', path: pointer('items', i, 'id'), value: id },
      { op: 'remove', path: pointer('items', i) },
    ])
    .catch((err) => {
      if (err instanceof ConflictError && err.conflicts.some((c) => c.reason === 'schema-violation')) {
        const r = ruleRefusal(err);
        say(`Could not remove the line item: ${r.message}: ${fieldErrors(r.problem.errors).map(friendly).join('; ')}`);
      } else if (!(err instanceof PatchdError && err.status === 412)) say(`Could not remove the line item: ${err instanceof PatchdError && err.type === 'schema-violation' ? fieldErrors(err.problem?.errors).map(friendly).join('; ') || err.message : err.message}`);
    });
  $('#add-item').focus();
});

addEventListener('pagehide', () => flush());
document.addEventListener('visibilitychange', () => document.visibilityState === 'hidden' && dirty.size && flush());

// create makes the document the form shows. A collection whose schema
// refuses an empty member (a format, a minimum length) or a member it does
// not list (additionalProperties: false) gets the document without those
// members: the form shows them empty all the same, and the schema judges
// what is typed into them. A schema that still refuses (a required member
// that may not be empty) leaves the form a draft: see drafting.
async function create(body, again) {
  try {
    return await client.create(collection, docID, body);
  } catch (err) {
    if (err instanceof PatchdError && err.status === 412) return client.open(collection, docID);
    if (!again || !(err instanceof PatchdError && err.type === 'schema-violation')) throw err;
    const bad = new Set();
    for (const e of err.problem?.errors ?? []) {
      const top = /^\/([^/]*)/.exec(e.instancePath ?? '')?.[1];
      if (top !== undefined) bad.add(top);
      else if (e.keyword === 'additionalProperties') for (const m of String(e.message).matchAll(/'([^']*)'/g)) bad.add(m[1]);
    }
    // Only empty members: what was typed into a draft is judged, not dropped.
    const rest = Object.fromEntries(Object.entries(body).filter(([k, v]) => !bad.has(k) || !isEmpty(v)));
    if (Object.keys(rest).length === Object.keys(body).length) throw err;
    return create(rest, false);
  }
}

function isEmpty(v) {
  return v === '' || v === false || v === null || (Array.isArray(v) && v.length === 0);
}

// --- a draft: a document the schema refuses to create empty ---------------

// While the collection's schema refuses every empty form, the form is a
// draft kept in this page: nothing is sent until Create, which sends what
// is typed as the new document, and the schema's refusals mark the fields
// they name. If someone else created the document meanwhile, the draft's
// fields join theirs: a field they left empty takes the draft's value, a
// field both filled asks which to keep, the draft's line items are added.
let drafting = false;
// A stored draft joined to the document: it is removed from storage once
// nothing of it waits to be sent, refused or chosen (updateStatus).
let draftJoining = false;

function draftBody() {
  const body = {};
  for (const f of FIELDS) body[f] = readControl(controlFor(f));
  body.items = [...itemsList.children].map((li) => ({ id: li.dataset.id, desc: readControl(li.querySelector('input.desc')), qty: readControl(li.querySelector('input.qty')) }));
  return body;
}

function draftPaths() {
  const pathKey = new Map(FIELDS.map((f) => [pointer(f), f]));
  [...itemsList.children].forEach((li, i) => {
    for (const f of ['desc', 'qty']) pathKey.set(pointer('items', i, f), `item:${li.dataset.id}:${f}`);
  });
  return pathKey;
}

function clearDraftMarks() {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const m of form.querySelectorAll('.mark')) {
    m.textContent = '';
    m.title = '';
    m.removeAttribute('data-refused');
  }
}

// A draft is kept in the browser (localStorage) as it is typed, under a
// key of this tab's own (two tabs' drafts of one form do not overwrite
// each other): a reload finds it, and so does a later visit (the newest
// draft of the form, when this tab has none), until it is saved.
const draftPrefix = `patchd-draft:${collection}/${docID}:`;
// A reload keeps the tab's id; any other load takes a new one (a window
// opened from this one starts with a copy of its session storage).
const reloaded = performance.getEntriesByType?.('navigation')?.[0]?.type === 'reload';
const tabID = (reloaded && sessionStorage.getItem('patchd-demo-tab')) || Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('');
sessionStorage.setItem('patchd-demo-tab', tabID);
const draftKey = draftPrefix + tabID;
// The stored draft this page shows, if it took another tab's.
let restoredKey = null;

function keepDraft() {
  try {
    localStorage.setItem(draftKey, JSON.stringify({ at: Date.now(), body: draftBody() }));
  } catch {
    // Storage full or refused: the draft lives in the page only.
  }
}

function forgetDraft() {
  localStorage.removeItem(draftKey);
  if (restoredKey) localStorage.removeItem(restoredKey);
  restoredKey = null;
}

// storedDraft returns this tab's stored draft of the form, else the newest
// another tab left: {key, body}, or null.
function storedDraft() {
  let best = null;
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key?.startsWith(draftPrefix)) continue;
    try {
      const d = JSON.parse(localStorage.getItem(key));
      if (d === null || typeof d.body !== 'object' || d.body === null || Array.isArray(d.body)) continue;
      if (key === draftKey) return { key, body: d.body };
      if (!best || d.at > best.at) best = { key, body: d.body, at: d.at };
    } catch {
      // Not a draft of this page's: left alone.
    }
  }
  return best && { key: best.key, body: best.body };
}

// restoreDraft shows the draft kept in the browser, if any; it returns
// whether there was one.
function restoreDraft() {
  const stored = storedDraft();
  if (!stored) return false;
  const body = stored.body;
  if (stored.key !== draftKey) restoredKey = stored.key;
  for (const f of FIELDS) if (f in body) writeControl(controlFor(f), body[f]);
  const items = Array.isArray(body.items) ? body.items.filter((it) => typeof it?.id === 'string') : [];
  renderItems(items, false);
  guardUnload(true);
  return true;
}

const DRAFT_STATUS = 'Not created yet · this collection needs more than an empty form: fill it in and press Create';

function draft(err) {
  drafting = true;
  restoreDraft();
  for (const el of form.querySelectorAll('input, textarea, button')) el.disabled = false;
  $('#create').hidden = false;
  statusEl.dataset.state = 'draft';
  statusEl.textContent = DRAFT_STATUS;
  refusedDraft(err, 'The collection refuses an empty form');
}

// refusedDraft marks the fields a refusal of the draft names and says why.
function refusedDraft(err, lead) {
  clearDraftMarks();
  const pathKey = draftPaths();
  const said = [];
  for (const e of fieldErrors(err.problem?.errors)) {
    const key = keyAt(e.instancePath, pathKey);
    const why = friendly(e);
    if (key && controlFor(key)) {
      controlFor(key).setAttribute('aria-invalid', 'true');
      const m = markFor(key);
      if (m) {
        m.textContent = why === 'required' ? 'required' : 'not accepted';
        m.title = m.title ? `${m.title}; ${why}` : why;
        m.setAttribute('data-refused', '');
      }
      said.push(`${label(key)}: ${why}`);
    } else said.push(why);
  }
  say(`${lead}: ${said.length ? said.join(' · ') : err.message}`);
  guardUnload(true);
}

$('#create').addEventListener('click', async () => {
  if (!drafting) return;
  const body = draftBody();
  const button = $('#create');
  button.disabled = true;
  statusEl.textContent = 'Creating… · what you type meanwhile is kept';
  try {
    // Members left empty that the schema refuses so are left out; if
    // someone else created the document meanwhile, it is opened.
    doc = await create(body, true);
  } catch (err) {
    button.disabled = false;
    statusEl.textContent = DRAFT_STATUS;
    if (!(err instanceof PatchdError) || err.status === 412) {
      say(`Could not create the form: ${err.message}. Press Create to try again.`);
      return;
    }
    refusedDraft(err, 'Could not create the form');
    if (err.status === 401 || err.status === 403) askToken($('#signin'), err.status, err.message, { then: () => say('Signed in: press Create again.') });
    return;
  }
  drafting = false;
  draftJoining = true; // the stored draft goes once what it holds is saved
  button.hidden = true;
  clearDraftMarks();
  say('');
  // What was typed while Create was on its way joins as edits.
  joinDraft(draftBody(), body);
  begin();
});

// joinDraft makes the draft's fields edits of the document someone else
// created meanwhile (nothing to do when this page created it).
// sent is what this page's Create sent, if it did: a member the document
// holds as sent and the form shows otherwise was typed since, an edit.
function joinDraft(body, sent = null) {
  const v = doc.value ?? {};
  if (deepEqual(v, body)) return;
  const current = { etag: doc.version(), value: v };
  const ours = (a, b) => sent !== null && deepEqual(a, b);
  for (const f of FIELDS) {
    const mine = body[f];
    if (deepEqual(mine, v[f])) continue;
    if (ours(v[f], sent?.[f]) || (mine !== EMPTY[f] && (v[f] === undefined || v[f] === EMPTY[f]))) dirty.set(f, { base: doc.version(), index: -1 });
    else if (mine !== EMPTY[f]) prompt(f, v[f], current);
  }
  // Line items in the document whose row shows other text.
  for (const it of body.items) {
    const i = itemIndex(v, it.id);
    if (i < 0) continue;
    const was = sent?.items?.find((x) => x.id === it.id);
    for (const f of ['desc', 'qty']) {
      if (deepEqual(it[f], v.items[i][f])) continue;
      const key = `item:${it.id}:${f}`;
      if (was && deepEqual(v.items[i][f], was[f])) dirty.set(key, { base: doc.version(), index: i });
      else prompt(key, v.items[i][f], current, i, doc.version());
    }
  }
  // The draft's line items are kept on the page and added as line items
  // added here are: one refused stays, marked, until it is filled in.
  for (const it of body.items.filter((it) => itemIndex(v, it.id) < 0)) {
    localItems.add(it.id);
    dirty.set(`item:${it.id}:desc`, { base: doc.version(), index: -1 });
  }
  if (dirty.size) schedule();
}

async function start() {
  $('#doc-name').textContent = `${collection}/${docID}`;
  $('#new-window').href = location.href;
  $('#all').href = `/ui/list.html?c=${encodeURIComponent(collection)}`;
  try {
    doc = await client.open(collection, docID);
  } catch (err) {
    if (!(err instanceof PatchdError && err.status === 404)) throw err;
    try {
      doc = await create(EMPTY, true);
    } catch (err) {
      if (!(err instanceof PatchdError && err.type === 'schema-violation')) throw err;
      draft(err);
      return;
    }
  }
  // A draft kept from a visit before someone else created the document
  // joins it, as a draft does when its Create finds the document made.
  if (restoreDraft()) {
    say('Your draft of this form from an earlier visit joins the form someone else created meanwhile.');
    joinDraft(draftBody());
    draftJoining = true; // the stored draft goes once what it holds is saved
  }
  begin();
}

// begin shows the open document and follows it.
function begin() {
  doc.subscribe((ev) => {
    if (ev.type === 'change') {
      if (ev.source === 'ack' || ev.source === 'revert') answered();
      render(ev);
    } else if (ev.type === 'status') updateStatus();
    else if (ev.type === 'retry') onRetry(ev);
    else if (ev.type === 'error') say(`The live feed stopped: ${ev.error.message}`);
  });
  // Edits an earlier visit left unsent, now sent again: their answers
  // (a conflict, say) come here.
  for (const r of doc.restored) {
    const { sent, pathKey } = sentOf(r.kind === 'json-patch' ? r.body : []);
    r.result.then(
      () => updateStatus(),
      (err) =>
        failed(err, sent, pathKey, true).then(() => {
          // A line item removed by someone else since: it has no row
          // on this page to ask about, so what was typed in it is said.
          const gone = [...sent].filter(([key]) => parseKey(key).item && !controlFor(key) && !conflicted.has(key));
          if (gone.length) {
            const typed = gone.map(([key, v]) => `${parseKey(key).field === 'desc' ? 'description' : 'quantity'} ${show(v)}`).join(', ');
            say(`A line item you edited before leaving the page was removed by someone else meanwhile; your edit of it was not saved (${typed}).`);
          }
          if (doc.value !== null) render({ source: 'local' });
        }),
    );
  }
  if (doc.restored.length) say(`${doc.restored.length === 1 ? 'An edit' : `${doc.restored.length} edits`} from your last visit ${doc.restored.length === 1 ? 'was' : 'were'} not saved yet: sending ${doc.restored.length === 1 ? 'it' : 'them'} now.`);
  render({ source: 'snapshot' });
  const fieldLabel = (m) => LABELS[m] ?? (m === 'items' ? 'Line items' : null);
  mountHistory(doc, $('#history'), fieldLabel);
  mountUndo(doc, $('#undo'), $('#undo-msg'), { before: flush, label: fieldLabel });
  doc.follow();
  startPresence();
  updateStatus();
}

// --- presence: who else is here, and in which field ----------------------

// This tab's name and color: ?name= or a friendly one picked once per tab.
function me() {
  const names = ['Ann', 'Ben', 'Cleo', 'Dev', 'Eli', 'Fay', 'Gus', 'Ida', 'Jo', 'Kit', 'Lou', 'Max'];
  const colors = ['#b3261e', '#1f6feb', '#2e7d32', '#8e24aa', '#ef6c00', '#00838f'];
  const pick = (a) => a[crypto.getRandomValues(new Uint32Array(1))[0] % a.length];
  // One person per browser: its tabs share a name, a color and an id
  // (the tabs' sessions say it, so that the others show one avatar for
  // them, and each tab none for the others).
  const kept = (k, make) => {
    let v = null;
    try {
      v = localStorage.getItem(k) || make();
      localStorage.setItem(k, v);
    } catch {
      v ??= make(); // storage refused: this tab alone
    }
    return v;
  };
  const name = params.get('name') || kept('patchd-demo-name', () => pick(names));
  const color = kept('patchd-demo-color', () => pick(colors));
  // getRandomValues, not randomUUID: served over plain HTTP to another
  // machine the page is no secure context.
  const browser = kept('patchd-demo-browser', () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (x) => x.toString(16).padStart(2, '0')).join(''));
  return { name, color, data: { browser } };
}

// onePerBrowser returns the others here, one per browser (its tabs'
// sessions together, the one editing a field first), without this
// browser's other tabs.
function onePerBrowser(others, mine) {
  const seen = new Set([mine]);
  return [...others.filter((s) => s.focus), ...others.filter((s) => !s.focus)].filter((s) => {
    const b = s.data?.browser;
    if (typeof b !== 'string') return true;
    if (seen.has(b)) return false;
    seen.add(b);
    return true;
  });
}

// The JSON Pointer of a field key ("customer" -> /customer, a line item's
// description -> /items/<id>/desc), and back.
const pointerOf = (key) => {
  const k = parseKey(key);
  return k.item ? pointer('items', k.item, k.field) : pointer(k.field);
};
const keyOfPointer = (p) => {
  const m = /^\/items\/([^/]+)\/(desc|qty)$/.exec(p ?? '');
  if (m) return `item:${m[1].replaceAll('~1', '/').replaceAll('~0', '~')}:${m[2]}`;
  const f = (p ?? '').slice(1);
  return FIELDS.includes(f) ? f : null;
};

let here = null;

// nameOf is what a session is called: with --tokens its token's name, as
// the History panel names the same person; else the name its page chose.
function nameOf(s) {
  return s.actor || s.name;
}

function renderPresence() {
  // Without the change feed, who is here is not known any more: nobody is
  // shown until it is back, rather than whoever was here when it broke.
  const others = doc?.status === 'live' ? onePerBrowser(here?.others ?? [], here?.mine) : [];
  const people = $('#people');
  // The initials are for the eye; a screen reader reads the names.
  const names = document.createElement('span');
  names.className = 'sr-only';
  names.textContent = `Also here: ${others.map((s) => nameOf(s) || 'someone').join(', ')}`;
  people.replaceChildren(
    names,
    ...others.map((s) => {
      const a = document.createElement('span');
      a.className = 'avatar';
      a.textContent = (nameOf(s) || '?').slice(0, 1).toUpperCase();
      a.title = nameOf(s) || 'someone';
      a.setAttribute('aria-hidden', 'true');
      if (/^#[0-9a-fA-F]{3,8}$/.test(s.color)) a.style.background = s.color;
      return a;
    }),
  );
  people.hidden = others.length === 0;
  for (const el of document.querySelectorAll('.editing')) el.remove();
  for (const s of others) {
    const key = keyOfPointer(s.focus);
    const field = key && controlFor(key)?.closest('.field');
    if (!field) continue;
    const tag = document.createElement('span');
    tag.className = 'editing';
    tag.textContent = `${nameOf(s) || 'Someone'} is editing`;
    if (/^#[0-9a-fA-F]{3,8}$/.test(s.color)) tag.style.borderColor = s.color;
    field.append(tag);
  }
}

function startPresence() {
  // ?renew= (ms) for servers with a short --presence-ttl.
  const who = me();
  here = presence(doc, { ...who, renew: Number(params.get('renew')) || 10_000 });
  here.mine = who.data.browser;
  here.subscribe(renderPresence);
  doc.subscribe((ev) => (ev.type === 'change' || ev.type === 'status') && renderPresence());
  form.addEventListener('focusin', (e) => {
    const key = keyOf(e.target);
    here.focus(key ? pointerOf(key) : null);
  });
  form.addEventListener('focusout', () => here.focus(null));
}

// For the browser tests and the curious: the open document.
globalThis.patchdDemo = { doc: () => doc, presence: () => here, flush, unsent: () => dirty.size + (doc?.pendingCount ?? 0) };

start().catch((err) => {
  statusEl.dataset.state = 'offline';
  statusEl.textContent = `Could not open the document: ${err.message}`;
  if (err instanceof PatchdError && (err.status === 401 || err.status === 403)) askToken($('#signin'), err.status, err.message);
});
