// Where BuildKit's conformance corpus (Dockerfile reference, build-check rules, parser cases, shell-lexer
// vectors) is read from: $BUILDER_CONFORMANCE_DIR, else ../shared/conformance/buildkit beside the checkout.
// The corpus is not part of the repository; on a clone without it, the suites that read it are reported
// as not run, with the reason in their name, and the rest of the suite still passes.
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from './cli.js';

const candidate = process.env.BUILDER_CONFORMANCE_DIR
  ? path.resolve(process.env.BUILDER_CONFORMANCE_DIR)
  : path.resolve(projectRoot, '../shared/conformance/buildkit');

/** The corpus directory, or undefined when it is not there. */
export const conformanceRoot: string | undefined = fs.existsSync(path.join(candidate, 'parser')) ? candidate : undefined;

/** Why the corpus suites did not run (for their names), or '' when they do. */
export const conformanceMissing = conformanceRoot
  ? ''
  : ` (NOT RUN: BuildKit conformance corpus not found at ${candidate}; set BUILDER_CONFORMANCE_DIR)`;
