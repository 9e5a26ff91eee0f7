#!/usr/bin/env node
// The user's command. The pipeline itself is declared in graph.ts (compiled to dist/graph.js by `npm install`).
import { main } from './dist/graph.js';

process.exitCode = await main(process.argv.slice(2));
