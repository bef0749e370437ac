// Progress for a terminal, like BuildKit's tty display: one block redrawn in place with a header
// (`[+] Building 3.2s (4/7)`, `FINISHED` at the end), a line per step with its time on the right and its
// state before the name (`=> CACHED [a 2/3] COPY . /app   0.0s`, `ERROR`, `CANCELED`), its sub-steps
// (`=> => exporting layers   0.1s`, `=> => pushing layers 1.20MB / 3.40MB   0.3s`), warnings, the reason
// of a cache miss, and the last log lines of steps still running. Redraws on every state change, at
// most every 100 ms for logs and byte counts, and every 250 ms while a step runs (its time moves); the
// timer never keeps the process alive. `stop()` draws the
// whole final block once and nothing after it; `note()` prints a line above the block (a canceled build's
// message) without leaving a stale copy of the block behind.
import type { Writable } from 'node:stream';
import { formatBytes } from './printer.js';
import { LogTails, type ProgressWarning, type Clock, type DoneOptions, type ProgressWriter, type Vertex, type VertexStatus } from './writer.js';

interface State {
  name: string;
  started: number;
  ended?: number;
  status: 'running' | 'done' | 'cached' | 'error' | 'canceled';
  cacheMiss?: string;
  cacheReused?: string;
  partial: string;
  lines: string[];
  statuses: Map<string, VertexStatus>;
  warnings: string[];
}

const LOG_LINES = 6;
const TAIL_KEEP = 20;
const REDRAW_MS = 100;
const TICK_MS = 250;

export class TtyProgress implements ProgressWriter {
  private readonly vertices = new Map<string, State>();
  private readonly tails = new LogTails();
  private readonly now: Clock;
  private readonly begun: number;
  private drawn = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly out: Writable & { columns?: number; rows?: number }, opts: { now?: Clock } = {}) {
    this.now = opts.now ?? Date.now;
    this.begun = this.now();
  }

  start(v: Vertex): void {
    this.vertices.set(v.id, {
      name: v.name, started: v.started ?? this.now(), status: 'running', cacheMiss: v.cacheMiss, cacheReused: v.cacheReused, partial: '', lines: [], statuses: new Map(), warnings: [],
    });
    this.draw();
  }

  log(id: string, _stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const v = this.vertices.get(id);
    if (!v) return;
    this.tails.add(id, chunk);
    const parts = (v.partial + chunk.toString('utf8')).split('\n');
    v.partial = parts.pop() ?? '';
    for (const line of parts) {
      v.lines.push(line);
      if (v.lines.length > TAIL_KEEP) v.lines.shift();
    }
    this.schedule();
  }

  status(s: VertexStatus): void {
    const v = this.vertices.get(s.vertex);
    if (!v) return;
    const known = v.statuses.get(s.id);
    v.statuses.set(s.id, { ...s, started: s.started ?? known?.started ?? this.now() });
    // Byte counts change often: they wait for the timer; a sub-step that starts or ends is drawn now.
    if (known && known.completed === undefined && s.completed === undefined) this.schedule();
    else this.draw();
  }

  warning(w: ProgressWarning): void {
    const v = this.vertices.get(w.vertex);
    if (!v) return;
    v.warnings.push(w.short);
    this.draw();
  }

  done(id: string, opts?: DoneOptions): void {
    this.end(id, opts?.cached ? 'cached' : 'done', opts?.completed);
  }

  error(id: string, _message: string, completed?: number): void {
    this.end(id, 'error', completed);
  }

  canceled(id: string, completed?: number): void {
    this.end(id, 'canceled', completed);
  }

  tail(id: string, lines: number): string[] {
    return this.tails.tail(id, lines);
  }

  /** Prints `text` above the block: the block is cleared, the text written, the block drawn below it. */
  note(text: string): void {
    if (this.stopped) {
      this.out.write(text.endsWith('\n') ? text : `${text}\n`);
      return;
    }
    let s = this.drawn > 0 ? `\x1b[${this.drawn}F\x1b[J` : '';
    s += text.endsWith('\n') ? text : `${text}\n`;
    this.drawn = 0;
    this.out.write(s);
    this.draw();
  }

  /** Draws the final block, every step of it, and nothing after: later calls only record state. */
  stop(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.draw(true);
    this.stopped = true;
  }

  private end(id: string, status: State['status'], completed?: number): void {
    const v = this.vertices.get(id);
    if (!v) return;
    v.status = status;
    v.ended = completed ?? this.now();
    // A step's open sub-steps end with it.
    for (const s of v.statuses.values()) s.completed ??= v.ended;
    this.draw();
  }

  private schedule(ms = REDRAW_MS): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.draw();
    }, ms);
    this.timer.unref();
  }

  private draw(final = false): void {
    if (this.stopped) return;
    // This draw is what a pending one would have drawn.
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const width = Math.max(20, (this.out.columns || 80) - 1);
    const now = this.now();
    const secs = (ms: number) => `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
    const all = [...this.vertices.values()];
    const finished = all.filter((v) => v.status !== 'running').length;
    const head = `[+] Building ${secs(now - this.begun)} (${finished}/${all.length})`;
    const lines = [final && finished === all.length && all.length > 0 ? `${head} FINISHED` : head];
    const row = (left: string, right: string) => fit(left, width - right.length - 1) + ' ' + right;
    for (const v of all) {
      const state = v.status === 'cached' ? 'CACHED ' : v.status === 'error' ? 'ERROR ' : v.status === 'canceled' ? 'CANCELED ' : '';
      lines.push(row(` => ${state}${v.name}`, secs((v.ended ?? now) - v.started)));
      if (v.cacheMiss && v.status !== 'cached') lines.push(fit(` => => cache miss: ${v.cacheMiss}`, width));
      if (v.cacheReused) lines.push(fit(` => => reused: ${v.cacheReused}`, width));
      for (const s of v.statuses.values()) {
        const bytes = s.total ? ` ${formatBytes(s.current ?? 0)} / ${formatBytes(s.total)}` : s.current ? ` ${formatBytes(s.current)}` : '';
        lines.push(row(` => => ${s.id}${bytes}`, secs((s.completed ?? now) - (s.started ?? now))));
      }
      for (const w of v.warnings) lines.push(fit(` => WARN: ${w}`, width));
      if (!final && (v.status === 'running' || v.status === 'error')) {
        const logs = v.partial ? [...v.lines, v.partial] : v.lines;
        for (const l of logs.slice(-LOG_LINES)) lines.push(fit(` => => # ${l}`, width));
      }
    }
    // Keep to the screen while running: older steps scroll away, as BuildKit's view does. The final
    // block is drawn whole, once, and stays in the scrollback.
    const rows = this.out.rows ?? 0;
    const view = !final && rows > 2 && lines.length > rows - 1 ? [lines[0], ...lines.slice(lines.length - (rows - 2))] : lines;
    let text = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    for (const l of view) text += `\x1b[2K${l}\n`;
    text += '\x1b[J';
    this.drawn = view.length;
    this.out.write(text);
    if (!final && all.some((v) => v.status === 'running')) this.schedule(TICK_MS);
  }
}

function fit(s: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
  return clean.length > width ? clean.slice(0, Math.max(0, width - 1)) + '…' : clean.padEnd(width);
}
