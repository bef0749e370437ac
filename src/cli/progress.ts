// The CLI's progress display for `--progress MODE`, and the CLI's other lines on the same stream (stderr,
// as buildx): in rawjson mode that stream carries SolveStatus lines and nothing else, so the warning
// summary, the image line and a canceled build's message are left out, as buildx leaves them out; a
// failed build's Dockerfile excerpt and output tail too (its one `ERROR:` line stays, as in buildx).
import { PlainProgress, quietProgress, type ProgressMode, type ProgressWriter } from '../progress/printer.js';
import { RawJsonProgress } from '../progress/rawjson.js';
import { TtyProgress } from '../progress/tty.js';
import { BuildError } from '../client/build.js';

export interface CliProgress {
  mode: Exclude<ProgressMode, 'auto'>;
  writer: ProgressWriter;
  /** A line (or lines) for the user beside the progress: above a live view, never inside rawjson output. */
  note(text: string): void;
  /** The build is over: the live view draws its final frame and nothing after it. */
  stop(): void;
}

let active: CliProgress | undefined;

export function cliProgress(requested: ProgressMode | undefined, out: NodeJS.WriteStream): CliProgress {
  // As buildx: `auto` is the live view on a terminal, plain lines otherwise.
  const mode = !requested || requested === 'auto' ? (out.isTTY ? 'tty' : 'plain') : requested;
  const line = (t: string) => (t.endsWith('\n') ? t : `${t}\n`);
  if (mode === 'tty') {
    const tty = new TtyProgress(out);
    active = { mode, writer: tty, note: (t) => tty.note(t), stop: () => tty.stop() };
  } else {
    const writer = mode === 'quiet' ? quietProgress() : mode === 'rawjson' ? new RawJsonProgress(out) : new PlainProgress(out);
    active = { mode, writer, note: (t) => { if (mode !== 'rawjson') out.write(line(t)); }, stop: () => undefined };
  }
  return active;
}

/** Before the CLI prints a failure: the display is stopped; in rawjson mode only the error line follows. */
export function settleProgress(e: unknown): void {
  active?.stop();
  if (active?.mode === 'rawjson' && e instanceof BuildError) {
    e.details.splice(0);
    e.outputTail.splice(0);
  }
}
