import { text as readStream } from 'node:stream/consumers';
import type { Command } from 'commander';
import { readUserFile } from '../core/user-paths.js';
import { injectText, uninjectText, type InjectReport } from '../inject/inject.js';
import { defaultImage, defaultTokenAudience } from '../inject/sidecar-spec.js';
import { action } from './common.js';

interface FileOptions { filename: string; quiet?: boolean }

async function readInput(filename: string): Promise<{ text: string; source: string }> {
  if (filename === '-') return { text: await readStream(process.stdin), source: 'stdin' };
  return { text: readUserFile(filename, '-f'), source: filename };
}

/** The YAML on stdout (for `| kubectl apply -f -`), what happened on stderr. */
function write(report: InjectReport, verb: string, otherwise: string, quiet: boolean | undefined): void {
  process.stdout.write(report.text);
  if (quiet) return;
  for (const label of report.changed) process.stderr.write(`${verb} ${label}\n`);
  for (const label of report.unchanged) process.stderr.write(`${otherwise} ${label}\n`);
  if (report.changed.length + report.unchanged.length === 0) process.stderr.write('no workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) in the input; it is unchanged\n');
}

export function registerInject(program: Command): void {
  program.command('inject')
    .description('add the Isthmus sidecar to the workloads of Kubernetes manifests (writes the result to stdout)')
    .requiredOption('-f, --filename <file>', 'manifests to read; - for stdin')
    .option('--image <image>', 'the sidecar image', defaultImage)
    .option('--token-audience <audience>', 'audience of the projected ServiceAccount token the sidecar proves its identity with', defaultTokenAudience)
    .option('-q, --quiet', 'do not list the workloads on stderr')
    .addHelpText('after', `
Adds to each Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob (also inside a
List): the sidecar as a native sidecar (first init container, restartPolicy: Always), HTTP_PROXY
and NO_PROXY in every app container, and the sidecar's volumes. Workloads that have the sidecar
already, and every other document, are left as they are; comments and layout are kept.
The namespace needs ConfigMaps isthmus-sidecar and isthmus-root-cert (docs/kubernetes.md).

Examples:
  isthmus inject -f app.yaml | kubectl apply -f -
  kubectl kustomize deploy/multi-cluster/sample-app | isthmus inject -f - | kubectl apply -f -`)
    .action(action(async (opts: FileOptions & { image: string; tokenAudience: string }) => {
      const { text, source } = await readInput(opts.filename);
      write(injectText(text, source, { image: opts.image, tokenAudience: opts.tokenAudience }), 'injected', 'already injected, unchanged:', opts.quiet);
    }));

  program.command('uninject')
    .description('remove what `isthmus inject` added, giving back the manifests as they were (writes the result to stdout)')
    .requiredOption('-f, --filename <file>', 'manifests to read; - for stdin')
    .option('-q, --quiet', 'do not list the workloads on stderr')
    .addHelpText('after', `
Examples:
  isthmus uninject -f app.injected.yaml > app.yaml
  kubectl get deploy ledger -n demo -o yaml | isthmus uninject -f - | kubectl apply -f -`)
    .action(action(async (opts: FileOptions) => {
      const { text, source } = await readInput(opts.filename);
      write(uninjectText(text, source), 'uninjected', 'no sidecar, unchanged:', opts.quiet);
    }));
}
