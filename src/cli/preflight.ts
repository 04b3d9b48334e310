import { colour, printJson } from './output.js';

export type CheckStatus = 'ok' | 'warn' | 'failed' | 'skipped';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** What was found, in a few words. */
  detail: string;
  /** How to fix it, for warn and failed. */
  hint?: string;
}

export interface Check<C> {
  name: string;
  /** Checks that cannot run without an earlier one passing name it here. */
  needs?: string[];
  run(context: C): Promise<Omit<CheckResult, 'name'>>;
}

/** Runs checks in order; a check whose prerequisite failed is skipped, not run against nothing. */
export async function runChecks<C>(checks: Check<C>[], context: C, onResult?: (r: CheckResult) => void): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const blocker = check.needs?.find((n) => results.find((r) => r.name === n)?.status !== 'ok' && results.find((r) => r.name === n)?.status !== 'warn');
    let result: CheckResult;
    if (blocker !== undefined) {
      result = { name: check.name, status: 'skipped', detail: `needs "${blocker}"` };
    } else {
      try {
        result = { name: check.name, ...(await check.run(context)) };
      } catch (err) {
        result = { name: check.name, status: 'failed', detail: (err as Error).message };
      }
    }
    results.push(result);
    onResult?.(result);
  }
  return results;
}

export function failedChecks(results: CheckResult[]): CheckResult[] {
  return results.filter((r) => r.status === 'failed');
}

const marks: Record<CheckStatus, () => string> = {
  ok: () => colour.green('√'),
  warn: () => colour.red('‼'),
  failed: () => colour.red('×'),
  skipped: () => colour.dim('-'),
};

/** One line per check as `linkerd check` prints them, with the fix under anything not ok. */
export function formatCheck(result: CheckResult): string {
  const line = `${marks[result.status]()} ${result.name}: ${result.detail}`;
  return result.hint && (result.status === 'failed' || result.status === 'warn') ? `${line}\n    fix: ${result.hint}` : line;
}

export function printChecks(results: CheckResult[], format: string, extra: object = {}): void {
  if (format === 'json') printJson({ ...extra, checks: results, ok: failedChecks(results).length === 0 });
  else process.stdout.write(`${results.map(formatCheck).join('\n')}\n`);
}
