// The README's first example is the one test/types/readme.ts compiles
// under strict TypeScript, character for character.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

test("the README's example is the one the type check compiles", () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const ts = readFileSync(new URL('./types/readme.ts', import.meta.url), 'utf8');
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const marked = /\/\/ --- README example ---\n([\s\S]*?)\/\/ --- end ---/.exec(ts)?.[1];
  assert.ok(block && marked);
  assert.equal(block, marked);
});
