/**
 * `isthmus ca add-root` and `isthmus ca remove-root`: the first and the last step of a root
 * rotation (docs/trust.md, "Root rotation"). Both change one trust domain's bundle in etcd with
 * a compare-and-swap on its revision, so two operators (or a `join`) never lose each other's
 * root; every federation sees the bundle through its watch and hands it to its sidecars.
 */
import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { keys } from '../core/keys.js';
import { addRoot, removeRoot, validateBundle, type TrustBundle } from '../trust/bundle.js';
import { readRootCa } from '../trust/ca-files.js';
import { certificateInfo } from '../trust/verify.js';
import type { FederationStore } from '../federation/store.js';
import { usesOfRoot } from './root-uses.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

interface RootOptions extends EtcdFlags { ca: string; output: string; force?: boolean }

/** Applies `change` to the bundle of `trustDomain`; the bundle as it is now, and whether it changed. */
async function changeBundle(flags: EtcdFlags, trustDomain: string, change: (bundle: TrustBundle) => TrustBundle, check?: (store: FederationStore) => Promise<void>): Promise<{ bundle: TrustBundle; changed: boolean }> {
  return await withStore(flags, async (store) => {
    const key = keys.bundle(trustDomain);
    const stored = await store.get(key);
    if (!stored) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_BUNDLE_MISSING', `etcd holds no trust bundle for ${trustDomain}: no cluster of that trust domain has joined. Join one with \`isthmus join\` first, or pass the root of a trust domain the mesh has.`);
    }
    const current = validateBundle(stored.value);
    const next = change(current);
    if (next === current) return { bundle: current, changed: false };
    await check?.(store);
    const committed = await store.transact({ ifModRevision: { [key]: stored.modRevision }, puts: [{ key, value: next }] });
    if (!committed) throw new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `the trust bundle of ${trustDomain} changed while this command ran; run it again`);
    return { bundle: next, changed: true };
  });
}

function report(opts: RootOptions, verb: 'added' | 'removed', trustDomain: string, fingerprint256: string, result: { bundle: TrustBundle; changed: boolean }, next: string): void {
  const roots = result.bundle.roots.map((pem) => ({ fingerprint256: certificateInfo(pem).fingerprint256, notAfter: certificateInfo(pem).notAfter.toISOString() }));
  if (opts.output === 'json') return printJson({ trustDomain, fingerprint256, changed: result.changed, roots });
  process.stdout.write([
    result.changed ? `Root ${fingerprint256} ${verb} ${verb === 'added' ? 'to' : 'from'} the bundle of ${trustDomain}.` : `Nothing to do: the bundle of ${trustDomain} ${verb === 'added' ? 'already holds' : 'does not hold'} root ${fingerprint256}.`,
    `The bundle now holds ${roots.length} root${roots.length === 1 ? '' : 's'}:`,
    ...roots.map((r) => `  ${r.fingerprint256}  valid until ${r.notAfter}`),
    '',
    next,
    '',
  ].join('\n'));
}

export function registerCaRoots(ca: Command): void {
  ca.command('add-root')
    .description('add a new root CA to its trust domain\'s bundle in etcd, so every sidecar and gateway trusts it: the first step of a root rotation')
    .requiredOption('--ca <dir>', 'the new root\'s directory, as `isthmus ca init` wrote it (root-cert.pem, root-key.pem)')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
The whole rotation (docs/trust.md, "Root rotation"):
  isthmus ca init --trust-domain <td> --out ./ca-new
  isthmus ca add-root --ca ./ca-new
  ... wait until every sidecar and gateway holds both roots ...
  isthmus ca rotate-intermediate --ca ./ca-new -c <cluster.yaml>     (each cluster)
  ... wait until every workload and gateway holds a certificate of the new root ...
  isthmus ca remove-root --ca ./ca-old`)
    .action(action(async (opts: RootOptions) => {
      const root = readRootCa(opts.ca);
      const { fingerprint256 } = certificateInfo(root.certPem);
      const result = await changeBundle(opts, root.trustDomain, (bundle) => addRoot(bundle, root.certPem));
      report(opts, 'added', root.trustDomain, fingerprint256, result, 'Next: wait until every sidecar and gateway holds both roots (they refresh the bundle every 30 s and at each renewal); then give each cluster an intermediate of the new root with `isthmus ca rotate-intermediate`.');
    }));

  ca.command('remove-root')
    .description('drop an old root CA from its trust domain\'s bundle in etcd: the last step of a root rotation, once no certificate chains to it any more')
    .requiredOption('--ca <dir>', 'the old root\'s directory (root-cert.pem, root-key.pem)')
    .option('--force', 'remove it even while a cluster still signs with an intermediate of it, or certificates under it are still held (peers then refuse those at once)')
    .addOption(etcdOption())
    .addOption(outputOption())
    .action(action(async (opts: RootOptions) => {
      const root = readRootCa(opts.ca);
      const { fingerprint256 } = certificateInfo(root.certPem);
      const result = await changeBundle(opts, root.trustDomain, (bundle) => removeRoot(bundle, fingerprint256), async (store) => {
        const reasons = await usesOfRoot(store, root.certPem, root.trustDomain);
        if (reasons.length === 0) return;
        if (opts.force) {
          process.stderr.write(`warning: removing root ${fingerprint256} although it is still in use (--force): ${reasons.join('; ')}\n`);
          return;
        }
        throw new IsthmusError('ISTHMUS_ERR_TRUST_ROOT_IN_USE', `Refusing to remove root ${fingerprint256} of ${root.trustDomain} while it is in use, since every peer would then refuse what still chains to it: ${reasons.join('; ')}. Finish the rotation (docs/trust.md, "Root rotation"), or pass --force`);
      });
      report(opts, 'removed', root.trustDomain, fingerprint256, result, 'Peers refuse certificates that chain to it from their next bundle refresh on.');
    }));
}
