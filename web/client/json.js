// JSON values, JSON Pointer (RFC 6901), JSON Patch (RFC 6902), JSON Merge
// Patch (RFC 7396) and a diff that turns form edits into JSON Patch ops.
// Pure functions: they never change their arguments.

/** An error applying a JSON Patch: a failed test, a missing path, a bad index. */
export class PatchApplyError extends Error {
  constructor(message, op) {
    super(message);
    this.name = 'PatchApplyError';
    this.op = op;
  }
}

/** Escapes one reference token for a JSON Pointer. */
export function escapeToken(s) {
  return String(s).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Builds a JSON Pointer from path segments: pointer('items', 0, 'a/b') is "/items/0/a~1b". */
export function pointer(...segments) {
  return segments.map((s) => '/' + escapeToken(s)).join('');
}

/** Splits a JSON Pointer into its unescaped segments. */
export function parsePointer(p) {
  if (p === '') return [];
  if (typeof p !== 'string' || p[0] !== '/') throw new PatchApplyError(`invalid JSON Pointer ${JSON.stringify(p)}`);
  return p.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

// setMember sets an own member, "__proto__" included, without touching
// the prototype.
function setMember(obj, k, v) {
  Object.defineProperty(obj, k, { value: v, writable: true, enumerable: true, configurable: true });
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deep equality of JSON values (object member order does not matter). */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

/** A deep copy of a JSON value. */
export function clone(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

function arrayIndex(tok, len, allowEnd, op) {
  if (allowEnd && tok === '-') return len;
  if (!/^(0|[1-9][0-9]*)$/.test(tok)) throw new PatchApplyError(`bad array index ${JSON.stringify(tok)}`, op);
  const i = Number(tok);
  if (i > len || (!allowEnd && i === len)) throw new PatchApplyError(`array index ${i} out of range`, op);
  return i;
}

// parentOf walks to the container of the last segment.
function parentOf(doc, segs, op) {
  let cur = doc;
  for (const s of segs.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(s, cur.length, false, op)];
    else if (isObject(cur) && Object.hasOwn(cur, s)) cur = cur[s];
    else throw new PatchApplyError(`path ${op.path ?? op.from} does not exist`, op);
  }
  if (!Array.isArray(cur) && !isObject(cur)) throw new PatchApplyError(`path ${op.path ?? op.from} does not exist`, op);
  return cur;
}

function get(doc, path, op) {
  const segs = parsePointer(path);
  if (segs.length === 0) return doc;
  const parent = parentOf(doc, segs, op);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) return parent[arrayIndex(last, parent.length, false, op)];
  if (!Object.hasOwn(parent, last)) throw new PatchApplyError(`path ${path} does not exist`, op);
  return parent[last];
}

function add(doc, path, value, op) {
  const segs = parsePointer(path);
  if (segs.length === 0) return value;
  const parent = parentOf(doc, segs, op);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, true, op), 0, value);
  else setMember(parent, last, value);
  return doc;
}

function remove(doc, path, op) {
  const segs = parsePointer(path);
  if (segs.length === 0) return null; // the document itself: deleted
  const parent = parentOf(doc, segs, op);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, false, op), 1);
  else if (Object.hasOwn(parent, last)) delete parent[last];
  else throw new PatchApplyError(`path ${path} does not exist`, op);
  return doc;
}

function replace(doc, path, value, op) {
  const segs = parsePointer(path);
  if (segs.length === 0) return value;
  const parent = parentOf(doc, segs, op);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) parent[arrayIndex(last, parent.length, false, op)] = value;
  else if (Object.hasOwn(parent, last)) setMember(parent, last, value);
  else throw new PatchApplyError(`path ${path} does not exist`, op);
  return doc;
}

/**
 * Applies an RFC 6902 JSON Patch to a copy of value and returns the result.
 * Throws PatchApplyError, and changes nothing, when any op fails.
 * Removing "" gives null (the server's form of a delete).
 */
