// Containers made from stored images (`builder run`): each is a record in `<root>/containers/<id>.json`
// and a writable snapshot on top of its image's layer snapshots. Records are written atomically.
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Digest, Platform } from '../../solver/llb/ops.js';
import type { ImageConfig, ImageConfigFile } from '../image/types.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

export interface ContainerRecord {
  Id: string;
  Name: string;
  Created: string;
  /** What the user named (`app:1`). */
  Image: string;
  /** The image id (config digest, or index digest) and the stored target it came from. */
  ImageID: Digest;
  ImageTarget: Digest;
  Platform: Platform;
  /** The process: Path and Args, and the container's settings (the image's, with run's flags applied). */
  Path: string;
  Args: string[];
  Config: ImageConfig & { Image: string; Tty?: boolean; OpenStdin?: boolean };
  /** The image's config file, which commit builds on. */
  BaseConfig: ImageConfigFile;
  /** Layer snapshots of the image (bottom to top) and the container's own writable one. */
  Layers: string[];
  Upper: string;
  State: { Status: 'created' | 'running' | 'exited'; Running: boolean; Pid: number; ExitCode: number; StartedAt: string; FinishedAt: string };
  AutoRemove?: boolean;
  /** `run --privileged`. */
  Privileged?: boolean;
  Mounts?: { Type: string; Source: string; Destination: string; RW: boolean }[];
}

export class NoSuchContainerError extends UserError {
  constructor(name: string) { super('CONTAINER_NOT_FOUND', `No such container: ${name}`); }
}

export const containersDir = (root: string): string => path.join(root, 'containers');

export async function listContainers(root: string): Promise<ContainerRecord[]> {
  const dir = containersDir(root);
  const out: ContainerRecord[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.json')) continue;
    const rec = await fs.readFile(path.join(dir, name), 'utf8').then((t) => JSON.parse(t) as ContainerRecord, () => null);
    if (rec && typeof rec.Id === 'string' && typeof rec.Upper === 'string') out.push(rec);
  }
  return out.sort((a, b) => (a.Created < b.Created ? 1 : a.Created > b.Created ? -1 : 0));
}

/** A container by name, full id or id prefix (as Docker resolves one). */
export async function findContainer(root: string, arg: string): Promise<ContainerRecord> {
  const all = await listContainers(root);
  const byName = all.find((c) => c.Name === arg.replace(/^\//, '') || c.Id === arg);
  if (byName) return byName;
  const byPrefix = /^[0-9a-f]+$/.test(arg) ? all.filter((c) => c.Id.startsWith(arg)) : [];
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw new UserError('AMBIGUOUS_CONTAINER', `multiple IDs found with provided prefix: ${arg}`);
  throw new NoSuchContainerError(arg);
}

export async function saveContainer(root: string, rec: ContainerRecord): Promise<void> {
  await writeFileAtomic(path.join(containersDir(root), `${rec.Id}.json`), JSON.stringify(rec, null, 1));
}

export async function deleteContainerRecord(root: string, id: string): Promise<void> {
  await fs.rm(path.join(containersDir(root), `${id}.json`), { force: true });
}

export const newContainerID = (): string => randomBytes(32).toString('hex');

/** The id of a container made from this image (its stored target or image id), if any: such an image is in use. */
export async function containerUsing(root: string, target: Digest, id: Digest): Promise<string | undefined> {
  return (await listContainers(root)).find((c) => c.ImageTarget === target || c.ImageID === id)?.Id;
}

/** `docker container inspect` JSON for a container, or undefined when none has that name or id. */
export async function inspectContainer(root: string, arg: string): Promise<Record<string, unknown> | undefined> {
  let c: ContainerRecord;
  try {
    c = await findContainer(root, arg);
  } catch (e) {
    if (e instanceof NoSuchContainerError) return undefined;
    throw e;
  }
  return {
    Id: c.Id,
    Created: c.Created,
    Path: c.Path,
    Args: c.Args,
    State: { ...c.State, Paused: false, Restarting: false, OOMKilled: false, Dead: false, Error: '' },
    Image: c.ImageID,
    Name: `/${c.Name}`,
    Platform: c.Platform.os,
    Mounts: c.Mounts ?? [],
    Config: c.Config,
    HostConfig: { AutoRemove: Boolean(c.AutoRemove), Privileged: Boolean(c.Privileged) },
  };
}
