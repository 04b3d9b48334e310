import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';

/*
 * Custom resources checked against their CustomResourceDefinition's own openAPIV3Schema, as the
 * API server does. The server prunes fields a structural schema does not name, and
 * `kubectl apply` (strict field validation) fails on them: here every object schema that names
 * its properties, and does not say `x-kubernetes-preserve-unknown-fields`, refuses others.
 */

type Schema = Record<string, unknown>;

/** The `x-kubernetes-*` keywords are the API server's, not JSON Schema's; ajv is told to accept them. */
const kubernetesKeywords = [
  'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-map-type', 'x-kubernetes-int-or-string',
  'x-kubernetes-embedded-resource', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-validations',
];

function strictly(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strictly);
  if (typeof schema !== 'object' || schema === null) return schema;
  const copy: Schema = Object.fromEntries(Object.entries(schema).map(([k, v]) =>
    [k, k === 'properties' && typeof v === 'object' && v !== null
      ? Object.fromEntries(Object.entries(v).map(([name, s]) => [name, strictly(s)]))
      : strictly(v)]));
  if (copy.type === 'object' && copy.properties !== undefined && copy['x-kubernetes-preserve-unknown-fields'] !== true
    && copy.additionalProperties === undefined) copy.additionalProperties = false;
  return copy;
}

export interface CrdVersion {
  group: string;
  kind: string;
  version: string;
  validate: ValidateFunction;
}

/** One validator per served version of each CRD. */
export function crdValidators(crds: Schema[]): CrdVersion[] {
  const ajv = new Ajv({ allErrors: true, strict: false, keywords: kubernetesKeywords });
  addFormats.default(ajv); // date-time and the other JSON Schema formats (a CommonJS module: its function is .default)
  // The OpenAPI integer formats the API server checks.
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  return crds.flatMap((crd) => {
    const spec = crd.spec as { group: string; names: { kind: string }; versions: { name: string; schema?: { openAPIV3Schema?: unknown } }[] };
    // A version without a schema is the CRD's own problem, reported when the CRD is validated.
    return spec.versions.filter((v) => v.schema?.openAPIV3Schema !== undefined).map((v) => {
      const schema = strictly(v.schema?.openAPIV3Schema) as Schema;
      // metadata is checked by the API server as ObjectMeta, not by the CRD's schema.
      const properties = { ...(schema.properties as Schema), metadata: { type: 'object' } };
      return { group: spec.group, kind: spec.names.kind, version: v.name, validate: ajv.compile({ ...schema, properties }) };
    });
  });
}

/** Problems of a custom resource, or undefined when no CRD here defines its kind. */
export function checkCustomResource(validators: CrdVersion[], doc: Schema): string[] | undefined {
  const [group, version] = String(doc.apiVersion).split('/');
  const found = validators.find((v) => v.group === group && v.version === version && v.kind === doc.kind);
  if (!found) return undefined;
  if (found.validate(doc)) return [];
  return (found.validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is not valid'}${
    e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty: string }).additionalProperty)})` : ''}`);
}
