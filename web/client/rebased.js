// What a rebased write brought that this client had not seen: loaded by
// the client (patchd.js) when the server first rebases one of its writes.
import { diff, pointer } from './json.js';

// theirs lists the paths at which the version a write made (b) differs
// from what this client expected of it (a), or returns null when none
// does: members and array elements added, removed or replaced.
export function theirs(a, b) {
  const paths = diff(a, b)
    .filter((op) => op.op !== 'test')
    .map((op) => op.path);
  return paths.length ? paths : null;
}

// known is the If-Match of an edit queued behind one of this client's
// that the server rebased over others' changes (its theirs): the version
// the value showed when the edit was made, if the edit touches one of
// those changes and nothing the edit ahead touched (which the user saw,
// and which would be a conflict with themselves); else null.
export function known(entry) {
  const b = entry.base;
  const mine = paths(entry);
  return b.after.state === 'acked' && b.known && overlap(mine, b.after.theirs) && !overlap(mine, paths(b.after)) ? b.known : null;
}

// paths lists what an edit reads or writes: its ops' paths and froms, or
// a merge patch's members down to those whose value is not an object.
function paths(entry) {
  const out = [];
  if (entry.kind === 'merge-patch') mergePaths(entry.body, '', out);
  else for (const op of entry.body) out.push(op.path, ...(typeof op.from === 'string' ? [op.from] : []));
  return out;
}

// overlap reports whether a path of a is at, above or below one of b.
function overlap(a, b) {
  const within = (x, y) => x === y || y.startsWith(x + '/');
  return a.some((m) => b.some((p) => within(m, p) || within(p, m)));
}

// mergePaths lists the paths a merge patch writes: its members, down to
// those whose value is not an object.
function mergePaths(patch, at, out) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    out.push(at);
    return;
  }
  const keys = Object.keys(patch);
  if (keys.length === 0 && at !== '') out.push(at);
  for (const k of keys) mergePaths(patch[k], at + pointer(k), out);
}
