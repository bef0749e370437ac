// How build check warnings and Dockerfile errors are shown, as buildx shows them: a one-line summary per
// warning after a build, the detailed report of `--check` (rule, URL, description, the lines concerned),
// and the excerpt of the Dockerfile around a line (BuildKit's errdefs.Source.Print).
import type { LintWarning } from '../../frontend/dockerfile/linter.js';
import type { InstructionLocation } from '../../frontend/dockerfile/instructions.js';

/** A warning a step gave while it ran (no check rule): shown in its progress and in the build's summary. */
export interface StepWarning {
  message: string;
  /** The instruction of the step. */
  location?: InstructionLocation;
}

/** What a build warns about: check rules' findings and steps' warnings. */
export type BuildWarning = LintWarning | StepWarning;

const MAX_EXCERPT_LINE = 200;

/** The Dockerfile lines around `start..end` (1-based), the concerned ones marked `>>>`. */
export function sourceExcerpt(filename: string, text: string, start: number, end = start): string[] {
  const lines = text.split('\n');
  if (start < 1 || start > lines.length) return [];
  end = Math.min(end, lines.length);
  const [markStart, markEnd] = [start, end];
  const pad = end === start ? 4 : 2;
  for (let p = 0; p < pad;) {
    if (start > 1) { start--; p++; }
    if (end !== lines.length) { end++; p++; }
    p++;
  }
  const out = [`${filename}:${markStart}`, '-'.repeat(20)];
  for (let i = start; i <= end; i++) {
    const marked = i >= markStart && i <= markEnd;
    // A line can be 64 KiB (limits.ts): the excerpt shows where, not all of it.
    const line = lines[i - 1].length > MAX_EXCERPT_LINE ? `${lines[i - 1].slice(0, MAX_EXCERPT_LINE)}...` : lines[i - 1];
    out.push(` ${String(i).padStart(3)} | ${marked ? '>>>' : '   '} ${line}`);
  }
  out.push('-'.repeat(20));
  return out;
}

/** Lines a normal build prints after it finished: `N warnings found:` and one line per warning. */
export function warningSummary(warnings: BuildWarning[]): string[] {
  if (warnings.length === 0) return [];
  const n = warnings.length;
  return [
    ` ${n} warning${n === 1 ? '' : 's'} found:`,
    ...warnings.map((w) => ` - ${'rule' in w ? `${w.rule}: ` : ''}${w.message}${w.location ? ` (line ${w.location.startLine})` : ''}`),
  ];
}

/** The report of `build --check`. */
export function checkReport(warnings: LintWarning[], filename: string, text: string): string[] {
  if (warnings.length === 0) return ['Check complete, no warnings found.'];
  const n = warnings.length;
  const out = [`Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!`];
  for (const w of warnings) {
    out.push('', `WARNING: ${w.rule} - ${w.url}`, w.description);
    if (w.location) {
      out.push(...sourceExcerpt(filename, text, w.location.startLine, w.location.endLine));
    }
  }
  return out;
}
