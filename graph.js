#!/usr/bin/env node
// The user's command. The pipeline itself is declared in graph.ts (compiled to dist/graph.js by `npm install`).
// A job's first worker starts before the pipeline's modules load here (dist/stages/cli/prestart.js).
import { prestartFirstWorker } from './dist/stages/cli/prestart.js';

const argv = process.argv.slice(2);
prestartFirstWorker(argv, new URL('./dist/graph.js', import.meta.url).href);
const { main } = await import('./dist/graph.js');
process.exitCode = await main(argv);
