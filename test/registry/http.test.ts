// The registry client's HTTP layer against local servers: redirects as fetch follows them, credentials kept
// from other origins, connections returned to the pool (an unread response must not hold the process).
import http from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest } from '../../src/registry/http.js';

interface Seen { method: string; url: string; authorization?: string; body: string }

async function listen(handler: http.RequestListener): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer(handler);
  // Only the client's connections count below as holding the process.
  server.on('connection', (socket) => socket.unref());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

describe('registry HTTP', () => {
  const seen: Seen[] = [];
  let registry: { server: http.Server; origin: string };
  let storage: { server: http.Server; origin: string };

  beforeAll(async () => {
    storage = await listen((req, res) => {
      seen.push({ method: req.method!, url: `storage${req.url}`, authorization: req.headers.authorization, body: '' });
      res.end('blob bytes');
    });
    registry = await listen((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, authorization: req.headers.authorization, body });
        if (req.url === '/blob') res.writeHead(307, { location: `${storage.origin}/data` }).end();
        else if (req.url === '/moved') res.writeHead(308, { location: '/target' }).end();
        else if (req.url === '/after-post') res.writeHead(303, { location: '/target' }).end();
        else if (req.url === '/big') res.writeHead(200, { 'content-length': String(1 << 20) }).end(Buffer.alloc(1 << 20));
        else res.writeHead(200, { 'docker-content-digest': 'sha256:abc', 'content-length': '4' }).end(req.method === 'HEAD' ? undefined : 'done');
      });
    });
  });
  afterAll(async () => {
    await new Promise((r) => registry.server.close(r));
    await new Promise((r) => storage.server.close(r));
  });

  it('follows a redirect to storage without the registry credentials', async () => {
    seen.length = 0;
    const res = await httpRequest(`${registry.origin}/blob`, { method: 'GET', headers: { authorization: 'Bearer secret' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('blob bytes');
    expect(seen).toEqual([
      { method: 'GET', url: '/blob', authorization: 'Bearer secret', body: '' },
      { method: 'GET', url: 'storage/data', authorization: undefined, body: '' },
    ]);
  });

  it('repeats a request with bytes on 308, turns a POST into a GET on 303, and does not replay a stream', async () => {
    seen.length = 0;
    const put = await httpRequest(`${registry.origin}/moved`, { method: 'PUT', headers: { authorization: 'Bearer secret' }, body: Buffer.from('manifest') });
    expect(await put.text()).toBe('done');
    expect(seen.map((s) => [s.method, s.url, s.authorization, s.body])).toEqual([
      ['PUT', '/moved', 'Bearer secret', 'manifest'],
      ['PUT', '/target', 'Bearer secret', 'manifest'],
    ]);
    seen.length = 0;
    const post = await httpRequest(`${registry.origin}/after-post`, { method: 'POST', body: Buffer.from('x') });
    await post.discard();
    expect(seen.map((s) => [s.method, s.url, s.body])).toEqual([['POST', '/after-post', 'x'], ['GET', '/target', '']]);
    seen.length = 0;
    const streamed = await httpRequest(`${registry.origin}/moved`, { method: 'PATCH', body: Readable.from([Buffer.from('chunk')]) });
    expect(streamed.status).toBe(308);
    await streamed.discard();
    expect(seen.map((s) => s.url)).toEqual(['/moved']);
  });

  it('gives HEAD headers, and returns discarded responses to the pool', async () => {
    // A connection in use keeps the process alive; an idle pooled one does not.
    const holding = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before0 = holding();
    const head = await httpRequest(`${registry.origin}/manifest`, { method: 'HEAD' });
    expect(head.headers.get('Docker-Content-Digest')).toBe('sha256:abc');
    expect(holding()).toBe(before0 + 1);
    await head.discard();
    const big = await httpRequest(`${registry.origin}/big`, { method: 'GET' });
    await big.body.cancel();
    // A large unread body closes its connection instead, which takes a turn of the event loop or two.
    for (let i = 0; i < 100 && holding() > before0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(holding()).toBe(before0);
    // The keep-alive connection of the HEAD serves the next request.
    const before = seen.length;
    const again = await httpRequest(`${registry.origin}/manifest`, { method: 'GET' });
    expect(await again.text()).toBe('done');
    expect(seen.length).toBe(before + 1);
  });
});
