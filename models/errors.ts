/** Errors raised by model building, weight import and model checks; `code` says which kind. */
export type ModelErrorCode = 'E_WEIGHTS' | 'E_MODEL' | 'E_LUT' | 'E_INT8_GATE';

export class ModelError extends Error {
  readonly code: ModelErrorCode;
  constructor(code: ModelErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelError';
    this.code = code;
  }
}
