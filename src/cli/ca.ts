import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ensureDirectory } from '../core/user-paths.js';
import { createRootCa } from '../trust/ca.js';
import { writeRootCa } from '../trust/ca-files.js';
import { initEtcdCa, issueEtcdClient } from '../trust/etcd-ca.js';
import { certificateInfo } from '../trust/verify.js';
import { validateTrustDomain } from '../trust/spiffe.js';
import { registerCaRoots } from './ca-roots.js';
import { registerCaRotate } from './ca-rotate.js';
import { action, outputOption, wholeNumber } from './common.js';
import { printJson } from './output.js';

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('manage the mesh root certificate authority');
  ca.command('init')
    .description('create a root CA (root-cert.pem, root-key.pem) for a trust domain; refuses to overwrite one')
    .requiredOption('--trust-domain <domain>', 'SPIFFE trust domain, e.g. mesh.example.com')
    .requiredOption('--out <dir>', 'directory to write root-cert.pem and root-key.pem (mode 0600) into')
    .option('--validity-days <days>', 'root certificate lifetime', wholeNumber(1, 36500), 3650)
    .addOption(outputOption())
    .action(action(async (opts: { trustDomain: string; out: string; validityDays: number; output: string }) => {
      const trustDomain = validateTrustDomain(opts.trustDomain);
      const dir = ensureDirectory(opts.out, '--out', 0o700);
      const root = createRootCa({ trustDomain, validityDays: opts.validityDays });
      writeRootCa(dir, root);
      const info = certificateInfo(root.certPem);
      if (opts.output === 'json') {
        printJson({ trustDomain, dir, rootCert: `${dir}/root-cert.pem`, rootKey: `${dir}/root-key.pem`, notAfter: info.notAfter.toISOString(), fingerprint256: info.fingerprint256 });
        return;
      }
      process.stdout.write([
        `Root CA for trust domain ${trustDomain} written to ${dir}`,
        `  root-cert.pem  valid until ${info.notAfter.toISOString()}`,
        `  root-key.pem   (mode 0600: keep it offline; only \`isthmus join\` needs it)`,
        '',
        'Next: join a cluster to the mesh:',
        `  isthmus join <cluster> --region <region> --zone <zone> --etcd <url> --ca ${opts.out} --out <cluster-dir>`,
        '',
      ].join('\n'));
    }));

  const collect = (value: string, previous: string[]) => [...previous, ...value.split(',').map((v) => v.trim()).filter(Boolean)];
  ca.command('init-etcd')
    .description('create a CA for etcd, apart from the mesh\'s, and etcd\'s server certificate (ca.pem, ca-key.pem, server.pem, server-key.pem); refuses to overwrite them')
    .requiredOption('--out <dir>', 'directory to write the etcd CA and server certificate into (keys mode 0600)')
    .option('--host <name-or-ip>', 'an address clients dial etcd at, put in its server certificate; repeat or comma-separate', collect, [])
    .option('--validity-days <days>', 'server certificate lifetime (the CA lives ten years)', wholeNumber(1, 36500), 365)
    .addOption(outputOption())
    .addHelpText('after', `
Then start etcd with TLS and client-certificate authentication:
  etcd --listen-client-urls https://10.0.0.5:2379 --advertise-client-urls https://10.0.0.5:2379 \\
       --cert-file <dir>/server.pem --key-file <dir>/server-key.pem \\
       --trusted-ca-file <dir>/ca.pem --client-cert-auth
and give every writer its own client certificate with \`isthmus ca issue-etcd-client\` (docs/security.md).`)
    .action(action(async (opts: { out: string; host: string[]; validityDays: number; output: string }) => {
      const hosts = opts.host.length > 0 ? opts.host : ['127.0.0.1', 'localhost'];
      const files = initEtcdCa(ensureDirectory(opts.out, '--out', 0o700), { hosts, validityDays: opts.validityDays });
      if (opts.output === 'json') return printJson({ ...files, serverHosts: hosts });
      process.stdout.write([
        `etcd CA and server certificate (for ${hosts.join(', ')}) written to ${resolve(opts.out)}`,
        `  --trusted-ca-file ${files.ca}`,
        `  --cert-file       ${files.cert}`,
        `  --key-file        ${files.key}`,
        '',
        'Next: a client certificate per writer, e.g. each cluster\'s federation and the operator:',
        `  isthmus ca issue-etcd-client federation-<cluster> --ca-dir ${opts.out}`,
        '',
      ].join('\n'));
    }));
  ca.command('issue-etcd-client')
    .description('issue an etcd client certificate (client-<name>.pem, client-<name>-key.pem) from the etcd CA; its common name is the etcd user when etcd\'s auth is on')
    .argument('<name>', 'client name, e.g. federation-east or operator')
    .requiredOption('--ca-dir <dir>', 'the directory `isthmus ca init-etcd` wrote')
    .option('--validity-days <days>', 'certificate lifetime', wholeNumber(1, 36500), 365)
    .addOption(outputOption())
    .action(action(async (name: string, opts: { caDir: string; validityDays: number; output: string }) => {
      const files = issueEtcdClient(opts.caDir, name, { validityDays: opts.validityDays });
      if (opts.output === 'json') return printJson({ name, ...files });
      process.stdout.write([
        `etcd client certificate for "${name}" written to ${resolve(opts.caDir)}`,
        `  --etcd-ca ${files.ca} --etcd-cert ${files.cert} --etcd-key ${files.key}`,
        '',
      ].join('\n'));
    }));
  registerCaRoots(ca);
  registerCaRotate(ca);
}
