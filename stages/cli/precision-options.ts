/**
 * The embedder's precision options of the main job (`--precision fp32|int8` and the int8 calibration and gate
 * settings), parsed apart from options.ts so the int8 feature stays in one place. Usage errors: E_USAGE (exit 2).
 */
import { CALIBRATION_METHODS, type CalibrationMethod } from '../../models/quant/ranges.js';
import { DEFAULT_GATE, type GateThresholds } from '../../models/quant/gate.js';

export type Precision = 'fp32' | 'int8';

export interface Int8Settings {
  /** Tiles the activation ranges are calibrated on, drawn evenly across the CSV's slides (256). */
  readonly calibrationTiles: number;
  /** Other tiles the int8 embeddings are compared with fp32 on (128). */
  readonly heldOutTiles: number;
  readonly method: CalibrationMethod;
  readonly gate: GateThresholds;
  /** Most tensors the gate's fallback keeps in float (8). */
  readonly maxFallback: number;
}

export interface PrecisionOptions {
  readonly precision: Precision;
  readonly int8: Int8Settings;
}

/** parseArgs entries (spread into the main job's). */
export const PRECISION_FLAGS = {
  precision: { type: 'string' },
  'int8-calibration': { type: 'string' },
  'int8-calibration-tiles': { type: 'string' },
  'int8-holdout-tiles': { type: 'string' },
  'int8-gate': { type: 'string' },
  'int8-fallback': { type: 'string' },
} as const;

export const PRECISION_HELP = `  --precision P              embedder precision: fp32 | int8 (fp32). int8: a statically quantized copy of the
                             embedder, calibrated on tiles of your slides and gated by its measured agreement with fp32
  --int8-calibration M       percentile | minmax: how activation ranges are set (percentile, 99.99)
  --int8-calibration-tiles N calibration tiles, drawn evenly across the slides (256)
  --int8-holdout-tiles N     other tiles int8 is compared with fp32 on (128)
  --int8-gate MEAN,P1        refuse int8 below this mean / 1st-percentile cosine of avg+max (0.99,0.97)
  --int8-fallback N          most tensors kept in fp32, one at a time, to pass the gate (8; 0: none)
`;

/** The parsed values of PRECISION_FLAGS (all strings). */
type Values = { readonly [K in keyof typeof PRECISION_FLAGS]?: string };

class PrecisionUsageError extends Error {
  readonly code = 'E_USAGE';
  override readonly name = 'UsageError';
}

function count(name: string, value: string | boolean | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== 'string' || !Number.isInteger(n) || n < min) throw new PrecisionUsageError(`--${name} must be an integer >= ${min}, got "${String(value)}"`);
  return n;
}

/** The precision options from parseArgs values (E_USAGE on bad values, or int8 settings without --precision int8). */
export function parsePrecision(v: Values): PrecisionOptions {
  const precision = (v.precision ?? 'fp32') as Precision;
  if (precision !== 'fp32' && precision !== 'int8') throw new PrecisionUsageError(`--precision must be fp32 or int8, got "${String(v.precision)}"`);
  const given = (Object.keys(PRECISION_FLAGS) as Array<keyof Values>).filter((k) => k !== 'precision' && v[k] !== undefined);
  if (precision === 'fp32' && given.length > 0) throw new PrecisionUsageError(`--${given[0]} applies to --precision int8 only`);
  const method = (v['int8-calibration'] ?? 'percentile') as CalibrationMethod;
  if (!CALIBRATION_METHODS.includes(method)) throw new PrecisionUsageError(`--int8-calibration must be ${CALIBRATION_METHODS.join(' or ')}, got "${String(method)}"`);
  let gate = DEFAULT_GATE;
  if (v['int8-gate'] !== undefined) {
    const parts = String(v['int8-gate']).split(',').map(Number);
    if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x) || x < -1 || x > 1)) {
      throw new PrecisionUsageError(`--int8-gate must be MEAN,P1 (two cosines in [-1, 1]), got "${String(v['int8-gate'])}"`);
    }
    gate = { mean: parts[0]!, p1: parts[1]! };
  }
  return {
    precision,
    int8: {
      calibrationTiles: count('int8-calibration-tiles', v['int8-calibration-tiles'], 256, 1),
      heldOutTiles: count('int8-holdout-tiles', v['int8-holdout-tiles'], 128, 1),
      method,
      gate,
      maxFallback: count('int8-fallback', v['int8-fallback'], 8, 0),
    },
  };
}
