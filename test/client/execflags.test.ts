// The parsers of buildx's RUN container flags and of --call: docker's formats (go-units' RAMInBytes and
// ParseUlimit, buildx's toBuildkitExtraHosts and ParseCallFunc), each bad value a one-line UserError.
import { describe, it, expect } from 'vitest';
import { parseExecFlags, parseExtraHost, parseShmSize, parseUlimit, parseUlimits } from '../../src/client/execflags.js';
import { parseCall } from '../../src/client/subrequests.js';
import { UserError } from '../../src/util/errors.js';

const fails = (f: () => unknown, message: string) => {
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toBe(message);
};

describe('--shm-size', () => {
  it('takes bytes or binary units, case-insensitive, b/ib optional', () => {
    expect(parseShmSize('1024')).toBe(1024);
    expect(parseShmSize(4096)).toBe(4096);
    expect(parseShmSize('128m')).toBe(128 * 1024 * 1024);
    expect(parseShmSize('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseShmSize('2kb')).toBe(2048);
    expect(parseShmSize('2KiB')).toBe(2048);
    expect(parseShmSize('64 MB')).toBe(64 * 1024 ** 2);
    expect(parseShmSize('7b')).toBe(7);
  });

  it('refuses what docker refuses', () => {
    fails(() => parseShmSize('m'), `invalid --shm-size "m": invalid size: 'm'`);
    fails(() => parseShmSize('-1m'), `invalid --shm-size "-1m": invalid size: '-1m'`);
    fails(() => parseShmSize('1mx'), `invalid --shm-size "1mx": invalid suffix: 'mx'`);
    fails(() => parseShmSize('1bb'), `invalid --shm-size "1bb": invalid suffix: 'bb'`);
  });
});

describe('--ulimit', () => {
  it('is name=soft[:hard]; hard defaults to soft; -1 is unlimited; the last of a name wins', () => {
    expect(parseUlimit('nofile=1024:2048')).toEqual({ name: 'nofile', soft: 1024, hard: 2048 });
    expect(parseUlimit('nproc=50')).toEqual({ name: 'nproc', soft: 50, hard: 50 });
    expect(parseUlimit('core=-1')).toEqual({ name: 'core', soft: -1, hard: -1 });
    expect(parseUlimit('stack=10:-1')).toEqual({ name: 'stack', soft: 10, hard: -1 });
    expect(parseUlimits(['nofile=1', 'nproc=2', 'nofile=3'])).toEqual([{ name: 'nofile', soft: 3, hard: 3 }, { name: 'nproc', soft: 2, hard: 2 }]);
  });

  it('refuses unknown names, bad numbers and soft above hard', () => {
    fails(() => parseUlimit('as=1'), 'invalid --ulimit "as=1": invalid ulimit type: as (one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)');
    fails(() => parseUlimit('nofile=a'), 'invalid --ulimit "nofile=a": invalid limit value "a"');
    fails(() => parseUlimit('nofile=1:2:3'), 'invalid --ulimit "nofile=1:2:3": too many limit values: can only have up to two, soft[:hard]');
    fails(() => parseUlimit('nofile=-1:10'), 'invalid --ulimit "nofile=-1:10": soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 10');
  });
});

describe('--add-host', () => {
  it('takes host:ip and host=ip, lists, brackets, host-gateway; lower-cased as BuildKit stores them', () => {
    expect(parseExtraHost('DB:10.0.0.5')).toEqual(['db:10.0.0.5']);
    expect(parseExtraHost('db=fd00::A')).toEqual(['db:fd00::a']);
    expect(parseExtraHost('v6:[::1]')).toEqual(['v6:::1']);
    expect(parseExtraHost('m=10.0.0.1,[fd00::1]')).toEqual(['m:10.0.0.1', 'm:fd00::1']);
    expect(parseExtraHost('gw:host-gateway')).toEqual(['gw:127.0.0.1']);
  });

  it('refuses entries without a name or an address', () => {
    for (const bad of ['db', ':10.0.0.1', 'db:', 'db=host', 'db:10.0.0.1,']) {
      fails(() => parseExtraHost(bad), `invalid --add-host "${bad}": expected host:ip or host=ip`);
    }
  });
});

describe('--network', () => {
  it('default is the sandbox (nothing set); none and host pass', () => {
    expect(parseExecFlags({ network: 'default' })).toEqual({});
    expect(parseExecFlags({ network: 'none', cgroupParent: 'ci', shmSize: '0' })).toEqual({ network: 'none', cgroupParent: 'ci' });
    fails(() => parseExecFlags({ network: 'sandbox2' }), 'invalid --network "sandbox2": network mode not supported (use default, none or host)');
  });
});

describe('--call', () => {
  it('is NAME[,format=json][,ignorestatus=BOOL]; lint is check', () => {
    expect(parseCall('outline')).toEqual({ name: 'outline' });
    expect(parseCall('targets,format=json')).toEqual({ name: 'targets', format: 'json' });
    expect(parseCall('lint,ignorestatus=true')).toEqual({ name: 'check', ignoreStatus: true });
    expect(parseCall('format=json,outline')).toEqual({ name: 'outline', format: 'json' });
  });

  it('refuses unknown methods and fields, two methods, and json for check', () => {
    fails(() => parseCall('describe'), 'invalid --call "describe": unknown method "describe" (use build, check, outline, targets)');
    fails(() => parseCall('outline,targets'), 'invalid --call "outline,targets": more than one method');
    fails(() => parseCall('format=json'), 'invalid --call "format=json": unknown method "" (use build, check, outline, targets)');
    fails(() => parseCall('check,format=json'), 'invalid --call "check,format=json": format=json is supported for outline and targets');
    fails(() => parseCall('check,ignorestatus=maybe'), 'invalid --call "check,ignorestatus=maybe": invalid ignorestatus value "maybe"');
  });
});
