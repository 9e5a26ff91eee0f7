/**
 * ts-node's transpiler for the tests (tsconfig.json's "ts-node" section; tsc ignores it):
 * the same transpile ts-node does by itself with transpileOnly (its createTsTranspileModule, with the same compiler
 * options and module kind), its output kept on disk by a sha256 of everything it depends on (TypeScript's version,
 * the options, the module kind, the file name and the source). Every test file and every worker process a test forks
 * under the loader transpiles the whole import graph again otherwise (about 5 s of CPU for graph.ts's); with the cache
 * only a changed file is transpiled. Outputs with diagnostics are not kept. The cache is under the OS temp folder
 * (wsi-ts-transpile-<uid>; any file of it can be deleted at any time) and written through a temporary + rename, so
 * concurrent processes share it.
 */
'use strict';
const { createHash, randomBytes } = require('node:crypto');
const { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { dirname, join } = require('node:path');

// WSI_TS_TRANSPILE_CACHE: another folder (its test uses one of its own).
const CACHE = process.env.WSI_TS_TRANSPILE_CACHE || join(tmpdir(), `wsi-ts-transpile-${process.getuid?.() ?? 'user'}`);

/** ts-node's own transpile (not exported by the package: found beside its entry point). */
function tsNodeTranspile(ts, compilerOptions) {
  const entry = require.resolve('@isaacs/ts-node-temp-fork-for-pr-2009');
  const { createTsTranspileModule } = require(join(dirname(entry), 'ts-transpile-module.js'));
  return createTsTranspileModule(ts, { compilerOptions, reportDiagnostics: true });
}

exports.create = function create(createOptions) {
  const { service, nodeModuleEmitKind } = createOptions;
  const ts = require(service.projectLocalResolveHelper('typescript', true));
  const compilerOptions = service.config.options;
  const kind = nodeModuleEmitKind === 'nodeesm' ? 'module' : 'commonjs';
  const salt = JSON.stringify([ts.version, compilerOptions, nodeModuleEmitKind ?? null]);
  let transpile;
  return {
    transpile(input, { fileName }) {
      const key = createHash('sha256').update(salt).update('\0').update(fileName).update('\0').update(input).digest('hex');
      const file = join(CACHE, key.slice(0, 2), `${key}.json`);
      try {
        return JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        // Absent (ENOENT) or cut short by a crash (a JSON error): transpiled again and rewritten.
        if (err.code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err;
      }
      transpile ??= tsNodeTranspile(ts, compilerOptions);
      const result = transpile(input, { fileName }, kind);
      if ((result.diagnostics ?? []).length === 0) {
        mkdirSync(dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
        try {
          writeFileSync(tmp, JSON.stringify({ outputText: result.outputText, sourceMapText: result.sourceMapText }));
          renameSync(tmp, file);
        } finally {
          rmSync(tmp, { force: true });
        }
      }
      return result;
    },
  };
};
