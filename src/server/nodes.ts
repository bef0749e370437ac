// What a client knows of an instance's nodes at build time: which answer, what they build for.
import { getJSON } from './client.js';
import { nodeTLS, type NodeSpec } from './instances.js';
import type { ServerInfo } from './protocol.js';

export interface NodeStatus {
  node: NodeSpec;
  status: 'running' | 'inactive';
  info?: ServerInfo;
  /** Why it is inactive. */
  error?: string;
  /** `create --platform` first (buildx marks them with `*`), then what the node reports. */
  platforms: string[];
  /** What the node can build through QEMU besides (not in `platforms`). */
  emulated: string[];
}

/** Asks the node's /v1/version; a node that does not answer is inactive, with the reason. */
export async function probeNode(node: NodeSpec, opts: { token?: string; timeoutMs?: number } = {}): Promise<NodeStatus> {
  const given = node.platforms ?? [];
  try {
    const info = await getJSON<ServerInfo>(node.endpoint, nodeTLS(node), '/v1/version', { token: opts.token, timeoutMs: opts.timeoutMs ?? 5000 });
    const platforms = [...given, ...info.platforms.filter((p) => !given.includes(p))];
    return { node, status: 'running', info, platforms, emulated: (info.emulated ?? []).filter((p) => !platforms.includes(p)) };
  } catch (e) {
    return { node, status: 'inactive', error: (e as Error).message, platforms: given, emulated: [] };
  }
}
