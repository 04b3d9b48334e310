import type { Command } from 'commander';
import { expect, test } from 'vitest';
import { buildProgram } from './main.js';

function commandsOf(command: Command, path: string[] = []): { path: string; command: Command }[] {
  return command.commands.flatMap((c) => [{ path: [...path, c.name()].join(' '), command: c }, ...commandsOf(c, [...path, c.name()])]);
}

test('every command that takes --etcd also takes --etcd-ca, --etcd-cert and --etcd-key, right after it, from the matching environment variables', async () => {
  const program = await buildProgram();
  const readers = commandsOf(program).filter(({ command }) => command.options.some((o) => o.long === '--etcd'));
  expect(readers.map((r) => r.path)).toEqual(expect.arrayContaining(['join', 'leave', 'export', 'unexport', 'services', 'clusters', 'check', 'trace', 'dev up', 'dash', 'policy apply', 'stat']));
  for (const { path, command } of readers) {
    const longs = command.options.map((o) => o.long);
    const at = longs.indexOf('--etcd');
    expect(longs.slice(at, at + 4), path).toEqual(['--etcd', '--etcd-ca', '--etcd-cert', '--etcd-key']);
    const env = command.options[at]!.envVar;
    expect(command.options.slice(at + 1, at + 4).map((o) => o.envVar), path).toEqual([`${env}_CA`, `${env}_CERT`, `${env}_KEY`]);
  }
});
