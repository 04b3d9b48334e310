import { isAlias, isMap, isScalar, isSeq, parseAllDocuments, type Document, type Node, type YAMLMap } from 'yaml';
import { IsthmusError } from '../core/errors.js';
import {
  accessLogAnnotation, accessLogTargets, upgradeToHttp2Annotation, podFacts, proxyEnv, serviceFacts, sidecarContainer, sidecarName, sidecarVolumes, volumeNames, type InjectOptions, type ServiceFacts,
} from './sidecar-spec.js';
import {
  addToMap, appendToSeq, applyEdits, isBlockMap, isBlockSeq, pairOf, prependToSeq, removeItem, removePair, withFinalNewline, type Edit,
} from './yaml-splice.js';

/*
 * `isthmus inject` and `isthmus uninject` over a multi-document YAML text. Each workload's pod
 * spec is found with the Document API and edited as text (yaml-splice.ts), so everything else
 * in the file stays as the user wrote it and `uninject` gives the original back byte for byte.
 * Documents that hold no workload are left untouched; a workload that already has the sidecar
 * is skipped by inject, one without it by uninject.
 */

/** Where each workload kind keeps its pod template: the path to the pod's metadata and spec. */
const podPaths: Record<string, readonly string[]> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface InjectReport {
  text: string;
  /** "Deployment demo/ledger" for each workload changed. */
  changed: string[];
  /** Workloads left as they were: already injected (inject) or without a sidecar (uninject). */
  unchanged: string[];
}

interface Workload {
  /** "Deployment demo/ledger (document 2, line 5)". */
  label: string;
  name: string;
  namespace: string | undefined;
  pod: YAMLMap<unknown, unknown>;
  podSpec: YAMLMap<unknown, unknown>;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

function unsupported(where: string, what: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_INJECT_UNSUPPORTED', `${where}: ${what}`);
}

/** The plain-scalar value of `key` in a mapping node, as a string. */
function scalarAt(map: YAMLMap<unknown, unknown>, key: string): string | undefined {
  const value = pairOf(map, key)?.value;
  return isScalar(value) && typeof value.value === 'string' ? value.value : undefined;
}

/** A block mapping one step down, refusing anchors' aliases (editing one would change every document that uses it). */
function childMap(map: YAMLMap<unknown, unknown>, key: string, where: string): YAMLMap<unknown, unknown> | undefined {
  const value = pairOf(map, key)?.value;
  if (value === undefined || value === null) return undefined;
  if (isAlias(value)) throw unsupported(where, `${key} is an alias (*${value.source}); write it out in this workload`);
  if (!isMap(value)) return undefined;
  if (value.flow) throw unsupported(where, `${key} is a flow mapping ({...}); write it in block style`);
  return value;
}

function parse(text: string, source: string): Document.Parsed[] {
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents)) return []; // an empty stream
  documents.forEach((document, i) => {
    const error = document.errors[0];
    if (error) {
      const line = error.linePos?.[0].line ?? lineOf(text, error.pos[0]);
      throw new IsthmusError('ISTHMUS_ERR_INJECT_YAML_INVALID', `${source}: document ${i + 1}, line ${line}: ${error.message.split('\n')[0]}`, { cause: error });
    }
  });
  return documents;
}

/**
 * Every workload of the text, in order, and the Services beside them (whose ports tell which
 * port callers name for each container port); List kinds (kind: List, DeploymentList, ...) are walked into.
 */
