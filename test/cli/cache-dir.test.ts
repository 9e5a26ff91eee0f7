/** The cache folder (stages/cli/cache-dir.ts): WSI_CACHE_DIR when set and not empty, else ./.cache; always absolute. */
import t from 'tap';
import { resolve } from 'node:path';
import { CACHE_DIR_ENV, cacheDir } from '../../stages/cli/cache-dir.js';

t.test('WSI_CACHE_DIR, else ./.cache, resolved against the working directory', async (t) => {
  t.equal(CACHE_DIR_ENV, 'WSI_CACHE_DIR');
  t.equal(cacheDir({}), resolve('.cache'), 'unset: ./.cache');
  t.equal(cacheDir({ WSI_CACHE_DIR: '' }), resolve('.cache'), 'empty: as unset');
  t.equal(cacheDir({ WSI_CACHE_DIR: '/srv/cache/me' }), '/srv/cache/me', 'absolute: as given');
  t.equal(cacheDir({ WSI_CACHE_DIR: 'rel/c' }), resolve('rel/c'), 'relative: made absolute');
});
