// Build-wide cache switches applied to a converted definition: `--no-cache-filter STAGE` ignores the
// cache for that stage's steps (later stages keep their keys, which are by content, so they still hit
// when the re-run produced the same inputs), and `--pull` re-resolves base images instead of reusing a
// cached FROM (dependants of an unchanged digest still hit).
import type { Definition } from '../../solver/llb/definition.js';
import type { Digest } from '../../solver/llb/ops.js';

export function applyCacheFilters(def: Definition, opts: { noCacheFilter?: string[]; pull?: boolean }): void {
  const stages = new Set(opts.noCacheFilter ?? []);
  for (const [digest, op] of Object.entries(def.ops) as [Digest, Definition['ops'][Digest]][]) {
    const isImage = op.kind === 'source' && op.source.type === 'image';
    const meta = (def.metadata[digest] ??= {});
    if (opts.pull && isImage) meta.ignoreCache = true;
    // An ADD <url> (or ADD <git>) of such a stage downloads anew.
    const isHttp = op.kind === 'source' && (op.source.type === 'http' || op.source.type === 'git');
    if (stages.size && (op.kind !== 'source' || isHttp) && meta.stage && stages.has(meta.stage)) meta.ignoreCache = true;
  }
}
