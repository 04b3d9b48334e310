import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Value } from '../../src/core/typebox.js';
import { checkCustomResource, crdValidators } from './crd-schema.js';
import { KindClusterSchema, KustomizationSchema } from './kind-cluster-schema.js';
import { checkAgainstOpenApi } from './kubernetes-schema.js';

/*
 * Loads the YAML under deploy/ and kind-configs/ and validates each document against the schema
 * of what it is: a Kubernetes API object against the OpenAPI definitions (kubernetes-models), a
 * custom resource against its CRD, a kind cluster config and a kustomization.yaml against their
 * tools' shapes. A document that is none of these is a problem too.
 */

export const root = fileURLToPath(new URL('../..', import.meta.url));

export type Obj = Record<string, unknown>;

export interface Manifest {
  file: string;
  /** 1-based index of the document in its file. */
  index: number;
  doc: Obj;
}

export function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(entry.name) ? [path] : [];
  }).sort();
}

export interface Loaded {
  manifests: Manifest[];
  problems: string[];
}

/** Every document of the texts, by file name (relative to the repository when a path). */
export function parseManifests(texts: { file: string; text: string }[]): Loaded {
  const manifests: Manifest[] = [];
  const problems: string[] = [];
  for (const { file, text } of texts) {
    for (const [i, document] of parseAllDocuments(text).entries()) {
      for (const error of document.errors) problems.push(`${file} document ${i + 1}: ${error.message}`);
      const doc: unknown = document.toJS();
      if (doc === null || doc === undefined) continue; // a trailing `---` or a comment-only document
      if (!isObj(doc)) problems.push(`${file} document ${i + 1}: not a mapping`);
      else manifests.push({ file, index: i + 1, doc });
    }
  }
  return { manifests, problems };
}

export function loadManifests(files: string[]): Loaded {
  return parseManifests(files.map((path) => ({ file: relative(root, path), text: readFileSync(path, 'utf8') })));
}

export const isKindCluster = (doc: Obj) => String(doc.apiVersion).startsWith('kind.x-k8s.io/');
export const isKustomization = (doc: Obj) => String(doc.apiVersion).startsWith('kustomize.config.k8s.io/');
export const isCrd = (doc: Obj) => doc.kind === 'CustomResourceDefinition';
const where = (m: Manifest) => `${m.file} document ${m.index} (${String(m.doc.kind)} ${String(isObj(m.doc.metadata) ? m.doc.metadata.name : m.doc.name)})`;

function typeboxProblems(schema: Parameters<typeof Value.Errors>[0], m: Manifest): string[] {
  return [...Value.Errors(schema, m.doc)].map((e) => `${where(m)}: ${e.path || '/'} ${e.message}`);
}

/**
 * Problems of every document against its schema. `crds` are the CRDs custom resources are
 * checked against (those among `manifests` are always included).
 */
export async function schemaProblems(manifests: Manifest[], crds: Obj[] = []): Promise<string[]> {
  const validators = crdValidators([...crds, ...manifests.filter((m) => isCrd(m.doc)).map((m) => m.doc)]);
  const problems: string[] = [];
  const apiObjects: Manifest[] = [];
  for (const m of manifests) {
    if (isKindCluster(m.doc)) problems.push(...typeboxProblems(KindClusterSchema, m));
    else if (isKustomization(m.doc)) problems.push(...typeboxProblems(KustomizationSchema, m));
    else {
      const custom = checkCustomResource(validators, m.doc);
      if (custom) problems.push(...custom.map((p) => `${where(m)}: ${p}`));
      else apiObjects.push(m);
    }
  }
  problems.push(...await checkAgainstOpenApi(apiObjects.map((m) => ({ source: where(m), doc: m.doc }))));
  return problems;
}
