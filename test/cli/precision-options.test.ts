/** `--precision` and the int8 options: defaults, values, and usage errors (E_USAGE, exit 2). */
import t from 'tap';
import { parseRunOptions, type RunOptions } from '../../stages/cli/options.js';

const parse = (...a: string[]): RunOptions => parseRunOptions(['--out', 'o', ...a]) as RunOptions;

t.test('defaults: fp32; int8 settings 256 / 128 / percentile / 0.99,0.97 / 8', async (t) => {
  t.equal(parse().precision, 'fp32');
  const o = parse('--precision', 'int8');
  t.same(o.int8, { calibrationTiles: 256, heldOutTiles: 128, method: 'percentile', gate: { mean: 0.99, p1: 0.97 }, maxFallback: 8 });
  const p = parse('--precision', 'int8', '--int8-calibration', 'minmax', '--int8-calibration-tiles', '10', '--int8-holdout-tiles', '5', '--int8-gate', '0.9,0.8', '--int8-fallback', '0');
  t.same(p.int8, { calibrationTiles: 10, heldOutTiles: 5, method: 'minmax', gate: { mean: 0.9, p1: 0.8 }, maxFallback: 0 });
});

t.test('usage errors', async (t) => {
  for (const [args, msg] of [
    [['--precision', 'int4'], /--precision must be fp32 or int8/],
    [['--int8-gate', '0.9,0.8'], /--int8-gate applies to --precision int8 only/],
    [['--precision', 'int8', '--int8-gate', '0.9'], /--int8-gate must be MEAN,P1/],
    [['--precision', 'int8', '--int8-calibration', 'entropy'], /--int8-calibration must be minmax or percentile/],
    [['--precision', 'int8', '--int8-calibration-tiles', '0'], /--int8-calibration-tiles must be an integer >= 1/],
    [['--precision', 'int8', '--int8-fallback=-1'], /--int8-fallback must be an integer >= 0/],
  ] as const) {
    t.throws(() => parse(...args), { code: 'E_USAGE', message: msg }, args.join(' '));
  }
});
