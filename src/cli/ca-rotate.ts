/**
 * `isthmus ca rotate-intermediate`: the middle of a root rotation (docs/trust.md, "Root
 * rotation"). Gives a running cluster a new intermediate signed by the new root without
 * withdrawing it: the CA directory's files are replaced in place, then the new intermediate is
 * written to `/trust/intermediates/<c>`, which the cluster's federation watches; it reads the
 * directory again and signs with the new intermediate from then on (src/federation/cluster-issuer.ts).
 */
import { X509Certificate } from 'node:crypto';
import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { keys, recordVersion } from '../core/keys.js';
import { loadClusterConfig } from '../federation/config.js';
import { validateBundle } from '../trust/bundle.js';
import { createIntermediateCa } from '../trust/ca.js';
import { readClusterCa, readRootCa, replaceClusterCa, type ClusterCaFiles } from '../trust/ca-files.js';
import { certificateInfo, isSignedBy } from '../trust/verify.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { printJson } from './output.js';

interface RotateOptions extends EtcdFlags { ca: string; config: string; output: string }

export interface RotateResult {
  cluster: string;
  changed: boolean;
  intermediate: { fingerprint256: string; notAfter: string };
  root: string;
}

export async function rotateIntermediate(opts: RotateOptions): Promise<RotateResult> {
  const loaded = loadClusterConfig(opts.config);
  const { cluster, trustDomain } = loaded.config;
  const root = readRootCa(opts.ca);
  if (root.trustDomain !== trustDomain) {
    throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `the root in ${opts.ca} is of trust domain ${root.trustDomain}, but cluster ${cluster} is in ${trustDomain}; pass the new root of ${trustDomain}`);
  }
  const current = readClusterCa(loaded.caDir);
  const rootPrint = certificateInfo(root.certPem).fingerprint256;
  return await withStore(opts, async (store) => {
    const bundle = await store.get(keys.bundle(trustDomain));
    if (!bundle || !validateBundle(bundle.value).roots.some((pem) => certificateInfo(pem).fingerprint256 === rootPrint)) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_CHAIN_INVALID', `the root in ${opts.ca} is not in the mesh bundle of ${trustDomain}, so no peer would trust an intermediate it signs; add it first with \`isthmus ca add-root --ca ${opts.ca}\` and wait until every sidecar holds it`);
    }
    const record = await store.get(keys.cluster(cluster));
    if (!record) throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `no cluster ${cluster} in the mesh; ${opts.config} belongs to a cluster that left or never joined`);
    const published = await store.get<{ certificate?: string }>(keys.intermediate(cluster));
    const publish = async (certificate: string) => await store.transact({
      ifModRevision: { [keys.intermediate(cluster)]: published?.modRevision ?? 0, [keys.cluster(cluster)]: record.modRevision },
      puts: [{ key: keys.intermediate(cluster), value: { version: recordVersion, certificate } }],
    });
    const isPublished = published?.value.certificate?.trim() === current.ca.certPem.trim();
    if (isSignedBy(new X509Certificate(current.ca.certPem), new X509Certificate(root.certPem))) {
      // Run twice: nothing to do. Interrupted between the files and etcd: the record is finished now.
      const info = certificateInfo(current.ca.certPem);
      const changed = !isPublished;
      if (changed && !(await publish(current.ca.certPem))) throw conflict(cluster, false);
      return { cluster, changed, intermediate: { fingerprint256: info.fingerprint256, notAfter: info.notAfter.toISOString() }, root: rootPrint };
    }
    if (!isPublished) {
      throw new IsthmusError('ISTHMUS_ERR_TRUST_CA_MISSING', `${loaded.caDir} does not hold the intermediate etcd has for ${cluster}: it is from an older join, or another operator rotated it meanwhile; use the cluster's current directory`);
    }

    const intermediate = createIntermediateCa({ root, trustDomain, cluster });
    const next: ClusterCaFiles = { caCert: intermediate.certPem, caKey: intermediate.keyPem, rootCert: root.certPem, certChain: `${intermediate.certPem.trim()}\n${root.certPem.trim()}\n` };
    const previous: ClusterCaFiles = { caCert: current.ca.certPem, caKey: current.ca.keyPem, rootCert: current.rootCert, certChain: current.certChain };
    // Files first, then etcd: the federation reloads when the record changes, and by then the
    // directory holds what the record names. A failed write puts the old files back.
    replaceClusterCa(loaded.caDir, next);
    let committed = false;
    try {
      committed = await publish(intermediate.certPem);
    } finally {
      if (!committed) replaceClusterCa(loaded.caDir, previous);
    }
    if (!committed) throw conflict(cluster, true);
    const info = certificateInfo(intermediate.certPem);
    return { cluster, changed: true, intermediate: { fingerprint256: info.fingerprint256, notAfter: info.notAfter.toISOString() }, root: rootPrint };
  });
}

function conflict(cluster: string, putBack: boolean): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_ETCD_CONFLICT', `cluster ${cluster} or its intermediate changed in etcd while this command ran;${putBack ? ' its CA files were put back,' : ''} run the command again`);
}

export function registerCaRotate(ca: Command): void {
  ca.command('rotate-intermediate')
    .description('give a running cluster a new intermediate CA signed by a new root, without withdrawing it: the middle step of a root rotation')
    .requiredOption('--ca <dir>', 'the new root\'s directory (root-cert.pem, root-key.pem), already added with `isthmus ca add-root`')
    .requiredOption('-c, --config <file>', 'the cluster\'s cluster.yaml; its CA directory (certificates.caDir) is rewritten in place')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
The cluster's federation sees the new intermediate in etcd, reads its CA directory again and signs
every certificate with it from then on; sidecars and gateways renew onto it within about 30 s.
Certificates under the old root stay trusted until \`isthmus ca remove-root\` (docs/trust.md).`)
    .action(action(async (opts: RotateOptions) => {
      const result = await rotateIntermediate(opts);
      if (opts.output === 'json') return printJson(result);
      process.stdout.write([
        result.changed
          ? `Cluster ${result.cluster} has a new intermediate ${result.intermediate.fingerprint256} (valid until ${result.intermediate.notAfter}), signed by root ${result.root}.`
          : `Nothing to do: the intermediate of ${result.cluster} is already signed by root ${result.root}.`,
        '',
        'Next: its federation signs with it within seconds, and its sidecars and gateways renew onto it within',
        'about 30 s. Rotate every other cluster of the trust domain, then remove the old root:',
        '  isthmus ca remove-root --ca <old root dir>     (refuses while anything still uses it)',
        '',
      ].join('\n'));
    }));
}
