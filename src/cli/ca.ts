import type { Command } from 'commander';
import { ensureDirectory } from '../core/user-paths.js';
import { createRootCa } from '../trust/ca.js';
import { writeRootCa } from '../trust/ca-files.js';
import { certificateInfo } from '../trust/verify.js';
import { validateTrustDomain } from '../trust/spiffe.js';
import { action, outputOption } from './common.js';
import { printJson } from './output.js';

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('manage the mesh root certificate authority');
  ca.command('init')
    .description('create a root CA (root-cert.pem, root-key.pem) for a trust domain; refuses to overwrite one')
    .requiredOption('--trust-domain <domain>', 'SPIFFE trust domain, e.g. mesh.example.com')
    .requiredOption('--out <dir>', 'directory to write root-cert.pem and root-key.pem (mode 0600) into')
    .option('--validity-days <days>', 'root certificate lifetime', (v) => Number.parseInt(v, 10), 3650)
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
}
