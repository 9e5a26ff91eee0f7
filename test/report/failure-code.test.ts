/** A failed slide's code in report.json: the slide's own (the cause the worker threw), else the engine's. */
import t from 'tap';
import { EngineError } from '../../engine/types.js';
import { failureCode } from '../../stages/report/failures.js';

t.test("the slide's own code, from the engine error's cause", async (t) => {
  const cause = Object.assign(new Error('E_SLIDE_FORMAT: slide "x" (/s/x.tif): TIFF directory 0, tile 3 ...'), { code: 'E_SLIDE_FORMAT' });
  t.equal(failureCode(new EngineError('E_WORKER_ITEM', 'PerSlide', 'x', 'item failed after 1 attempt(s)', { cause })), 'E_SLIDE_FORMAT');
});

t.test("a worker that died, or an error without an E_ code: the engine's code", async (t) => {
  const died = new EngineError('E_WORKER_CRASH', 'PerSlide', 'x', 'item failed after 2 attempt(s): worker process 1 died (code null, signal SIGABRT)', { cause: new Error('worker process 1 died') });
  t.equal(failureCode(died), 'E_WORKER_CRASH');
  const errno = Object.assign(new Error('EIO'), { code: 'EIO' });
  t.equal(failureCode(new EngineError('E_WORKER_ITEM', 'PerSlide', 'x', 'item failed', { cause: errno })), 'E_WORKER_ITEM', 'an errno code is not an E_ code');
  t.equal(failureCode(new Error('no code at all')), 'E_UNKNOWN');
});
