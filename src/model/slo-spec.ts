import { Type } from '../core/typebox.js';
import { recordVersion } from '../core/keys.js';
import { IsthmusError } from '../core/errors.js';
import { dnsLabelPattern } from '../core/names.js';
import { validate } from '../core/validate.js';
import type { SloPolicy } from './records.js';

const label = (description: string) => Type.String({ pattern: dnsLabelPattern, description });
const latencyPattern = '^[0-9]+(\\.[0-9]+)?(ms|s)$';
const windowPattern = '^[0-9]+(m|h|d)$';

/**
 * The YAML an operator writes (`isthmus policy apply -f`), shaped like a Kubernetes object so it
 * reads like the rest of their manifests. One document per objective.
 */
export const SloSpecSchema = Type.Object({
  apiVersion: Type.Literal('isthmus.dev/v1alpha1', { description: 'write apiVersion: isthmus.dev/v1alpha1' }),
  kind: Type.Literal('ServiceLevelObjective'),
  metadata: Type.Object({
    name: label('a DNS label naming this objective'),
    namespace: label('the namespace of the service'),
  }, { additionalProperties: false }),
  spec: Type.Object({
    service: label('the service the objective is about, in metadata.namespace'),
    latency: Type.Optional(Type.Object({
      percentile: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 100, description: 'e.g. 99 for p99' }),
      below: Type.String({ pattern: latencyPattern, description: 'a latency such as 250ms or 1.5s' }),
    }, { additionalProperties: false })),
    success: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 100, description: 'percent of requests that must succeed, e.g. 99.9' })),
    window: Type.String({ pattern: windowPattern, default: '1h', description: 'the window the objective holds over: minutes, hours or days, e.g. 1h' }),
    minRequests: Type.Integer({ minimum: 1, default: 20, description: 'fewer requests in the window give no verdict' }),
    webhook: Type.Optional(Type.Object({
      urlFrom: Type.Union([
        Type.Object({ env: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'an environment variable of the federation processes holding the URL' }) }, { additionalProperties: false }),
        Type.Object({ file: Type.String({ pattern: '^/', description: 'an absolute path on the federation hosts of a file holding the URL' }) }, { additionalProperties: false }),
      ], { description: 'where each federation reads the http(s) URL that receives a JSON POST when the objective is missed and when it holds again' }),
    }, { additionalProperties: false })),
  }, { additionalProperties: false }),
}, { additionalProperties: false });

/** One YAML document → the record stored at `/policies/slo/<ns>/<name>`; throws naming the field. */
export function sloPolicyFromSpec(doc: unknown, source: string): SloPolicy {
  const inline = (doc as { spec?: { webhook?: { url?: unknown } } } | null)?.spec?.webhook?.url;
  if (inline !== undefined) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source} is not valid:\n  /spec/webhook/url: a webhook URL usually carries a token, and policies are stored in etcd in clear. ` +
      'Put the URL in an environment variable or a file on the federation hosts and write webhook: { urlFrom: { env: SLO_WEBHOOK_URL } } or { urlFrom: { file: /etc/isthmus/slo-webhook } }');
  }
  const spec = validate(SloSpecSchema, doc, source);
  const s = spec.spec;
  if (!s.latency && s.success === undefined) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source} is not valid:\n  /spec: give spec.latency (percentile, below), spec.success, or both; an objective needs something to hold`);
  }
  const windowSeconds = durationSeconds(s.window);
  if (windowSeconds < 60 || windowSeconds > 7 * 86400) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source} is not valid:\n  /spec/window: between 1m and 7d, got ${s.window}`);
  }
  return {
    version: recordVersion,
    namespace: spec.metadata.namespace,
    name: spec.metadata.name,
    service: s.service,
    ...(s.latency ? { latency: { percentile: s.latency.percentile, belowMs: latencyMs(s.latency.below) } } : {}),
    ...(s.success !== undefined ? { successPercent: s.success } : {}),
    windowSeconds,
    minRequests: s.minRequests,
    ...(s.webhook ? { webhook: { ...s.webhook.urlFrom } } : {}),
  };
}

/** "250ms" → 250, "1.5s" → 1500. */
function latencyMs(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s)$/.exec(text) as RegExpExecArray;
  return Number(match[1]) * (match[2] === 's' ? 1000 : 1);
}

function durationSeconds(text: string): number {
  const match = /^([0-9]+)(m|h|d)$/.exec(text) as RegExpExecArray;
  return Number(match[1]) * { m: 60, h: 3600, d: 86400 }[match[2] as 'm' | 'h' | 'd'];
}

/** The objective in the words of its YAML: "p99 < 250 ms and 99.9% success over 1h". */
export function describeObjective(p: Pick<SloPolicy, 'latency' | 'successPercent' | 'windowSeconds'>): string {
  const parts = [
    ...(p.latency ? [`p${p.latency.percentile} < ${p.latency.belowMs} ms`] : []),
    ...(p.successPercent !== undefined ? [`${p.successPercent}% success`] : []),
  ];
  const w = p.windowSeconds;
  const window = w % 86400 === 0 ? `${w / 86400}d` : w % 3600 === 0 ? `${w / 3600}h` : `${Math.round(w / 60)}m`;
  return `${parts.join(' and ')} over ${window}`;
}
