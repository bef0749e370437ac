// Symbolic modes of `COPY --chmod=u+x,go-w` (CopyAction.modeStr), with the semantics of chmod(1) as
// BSD's setmode implements them and BuildKit uses them (tonistiigi/dchapes-mode with umask 0): clauses
// `[ugoa]*[+-=][rwxXst]*|[ugo]`, comma-separated; a missing who means all. Shared by the frontend (to
// validate) and the worker (to apply), so it lives beside the op that carries it.

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISTXT = 0o1000;
const RWXU = 0o700;
const RWXG = 0o070;
const RWXO = 0o007;
const STANDARD = S_ISUID | S_ISGID | RWXU | RWXG | RWXO;

const CLEAR = 1;
const SET = 2;
const UBITS = 4;
const GBITS = 8;
const OBITS = 16;

interface Cmd {
  cmd: '+' | '-' | 'X' | 'u' | 'g' | 'o';
  bits: number;
  cmd2: number;
}

export class ModeSyntaxError extends Error {
  constructor(readonly spec: string) {
    super(/^[0-9]/.test(spec)
      ? `invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`
      : `invalid chmod parameter: '${spec}': invalid syntax (use octal like 0755, or symbolic like u+x,go-w)`);
  }
}

/** A parsed symbolic mode: apply it to a file's mode. */
export type ModeSet = { cmds: Cmd[] };

export function parseSymbolicMode(spec: string): ModeSet {
  const fail = () => new ModeSyntaxError(spec);
  if (spec === '' || /^[0-9]/.test(spec)) throw fail();
  const cmds: Cmd[] = [];
  const add = (op: string, who: number, oparg: number) => {
    if (op === '=') {
      cmds.push({ cmd: '-', bits: who !== 0 ? who : STANDARD, cmd2: 0 });
      op = '+';
    }
    if (op === '+' || op === '-' || op === 'X') {
      cmds.push({ cmd: op, bits: who !== 0 ? who & oparg : oparg, cmd2: 0 });
      return;
    }
    // u, g, o: copy those bits; oparg is the operator's character code.
    let cmd2 = 0;
    let bits = ~0;
    if (who !== 0) {
      if (who & 0o400) cmd2 |= UBITS;
      if (who & 0o040) cmd2 |= GBITS;
      if (who & 0o004) cmd2 |= OBITS;
    } else {
      cmd2 = UBITS | GBITS | OBITS;
      bits = ~0;
    }
    const o = String.fromCharCode(oparg);
    cmd2 |= o === '+' ? SET : o === '-' ? CLEAR : SET | CLEAR;
    cmds.push({ cmd: op as 'u' | 'g' | 'o', bits, cmd2 });
  };

  let s = spec;
  for (;;) {
    let who = 0;
    for (;;) {
      if (s.length === 0) throw fail();
      const c = s[0];
      if (c === 'a') who |= STANDARD;
      else if (c === 'u') who |= S_ISUID | RWXU;
      else if (c === 'g') who |= S_ISGID | RWXG;
      else if (c === 'o') who |= RWXO;
      else break;
      s = s.slice(1);
    }
    for (;;) {
      // One operator and its permissions; several may follow each other (`u+x-w`).
      const op = s[0];
      s = s.slice(1);
      if (op !== '+' && op !== '-' && op !== '=') throw fail();
      let equalDone = false;
      who &= ~S_ISTXT;
      let perm = 0;
      let permX = 0;
      for (;; s = s.slice(1)) {
        const b = s[0] ?? '';
        if (b === 'r') perm |= 0o444;
        else if (b === 's') { if (who === 0 || (who & ~RWXO) !== 0) perm |= S_ISUID | S_ISGID; }
        else if (b === 't') { if (who === 0 || (who & ~RWXO) !== 0) { who |= S_ISTXT; perm |= S_ISTXT; } }
        else if (b === 'w') perm |= 0o222;
        else if (b === 'X') { if (op !== '-') permX = 0o111; else perm |= 0o111; }
        else if (b === 'x') perm |= 0o111;
        else if (b === 'u' || b === 'g' || b === 'o') {
          if (perm !== 0) { add(op, who, perm); perm = 0; }
          if (op === '=') equalDone = true;
          if (permX !== 0) { add('X', who, permX); permX = 0; }
          add(b, who, op.charCodeAt(0));
        } else {
          if (perm !== 0 || (op === '=' && !equalDone)) add(op, who, perm);
          if (permX !== 0) add('X', who, permX);
          break;
        }
      }
      if (s === '' || s[0] === ',') break;
    }
    if (s === '') break;
    s = s.slice(1);
  }
  return { cmds };
}

/** The new permission bits (0o7777) of an entry with permission bits `perm`. */
export function applySymbolicMode(set: ModeSet, perm: number, isDir: boolean): number {
  const omode = perm & 0o7777;
  let mode = omode;
  const common = (c: Cmd, value: number) => {
    if (c.cmd2 & CLEAR) {
      const clr = c.cmd2 & SET ? RWXO : value;
      if (c.cmd2 & UBITS) mode &= ~((clr << 6) & c.bits);
      if (c.cmd2 & GBITS) mode &= ~((clr << 3) & c.bits);
      if (c.cmd2 & OBITS) mode &= ~(clr & c.bits);
    }
    if (c.cmd2 & SET) {
      if (c.cmd2 & UBITS) mode |= (value << 6) & c.bits;
      if (c.cmd2 & GBITS) mode |= (value << 3) & c.bits;
      if (c.cmd2 & OBITS) mode |= value & c.bits;
    }
  };
  for (const c of set.cmds) {
    if (c.cmd === 'u') common(c, (mode & RWXU) >> 6);
    else if (c.cmd === 'g') common(c, (mode & RWXG) >> 3);
    else if (c.cmd === 'o') common(c, mode & RWXO);
    else if (c.cmd === '+') mode |= c.bits;
    else if (c.cmd === '-') mode &= ~c.bits;
    else if (omode & 0o111 || isDir) mode |= c.bits;
  }
  return mode & 0o7777;
}
