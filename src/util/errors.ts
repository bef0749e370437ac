// Errors as typed classes with codes (undici's model). A `UserError` is the user's mistake: the CLI prints
// its message on one line and exits 1, never a stack trace. Anything else is a bug and shows its stack.

export class BuilderError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad input or a failing build step: reported as one line, exit code 1. */
export class UserError extends BuilderError {}

/** Where in a source file an error comes from: rendered as `Dockerfile:7: ...`. */
export interface SourceLocation {
  file: string;
  startLine: number;
  endLine?: number;
}

export function formatLocation(loc: SourceLocation): string {
  return `${loc.file}:${loc.startLine}`;
}
