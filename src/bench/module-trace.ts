import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

/**
 * `node --import dist/bench/module-trace.js ...` with ISTHMUS_MODULE_TRACE=<file>: every module
 * the process loads is listed in <file>. ES modules through a resolve hook; CommonJS ones, which
 * Node 20's hooks do not see when required from CommonJS, from the shared require cache at exit.
 */
const file = process.env.ISTHMUS_MODULE_TRACE;
if (file) {
  register('./module-trace-hooks.js', import.meta.url);
  const cache = createRequire(import.meta.url).cache;
  process.once('exit', () => {
    appendFileSync(file, Object.keys(cache).map((path) => `${pathToFileURL(path).href}\n`).join(''));
  });
}
