// Errors of the executor: a missing runtime is the user's setup problem (one line); an aborted run is
// reported as an AbortError so callers can tell cancellation from failure.
import { BuilderError, UserError } from '../util/errors.js';

export class RuntimeNotFoundError extends UserError {
  constructor(runtime: string) {
    super('RUNTIME_NOT_FOUND', `OCI runtime "${runtime}" not found: install it or choose another with --oci-runtime`);
  }
}

export class AbortError extends BuilderError {
  constructor(cause?: unknown) {
    super('ABORTED', 'the operation was aborted', { cause });
  }
}

/** The runtime itself failed (not the container's process), e.g. `runc delete` or `runc list`. */
export class RuntimeError extends BuilderError {
  constructor(message: string) {
    super('RUNTIME_ERROR', message);
  }
}

export class InvalidContainerIdError extends UserError {
  constructor(id: string) {
    super('INVALID_CONTAINER_ID', `invalid container id "${id}": use letters, digits, '_', '+', '-' and '.'`);
  }
}
