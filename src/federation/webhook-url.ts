import { readFileSync } from 'node:fs';
import type { SloPolicy } from '../model/records.js';

/**
 * The webhook URL an objective names by reference (records.ts: never the URL itself), read from
 * this federation's environment or file at the moment it pages, so rotating the secret needs no
 * new policy. An error names what is missing and where; the alerter logs it and records the
 * verdict anyway.
 */
export function resolveWebhookUrl(reference: NonNullable<SloPolicy['webhook']>, env: NodeJS.ProcessEnv = process.env): string {
  let value: string | undefined;
  let where: string;
  if ('env' in reference) {
    where = `environment variable ${reference.env}`;
    value = env[reference.env];
  } else {
    where = `file ${reference.file}`;
    try {
      value = readFileSync(reference.file, 'utf8').split('\n')[0];
    } catch (err) {
      throw new Error(`cannot read the webhook URL from ${where}: ${(err as Error).message}`);
    }
  }
  const url = value?.trim();
  if (!url) throw new Error(`the webhook URL is not set: ${where} is empty or missing on this federation's host`);
  if (!/^https?:\/\/\S+$/.test(url)) throw new Error(`the ${where} does not hold an http(s) URL`);
  return url;
}
