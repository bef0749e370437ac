// Git addresses as BuildKit parses them: which strings are git sources, the fragment and query forms,
// and credentials kept out of messages and the state directory.
import { describe, it, expect } from 'vitest';
import { isGitAddress, parseGitAddress, redactRemote, stripCredentials } from '../../src/util/gitaddress.js';

describe('git addresses', () => {
  it('tells git addresses from other URLs and paths', () => {
    for (const s of ['https://h/o/r.git', 'https://h/o/r.git#v1:docs', 'git://h/r', 'ssh://git@h/o/r', 'git@github.com:o/r.git', 'user@h:r']) {
      expect(isGitAddress(s), s).toBe(true);
    }
    for (const s of ['https://h/o/r', 'https://h/file.tar.gz', './dir', 'github.com/o/r', '/abs/path']) expect(isGitAddress(s), s).toBe(false);
    expect(isGitAddress('github.com/o/r', { bareGithub: true })).toBe(true);
  });

  it('splits the fragment: ref, subdir, both, neither', () => {
    expect(parseGitAddress('https://h/r.git')).toEqual({ remote: 'https://h/r.git' });
    expect(parseGitAddress('https://h/r.git#main')).toEqual({ remote: 'https://h/r.git', ref: 'main' });
    expect(parseGitAddress('https://h/r.git#v1:a/b/')).toEqual({ remote: 'https://h/r.git', ref: 'v1', subdir: 'a/b' });
    expect(parseGitAddress('git@h:o/r.git#:docs')).toEqual({ remote: 'git@h:o/r.git', subdir: 'docs' });
    expect(parseGitAddress('github.com/o/r#v2')).toEqual({ remote: 'https://github.com/o/r', ref: 'v2' });
    // A subdirectory cannot climb out of the repository.
    expect(parseGitAddress('https://h/r.git#v1:../../etc')).toEqual({ remote: 'https://h/r.git', ref: 'v1', subdir: 'etc' });
  });

  it('takes the query form', () => {
    expect(parseGitAddress('https://h/r.git?ref=v1&subdir=app')).toEqual({ remote: 'https://h/r.git', ref: 'v1', subdir: 'app' });
    expect(parseGitAddress('https://h/r.git?tag=v1')).toEqual({ remote: 'https://h/r.git', ref: 'refs/tags/v1' });
    expect(parseGitAddress('https://h/r.git?branch=dev&checksum=abc')).toEqual({ remote: 'https://h/r.git', ref: 'refs/heads/dev', checksum: 'abc' });
    expect(() => parseGitAddress('https://h/r.git?ref=v1#v2')).toThrow(/cannot be combined/);
    expect(() => parseGitAddress('https://h/r.git?ref=v1&nope=1')).toThrow(/unexpected query key "nope"/);
  });

  it('refuses refs that git would take as options', () => {
    expect(() => parseGitAddress('https://h/r.git#--upload-pack=x')).toThrow(/invalid git reference/);
  });

  it('masks credentials in messages and strips them for what is kept', () => {
    expect(redactRemote('https://u:p@h/r.git')).toBe('https://u:xxxxx@h/r.git');
    expect(redactRemote('https://TOKEN@h/r.git')).toBe('https://xxxxx@h/r.git');
    expect(redactRemote('ssh://git@h/r.git')).toBe('ssh://git@h/r.git');
    expect(stripCredentials('https://u:p@h/r.git')).toBe('https://h/r.git');
    expect(stripCredentials('ssh://git@h/r.git')).toBe('ssh://git@h/r.git');
    expect(stripCredentials('git@h:r.git')).toBe('git@h:r.git');
  });
});
