// SPDX 2.3 JSON documents from what the scanner found, the predicate of BuildKit's SBOM attestations
// (`https://spdx.dev/Document`). Written here: npm has libraries for SPDX license expressions but none kept
// for SPDX 2.3 documents, and the document is a small, fixed JSON shape.
import { createHash, randomUUID } from 'node:crypto';
import type { FoundPackage, ScanResult } from './scan.js';

export const SPDX_PREDICATE = 'https://spdx.dev/Document';

export interface SpdxPackage {
  name: string;
  SPDXID: string;
  versionInfo: string;
  supplier: string;
  downloadLocation: string;
  filesAnalyzed: false;
  sourceInfo: string;
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  externalRefs?: { referenceCategory: string; referenceType: string; referenceLocator: string }[];
  primaryPackagePurpose?: string;
}

export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { licenseListVersion?: string; creators: string[]; created: string };
  packages: SpdxPackage[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

/** SPDX ids allow letters, digits, `.` and `-`. */
const idPart = (s: string) => s.replace(/[^A-Za-z0-9.-]/g, '-');

/** A license string as an SPDX expression when it looks like one; otherwise NOASSERTION. */
function license(l: string | undefined): string {
  if (!l) return 'NOASSERTION';
  return /^[A-Za-z0-9.+-]+(?:\s+(?:AND|OR|WITH)\s+[A-Za-z0-9.+-]+)*$/.test(l.trim()) ? l.trim() : 'NOASSERTION';
}

export function spdxDocument(scan: ScanResult, opts: { name: string; created: Date; tool: string; deterministic?: boolean }): SpdxDocument {
  const seen = new Set<string>();
  const packages: SpdxPackage[] = [];
  const rootId = 'SPDXRef-DocumentRoot-Image';
  const relationships: SpdxDocument['relationships'] = [];
  const add = (p: FoundPackage) => {
    const hash = createHash('sha256').update(`${p.type}\0${p.name}\0${p.version}\0${p.location}`).digest('hex').slice(0, 16);
    const id = `SPDXRef-Package-${idPart(p.type)}-${idPart(p.name)}-${hash}`;
    if (seen.has(id)) return;
    seen.add(id);
    packages.push({
      name: p.name,
      SPDXID: id,
      versionInfo: p.version,
      supplier: p.supplier ?? 'NOASSERTION',
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      sourceInfo: `acquired package info from ${p.source}: ${p.location}`,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: license(p.license),
      copyrightText: 'NOASSERTION',
      ...(p.purl ? { externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: p.purl }] } : {}),
    });
    relationships.push({ spdxElementId: rootId, relationshipType: 'CONTAINS', relatedSpdxElement: id });
  };
  for (const p of scan.packages) add(p);
  const created = opts.created.toISOString().replace(/\.\d{3}Z$/, 'Z');
  // With SOURCE_DATE_EPOCH the namespace is derived from the content, so equal builds give equal documents.
  const ns = opts.deterministic
    ? createHash('sha256').update(JSON.stringify([opts.name, packages])).digest('hex').slice(0, 32)
    : randomUUID();
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: opts.name,
    documentNamespace: `https://llb-builder.invalid/spdx/${encodeURIComponent(opts.name)}-${ns}`,
    creationInfo: { creators: [`Tool: ${opts.tool}`, 'Organization: llb-builder'], created },
    packages: [
      {
        name: opts.name, SPDXID: rootId, versionInfo: '', supplier: 'NOASSERTION', downloadLocation: 'NOASSERTION', filesAnalyzed: false,
        sourceInfo: 'the scanned filesystem', licenseConcluded: 'NOASSERTION', licenseDeclared: 'NOASSERTION', copyrightText: 'NOASSERTION',
        primaryPackagePurpose: 'CONTAINER',
      },
      ...packages,
    ],
    relationships: [{ spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: rootId }, ...relationships],
  };
}
