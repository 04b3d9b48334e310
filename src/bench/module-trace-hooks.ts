import { appendFileSync } from 'node:fs';

/**
 * A module resolve hook (node:module register) that appends every URL the ESM loader resolves,
 * one per line, to the file named by ISTHMUS_MODULE_TRACE. Runs on the loader's own thread.
 */
export async function resolve(
  specifier: string,
  context: { parentURL?: string },
  nextResolve: (specifier: string, context: { parentURL?: string }) => Promise<{ url: string }>,
): Promise<{ url: string }> {
  const resolved = await nextResolve(specifier, context);
  const file = process.env.ISTHMUS_MODULE_TRACE;
  if (file) appendFileSync(file, `${resolved.url}\n`);
  return resolved;
}
