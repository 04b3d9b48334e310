import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './manifests.js';

/** One instruction of the Dockerfile: its word (FROM, COPY, RUN...) and its arguments, split on spaces. */
export interface Instruction { word: string; args: string[]; text: string }

/** One stage: its base image and the instructions after its FROM. */
export interface Stage { from: string; name: string | undefined; lines: Instruction[] }

/**
 * The repository's Dockerfile as stages. Continuation lines (a trailing backslash) are joined;
 * comments and blank lines dropped. Enough for the Dockerfile this repository keeps, not a
 * general parser.
 */
export function dockerfileStages(path = join(root, 'Dockerfile')): Stage[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!pending && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(pending + line);
    pending = '';
  }
  const stages: Stage[] = [];
  for (const text of logical) {
    const [word = '', ...args] = text.split(/\s+/);
    if (word === 'FROM') stages.push({ from: args[0] ?? '', name: args[1]?.toUpperCase() === 'AS' ? args[2] : undefined, lines: [] });
    else stages.at(-1)?.lines.push({ word, args, text: text.slice(word.length).trim() });
  }
  return stages;
}

/** The patterns of .dockerignore (what the build context leaves out). */
export function dockerignore(path = join(root, '.dockerignore')): string[] {
  return readFileSync(path, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}
