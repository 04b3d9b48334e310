import { IsthmusError } from '../core/errors.js';
import { parseDuration } from '../core/validate.js';
import { Type, type Static } from '../core/typebox.js';
import { dnsLabelPattern } from '../core/names.js';
import { parseSteps } from '../model/rollout.js';

/**
 * What a person gives to start a rollout, as the CLI's flags and the dashboard's form carry it
 * (docs/rollouts.md), and its one reading into a StartRolloutRequest. Both callers use this, so
 * a start refused on the page is refused by `isthmus rollout start` for the same reason; only
 * how a field is named differs (`--steps` for the CLI, `steps` for the page's JSON).
 */
export type RolloutField = 'to' | 'from' | 'steps' | 'interval' | 'objective';

/** How a caller names a field in messages: the CLI's flags, or the API's JSON keys. */
export type FieldNames = (field: RolloutField) => string;
export const flagNames: FieldNames = (field) => `--${field}`;
export const jsonNames: FieldNames = (field) => field;

const service = (description: string) => Type.String({ pattern: dnsLabelPattern, description });

/** The body of `POST /api/services/<ns>/<name>/rollout`; unknown keys refused. */
export const RolloutStartSchema = Type.Object({
  to: service('the new version: a service in the namespace that gets each step\'s share'),
  from: Type.Optional(service('the version that has the traffic now; leave it out for the default')),
  steps: Type.Union([Type.String({ maxLength: 200 }), Type.Array(Type.Integer(), { minItems: 1, maxItems: 100 })], { description: 'increasing percents ending at 100, e.g. "10,50,100"' }),
  interval: Type.String({ maxLength: 20, description: 'how long each step holds, e.g. "30s" or "1m"' }),
  objective: service('the ServiceLevelObjective (in the namespace) that judges every step'),
}, { additionalProperties: false });
export type RolloutStartInput = Static<typeof RolloutStartSchema>;

/** A refused field: ISTHMUS_ERR_ROLLOUT_INVALID, its message naming the field, its details the JSON path (for the page). */
export function invalidField(field: RolloutField, names: FieldNames, problem: string): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_ROLLOUT_INVALID', `${names(field)} ${problem}; nothing was written`, { details: [{ path: `/${field}`, message: problem }] });
}

/** Steps and interval read from what was typed; throws naming the field. */
export function readRolloutTiming(input: Pick<RolloutStartInput, 'steps' | 'interval'>, names: FieldNames): { steps: number[]; intervalSeconds: number } {
  const stepsText = Array.isArray(input.steps) ? input.steps.join(',') : input.steps;
  const parsed = parseSteps(stepsText);
  if ('problem' in parsed) throw invalidField('steps', names, `${stepsText}: ${parsed.problem}`);
  let intervalSeconds: number;
  try {
    intervalSeconds = parseDuration(input.interval.trim());
  } catch {
    throw invalidField('interval', names, `${input.interval} is not a duration; write e.g. 30s or 1m`);
  }
  if (intervalSeconds < 1) throw invalidField('interval', names, `${input.interval}: a step must hold at least 1s`);
  return { steps: parsed.steps, intervalSeconds };
}
