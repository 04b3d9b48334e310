import { Value, type Static, type TSchema } from './typebox.js';
import { IsthmusError } from './errors.js';

/**
 * Validates once at the edge, applies defaults, and freezes the result: nothing downstream
 * re-checks config on a hot path, and nothing can mutate it by accident.
 *
 * `source` names where the value came from (a file path, "request body") so the error tells the
 * user which file and which field to fix.
 */
export function validate<S extends TSchema>(schema: S, input: unknown, source: string): Readonly<Static<S>> {
  const withDefaults = Value.Default(schema, Value.Clone(input));
  const problems = [...Value.Errors(schema, withDefaults)].slice(0, 10).map((e) => ({
    path: e.path === '' ? '/' : e.path,
    message: describeProblem(e.message, e.schema, e.value),
  }));
  if (problems.length > 0) {
    const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${source} is not valid:\n${lines}`, { details: problems });
  }
  return deepFreeze(withDefaults as Static<S>);
}

function describeProblem(message: string, schema: TSchema, value: unknown): string {
  const got = value === undefined ? 'nothing' : JSON.stringify(value)?.slice(0, 60);
  const hint = typeof schema.description === 'string' ? ` (${schema.description})` : '';
  if (message.startsWith('Unexpected property')) return `unknown field; remove it or check its spelling`;
  return `${message.toLowerCase()}, got ${got}${hint}`;
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}

/** "15s", "10m", "24h", "7d" → seconds. */
export const durationPattern = '^[0-9]+(s|m|h|d)$';
export function parseDuration(text: string): number {
  const match = /^([0-9]+)(s|m|h|d)$/.exec(text);
  if (!match) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `"${text}" is not a duration; write a number followed by s, m, h or d, e.g. 24h`);
  }
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}
