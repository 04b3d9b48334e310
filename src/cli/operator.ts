import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { parseDuration } from '../core/validate.js';
import { issueOperatorCertificate, type CertAndKey } from '../trust/ca.js';
import { readClusterCa, readRootCa } from '../trust/ca-files.js';
import { maxTokenTtlSeconds, mintOperatorToken } from '../trust/operator.js';
import { defaultOperatorDir, findOperatorCredential, writeOperatorCredential, type OperatorFlags } from '../trust/operator-files.js';
import { certificateInfo } from '../trust/verify.js';
import { action, outputOption } from './common.js';
import { printJson } from './output.js';

// No revocation exists (docs/trust.md): a lost operator credential is only stopped by its expiry.
const maxCertificateTtlSeconds = 7 * 86_400;

/** --operator-cert, --operator-key and --operator-dir, for every command that calls an endpoint needing an operator. */
export function operatorOptions(command: Command): Command {
  return command
    .addOption(new Option('--operator-dir <dir>', 'directory with operator-cert.pem and operator-key.pem (default: $ISTHMUS_OPERATOR_DIR, operator.dir of ~/.config/isthmus/config.yaml, else ~/.config/isthmus/operator)'))
    .addOption(new Option('--operator-cert <file>', 'operator certificate (with its chain); with --operator-key (or ISTHMUS_OPERATOR_CERT)'))
    .addOption(new Option('--operator-key <file>', 'its private key (or ISTHMUS_OPERATOR_KEY)'));
}

function ttlSeconds(text: string, max: number, what: string): number {
  const seconds = parseDuration(text);
  if (seconds <= 0 || seconds > max) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--ttl ${text}: ${what} lives between 1s and ${max / 3600}h`);
  return seconds;
}

/** A root CA directory (root-cert.pem, root-key.pem) or a cluster CA directory (ca-cert.pem, ca-key.pem, cert-chain.pem). */
function issuerFrom(dir: string): { issuer: CertAndKey; chainPem: string[]; from: string } {
  if (existsSync(join(dir, 'root-key.pem'))) return { issuer: readRootCa(dir), chainPem: [], from: 'the root CA' };
  const cluster = readClusterCa(dir);
  return { issuer: cluster.ca, chainPem: [cluster.ca.certPem], from: `cluster ${cluster.cluster}'s intermediate CA` };
}

export function registerOperator(program: Command): void {
  const operator = program.command('operator').description('operator credentials: the certificate (or a token made from it) that admin endpoints, the dashboard and the federation API ask of people');
  operator.command('issue')
    .description('issue an operator certificate, spiffe://<trust-domain>/operator/<name> (clientAuth only), from the root or a cluster intermediate CA')
    .requiredOption('--name <name>', 'who it is for: a DNS name such as alice or ci.deploy')
    .requiredOption('--ca-dir <dir>', 'the root CA directory (isthmus ca init) or a cluster directory (isthmus join)')
    .option('--ttl <duration>', 'lifetime, e.g. 8h; at most 7d (there is no revocation, so keep it short)', '8h')
    .option('--out <dir>', 'where to write operator-cert.pem and operator-key.pem (mode 0600)', defaultOperatorDir())
    .addOption(outputOption())
    .addHelpText('after', `
The CLI finds the credential in --operator-dir, ISTHMUS_OPERATOR_DIR (or ISTHMUS_OPERATOR_CERT and
ISTHMUS_OPERATOR_KEY), ~/.config/isthmus/config.yaml (operator: {dir: ...}), or the default --out
directory. Issuing again replaces it.

Examples:
  isthmus operator issue --name alice --ca-dir ./ca
  isthmus operator issue --name ci.deploy --ca-dir ./east --ttl 1h --out ./ci-operator`)
    .action(action(async (opts: { name: string; caDir: string; ttl: string; out: string; output: string }) => {
      const ttl = ttlSeconds(opts.ttl, maxCertificateTtlSeconds, 'an operator certificate');
      const { issuer, chainPem, from } = issuerFrom(opts.caDir);
      const issued = issueOperatorCertificate({ name: opts.name, issuer, issuerChainPem: chainPem, ttlSeconds: ttl });
      const paths = writeOperatorCredential(opts.out, issued);
      const { notAfter } = certificateInfo(issued.certPem);
      if (opts.output === 'json') {
        printJson({ identity: issued.identity, cert: paths.cert, key: paths.key, notAfter: notAfter.toISOString() });
        return;
      }
      process.stdout.write([
        `Operator ${issued.identity}, issued by ${from}, valid until ${notAfter.toISOString()}`,
        `  ${paths.cert}`,
        `  ${paths.key}   (mode 0600)`,
        ...(opts.out === defaultOperatorDir() ? [] : ['', `Point the CLI at it: export ISTHMUS_OPERATOR_DIR=${opts.out}`]),
        '',
      ].join('\n'));
    }));

  operatorOptions(operator.command('token'))
    .description('print a short-lived token made from the operator credential (for the dashboard in a browser, or curl to an admin port)')
    .option('--ttl <duration>', `lifetime, e.g. 15m; at most ${maxTokenTtlSeconds / 3600}h and never past the certificate`, '1h')
    .addOption(outputOption())
    .addHelpText('after', `
The token is "isthop_" and two base64url parts: it carries the certificate and is signed with its
key, so servers check it against the mesh's roots and store nothing. Send it as
"Authorization: Bearer <token>", or open the dashboard once at http://<dashboard>/?token=<token>
(the page then keeps it in a cookie).

Examples:
  curl -H "Authorization: Bearer $(isthmus operator token --ttl 5m)" http://127.0.0.1:15021/debug/connections
  isthmus operator token --output json`)
    .action(action(async (opts: OperatorFlags & { ttl: string; output: string }) => {
      const ttl = ttlSeconds(opts.ttl, maxTokenTtlSeconds, 'an operator token');
      const credential = findOperatorCredential(opts);
      if (!credential) {
        throw new IsthmusError('ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING', `no operator credential in ${defaultOperatorDir()}: run \`isthmus operator issue --name <you> --ca-dir <CA dir>\`, or pass --operator-dir (ISTHMUS_OPERATOR_DIR)`);
      }
      const [certPem, ...chainPem] = credential.chainPem as [string, ...string[]];
      const { token, expiresAt } = mintOperatorToken({ certPem, chainPem, keyPem: credential.keyPem, ttlSeconds: ttl });
      if (opts.output === 'json') printJson({ token, expiresAt: expiresAt.toISOString(), identity: certificateInfo(certPem).identity ?? null });
      else process.stdout.write(`${token}\n`);
    }));
}
