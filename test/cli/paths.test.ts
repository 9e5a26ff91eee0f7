/**
 * The job's folders are checked before any work (exit code 2, naming the flag, the path and the errno):
 * --slides that is missing or not a folder; --out or --work-dir that is a file, or on a read-only mount.
 * Root can write a chmod-0555 folder, so read-only is a small tmpfs remounted read-only (root only).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eUnavailable, runCli, tempDir } from '../helpers/e2e.js';

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'cli-paths-');
  const slides = join(cwd, 'slides');
  await mkdir(slides);
  const csv = join(cwd, 'in.csv');
  await writeFile(csv, 'image_id,center_id,patient_id,image_num,label\na0,0,pa,0,1\n');
  const aFile = join(cwd, 'a-file');
  await writeFile(aFile, 'not a folder\n');

  async function refused(t: Tap.Test, args: string[], message: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
    const r = await runCli(['--csv', csv, '--progress', 'none', ...args], cwd, { ownCache: true, env });
    t.equal(r.code, 2, `exit code 2\n${r.stderr}`);
    t.match(r.stderr, `error: ${message}`);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
    t.notOk(existsSync(join(cwd, '.cache')), 'before any work: no model was built');
  }

  t.test('--slides missing or not a folder', async (t) => {
    await refused(t, ['--slides', join(cwd, 'slidez'), '--out', join(cwd, 'o1')], `--slides ${join(cwd, 'slidez')}: ENOENT (no such file or directory): no such folder`);
    await refused(t, ['--slides', aFile, '--out', join(cwd, 'o2')], `--slides ${aFile}: ENOTDIR: not a folder`);
    t.notOk(existsSync(join(cwd, 'o1')), 'the output folder is not even created');
  });

  t.test('--out or --work-dir that is a file', async (t) => {
    await refused(t, ['--slides', slides, '--out', aFile], `--out ${aFile}: ENOTDIR: exists and is not a folder`);
    await refused(t, ['--slides', slides, '--out', join(aFile, 'sub')], `--out ${join(aFile, 'sub')}: ENOTDIR`);
    await refused(t, ['--slides', slides, '--out', join(cwd, 'o3'), '--work-dir', aFile], `--work-dir ${aFile}: ENOTDIR: exists and is not a folder`);
    t.notOk(existsSync(join(cwd, 'o3')), 'a refused run leaves no folder it made for its checks');
  });

  t.test('WSI_CACHE_DIR that is a file, or under one: refused before any work, naming it', async (t) => {
    await refused(t, ['--slides', slides, '--out', join(cwd, 'o5')], `WSI_CACHE_DIR ${aFile}: ENOTDIR: exists and is not a folder`, { WSI_CACHE_DIR: aFile });
    await refused(t, ['--slides', slides, '--out', join(cwd, 'o5')], `WSI_CACHE_DIR ${join(aFile, 'c')}: ENOTDIR`, { WSI_CACHE_DIR: join(aFile, 'c') });
    t.notOk(existsSync(join(cwd, 'o5')), 'nothing made for the output');
  });

  t.test('--out or --work-dir on a read-only file system', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root (to mount a small tmpfs read-only)');
    const ro = join(cwd, 'ro');
    await mkdir(ro);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', ro], { stdio: 'pipe' });
    } catch (err) {
      return t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
    }
    t.teardown(() => execFileSync('umount', [ro]));
    await mkdir(join(ro, 'existing'));
    execFileSync('mount', ['-o', 'remount,ro', ro]);
    const existing = join(ro, 'existing');
    await refused(t, ['--slides', slides, '--out', existing], `--out ${existing}: EROFS (read-only file system): the folder cannot be written`);
    await refused(t, ['--slides', slides, '--out', join(ro, 'new')], `--out ${join(ro, 'new')}: EROFS (read-only file system): the folder cannot be created`);
    await refused(t, ['--slides', slides, '--out', join(cwd, 'o4'), '--work-dir', existing], `--work-dir ${existing}: EROFS (read-only file system): the folder cannot be written`);
  });
}
