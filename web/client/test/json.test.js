import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyMerge, applyPatch, deepEqual, diff, parsePointer, pointer, PatchApplyError } from '../patchd.js';

test('pointer escapes and parses RFC 6901 tokens', () => {
  assert.equal(pointer('a/b', 'm~n', 0), '/a~1b/m~0n/0');
  assert.deepEqual(parsePointer('/a~1b/m~0n/0'), ['a/b', 'm~n', '0']);
  assert.deepEqual(parsePointer(''), []);
  assert.throws(() => parsePointer('a'), PatchApplyError);
});

test('applyPatch: RFC 6902 appendix A examples', () => {
  const cases = [
    [{ foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux' }], { baz: 'qux', foo: 'bar' }],
    [{ foo: ['bar', 'baz'] }, [{ op: 'add', path: '/foo/1', value: 'qux' }], { foo: ['bar', 'qux', 'baz'] }],
    [{ baz: 'qux', foo: 'bar' }, [{ op: 'remove', path: '/baz' }], { foo: 'bar' }],
    [{ foo: ['bar', 'qux', 'baz'] }, [{ op: 'remove', path: '/foo/1' }], { foo: ['bar', 'baz'] }],
    [{ baz: 'qux', foo: 'bar' }, [{ op: 'replace', path: '/baz', value: 'boo' }], { baz: 'boo', foo: 'bar' }],
    [{ foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } }, [{ op: 'move', from: '/foo/waldo', path: '/qux/thud' }],
      { foo: { bar: 'baz' }, qux: { corge: 'grault', thud: 'fred' } }],
    [{ foo: ['all', 'grass', 'cows', 'eat'] }, [{ op: 'move', from: '/foo/1', path: '/foo/3' }], { foo: ['all', 'cows', 'eat', 'grass'] }],
    [{ baz: 'qux', foo: ['a', 2, 'c'] }, [{ op: 'test', path: '/baz', value: 'qux' }, { op: 'test', path: '/foo/1', value: 2 }], { baz: 'qux', foo: ['a', 2, 'c'] }],
    [{ foo: 'bar' }, [{ op: 'add', path: '/child', value: { grandchild: {} } }], { foo: 'bar', child: { grandchild: {} } }],
    [{ foo: ['bar'] }, [{ op: 'add', path: '/foo/-', value: ['abc', 'def'] }], { foo: ['bar', ['abc', 'def']] }],
    [{ a: 1 }, [{ op: 'copy', from: '/a', path: '/b' }], { a: 1, b: 1 }],
    [{ a: 1 }, [{ op: 'replace', path: '', value: { b: 2 } }], { b: 2 }],
    [{ a: 1 }, [{ op: 'remove', path: '' }], null],
  ];
  for (const [doc, ops, want] of cases) {
    const before = JSON.stringify(doc);
    assert.deepEqual(applyPatch(doc, ops), want, JSON.stringify(ops));
    assert.equal(JSON.stringify(doc), before, 'the input is not changed');
  }
});

test('applyPatch: failures throw and change nothing', () => {
  const doc = { baz: 'qux', foo: ['a'] };
  for (const ops of [
    [{ op: 'test', path: '/baz', value: 'bar' }],
    [{ op: 'add', path: '/baz/bat', value: 'qux' }],
    [{ op: 'remove', path: '/nope' }],
    [{ op: 'replace', path: '/nope', value: 1 }],
    [{ op: 'add', path: '/foo/2', value: 1 }],
    [{ op: 'add', path: '/foo/01', value: 1 }],
    [{ op: 'add', path: '/x', value: 1 }, { op: 'remove', path: '/y' }],
    [{ op: 'move', from: '/foo', path: '/foo/0' }],
    [{ op: 'frob', path: '/baz' }],
  ]) {
    assert.throws(() => applyPatch(doc, ops), PatchApplyError, JSON.stringify(ops));
  }
  assert.deepEqual(doc, { baz: 'qux', foo: ['a'] });
});

test('applyPatch and applyMerge never touch prototypes', () => {
  const out = applyPatch(JSON.parse('{}'), [{ op: 'add', path: '/__proto__', value: { polluted: true } }]);
  assert.equal(({}).polluted, undefined);
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(Object.keys(out), ['__proto__']);
  const merged = applyMerge({}, JSON.parse('{"__proto__":{"polluted":true}}'));
  assert.equal(({}).polluted, undefined);
  assert.equal(Object.getPrototypeOf(merged), Object.prototype);
});

test('applyMerge: RFC 7396 appendix A examples', () => {
  const cases = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [doc, patch, want] of cases) assert.deepEqual(applyMerge(doc, patch), want);
});

