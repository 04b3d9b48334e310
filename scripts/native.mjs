// `npm run build`, last step: compiles the native modules in native/ into dist/native/:
// - malloc-trim.node, the binding for glibc's malloc_trim that sidecars and gateways call after a
//   burst of garbage (src/core/malloc-trim.ts);
// - relay.node, the gateway's byte relay on a thread of its own (src/core/native-relay.ts).
// Each needs a C compiler (`cc`, or $CC) and Node's headers, which Node's packages install beside
// the binary (<prefix>/include/node). Without them the build goes on and says what is missing:
// the proxies then run without giving malloc's free pages back and the gateway relays in
// JavaScript, and the tests of those modules fail, which is how `npm test` makes it seen.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const headers = resolve(dirname(process.execPath), '..', 'include', 'node');
const cc = process.env.CC || 'cc';
const warn = (line) => process.stderr.write(`build: ${line}\n`);

const modules = [
  { name: 'malloc-trim', why: 'malloc_trim is glibc\'s' },
  { name: 'relay', why: 'the relay uses epoll' },
];

for (const { name, why } of modules) {
  const source = join(root, 'native', `${name}.c`);
  const out = join(root, 'dist', 'native', `${name}.node`);
  rmSync(out, { force: true });
  if (process.platform !== 'linux') {
    warn(`${why}; dist/native/${name}.node not built on ${process.platform}`);
  } else if (!existsSync(join(headers, 'node_api.h'))) {
    warn(`Node's headers are not in ${headers} (node_api.h); dist/native/${name}.node not built. Install the Node package that ships them, then npm run build.`);
  } else {
    mkdirSync(dirname(out), { recursive: true });
    const args = ['-O2', '-shared', '-fPIC', '-Wall', '-DNAPI_VERSION=8', `-DNODE_GYP_MODULE_NAME=${name.replace(/-/g, '_')}`, `-I${headers}`, '-o', out, source, '-lpthread'];
    const result = spawnSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.error || result.status !== 0) {
      rmSync(out, { force: true });
      warn(`${cc} could not compile native/${name}.c (${result.error?.message ?? `exit ${result.status}`}); dist/native/${name}.node not built. Debian/Ubuntu: apt-get install -y gcc libc6-dev, then npm run build.`);
    }
  }
}
