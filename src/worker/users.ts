// Users and groups as the image sees them: names resolve in the rootfs's /etc/passwd and /etc/group,
// like runc/BuildKit do for `USER` and `COPY --chown`.
import fs from 'node:fs/promises';
import { UserError } from '../util/errors.js';
import { resolveInRoot } from '../archive/rootpath.js';

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

/** Reads a file inside a rootfs as a chroot there would (no symlink, final or not, leads out of it). */
async function readInsideRoot(rootfs: string, file: string): Promise<string | null> {
  try {
    const p = await resolveInRoot(rootfs, file);
    return (await fs.stat(p)).isFile() ? await fs.readFile(p, 'utf8') : null;
  } catch {
    return null;
  }
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

/** What `--chown` resolved to; `unknown` says which user or group names the image does not have. */
export interface ResolvedOwner {
  uid: number;
  gid: number;
  unknown: string[];
}

/** BuildKit's limit on /etc/passwd and /etc/group when it resolves `--chown` names. */
const MAX_USER_FILE_BYTES = 10 << 20;

/**
 * One of /etc/passwd, /etc/group as BuildKit's readUser opens it: missing (or under a non-directory) is
 * an empty file; anything but a regular file, or more than 10 MiB, is an error.
 */
async function readUserFile(rootfs: string, file: string): Promise<string[]> {
  const p = await resolveInRoot(rootfs, file);
  let st;
  try {
    st = await fs.stat(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw e;
  }
  if (!st.isFile()) throw new UserError('INVALID_USER_FILE', `${file} is not a regular file`);
  if (st.size > MAX_USER_FILE_BYTES) throw new UserError('INVALID_USER_FILE', `${file} exceeds ${MAX_USER_FILE_BYTES} bytes`);
  // As moby/sys/user: lines trimmed, blank ones skipped, fields split on `:`; no comment syntax.
  return (await fs.readFile(p, 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Go's strconv.Atoi as moby/sys/user uses it: a field that is not a number reads as 0. */
function atoi(s: string | undefined): number {
  return s !== undefined && /^[+-]?[0-9]+$/.test(s) ? Number(s) : 0;
}

/**
 * For `COPY --chown=user:group` (and the owner of mkdir/mkfile), as BuildKit's readUser resolves it in
 * the destination's /etc/passwd and /etc/group: a numeric user gives uid and gid of that number; a named
 * one its uid and primary group from passwd; a group, when given, replaces the gid (a number as it is, a
 * name through the group file). A name the image does not have is not an error: a user resolves to 0:0
 * and a group leaves the gid as the user part set it. Such names are listed in `unknown` so the build can
 * warn about them (BuildKit is silent).
 */
export async function resolveOwner(
  rootfs: string,
  user: string | number | undefined,
  group: string | number | undefined,
): Promise<ResolvedOwner> {
  let uid = 0;
  let gid = 0;
  const unknown: string[] = [];
  if (typeof user === 'number') {
    uid = user;
    gid = user;
  } else if (user !== undefined && user !== '') {
    const entry = (await readUserFile(rootfs, '/etc/passwd')).map((l) => l.split(':')).find((f) => f[0] === user);
    if (entry) {
      uid = atoi(entry[2]);
      gid = atoi(entry[3]);
    } else {
      unknown.push(`no user "${user}" in /etc/passwd`);
    }
  }
  if (typeof group === 'number') {
    gid = group;
  } else if (group !== undefined && group !== '') {
    const entry = (await readUserFile(rootfs, '/etc/group')).map((l) => l.split(':')).find((f) => f[0] === group);
    if (entry) gid = atoi(entry[2]);
    else unknown.push(`no group "${group}" in /etc/group`);
  }
  return { uid, gid, unknown };
}