test('diff: form fields become one op each', () => {
  const before = { name: 'Ann', email: 'a@x', urgent: false, gone: 1, nested: { a: 1, b: 2 } };
  const after = { name: 'Ann', email: 'ann@x', urgent: true, nested: { a: 1, b: 3 }, added: 'y' };
  assert.deepEqual(diff(before, after), [
    { op: 'remove', path: '/gone' },
    { op: 'replace', path: '/email', value: 'ann@x' },
    { op: 'replace', path: '/urgent', value: true },
    { op: 'replace', path: '/nested/b', value: 3 },
    { op: 'add', path: '/added', value: 'y' },
  ]);
  assert.deepEqual(diff({ a: [1, 2] }, { a: [1, 3] }), [{ op: 'replace', path: '/a', value: [1, 3] }]);
  assert.deepEqual(diff({ 'a/b': 1 }, { 'a/b': 2 }), [{ op: 'replace', path: '/a~1b', value: 2 }]);
});

test('diff: keyed arrays edit elements in place, guarded by a test of the key', () => {
  const items = [{ id: 'a', t: 'A' }, { id: 'b', t: 'B' }, { id: 'c', t: 'C' }];
  assert.deepEqual(diff({ items }, { items: [items[0], { id: 'b', t: 'B2' }, items[2]] }, { key: 'id' }), [
    { op: 'test', path: '/items/1/id', value: 'b' },
    { op: 'replace', path: '/items/1/t', value: 'B2' },
  ]);
  assert.deepEqual(diff({ items }, { items: [items[0], items[2]] }, { key: 'id' }), [
    { op: 'test', path: '/items/1/id', value: 'b' },
    { op: 'remove', path: '/items/1' },
  ]);
  assert.deepEqual(diff({ items }, { items: [...items, { id: 'd', t: 'D' }] }, { key: 'id' }), [
    { op: 'add', path: '/items/-', value: { id: 'd', t: 'D' } },
  ]);
  // Reordered: replaced whole.
  assert.deepEqual(diff({ items }, { items: [items[1], items[0], items[2]] }, { key: 'id' }), [
    { op: 'replace', path: '/items', value: [items[1], items[0], items[2]] },
  ]);
});

// A small deterministic generator for the round-trip property.
function rng(seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
}

test('diff: applying diff(a, b) to a gives b (500 generated pairs)', () => {
  const r = rng(7);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const scalar = () => pick([null, true, false, 0, 1, 2.5, 'x', 'y', '', 'a/b~']);
  const value = (depth) => {
    if (depth > 2 || r() < 0.4) return scalar();
    if (r() < 0.5) {
      const o = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) o[pick(['a', 'b', 'c', 'd~', 'e/f'])] = value(depth + 1);
      return o;
    }
    return Array.from({ length: Math.floor(r() * 4) }, () => value(depth + 1));
  };
  const items = () => {
    const ids = ['p', 'q', 'r', 's', 't'].filter(() => r() < 0.6);
    return ids.map((id) => ({ id, t: pick(['x', 'y', 'z']), n: pick([1, 2]) }));
  };
  for (let i = 0; i < 500; i++) {
    const a = { v: value(0), items: items(), w: value(0) };
    const b = r() < 0.3 ? a : { v: value(0), items: items(), w: r() < 0.5 ? a.w : value(0) };
    const ops = diff(a, b, { key: 'id' });
    assert.ok(deepEqual(applyPatch(a, ops), b), JSON.stringify({ a, b, ops }));
  }
});
