import t from 'tap';
import { parseRunOptions, UsageError, HELP } from '../../stages/cli/options.js';

t.test('defaults are the seed constants', async (t) => {
  const o = parseRunOptions([]);
  if (o === 'help') throw new Error('unexpected help');
  t.equal(o.tileSize, 448);
  t.equal(o.downsample, 16);
  t.equal(o.backgroundThreshold, 190);
  t.equal(o.maxBackground, 0.1);
  t.equal(o.maxTiles, undefined);
  t.equal(o.resume, true);
  t.equal(o.shareSlides, true, "slides are shared by default");
  t.equal(o.failFast, false);
  t.equal(o.bagMemoryMb, 256);
  t.equal(o.batchSize, 1, 'one tile per onnxruntime run');
  t.equal(o.groupSize, 8, 'eight tiles per stage at a time');
  t.equal(o.csv, undefined, 'no --csv means the demo run');
  t.match(o.out, /out\/demo$/);
  t.equal(o.jpegCheck, 'quick', 'JPEG tiles checked (quick) by default');
});

t.test('--jpeg-check quick | full | off', async (t) => {
  for (const mode of ['quick', 'full', 'off'] as const) {
    const o = parseRunOptions(['--jpeg-check', mode]);
    t.equal(o !== 'help' && o.jpegCheck, mode);
  }
  t.match(HELP, /--jpeg-check MODE +quick \| full \| off/);
});

t.test('flags are parsed', async (t) => {
  const o = parseRunOptions(['--csv', 'a.csv', '--slides', 's', '--out', 'o', '--tile-size', '224', '--max-tiles', '5',
    '--no-resume', '--fail-fast', '--normalizer', 'none', '--workers', '3', '--max-background', '0.25', '--no-share']);
  if (o === 'help') throw new Error('unexpected help');
  t.equal(o.tileSize, 224);
  t.equal(o.maxTiles, 5);
  t.equal(o.resume, false);
  t.equal(o.failFast, true);
  t.equal(o.shareSlides, false);
  t.equal(o.normalizer, 'none');
  t.equal(o.workers, 3);
  t.equal(o.maxBackground, 0.25);
});

t.test('--csv - is standard input (kept as -, not resolved to a file named -); --help says so', async (t) => {
  const o = parseRunOptions(['--csv', '-', '--slides', 's', '--out', 'o']);
  if (o === 'help') throw new Error('unexpected help');
  t.equal(o.csv, '-');
  const file = parseRunOptions(['--csv', 'x/-', '--slides', 's', '--out', 'o']);
  if (file === 'help') throw new Error('unexpected help');
  t.match(file.csv, /\/x\/-$/, 'a path ending in - is a path');
  t.match(HELP, /- reads it from standard input/);
});

t.test('help', async (t) => {
  t.equal(parseRunOptions(['--help']), 'help');
  for (const flag of ['--tile-size', '--downsample', '--background-threshold', '--max-background', '--max-tiles', '--workers',
    '--batch-size', '--group-size', '--normalizer', '--embedder', '--shards', '--work-dir', '--fail-fast', '--resume', '--no-resume', '--no-share']) {
    t.ok(HELP.includes(flag), `help documents ${flag}`);
  }
  for (const name of ['WSI_CACHE_DIR', 'REDIS_PASSWORD']) t.match(HELP, new RegExp(`^  ${name} `, 'm'), `help documents the environment variable ${name}`);
});

t.test('--group-size is at least --batch-size', async (t) => {
  const o = parseRunOptions(['--batch-size', '16', '--group-size', '4']);
  if (o === 'help') throw new Error('unexpected help');
  t.equal(o.batchSize, 16);
  t.equal(o.groupSize, 16, 'a group holds at least one model batch');
  const p = parseRunOptions(['--group-size', '32']);
  if (p === 'help') throw new Error('unexpected help');
  t.equal(p.groupSize, 32);
});

t.test('usage errors', async (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['--tile-size', '0'], /--tile-size must be a positive integer/],
    [['--tile-size', 'abc'], /--tile-size/],
    [['--bag-memory-mb', '0'], /--bag-memory-mb must be a positive integer/],
    [['--group-size', '0'], /--group-size must be a positive integer/],
    [['--csv', 'a.csv'], /--csv and --slides go together/],
    [['--csv', 'a.csv', '--slides', 's'], /--out is required/],
    [['--background-threshold', '300'], /--background-threshold/],
    [['--max-background', '2'], /--max-background/],
    [['--resume', '--no-resume'], /contradict/],
    [['--bogus'], /bogus/],
    [['--progress', 'fancy'], /--progress/],
    [['--jpeg-check', 'some'], /--jpeg-check must be quick, full or off, got "some"/],
    [['--downsample', '32', '--tile-size', '16'], /must not exceed/],
  ];
  for (const [argv, re] of bad) {
    t.throws(() => parseRunOptions(argv), { code: 'E_USAGE', message: re }, argv.join(' '));
    let caught: unknown;
    try { parseRunOptions(argv); } catch (err) { caught = err; }
    t.ok(caught instanceof UsageError, 'is a UsageError');
  }
});

t.test('--embedder-arch: kept with a weights file; unknown, alone or with an ONNX file is a usage error', async (t) => {
  const o = parseRunOptions(['--embedder', 'w.safetensors', '--embedder-arch', 'h_optimus_0']);
  t.equal(o !== 'help' && o.embedderArch, 'h_optimus_0');
  t.equal((parseRunOptions(['--embedder', 'w.pth']) as Exclude<ReturnType<typeof parseRunOptions>, 'help'>).embedderArch, undefined);
  t.throws(() => parseRunOptions(['--embedder', 'w.pth', '--embedder-arch', 'vit_x']), { code: 'E_USAGE', message: /unknown --embedder-arch 'vit_x': expected one of efficientnet_b0, resnet50_trunc, vit, h_optimus_0, vit_hf/ });
  t.throws(() => parseRunOptions(['--embedder-arch', 'vit']), { code: 'E_USAGE', message: /--embedder-arch without --embedder/ });
  t.throws(() => parseRunOptions(['--embedder', 'm.ONNX', '--embedder-arch', 'vit']), { code: 'E_USAGE', message: /with an ONNX file/ });
  t.match(HELP, /--embedder-arch NAME/);
});
