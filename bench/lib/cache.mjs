// Cache export/import scenarios (C1, C3): what a CI runner with an empty state pays with an exported cache.
// Each builder adapter is asked for the steps of a phase; a builder that cannot do a phase says why.
//   export       cold build with --cache-to type=local,mode=max           (C3; builder: time of the export step too)
//   export-edit  one-file edit, same state, --cache-to the same directory  (C3)
//   from-local   empty state, --cache-from type=local                      (cache written by an untimed build)
//   from-registry empty state, --cache-from type=registry                  (BuildKit: inline cache, the only kind
//                docker 20.10's `docker build` exports; it has no buildx for local or registry caches)
import path from 'node:path';

/**
 * Steps for one builder and phase: `{ setup?, needs?, fresh?, edit?, cmds, writes? }` (setup steps run
 * untimed unless an earlier phase already wrote the cache named by `needs`), or `{ unsupported: reason }`.
 * `build(extra, tag?)` gives the builder's build commands with extra flags.
 */
export function cachePhase(b, phase, { dir, ref, build }) {
  if (b.name === 'builder') {
    const toLocal = ['--cache-to', `type=local,dest=${dir},mode=max`];
    const toRegistry = ['--cache-to', `type=registry,ref=${ref},mode=max`];
    switch (phase) {
      case 'export': return { fresh: true, cmds: build(toLocal), writes: ['local'] };
      case 'export-edit': return { edit: true, cmds: build(toLocal), writes: ['local'] };
      // The caches the imports read: written by a cold build (untimed) unless an earlier phase wrote them.
      case 'from-local': return { setup: [{ fresh: true, cmds: build([...toLocal, ...toRegistry]), writes: ['local', 'registry'] }], needs: 'local', fresh: true, cmds: build(['--cache-from', `type=local,src=${dir}`]) };
      case 'from-registry': return { setup: [{ fresh: true, cmds: build(toRegistry), writes: ['registry'] }], needs: 'registry', fresh: true, cmds: build(['--cache-from', `type=registry,ref=${ref}`]) };
    }
  }
  if (b.name === 'buildkit' && phase === 'from-registry') {
    return {
      // Steps run one after another (the commands of one step run at once).
      setup: [{ fresh: true, cmds: build(['--build-arg', 'BUILDKIT_INLINE_CACHE=1'], ref) }, { cmds: [b.pushCmd(ref)], writes: ['registry'] }],
      needs: 'registry',
      fresh: true,
      cmds: build(['--cache-from', ref]),
    };
  }
  return { unsupported: b.name === 'buildkit' ? 'local and registry cache export need buildx (docker 20.10 has none here)' : 'not measured' };
}

export function cacheNames(work, registryHost, id, builder, rep) {
  return { dir: path.join(work, `cache-${id}-${builder}-${rep}`), ref: `${registryHost}/bench/cache-${id.toLowerCase()}-${builder}:${rep}` };
}

/** The seconds of builder's "exporting cache to ..." steps in its plain progress output, summed. */
export function cacheExportSeconds(text) {
  let total = 0;
  let found = false;
  for (const m of text.matchAll(/^#(\d+) exporting cache to [^\n]*\n(?:[^\n]*\n)*?#\1 DONE ([\d.]+)s/gm)) { total += Number(m[2]); found = true; }
  return found ? total : undefined;
}
