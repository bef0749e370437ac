// Docker's output conventions: go-units sizes and ages, tabwriter tables, Go templates.
import { describe, expect, it } from 'vitest';
import { compileTemplate, formatRows, goRFC3339, humanDuration, humanSize, tabwrite } from '../../src/image/format.js';

describe('Docker output formats', () => {
  it('sizes as go-units HumanSizeWithPrecision(3)', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(142)).toBe('142B');
    expect(humanSize(1031880)).toBe('1.03MB');
    expect(humanSize(12345)).toBe('12.3kB');
    expect(humanSize(2_000_000_000)).toBe('2GB');
  });

  it('ages as go-units HumanDuration', () => {
    expect(humanDuration(500)).toBe('Less than a second');
    expect(humanDuration(1000)).toBe('1 second');
    expect(humanDuration(59_000)).toBe('59 seconds');
    expect(humanDuration(61_000)).toBe('About a minute');
    expect(humanDuration(30 * 60_000)).toBe('30 minutes');
    expect(humanDuration(3_600_000)).toBe('About an hour');
    expect(humanDuration(5 * 3_600_000)).toBe('5 hours');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
    expect(humanDuration(20 * 86_400_000)).toBe('2 weeks');
    expect(humanDuration(90 * 86_400_000)).toBe('3 months');
    expect(humanDuration(3 * 365 * 86_400_000)).toBe('3 years');
  });

  it('times as Go marshals them (RFC3339Nano)', () => {
    expect(goRFC3339('2026-12-03T06:17:33.870Z')).toBe('2026-12-03T06:17:33.87Z');
    expect(goRFC3339('2026-12-03T06:17:33.000Z')).toBe('2026-12-03T06:17:33Z');
    expect(goRFC3339('2024-01-01T00:00:00Z')).toBe('2024-01-01T00:00:00Z');
  });

  it('tables as Docker\'s tabwriter (minwidth 10, padding 3, last cell unpadded)', () => {
    expect(tabwrite([['REPOSITORY', 'TAG', 'SIZE'], ['app', '1', '1MB']])).toBe('REPOSITORY   TAG       SIZE\napp          1         1MB\n');
  });

  it('Go templates: fields, json, range, if/else, join, index', () => {
    const data = { Id: 'x', RepoTags: ['a:1', 'b:2'], Config: { Cmd: ['cat', '/f'], Labels: { k: 'v' }, Env: null } };
    expect(compileTemplate('{{.Id}} {{.Config.Cmd}} {{json .RepoTags}}')(data)).toBe('x [cat /f] ["a:1","b:2"]');
    expect(compileTemplate('{{range .RepoTags}}<{{.}}>{{end}}')(data)).toBe('<a:1><b:2>');
    expect(compileTemplate('{{if .Config.Env}}y{{else}}n{{end}} {{join .RepoTags ","}} {{index .Config.Labels "k"}}')(data)).toBe('n a:1,b:2 v');
    expect(compileTemplate('{{.Config.Labels}}')(data)).toBe('map[k:v]');
    expect(() => compileTemplate('{{.Nope}}')(data)).toThrow(/can't evaluate field Nope/);
  });

  it('json rows have their keys sorted; table TEMPLATE makes the header from the fields', () => {
    expect(formatRows([{ b: 1, a: 2 }], 'json', '', {})).toBe('{"a":2,"b":1}\n');
    expect(formatRows([{ ID: 'abc', Tag: '1' }], 'table {{.ID}}\t{{.Tag}}', '', { ID: 'IMAGE ID' })).toBe('IMAGE ID   TAG\nabc        1\n');
  });
});
