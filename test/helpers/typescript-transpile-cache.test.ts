/**
 * The tests' transpile cache (test/helpers/typescript-transpile-cache.cjs): its output is ts-node's own transpile of
 * the file; a second call is served from the cache file; a cut-short cache file is transpiled again and rewritten.
 * In a child process, so the cache folder (WSI_TS_TRANSPILE_CACHE) is this test's own.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cache = mkdtempSync(join(tmpdir(), 'ts-transpile-cache-test-'));
t.teardown(() => rmSync(cache, { recursive: true, force: true }));

const script = `
const { createRequire } = require('node:module');
const fs = require('node:fs');
const path = require('node:path');
const req = createRequire(${JSON.stringify(fileURLToPath(import.meta.url))});
const ts = req('typescript');
const entry = req.resolve('@isaacs/ts-node-temp-fork-for-pr-2009');
const { createTsTranspileModule } = req(path.join(path.dirname(entry), 'ts-transpile-module.js'));
const options = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, esModuleInterop: true, sourceMap: true };
const { create } = req('./typescript-transpile-cache.cjs');
const transpiler = create({ service: { config: { options }, projectLocalResolveHelper: (name) => req.resolve(name) }, nodeModuleEmitKind: 'nodeesm' });
const fileName = '/x/sample.ts';
const src = 'import { a } from "./a.js";\\nexport const f = (n: number): number => n + a;\\nexport type T = { n: number };\\n';
const own = createTsTranspileModule(ts, { compilerOptions: options, reportDiagnostics: true })(src, { fileName }, 'module');
const first = transpiler.transpile(src, { fileName });
const files = () => fs.readdirSync(process.env.WSI_TS_TRANSPILE_CACHE, { recursive: true }).filter((f) => f.endsWith('.json')).map((f) => path.join(process.env.WSI_TS_TRANSPILE_CACHE, f));
const written = files();
const second = transpiler.transpile(src, { fileName });
fs.writeFileSync(written[0], JSON.stringify({ outputText: 'marked', sourceMapText: '{}' }));
const marked = transpiler.transpile(src, { fileName });
fs.writeFileSync(written[0], '{"outputText": "cut');
const third = transpiler.transpile(src, { fileName });
const other = transpiler.transpile(src + 'export const g = 1;\\n', { fileName });
console.log(JSON.stringify({ own: own.outputText, first: first.outputText, second: second.outputText, third: third.outputText, firstMap: first.sourceMapText, secondMap: second.sourceMapText, marked: marked.outputText, written: written.length, after: files().length, rewritten: JSON.parse(fs.readFileSync(written[0], 'utf8')).outputText, other: other.outputText }));
`;

t.test('ts-node\'s own output; served from the cache the second time; a cut-short entry is redone', async (t) => {
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_OPTIONS: '', WSI_TS_TRANSPILE_CACHE: cache }, encoding: 'utf8' })) as Record<string, string | number>;
  t.match(out.own, /export const f = \(n\) => n \+ a;/, 'ESM output, types erased');
  t.equal(out.first, out.own, 'the same output as ts-node\'s own transpile');
  t.equal(out.written, 1, 'one cache file written');
  t.equal(out.second, out.own, 'the second call: the same output (from the cache file)');
  t.equal(out.secondMap, out.firstMap, 'and the same source map');
  t.equal(out.marked, 'marked', 'what the cache file holds is what is served: no transpile on a hit');
  t.equal(out.third, out.own, 'a cut-short cache file: transpiled again');
  t.equal(out.rewritten, out.own, 'and rewritten whole');
  t.match(out.other, /export const g = 1;/, 'other source: its own entry');
  t.equal(out.after, 2, 'one entry per source');
});
