// The demo's Undo button and history panel: who changed which field when,
// newest first, kept live from the change feed the form already follows,
// with a Revert button per version. Both go through the revert route, so
// an undo or a revert keeps what others changed since, and is refused
// (and says why) when someone changed the same field later.
import { ConflictError, PatchdError } from '/ui/client/patchd.js';

const PAGE = 20; // versions loaded at a time

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...children);
  return e;
}

/**
 * fieldsOf names the fields a list of JSON Patch ops touched, with
 * label(member) for a top-level member ("Title"; null to leave it out).
 */
function fieldsOf(ops, label) {
  const names = [];
  for (const op of ops ?? []) {
    const top = op.path.split('/')[1];
    const name = top === undefined ? null : label(top.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (name && !names.includes(name)) names.push(name);
  }
  return names;
}

function created(v) {
  return v.ops?.length === 1 && v.ops[0].op === 'add' && v.ops[0].path === '';
}

// who names the author of a version: the token's name, else (the demo runs
// without tokens) "someone" and the start of the write's request id, so
// that two writes by different people can still be told apart.
function who(v) {
  if (v.actor) return v.actor;
  return v.requestId ? `someone (request ${v.requestId.slice(-6)})` : 'someone';
}

function when(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
}

function what(v, label) {
  if (v.kind === 'revert' && created(v)) return `undid version ${v.reverts} (brought the form back)`;
  if (created(v)) return 'created the form';
  if (v.kind === 'delete') return 'deleted the form';
  const fields = fieldsOf(v.ops, label);
  const list = fields.length ? fields.join(', ') : 'nothing visible';
  if (v.kind === 'revert') return `undid version ${v.reverts}${fields.length ? ` (${list})` : ''}`;
  if (v.kind === 'put') return `replaced the form (${list})`;
  return `changed ${list}`;
}

// whyNot says why a revert or an undo was refused, in the form's words.
function whyNot(err, label) {
  if (err instanceof ConflictError && err.conflicts.some((c) => c.reason === 'schema-violation')) {
    const errors = err.conflicts.flatMap((c) => (Array.isArray(c.errors) ? c.errors : []));
    const where = fieldsOf(
      errors.map((e) => ({ path: e.instancePath })),
      label,
    );
    return `with the changes made since, the form would break its rules${where.length ? ` (${where.join(', ')})` : ''}: ${errors.map((e) => e.message).join('; ') || 'the schema refuses it'}.`;
  }
  if (err instanceof ConflictError) {
    const later = [...new Set(err.conflicts.map((c) => c.concurrentVersion).filter((n) => n > 0))];
    const fields = fieldsOf(
      err.conflicts.map((c) => ({ path: c.clientPath })),
      label,
    );
    const f = fields.length ? fields.join(', ') : 'the same thing';
    return `${f} was changed again later${later.length ? ` (version ${later.join(', ')})` : ''}; that change is kept.`;
  }
  if (err instanceof PatchdError && err.type === 'base-unknown') return 'that version is no longer in the history.';
  if (err instanceof PatchdError && err.type === 'cannot-revert') return 'it created the form.';
  return err.message;
}

/**
 * Mounts the history panel in root (a section holding ol.history-list,
 * button.history-older and p.history-msg) for doc, which must not be
 * following yet: the panel loads when the feed's snapshot says where
 * history ends. label(member) names a top-level member for people.
 */
export function mountHistory(doc, root, label) {
  const list = $('.history-list', root);
  const older = $('.history-older', root);
  const msg = $('.history-msg', root);
  const rows = new Map(); // seq -> li
  let oldest = null; // the smallest seq shown

  function row(v) {
    const li = el('li', { className: 'version' });
    li.dataset.seq = v.seq;
    li.dataset.kind = v.kind;
    const time = el('time', { dateTime: v.at, textContent: when(v.at) });
    const text = el('span', { className: 'what' }, el('b', { className: 'who', textContent: who(v) }), ' ', el('span', { className: 'action', textContent: what(v, label) }));
    li.append(el('span', { className: 'seq', textContent: `#${v.seq}` }), time, text);
    if (!created(v)) {
      const b = el('button', { type: 'button', className: 'revert', textContent: 'Revert' });
      b.setAttribute('aria-label', `Revert version ${v.seq}`);
      li.append(b);
    }
    return li;
  }

  function add(v) {
    if (rows.has(v.seq)) return;
    const li = row(v);
    rows.set(v.seq, li);
    // Newest first: before the first row with a smaller seq.
    const next = [...list.children].find((x) => Number(x.dataset.seq) < v.seq) ?? null;
    list.insertBefore(li, next);
    if (oldest === null || v.seq < oldest) oldest = v.seq;
    older.hidden = oldest <= 1;
  }

  async function load(upTo) {
    const after = Math.max(0, upTo - PAGE);
    // Through the client: its headers (a token), and its retries of a 429
    // or 503 after Retry-After.
    const res = await doc.client._request(doc.client._url(doc.collection, doc.id, `/history?after=${after}&limit=${upTo - after}`), {
      headers: { Accept: 'application/json' },
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`history: HTTP ${res.status}`);
    const page = await res.json();
    for (const v of page.versions) add(v);
    // Versions before `after` were pruned: nothing older to show.
    if (after === 0 || page.versions.length === 0 || page.versions[0].seq > after + 1) older.hidden = true;
  }

  function say(text) {
    msg.textContent = text;
  }

  doc.subscribe((ev) => {
    if (ev.type !== 'change') return;
    if (ev.version) add(ev.version);
    else if ((ev.source === 'snapshot' || ev.source === 'reset') && typeof ev.seq === 'number') {
      if (ev.source === 'reset') {
        list.replaceChildren();
        rows.clear();
        oldest = null;
      }
      load(ev.seq).catch((err) => say(`Could not read the history: ${err.message}`));
    }
  });

  older.addEventListener('click', () => {
    if (oldest > 1) load(oldest - 1).catch((err) => say(`Could not read the history: ${err.message}`));
  });

  list.addEventListener('click', async (e) => {
    const b = e.target.closest('button.revert');
    if (!b) return;
    const seq = Number(b.closest('li').dataset.seq);
    b.disabled = true;
    say(`Reverting version ${seq}…`);
    try {
      await doc.revert(seq);
      say(`Reverted version ${seq}.`);
    } catch (err) {
      say(`Could not revert version ${seq}: ${whyNot(err, label)}`);
    } finally {
      b.disabled = false;
    }
  });
}

/**
 * Wires the Undo button (and Ctrl/Cmd+Z outside text fields, where the
 * field's own undo of typing wins) to doc.undo(). before() runs first: the
 * form sends what was typed, so that the newest edit is the one undone.
 * msg shows the outcome; a refusal offers to skip that edit.
 */
export function mountUndo(doc, button, msg, { before, label }) {
  const say = (...parts) => msg.replaceChildren(...parts);
  const update = () => {
    button.disabled = doc.value === null;
  };
  doc.subscribe(update);
  update();

  async function undo() {
    button.disabled = true;
    try {
      await before?.();
      const r = await doc.undo();
      say(r ? `Undid your change (version ${r.seq}).` : 'Nothing of yours to undo.');
    } catch (err) {
      const skip = el('button', { type: 'button', className: 'skip-undo', textContent: 'Skip it' });
      skip.addEventListener('click', () => {
        doc.forgetUndo();
        say('Skipped. Undo now goes to your change before it.');
        update();
      });
      say(`Cannot undo your last change: ${whyNot(err, label)} `, skip);
    } finally {
      update();
    }
  }

  button.addEventListener('click', undo);
  document.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.shiftKey || e.altKey || e.key.toLowerCase() !== 'z') return;
    const t = e.target;
    // Typing has its own undo in text fields: that is what users expect there.
    if (t instanceof HTMLTextAreaElement || (t instanceof HTMLInputElement && t.type !== 'checkbox') || t?.isContentEditable) return;
    e.preventDefault();
    if (!button.disabled) undo();
  });
}
