// ADD <url> against a hostile server: redirects are bounded and stay on http(s); a body over the size
// limit is refused, whether it announces its length or not.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fetchHttpSource } from '../../src/worker/http.js';

let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/loop') return res.writeHead(302, { location: '/loop' }).end();
    if (url === '/to-file') return res.writeHead(301, { location: 'file:///etc/shadow' }).end();
    if (url === '/hop') return res.writeHead(307, { location: '/ok' }).end();
    if (url === '/ok') return res.end('fine');
    if (url === '/big-declared') return res.writeHead(200, { 'content-length': '2000' }).end('x'.repeat(2000));
    if (url === '/big-chunked') {
      res.writeHead(200);
      for (let i = 0; i < 20; i++) res.write('y'.repeat(100));
      return res.end();
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const limits = { maxBytes: 1000, maxRedirects: 3 };
const dir = () => fs.mkdtemp(path.join(os.tmpdir(), 'builder-http-'));

describe('ADD from a URL', () => {
  it('follows a few redirects to the file', async () => {
    const d = await dir();
    await fetchHttpSource({ type: 'http', url: `${base}/hop`, filename: 'f' }, d, undefined, limits);
    expect(await fs.readFile(path.join(d, 'f'), 'utf8')).toBe('fine');
  });

  it('stops a redirect loop', async () => {
    await expect(fetchHttpSource({ type: 'http', url: `${base}/loop`, filename: 'f' }, await dir(), undefined, limits))
      .rejects.toThrow(/more than 3 redirects/);
  });

  it('never follows a redirect to file:', async () => {
    await expect(fetchHttpSource({ type: 'http', url: `${base}/to-file`, filename: 'f' }, await dir(), undefined, limits))
      .rejects.toThrow('refusing to load file:///etc/shadow: only http and https URLs are allowed');
  });

  it('refuses bodies over the size limit, declared or streamed', async () => {
    for (const p of ['/big-declared', '/big-chunked']) {
      await expect(fetchHttpSource({ type: 'http', url: `${base}${p}`, filename: 'f' }, await dir(), undefined, limits), p)
        .rejects.toThrow(/is larger than the limit for ADD \(1000 bytes\)/);
    }
  });
});
