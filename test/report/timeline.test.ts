/**
 * The run timeline (stages/report/timeline.ts) from item and worker events on a controlled clock, and its SVG
 * (timeline-svg.ts): one lane per worker process, one bar per attempt or join, the marks of a retried and a
 * failed slide and of a killed process; a big run's report.json part and SVG stay bounded.
 */
import t from 'tap';
import { barsOf, RunTimeline, TIMELINE_LIMITS } from '../../stages/report/timeline.js';
import { BAR_COLOURS, TIMELINE_SVG, timelineSvg } from '../../stages/report/timeline-svg.js';
import { coarser, stagesChart, throughputSvg, THROUGHPUT_POINTS } from '../../stages/report/charts-svg.js';
import { niceStep, timeLabel } from '../../stages/report/svg.js';

function clocked(): { tl: RunTimeline; at: (ms: number) => RunTimeline } {
  let now = 1000;
  const tl = new RunTimeline(() => now);
  return { tl, at: (ms) => ((now = 1000 + ms), tl) };
}

t.test('bars per attempt and per join, ended by done, retry, failed, a move to another slide or the run\'s end', async (t) => {
  const { at } = clocked();
  at(0).onWorker({ type: 'spawn', pid: 11 });
  at(0).onWorker({ type: 'spawn', pid: 12 });
  at(10).onItem({ type: 'started', key: 'a', attempt: 1, pid: 11 });
  at(20).onItem({ type: 'started', key: 'b', attempt: 1, pid: 12 });
  at(300).onWorker({ type: 'exit', pid: 11, code: null, signal: 'SIGKILL' }); // a's worker killed
  at(310).onItem({ type: 'retry', key: 'a', attempt: 1 });
  at(320).onWorker({ type: 'spawn', pid: 13 });
  at(330).onItem({ type: 'started', key: 'a', attempt: 2, pid: 13 });
  at(400).onItem({ type: 'failed', key: 'b', attempt: 1 });
  at(410).onItem({ type: 'joined', key: 'a', attempt: 2, pid: 12 });
  at(500).onItem({ type: 'done', key: 'a', attempt: 2 });
  at(510).onItem({ type: 'replayed', key: 'c' });
  at(520).onItem({ type: 'started', key: 'd', attempt: 1, pid: 12 });
  at(530).onItem({ type: 'joined', key: 'd', attempt: 1, pid: 13 });
  at(560).onItem({ type: 'started', key: 'e', attempt: 1, pid: 13 }); // 13 leaves d for e: its part of d is done
  at(600).onTiles(8);
  at(700).onTilesInUse(5);
  const r = at(800).report(); // d and e still running: the run stopped
  t.same(r.lanes.map((l) => [l.pid, l.spawned_ms, l.exited_ms, l.exit?.signal ?? null, l.bars]), [[11, 0, 300, 'SIGKILL', 1], [12, 0, null, null, 3], [13, 320, null, null, 3]]);
  t.equal(r.lanes[0]!.exit?.during, 'a', 'it died running a');
  const bars = barsOf(r).map((b) => [r.lanes[b.lane]!.pid, b.slide, b.attempt, b.join, b.start_ms, b.end_ms, b.outcome]);
  t.same(bars, [
    [11, 'a', 1, false, 10, 300, 'retried'], // ends when its process died, not when the retry was decided
    [12, 'b', 1, false, 20, 400, 'failed'],
    [12, 'a', 2, true, 410, 500, 'ok'],
    [12, 'd', 1, false, 520, 800, 'running'],
    [13, 'a', 2, false, 330, 500, 'ok'],
    [13, 'd', 1, true, 530, 560, 'ok'],
    [13, 'e', 1, false, 560, 800, 'running'],
  ]);
  t.equal(r.replayed, 1);
  t.same(r.tiles, { bucket_ms: 250, values: [0, 0, 8] });
  t.same(r.tiles_in_flight, { bucket_ms: 250, values: [0, 0, 5] });
  t.equal(r.end_ms, 800);

  const svg = timelineSvg(r);
  t.equal([...svg.matchAll(/<g class="lane" data-pid="(\d+)">/g)].map((m) => Number(m[1])).join(), '11,12,13', 'one lane per worker process');
  const drawn = [...svg.matchAll(/<rect class="bar (\w+)"[^>]*fill="([^"]+)"/g)].map((m) => [m[1], m[2]]);
  t.same(drawn.map((d) => d[0]), ['retried', 'failed', 'join', 'running', 'ok', 'join', 'running'], 'one bar per attempt or join, marked');
  for (const [kind, fill] of drawn) t.equal(fill, BAR_COLOURS[kind as keyof typeof BAR_COLOURS]);
  t.equal(svg.match(/<path class="killed"/g)?.length, 1, 'a cross where a process died running a slide');
  t.match(svg, /worker 11 died while running a \(killed by SIGKILL\)/);
  const stopped = clocked();
  stopped.at(0).onWorker({ type: 'spawn', pid: 5 });
  stopped.at(1).onItem({ type: 'started', key: 'x', attempt: 1, pid: 5 });
  stopped.at(9).onWorker({ type: 'exit', pid: 5, code: null, signal: 'SIGKILL' }); // let go once its part was done
  stopped.at(9).onItem({ type: 'done', key: 'x', attempt: 1 });
  t.notMatch(timelineSvg(stopped.at(10).report()), '<path class="killed"', 'a worker let go is no death, even killed');
  t.match(svg, /<title>a: attempt 1, retried, 0 s to 0.3 s \(0.3 s\)<\/title>/, 'the bar names its slide');
  t.match(svg, /<title>a: joined attempt 2, ok, /);
  t.match(svg, /viewBox="0 0 800 \d+" width="100%"/, 'scales with the page');
  t.notMatch(svg, /<script|href="http/, 'no script, nothing fetched');
});

t.test('--queue: a lane per host and pid; two machines whose workers have the same pid keep their own lanes and bars', async (t) => {
  const { at } = clocked();
  at(0).onWorker({ type: 'spawn', pid: 40 }); // this machine's own worker, pid 40 too
  at(10).onItem({ type: 'started', key: 'a', attempt: 1, pid: 40, host: 'node-a.cluster.local' });
  at(20).onItem({ type: 'started', key: 'b', attempt: 1, pid: 40, host: 'node-b' }); // must not end a's bar
  at(30).onItem({ type: 'started', key: 'c', attempt: 1, pid: 40 });
  at(200).onItem({ type: 'done', key: 'b', attempt: 1 });
  at(300).onItem({ type: 'done', key: 'a', attempt: 1 });
  at(310).onItem({ type: 'started', key: 'd', attempt: 1, pid: 40, host: 'node-b' }); // node-b's worker goes on to d
  at(320).onItem({ type: 'done', key: 'c', attempt: 1 });
  at(400).onItem({ type: 'failed', key: 'd', attempt: 1 });
  const r = at(500).report();
  t.same(r.lanes.map((l) => [l.host ?? null, l.pid, l.bars]), [[null, 40, 1], ['node-a.cluster.local', 40, 1], ['node-b', 40, 2]], 'three lanes: this machine, node-a, node-b');
  const bars = barsOf(r).map((b) => [r.lanes[b.lane]!.host ?? null, b.slide, b.start_ms, b.end_ms, b.outcome]);
  t.same(bars, [
    [null, 'c', 30, 320, 'ok'],
    ['node-a.cluster.local', 'a', 10, 300, 'ok'], // not cut short when node-b's pid 40 started b
    ['node-b', 'b', 20, 200, 'ok'],
    ['node-b', 'd', 310, 400, 'failed'],
  ]);
  const svg = timelineSvg(r);
  const lanes = [...svg.matchAll(/<g class="lane" data-pid="(\d+)"(?: data-host="([^"]+)")?>/g)].map((m) => `${m[2] ?? ''}/${m[1]}`);
  t.same(lanes, ['/40', 'node-a.cluster.local/40', 'node-b/40'], 'the SVG draws one lane per host and pid');
  t.match(svg, />node-a 40<title>worker node-a\.cluster\.local 40<\/title><\/text>/, 'a lane is labelled by host (first name part) and pid; the title names it whole');
  t.match(svg, /worker node-b 40: 2 bar\(s\)/);
});

t.test('a big run: bars kept up to the limit (then the marked ones), the SVG merges ok bars and stays bounded', async (t) => {
  const { at } = clocked();
  const slides = TIMELINE_LIMITS.bars + 3000;
  const workers = 4;
  for (let w = 0; w < workers; w++) at(0).onWorker({ type: 'spawn', pid: 100 + w });
  let ms = 0;
  for (let i = 0; i < slides; i++) {
    const pid = 100 + (i % workers);
    at(ms).onItem({ type: 'started', key: `s${i}`, attempt: 1, pid });
    ms += 7;
    // Every 1000th slide fails: a marked bar, kept past the plain limit.
    at(ms).onItem(i % 1000 === 999 ? { type: 'failed', key: `s${i}`, attempt: 1 } : { type: 'done', key: `s${i}`, attempt: 1 });
    at(ms).onTiles(10);
  }
  const r = at(ms).report();
  const failed = Math.floor(slides / 1000);
  t.equal(r.bars.length + r.bars_left_out, slides, 'every bar kept or counted');
  t.equal(barsOf(r).filter((b) => b.outcome === 'failed').length, failed, 'the failed ones all kept');
  t.ok(r.bars.length <= TIMELINE_LIMITS.bars + TIMELINE_LIMITS.markedBars);
  t.equal(r.lanes.reduce((n, l) => n + l.bars, 0), slides, 'lane totals count every bar');
  t.ok(r.tiles.values.length <= TIMELINE_LIMITS.buckets);
  t.equal(r.tiles.values.reduce((a, v) => a + v, 0), slides * 10);
  const svg = timelineSvg(r);
  const rects = svg.match(/<rect /g)?.length ?? 0;
  t.ok(rects < workers * (TIMELINE_SVG.mergeColumns + 10) + failed, `${rects} rects for ${r.bars.length} bars: merged`);
  t.equal(svg.match(/class="bar failed"/g)?.length, failed, 'marked bars far apart drawn one by one');
  t.match(svg, /data-slides="\d+"/, 'a merged block says how many slides');
  t.ok(svg.length < 400_000, `${svg.length} characters`);
});

t.test('thousands of slides failing at once: one block per lane, the SVG small', async (t) => {
  const { at } = clocked();
  for (let i = 0; i < 3000; i++) {
    at(i).onItem({ type: 'started', key: `gone-${i}`, attempt: 1, pid: 7 + (i % 2) });
    at(i + 1).onItem({ type: 'failed', key: `gone-${i}`, attempt: 1 });
  }
  const r = at(3001).report();
  t.equal(r.bars.length, 3000, 'all kept: marked bars have their own room');
  const svg = timelineSvg(r);
  t.equal(svg.match(/class="bar failed"/g)?.length, 2, 'one block per lane');
  t.match(svg, /data-slides="1500"/);
  t.ok(svg.length < 5000, `${svg.length} characters`);
});

t.test('no worker ran a slide: a sentence instead of an empty chart', async (t) => {
  const { at } = clocked();
  at(0).onItem({ type: 'replayed', key: 'a' });
  const r = at(5).report();
  t.match(timelineSvg(r), /No worker process ran a slide/);
  t.match(throughputSvg(r, 256), /No tile was embedded/);
  t.match(stagesChart([]), /No stage metrics/);
});

t.test('throughput and stage charts: rates from the buckets, the budget line, stages biggest first', async (t) => {
  const { at } = clocked();
  at(100).onTiles(50); // 50 tiles in a 250 ms bucket: 200 tiles/s
  at(300).onTilesInUse(40);
  const svg = throughputSvg(at(500).report(), 64);
  t.match(svg, /at most 200\/s/);
  t.match(svg, /<line class="budget"[^>]*>/);
  const stages = stagesChart([{ name: 'Small', busy_ms: 100, blocked_ms: 0 }, { name: 'Big<x>', busy_ms: 3000, blocked_ms: 1000 }]);
  t.match(stages, /Big&#60;x&#62;[\s\S]*Small/, 'the biggest first, escaped');
  t.match(stages, /<rect class="busy" x="0" y="0" width="750"/, 'busy share of the biggest total');
  t.match(stages, /<rect class="blocked" x="750" y="0" width="250"/);
  t.match(stages, /<rect class="busy" x="0" y="0" width="25"/);
  const tiny = stagesChart([{ name: 'Big', busy_ms: 10_000, blocked_ms: 0 }, { name: 'Tiny', busy_ms: 10, blocked_ms: 0 }]);
  t.notMatch(tiny, 'Tiny', 'a stage under 0.5% of the biggest is not drawn');
  t.match(tiny, '1 more stage(s) took under 0.05 s each');
  // Fine buckets are drawn coarser: sums of neighbours, at most THROUGHPUT_POINTS points.
  t.same(coarser({ bucket_ms: 250, values: [1, 2, 3, 4, 5] }, 2, 'sum'), { bucket_ms: 750, values: [6, 9] });
  t.same(coarser({ bucket_ms: 250, values: [1, 7, 3] }, 2, 'max'), { bucket_ms: 500, values: [7, 3] });
  const many = clocked();
  for (let i = 0; i < 200; i++) many.at(i * 250).onTiles(i % 2 === 0 ? 8 : 0);
  const points = throughputSvg(many.at(50_000).report(), 64).match(/<path class="tiles" d="([^"]+)"/)![1]!.split('L').length;
  t.ok(points <= 2 * THROUGHPUT_POINTS + 3, `${points} points drawn for 200 buckets`);
});

t.test('axis helpers', async (t) => {
  t.equal(niceStep(7, 6), 2);
  t.equal(niceStep(100, 5), 20);
  t.equal(niceStep(0, 5), 1);
  t.same([timeLabel(3.21), timeLabel(42), timeLabel(185), timeLabel(3723)], ['3.2 s', '42 s', '3:05', '1:02:03']);
});
