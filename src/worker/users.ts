// Users and groups as the image sees them: names resolve in the rootfs's /etc/passwd and /etc/group,
// like runc/BuildKit do for `USER` and `COPY --chown`.
import fs from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../util/errors.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Home directory from /etc/passwd, `/` when unknown (runc's default for HOME). */
  home: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

export class UnknownUserError extends UserError {
  constructor(message: string) { super('UNKNOWN_USER', message); }
}

/** Reads a file inside a rootfs without following a symlink out of it (an absolute link resolves inside). */
async function readInsideRoot(rootfs: string, file: string): Promise<string | null> {
  let rel = file;
  for (let hops = 0; hops < 16; hops++) {
    const p = path.join(rootfs, rel);
    let st;
    try { st = await fs.lstat(p); } catch { return null; }
    if (!st.isSymbolicLink()) return st.isFile() ? fs.readFile(p, 'utf8') : null;
    const target = await fs.readlink(p);
    rel = path.posix.resolve(path.posix.dirname(rel), target);
  }
  return null;
}

export async function readPasswd(rootfs: string): Promise<PasswdEntry[]> {
  const text = (await readInsideRoot(rootfs, '/etc/passwd')) ?? '';
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((line) => {
    const f = line.split(':');
    return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' };
  }).filter((e) => Number.isInteger(e.uid) && Number.isInteger(e.gid));
}

export async function readGroup(rootfs: string): Promise<GroupEntry[]> {
  const text = (await readInsideRoot(rootfs, '/etc/group')) ?? '';
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((line) => {
    const f = line.split(':');
    return { name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) };
  }).filter((e) => Number.isInteger(e.gid));
}

const isNumeric = (s: string) => /^[0-9]+$/.test(s);

/**
 * Resolves `user`, `uid`, `user:group`, `uid:gid` (empty means root). A numeric user need not exist in
 * /etc/passwd (its gid is then 0 unless given); a name must.
 */
export async function resolveUser(rootfs: string, spec: string): Promise<ResolvedUser> {
  const [userPart, groupPart] = (spec || 'root').split(':', 2) as [string, string | undefined];
  const passwd = await readPasswd(rootfs);
  let uid: number;
  let gid = 0;
  let home = '/';
  let userName: string | undefined;
  if (isNumeric(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((e) => e.uid === uid);
    if (entry) { gid = entry.gid; home = entry.home; userName = entry.name; }
  } else {
    const entry = passwd.find((e) => e.name === userPart);
    if (!entry) throw new UnknownUserError(`unable to find user ${userPart}: no matching entries in passwd file`);
    uid = entry.uid; gid = entry.gid; home = entry.home; userName = entry.name;
  }
  const groups = await readGroup(rootfs);
  if (groupPart !== undefined && groupPart !== '') {
    gid = await resolveGroupIn(groups, groupPart);
  }
  const additionalGids = groupPart
    ? []
    : groups.filter((g) => userName !== undefined && g.members.includes(userName) && g.gid !== gid).map((g) => g.gid);
  return { uid, gid, additionalGids, home };
}

async function resolveGroupIn(groups: GroupEntry[], spec: string): Promise<number> {
  if (isNumeric(spec)) return Number(spec);
  const g = groups.find((e) => e.name === spec);
  if (!g) throw new UnknownUserError(`unable to find group ${spec}: no matching entries in group file`);
  return g.gid;
}

/** For `COPY --chown=user:group`: ids for a user and an optional group, names looked up in the rootfs. */
export async function resolveOwner(
  rootfs: string,
  user: string | number | undefined,
  group: string | number | undefined,
): Promise<{ uid: number; gid: number }> {
  let uid = 0;
  let gid = 0;
  if (user !== undefined && user !== '') {
    if (typeof user === 'number' || isNumeric(user)) {
      uid = Number(user);
    } else {
      const entry = (await readPasswd(rootfs)).find((e) => e.name === user);
      if (!entry) throw new UnknownUserError(`unable to find user ${user}: no matching entries in passwd file`);
      uid = entry.uid;
    }
    gid = uid; // reference: a user without a group gets the GID of the same numeric value as the UID

  }
  if (group !== undefined && group !== '') {
    gid = typeof group === 'number' ? group : await resolveGroupIn(await readGroup(rootfs), group);
  }
  return { uid, gid };
}
