// Progress for a terminal, like BuildKit's tty mode: one block redrawn in place with a header
// (`[+] Building 3.2s (4/7)`), a line per step (`=> [a 2/3] COPY . /app   1.2s`, `CACHED`, `ERROR`),
// the reason of a cache miss, and the last log lines of steps still running. Redraws on every state
// change and at most every 100 ms for logs; the timer never keeps the process alive.
import type { Writable } from 'node:stream';
import type { ProgressWriter, Vertex } from './printer.js';

interface State {
  name: string;
  started: number;
  ended?: number;
  status: 'running' | 'done' | 'cached' | 'error' | 'canceled';
  cacheMiss?: string;
  partial: string;
  lines: string[];
}

const LOG_LINES = 6;
const TAIL_KEEP = 20;
const REDRAW_MS = 100;

export class TtyProgress implements ProgressWriter {
  private readonly vertices = new Map<string, State>();
  private readonly begun = performance.now();
  private drawn = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly out: Writable & { columns?: number; rows?: number }) {}

  start(v: Vertex): void {
    this.vertices.set(v.id, { name: v.name, started: performance.now(), status: 'running', cacheMiss: v.cacheMiss, partial: '', lines: [] });
    this.draw();
  }

  log(id: string, _stream: 'stdout' | 'stderr', chunk: Buffer): void {
    const v = this.vertices.get(id);
    if (!v) return;
    const parts = (v.partial + chunk.toString('utf8')).split('\n');
    v.partial = parts.pop() ?? '';
    for (const line of parts) {
      v.lines.push(line);
      if (v.lines.length > TAIL_KEEP) v.lines.shift();
    }
    this.schedule();
  }

  done(id: string, opts?: { cached?: boolean }): void {
    this.end(id, opts?.cached ? 'cached' : 'done');
  }

  error(id: string, _message: string): void {
    this.end(id, 'error');
  }

  canceled(id: string): void {
    this.end(id, 'canceled');
  }

  tail(id: string, lines: number): string[] {
    const v = this.vertices.get(id);
    if (!v) return [];
    return (v.partial ? [...v.lines, v.partial] : v.lines).slice(-lines);
  }

  private end(id: string, status: State['status']): void {
    const v = this.vertices.get(id);
    if (!v) return;
    v.status = status;
    v.ended = performance.now();
    this.draw();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.draw();
    }, REDRAW_MS);
    this.timer.unref();
  }

  private draw(): void {
    const width = Math.max(20, (this.out.columns || 80) - 1);
    const now = performance.now();
    const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
    const all = [...this.vertices.values()];
    const finished = all.filter((v) => v.status !== 'running').length;
    const lines = [`[+] Building ${secs(now - this.begun)} (${finished}/${all.length})`];
    for (const v of all) {
      const right = v.status === 'cached' ? 'CACHED' : v.status === 'error' ? 'ERROR' : v.status === 'canceled' ? 'CANCELED'
        : secs((v.ended ?? now) - v.started);
      const left = ` => ${v.name}`;
      lines.push(fit(left, width - right.length - 1) + ' ' + right);
      if (v.cacheMiss && v.status !== 'cached') lines.push(fit(` => => cache miss: ${v.cacheMiss}`, width));
      if (v.status === 'running' || v.status === 'error') {
        const logs = v.partial ? [...v.lines, v.partial] : v.lines;
        for (const l of logs.slice(-LOG_LINES)) lines.push(fit(` => => # ${l}`, width));
      }
    }
    // Keep to the screen: older finished steps scroll away, as BuildKit's view does.
    const rows = this.out.rows ?? 0;
    const view = rows > 2 && lines.length > rows - 1 ? [lines[0], ...lines.slice(lines.length - (rows - 2))] : lines;
    let text = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    for (const l of view) text += `\x1b[2K${l}\n`;
    text += '\x1b[J';
    this.drawn = view.length;
    this.out.write(text);
  }
}

function fit(s: string, width: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
  return clean.length > width ? clean.slice(0, Math.max(0, width - 1)) + '…' : clean.padEnd(width);
}
