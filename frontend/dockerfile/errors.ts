// Errors of the Dockerfile frontend. All are the user's mistakes (UserError): the CLI prints them on one
// line, prefixed with the location (`Dockerfile:7: ...`) that `location` carries; `message` never has it.
import { UserError, type SourceLocation } from '../../src/util/errors.js';

/** A Dockerfile that cannot be parsed or converted: bad syntax, unknown instruction or flag, missing stage. */
export class DockerfileError extends UserError {
  constructor(message: string, readonly location?: SourceLocation, options?: { cause?: unknown }, code = 'DOCKERFILE_INVALID') {
    super(code, message, options);
  }
}

/** Word expansion failed (`${X:?unset}`, unterminated quotes, bad substitution). */
export class ShellExpansionError extends UserError {
  constructor(message: string) {
    super('SHELL_EXPANSION', message);
  }
}

/** Adds a location to an error that has none; keeps the first (innermost) location otherwise. */
export function withLocation(err: unknown, location: SourceLocation): unknown {
  if (err instanceof DockerfileError) {
    return err.location ? err : new DockerfileError(err.message, location, { cause: err.cause }, err.code);
  }
  if (err instanceof UserError) return new DockerfileError(err.message, location, { cause: err }, err.code);
  return err;
}