function workloads(text: string, source: string, services: ServiceFacts[] = []): Workload[] {
  const found: Workload[] = [];
  const visit = (node: unknown, document: number) => {
    if (!isMap(node)) return;
    const kind = scalarAt(node, 'kind') ?? '';
    const items = pairOf(node, 'items')?.value;
    if (kind.endsWith('List') && isSeq(items)) {
      for (const item of items.items) visit(item, document);
      return;
    }
    if (kind === 'Service') {
      const facts = serviceFacts(node.toJSON());
      if (facts) services.push(facts);
      return;
    }
    const path = podPaths[kind];
    if (path === undefined) return;
    const metadata = isMap(pairOf(node, 'metadata')?.value) ? pairOf(node, 'metadata')?.value as YAMLMap<unknown, unknown> : undefined;
    const name = (metadata && scalarAt(metadata, 'name')) ?? '';
    const namespace = metadata && scalarAt(metadata, 'namespace');
    const label = `${kind} ${namespace ? `${namespace}/` : ''}${name} (${source} document ${document}, line ${lineOf(text, node.range?.[0] ?? 0)})`;
    let pod: YAMLMap<unknown, unknown> | undefined = node;
    for (const step of path) pod = pod && childMap(pod, step, label);
    const podSpec = pod && childMap(pod, 'spec', label);
    if (!pod || !podSpec) throw unsupported(label, `no pod spec at ${[...path, 'spec'].join('.')}`);
    found.push({ label, name, namespace, pod, podSpec });
  };
  parse(text, source).forEach((document, i) => visit(document.contents, i + 1));
  return found;
}

/** A block list under `key`, or undefined when the key is absent; anything else cannot be edited line by line. */
function blockList(map: YAMLMap<unknown, unknown>, key: string, where: string): Node[] | undefined {
  const value = pairOf(map, key)?.value;
  if (value === undefined) return undefined;
  if (isAlias(value)) throw unsupported(where, `${key} is an alias (*${value.source}); write it out in this workload`);
  if (!isBlockSeq(value)) throw unsupported(where, `${key} must be a block list (- item per line) for inject to edit it`);
  return value.items as Node[];
}

const nameOf = (item: Node) => (isMap(item) ? scalarAt(item, 'name') : undefined);
const hasSidecar = (w: Workload) => (blockList(w.podSpec, 'initContainers', w.label) ?? []).some((c) => nameOf(c) === sidecarName);

function injectEdits(text: string, w: Workload, options: InjectOptions, services: readonly ServiceFacts[]): Edit[] {
  const podJs: unknown = w.pod.toJSON();
  const podObj = (typeof podJs === 'object' && podJs !== null ? podJs : {}) as { metadata?: { labels?: unknown; annotations?: unknown }; spec?: unknown };
  const facts = podFacts(w.name, podObj.metadata?.labels, podObj.spec, services, w.namespace);
  const annotations = podObj.metadata?.annotations;
  const accessLog = typeof annotations === 'object' && annotations !== null ? (annotations as Record<string, unknown>)[accessLogAnnotation] : undefined;
  if (accessLog !== undefined) {
    if (typeof accessLog !== 'string' || !accessLogTargets.includes(accessLog)) {
      throw unsupported(w.label, `the pod annotation ${accessLogAnnotation} is ${JSON.stringify(accessLog)}: give ${accessLogTargets.join(' or ')} (the sidecar container's log; its root file system is read-only)`);
    }
    facts.accessLog = accessLog;
  }
  const upgrade = typeof annotations === 'object' && annotations !== null ? (annotations as Record<string, unknown>)[upgradeToHttp2Annotation] : undefined;
  if (upgrade !== undefined) {
    // Annotation values are strings; a YAML boolean is what people write by mistake, and is read the same.
    if (upgrade !== 'true' && upgrade !== 'false' && typeof upgrade !== 'boolean') {
      throw unsupported(w.label, `the pod annotation ${upgradeToHttp2Annotation} is ${JSON.stringify(upgrade)}: give "true" or "false"`);
    }
    if (upgrade === 'true' || upgrade === true) facts.upgradeToHttp2 = true;
  }
  const edits: Edit[] = [];
  const { podSpec, label } = w;

  const initContainers = pairOf(podSpec, 'initContainers')?.value;
  const sidecar = sidecarContainer(facts, options);
  if (blockList(podSpec, 'initContainers', label)) edits.push(prependToSeq(text, initContainers as never, [sidecar]));
  else edits.push(addToMap(text, podSpec, 'initContainers', [sidecar]));

  const containers = blockList(podSpec, 'containers', label);
  if (!containers) throw unsupported(label, 'no containers');
  const env = proxyEnv();
  for (const container of containers) {
    if (!isBlockMap(container)) throw unsupported(label, 'a container must be a block mapping');
    const where = `${label} container ${nameOf(container) ?? '?'}`;
    const existing = blockList(container, 'env', where);
    const clash = (existing ?? []).map(nameOf).find((n) => env.some((e) => e.name === n));
    if (clash) throw unsupported(where, `sets ${clash} already; the sidecar is the app's proxy: remove it (or inject this workload by hand)`);
    if (existing) edits.push(appendToSeq(text, pairOf(container, 'env')?.value as never, env));
    else edits.push(addToMap(text, container, 'env', env));
  }

  const volumes = blockList(podSpec, 'volumes', label);
  const taken = (volumes ?? []).map(nameOf).find((n) => (volumeNames as readonly (string | undefined)[]).includes(n));
  if (taken) throw unsupported(label, `already has a volume named ${taken}`);
  if (volumes) edits.push(appendToSeq(text, pairOf(podSpec, 'volumes')?.value as never, sidecarVolumes(options)));
  else edits.push(addToMap(text, podSpec, 'volumes', sidecarVolumes(options)));
  return edits;
}

