/** tap's `after` script (package.json): removes this run's shared CLI cache folder (test/helpers/test-cache.ts). */
import { rmSync } from 'node:fs';
import { testCacheFor } from './test-cache.js';

// Run by the tap runner itself, so its parent is the runner whose pid names the folder.
rmSync(testCacheFor(process.ppid), { recursive: true, force: true });
