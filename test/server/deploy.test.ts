// deploy/: the Dockerfile that builds builder's own image passes the build checks (with the local busybox
// standing in for the Node.js base image; deploy-image.test.ts builds and runs the image), and the
// Kubernetes manifest runs the serve flags that exist.
import { describe, it, expect, inject } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { projectRoot, runCli } from '../helpers/cli.js';

const registry = inject('registry');

describe('deploy/', () => {
  it('deploy/Dockerfile passes --call check', async () => {
    const res = await runCli(['build', '--call', 'check', '--build-arg', `NODE_IMAGE=${registry}/busybox:1.35`, '-f', 'deploy/Dockerfile', '.'], { cwd: projectRoot });
    expect(res.code, res.stderr + res.stdout).toBe(0);
    expect(res.stdout).toContain('Check complete, no warnings found.');
  });

  it('deploy/k8s/builder.yaml uses only flags builder serve has, and the TLS files its image expects', async () => {
    const yaml = await fs.readFile(path.join(projectRoot, 'deploy/k8s/builder.yaml'), 'utf8');
    const help = (await runCli(['serve', '--help'])).stdout;
    const flags = [...yaml.matchAll(/^\s+#?\s*- (--[a-z-]+)=/gm)].map((m) => m[1]);
    expect(flags.length).toBeGreaterThan(5);
    for (const f of flags) expect(help, f).toContain(`  ${f} `);
    const dockerfile = await fs.readFile(path.join(projectRoot, 'deploy/Dockerfile'), 'utf8');
    for (const file of ['/etc/builder/tls/ca.crt', '/etc/builder/tls/tls.crt', '/etc/builder/tls/tls.key']) {
      expect(yaml).toContain(file);
      expect(dockerfile).toContain(file);
    }
  });
});
