// BuildKit's attestation storage (docs/attestations/attestation-storage.md): per image manifest, one more
// manifest in the index (platform unknown/unknown, annotated `vnd.docker.reference.type=attestation-manifest`
// and `vnd.docker.reference.digest=<image manifest>`) whose layers are in-toto statements, each naming the
// image manifest as its subject.
import type { Digest, Platform } from '../../solver/llb/ops.js';
import type { ContentStore } from '../content/store.js';
import { MediaType, type Descriptor, type Manifest } from '../image/types.js';
import { parseReference } from '../registry/reference.js';
import { refToPurl } from './provenance.js';

export const INTOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const INTOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
export const PREDICATE_TYPE_ANNOTATION = 'in-toto.io/predicate-type';
export const REFERENCE_TYPE = 'vnd.docker.reference.type';
export const REFERENCE_DIGEST = 'vnd.docker.reference.digest';
export const ATTESTATION_MANIFEST = 'attestation-manifest';
export const UNKNOWN_PLATFORM = { os: 'unknown', architecture: 'unknown' } as const;

/** A statement's predicate before the exporter names its subject. */
export interface Predicate {
  predicateType: string;
  predicate: unknown;
  /** The file name a local output writes it under (`provenance.json`, `sbom.spdx.json`). */
  path?: string;
}

export interface Statement extends Predicate {
  _type: string;
  subject: { name: string; digest: Record<string, string> }[];
}

/** The subjects BuildKit gives: a purl per image name with the platform, or `_` for an unnamed image. */
export function subjects(manifest: Descriptor, names: string[], platform: Platform): Statement['subject'] {
  const digest = { sha256: manifest.digest.slice('sha256:'.length) };
  const out = names.map((n) => ({ name: refToPurl(parseReference(n).toString(), platform), digest }));
  return out.length ? out : [{ name: '_', digest }];
}

export function statementOf(p: Predicate, subject: Statement['subject']): Statement {
  return { _type: INTOTO_STATEMENT_V01, predicateType: p.predicateType, subject, predicate: p.predicate };
}

/** Writes the statements and their manifest; returns the index entry for it. */
export async function writeAttestationManifest(
  store: ContentStore, image: Descriptor, platform: Platform, names: string[], predicates: Predicate[],
): Promise<Descriptor> {
  const layers: Descriptor[] = [];
  for (const p of predicates) {
    const statement = statementOf(p, subjects(image, names, platform));
    const w = await store.write(Buffer.from(JSON.stringify(statement)));
    layers.push({ mediaType: INTOTO_MEDIA_TYPE, digest: w.digest as Digest, size: w.size, annotations: { [PREDICATE_TYPE_ANNOTATION]: p.predicateType } });
  }
  // The config is there for registries that want one; readers ignore it.
  const config = { architecture: 'unknown', os: 'unknown', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } };
  const c = await store.write(Buffer.from(JSON.stringify(config)));
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: c.digest as Digest, size: c.size },
    layers,
  };
  const m = await store.write(Buffer.from(JSON.stringify(manifest, null, 2)));
  return {
    mediaType: MediaType.ociManifest, digest: m.digest as Digest, size: m.size,
    annotations: { [REFERENCE_DIGEST]: image.digest, [REFERENCE_TYPE]: ATTESTATION_MANIFEST },
    platform: { ...UNKNOWN_PLATFORM },
  };
}

/** Whether an index entry is an attestation manifest. */
export function isAttestationManifest(d: Descriptor): boolean {
  return d.annotations?.[REFERENCE_TYPE] === ATTESTATION_MANIFEST;
}
