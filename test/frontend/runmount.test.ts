import { describe, expect, it } from 'vitest';
import { parseMount, mountFrom } from '../../frontend/dockerfile/runmount.js';

const id = (s: string) => s;

describe('RUN --mount parsing (BuildKit semantics)', () => {
  it('defaults: bind is read-only, cache and tmpfs read-write, cache sharing shared', () => {
    expect(parseMount('target=/x', id)).toMatchObject({ type: 'bind', readonly: true, target: '/x' });
    expect(parseMount('type=cache,target=/c', id)).toMatchObject({ type: 'cache', readonly: false, sharing: 'shared' });
    expect(parseMount('type=tmpfs,dst=/t,size=64m', id)).toMatchObject({ type: 'tmpfs', readonly: false, size: 64 * 1024 * 1024 });
    expect(parseMount('type=bind,src=a,destination=/b,rw', id)).toMatchObject({ source: 'a', target: '/b', readonly: false });
    expect(parseMount('type=bind,target=/b,readonly=false', id)).toMatchObject({ readonly: false });
  });

  it('secrets and ssh take required, mode, uid, gid; env only for secrets', () => {
    expect(parseMount('type=secret,id=t,required,mode=0440,uid=5,gid=6', id))
      .toMatchObject({ type: 'secret', id: 't', required: true, mode: 0o440, uid: 5, gid: 6, readonly: true });
    expect(parseMount('type=secret,id=t,env=TOKEN', id)).toMatchObject({ env: 'TOKEN' });
    expect(parseMount('type=ssh,required=true', id)).toMatchObject({ type: 'ssh', required: true });
    expect(() => parseMount('type=ssh,env=X', id)).toThrow("unexpected key 'env' for mount type 'ssh'");
  });

  it('expands values, not keys; finds from= before expansion', () => {
    expect(parseMount('type=cache,target=$DIR,id=${ID}', (w) => w.replace('$DIR', '/d').replace('${ID}', 'i'))).toMatchObject({ target: '/d', id: 'i' });
    expect(mountFrom('type=bind,from=builder,target=/b')).toBe('builder');
    expect(mountFrom('type=bind,target=/b')).toBeUndefined();
  });

  it('rejects what BuildKit rejects, with its messages', () => {
    expect(() => parseMount('type=volume,target=/x', id)).toThrow('unsupported mount type "volume"');
    expect(() => parseMount('type=bind,target=/x,sharing=locked', id)).toThrow('invalid cache sharing set for bind mount');
    expect(() => parseMount('type=cache,target=/x,sharing=everyone', id)).toThrow('unsupported sharing value "everyone"');
    expect(() => parseMount('type=bind,target=/x,mode=0700', id)).toThrow("unexpected key 'mode' for mount type 'bind'");
    expect(() => parseMount('type=bind,target=/x,bogus=1', id)).toThrow("unexpected key 'bogus' in 'bogus=1'");
    expect(() => parseMount('type=bind,target', id)).toThrow("invalid field 'target' must be a key=value pair");
    expect(() => parseMount('type=secret,from=x,id=y', id)).toThrow('secret mount should not have a from');
    expect(() => parseMount('type=secret', id)).toThrow('one of source, target required');
    expect(() => parseMount('type=bind,target=/x,required', id)).toThrow("unexpected key 'required' for mount type 'bind'");
  });
});
