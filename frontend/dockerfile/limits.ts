// Bounds on what a Dockerfile may make the frontend do, so hostile input fails in one line instead of
// exhausting memory, time or the stack. BuildKit is the guide where it has a limit (a physical line, the
// 16 MiB gRPC message a Dockerfile travels in); where it has none (Go's growable stacks and strings hide
// it), the limit is far above what a real Dockerfile needs. docs/limits.md lists them for users.

/** A Dockerfile's size in bytes (BuildKit reads it over gRPC, whose messages stop at 16 MiB). */
export const MAX_DOCKERFILE_BYTES = 16 * 1024 * 1024;

/** A physical line in bytes, without its line ending: BuildKit's scanner buffer (bufio.MaxScanTokenSize - 1). */
export const MAX_LINE_BYTES = 65535;

/**
 * An instruction with its continuation lines joined, in characters (heredoc bodies are not counted). A
 * RUN command longer than 128 KiB could not even be passed to the shell (Linux's MAX_ARG_STRLEN).
 */
export const MAX_INSTRUCTION_CHARS = 1024 * 1024;

/** How much longer than the word as written its expansion may be, in characters. */
export const MAX_WORD_GROWTH = 1024 * 1024;

/** What expansion may add over a whole conversion, in characters: many words each just under the bound. */
export const MAX_EXPANSION_TOTAL = 64 * 1024 * 1024;

/**
 * The build graph's ops, serialized. BuildKit's frontends hand it over in one 16 MiB gRPC message; here
 * heredocs are inlined (base64) and every RUN carries its environment, hence more room.
 */
export const MAX_DEFINITION_BYTES = 64 * 1024 * 1024;

/** Nested `${...}` in one word (`${A:-${B:-...}}`); the lexer recurses once per level. */
export const MAX_NESTING = 100;

export function formatSize(n: number): string {
  return n % (1024 * 1024) === 0 ? `${n / (1024 * 1024)} MiB` : String(n);
}