/** Removes what injectEdits added: our items, and a key whose list then holds nothing else. */
function uninjectEdits(text: string, w: Workload): Edit[] {
  const edits: Edit[] = [];
  const removeFrom = (map: YAMLMap<unknown, unknown>, key: string, ours: (item: Node) => boolean, where: string) => {
    const items = blockList(map, key, where);
    if (!items) return;
    const mine = items.filter(ours);
    const pair = pairOf(map, key);
    if (mine.length === items.length && pair) edits.push(removePair(text, pair));
    else edits.push(...mine.map((item) => removeItem(text, item)));
  };
  const { podSpec, label } = w;
  removeFrom(podSpec, 'initContainers', (c) => nameOf(c) === sidecarName, label);
  const env = proxyEnv();
  for (const container of blockList(podSpec, 'containers', label) ?? []) {
    if (!isMap(container)) continue;
    removeFrom(container, 'env', (e) => isMap(e) && env.some((ours) => ours.name === nameOf(e) && scalarAt(e, 'value') === ours.value), label);
  }
  removeFrom(podSpec, 'volumes', (v) => (volumeNames as readonly (string | undefined)[]).includes(nameOf(v)), label);
  return edits;
}

/** Parses the result again: an edit that broke the YAML is a bug here, never the user's problem. */
function checked(text: string, source: string): string {
  parse(text, `${source} after the edit (a bug in isthmus inject)`);
  return text;
}

export function injectText(text: string, source: string, options: InjectOptions): InjectReport {
  return edited(text, source, (w) => !hasSidecar(w), (lined, w, services) => injectEdits(lined, w, options, services));
}

export function uninjectText(text: string, source: string): InjectReport {
  return edited(text, source, hasSidecar, uninjectEdits);
}

/** Applies `edits` to every workload `wanted` picks; the others are reported unchanged. */
function edited(text: string, source: string, wanted: (w: Workload) => boolean, edits: (text: string, w: Workload, services: readonly ServiceFacts[]) => Edit[]): InjectReport {
  const changed: string[] = [];
  const unchanged: string[] = [];
  const result = withFinalNewline(text, (lined) => {
    const all: Edit[] = [];
    const services: ServiceFacts[] = [];
    for (const w of workloads(lined, source, services)) {
      if (!wanted(w)) unchanged.push(w.label);
      else {
        all.push(...edits(lined, w, services));
        changed.push(w.label);
      }
    }
    return all.length === 0 ? lined : checked(applyEdits(lined, all), source);
  });
  return { text: result, changed, unchanged };
}
