import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { injectText, uninjectText } from '../src/inject/inject.js';
import { defaultImage, defaultTokenAudience } from '../src/inject/sidecar-spec.js';
import { isthmus } from './helpers/cli.js';
import { isCrd, loadManifests, parseManifests, root, schemaProblems, yamlFiles } from './helpers/manifests.js';

/*
 * `isthmus inject` on manifests shaped like real ones (test/fixtures/inject/: several documents,
 * comments, init containers, existing env, anchors, a List, no final newline) and on the sample
 * app of deploy/: the round trip is exact, and what inject writes is valid Kubernetes.
 */

const options = { image: defaultImage, tokenAudience: defaultTokenAudience };
const fixtures = yamlFiles(join(root, 'test/fixtures/inject')).map((path) => ({ file: path.slice(root.length), text: readFileSync(path, 'utf8') }));
const sampleApp = yamlFiles(join(root, 'deploy/multi-cluster/sample-app')).filter((p) => !p.endsWith('kustomization.yaml'))
  .map((path) => readFileSync(path, 'utf8')).join('---\n');
const crds = loadManifests(yamlFiles(join(root, 'deploy/multi-cluster/crds'))).manifests.filter((m) => isCrd(m.doc)).map((m) => m.doc);

/** How many workloads each fixture holds: inject must find every one, in Lists and CronJobs too. */
const workloadCount: Record<string, number> = {
  'test/fixtures/inject/anchors.yaml': 2,
  'test/fixtures/inject/no-final-newline.yaml': 1,
  'test/fixtures/inject/platform.yaml': 2,
  'test/fixtures/inject/shop.yaml': 3,
};

describe('inject and uninject on real-world-shaped manifests', () => {
  it('covers every fixture', () => {
    expect(fixtures.map((f) => f.file).sort()).toEqual(Object.keys(workloadCount).sort());
  });

  it.each(fixtures)('$file: uninject(inject(x)) is x byte for byte; inject is idempotent; uninject of x is x', ({ file, text }) => {
    const injected = injectText(text, file, options);
    expect(injected.changed).toHaveLength(workloadCount[file] ?? -1);
    expect(injected.text).not.toBe(text);
    expect(uninjectText(injected.text, file).text).toBe(text);
    expect(injectText(injected.text, file, options).text).toBe(injected.text);
    expect(uninjectText(text, file).text).toBe(text);
  });

  it.each(fixtures)('$file: every comment of the input is still in the injected output, in order', ({ file, text }) => {
    const comments = text.split('\n').filter((l) => l.includes('#')).map((l) => l.slice(l.indexOf('#')));
    const injected = injectText(text, file, options).text;
    let from = 0;
    for (const comment of comments) {
      const at = injected.indexOf(comment, from);
      expect(at, comment).toBeGreaterThanOrEqual(0);
      from = at + comment.length;
    }
  });

  it('the injected fixtures and the injected sample app validate against the Kubernetes schemas', async () => {
    const texts = [...fixtures.map(({ file, text }) => ({ file: `${file} injected`, text: injectText(text, file, options).text })),
      { file: 'sample-app injected', text: injectText(sampleApp, 'sample-app', options).text }];
    const { manifests, problems } = parseManifests(texts);
    expect(problems).toEqual([]);
    // The List is checked item by item, as the API server stores them.
    const objects = manifests.flatMap((m) => (m.doc.kind === 'List' ? (m.doc.items as Record<string, unknown>[]).map((doc, i) => ({ ...m, file: `${m.file} item ${i + 1}`, doc })) : [m]));
    expect(await schemaProblems(objects, crds)).toEqual([]);
    expect(objects.length).toBeGreaterThan(10);
  });

  it('the sample app: ledger and caller get the sidecar; the Service, ServiceExport and ConfigMap do not change', () => {
    const { changed, text } = injectText(sampleApp, 'sample-app', options);
    expect(changed.map((c) => c.split(' (')[0])).toEqual(['Deployment demo/caller', 'Deployment demo/ledger']);
    expect(text).toMatch(/- --inbound-app\n\s+- 127\.0\.0\.1:8080\n/);
    expect(uninjectText(text, 'sample-app').text).toBe(sampleApp);
  });
});

const runIsthmus = (args: string[], input: string) => isthmus(args, {}, { input });

describe('the isthmus inject and uninject commands', () => {
  const shop = fixtures.find((f) => f.file.endsWith('shop.yaml'));
  if (!shop) throw new Error('no shop.yaml fixture');

  it('inject -f - reads stdin and writes the manifests to stdout, the workloads to stderr; uninject -f <file> gives them back', async () => {
    const injected = await runIsthmus(['inject', '-f', '-'], shop.text);
    expect(injected.code).toBe(0);
    expect(injected.stdout).toBe(injectText(shop.text, 'stdin', options).text);
    expect(injected.stderr).toMatch(/^injected Deployment shop\/web \(stdin document 2, line \d+\)$/m);
    const back = await runIsthmus(['uninject', '-q', '-f', '-'], injected.stdout);
    expect(back).toEqual({ code: 0, stdout: shop.text, stderr: '' });
    const fromFile = await runIsthmus(['inject', '-q', '-f', join(root, shop.file), '--image', 'registry.example/isthmus:dev'], '');
    expect(fromFile.stdout).toContain('image: registry.example/isthmus:dev');
  });

  it.each(['inject', 'uninject'])('%s --help exits 0 with usage and examples', async (command) => {
    const result = await runIsthmus([command, '--help'], '');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Usage: isthmus ${command} [options]`);
    expect(result.stdout).toContain('Examples:');
  });

  it('bad YAML exits 1 with the document and line on stderr, and nothing on stdout', async () => {
    const result = await runIsthmus(['inject', '-f', '-'], 'kind: Service\n---\nkind: Pod\nspec: [unclosed\n');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^isthmus inject: stdin: document 2, line \d+: /);
  });
});
