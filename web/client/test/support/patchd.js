// Starts a real patchd binary for tests: built once per test process with
// go build (or taken from PATCHD_BIN), on a free loopback port, over a
// fresh bbolt file.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
let built = null;

function binary() {
  if (process.env.PATCHD_BIN) return process.env.PATCHD_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), 'patchd-bin-'));
    built = join(dir, 'patchd');
    const env = { ...process.env, PATH: `${process.env.PATH}:/usr/local/go/bin`, GOFLAGS: `${process.env.GOFLAGS ?? ''} -buildvcs=false` };
    execFileSync('go', ['build', '-o', built, '.'], { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return built;
}

/**
 * Starts patchd with extra flags; resolves to {url, stop(), restart()}.
 * restart() kills it (kill -9) and starts it again on the same address
 * and file.
 */
export async function startPatchd(args = []) {
  const dir = mkdtempSync(join(tmpdir(), 'patchd-db-'));
  const removeDirOnFailure = async (start) => {
    try {
      return await start();
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  };
  let run = await removeDirOnFailure(() => spawnPatchd(['--addr', '127.0.0.1:0', '--db', join(dir, 'p.db'), ...args]));
  const url = run.url;
  return {
    url,
    async stop() {
      run.proc.kill('SIGTERM');
      const { code } = await run.exited;
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`patchd exited with ${code}`);
    },
    async restart() {
      run.proc.kill('SIGKILL');
      await run.exited;
      run = await removeDirOnFailure(() => spawnPatchd(['--addr', new URL(url).host, '--db', join(dir, 'p.db'), ...args]));
    },
  };
}

async function spawnPatchd(argv) {
  const proc = spawn(binary(), argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const lines = createInterface({ input: proc.stderr });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL'); // not left running after the test gives up on it
      reject(new Error('patchd did not start within 30s'));
    }, 30_000);
    lines.on('line', (line) => {
      try {
        const m = JSON.parse(line);
        if (m.msg === 'serving') {
          clearTimeout(timer);
          resolve(`http://${m.addr}`);
        }
      } catch {
        // not a log line
      }
    });
    exited.then(({ code }) => reject(new Error(`patchd exited with ${code}`)));
  });
  return { proc, exited, url };
}