export function applyPatch(value, ops) {
  if (!Array.isArray(ops)) throw new PatchApplyError('a JSON Patch is an array of ops');
  let doc = clone(value);
  for (const op of ops) {
    switch (op.op) {
      case 'add':
        doc = add(doc, op.path, clone(op.value), op);
        break;
      case 'remove':
        doc = remove(doc, op.path, op);
        break;
      case 'replace':
        doc = replace(doc, op.path, clone(op.value), op);
        break;
      case 'move': {
        if (op.path.startsWith(op.from + '/')) throw new PatchApplyError('cannot move a value into itself', op);
        const v = get(doc, op.from, op);
        doc = add(remove(doc, op.from, op), op.path, v, op);
        break;
      }
      case 'copy':
        doc = add(doc, op.path, clone(get(doc, op.from, op)), op);
        break;
      case 'test':
        if (!deepEqual(get(doc, op.path, op), op.value)) throw new PatchApplyError(`test failed at ${op.path}`, op);
        break;
      default:
        throw new PatchApplyError(`unknown op ${JSON.stringify(op.op)}`, op);
    }
  }
  return doc;
}

/** Applies an RFC 7396 JSON Merge Patch to a copy of value. */
export function applyMerge(value, patch) {
  if (!isObject(patch)) return clone(patch);
  const out = isObject(value) ? clone(value) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else setMember(out, k, applyMerge(Object.hasOwn(out, k) ? out[k] : undefined, v));
  }
  return out;
}

function keyedArray(arr, key) {
  if (!key || !arr.every((e) => isObject(e) && (typeof e[key] === 'string' || typeof e[key] === 'number'))) return false;
  return new Set(arr.map((e) => e[key])).size === arr.length;
}

/**
 * Returns the JSON Patch ops that turn before into after: the edits of a
 * form, field by field. Members that differ are replaced, added or removed
 * one by one, so that concurrent edits of other fields rebase cleanly.
 *
 * Arrays are replaced whole, unless options.key names a member that
 * identifies the elements (line items with an "id", say) in both arrays:
 * then removed elements are removed, new ones inserted, and changed ones
 * edited member by member, each guarded by a "test" of the element's key,
 * so that an edit can never land on another element after concurrent
 * inserts or removals. Reordered keyed arrays are replaced whole.
 */
export function diff(before, after, options = {}) {
  const ops = [];
  diffInto(ops, '', before, after, options.key);
  return ops;
}

function diffInto(ops, path, a, b, key) {
  if (deepEqual(a, b)) return;
  if (isObject(a) && isObject(b)) {
    for (const k of Object.keys(a)) {
      if (!Object.hasOwn(b, k)) ops.push({ op: 'remove', path: path + pointer(k) });
    }
    for (const [k, v] of Object.entries(b)) {
      if (!Object.hasOwn(a, k)) ops.push({ op: 'add', path: path + pointer(k), value: clone(v) });
      else diffInto(ops, path + pointer(k), a[k], v, key);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b) && keyedArray(a, key) && keyedArray(b, key) && diffKeyed(ops, path, a, b, key)) {
    return;
  }
  ops.push({ op: 'replace', path, value: clone(b) });
}

function diffKeyed(ops, path, a, b, key) {
  const inB = new Set(b.map((e) => e[key]));
  const inA = new Set(a.map((e) => e[key]));
  const kept = a.filter((e) => inB.has(e[key]));
  const keptInB = b.filter((e) => inA.has(e[key]));
  if (!kept.every((e, i) => e[key] === keptInB[i][key])) return false; // reordered
  const out = [];
  for (let i = a.length - 1; i >= 0; i--) {
    if (!inB.has(a[i][key])) {
      out.push({ op: 'test', path: path + pointer(i, key), value: a[i][key] }, { op: 'remove', path: path + pointer(i) });
    }
  }
  let j = 0; // index into kept
  for (let i = 0; i < b.length; i++) {
    const e = b[i];
    if (!inA.has(e[key])) {
      // The working array holds b[0..i-1] and the kept elements not yet
      // reached: with none of those left, this is an append.
      out.push({ op: 'add', path: path + (j === kept.length ? '/-' : pointer(i)), value: clone(e) });
      continue;
    }
    const inner = [];
    diffInto(inner, path + pointer(i), kept[j], e, key);
    if (inner.length > 0) out.push({ op: 'test', path: path + pointer(i, key), value: e[key] }, ...inner);
    j++;
  }
  ops.push(...out);
  return true;
}
