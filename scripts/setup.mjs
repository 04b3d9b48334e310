#!/usr/bin/env node
// Installs what `npm test`, `npm run dev` and `npm run bench` need on a fresh machine, or says exactly what to
// install. Uses only Node's standard library: it runs before node_modules exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const purpose = process.argv.includes('--for') ? process.argv[process.argv.indexOf('--for') + 1] : 'test';
const say = (line) => process.stderr.write(`setup: ${line}\n`);

function fail(lines) {
  for (const line of lines) say(line);
  process.exit(1);
}

/** Something the tests need and other purposes can do without: fatal for `--for test`, said otherwise. */
function lacking(lines) {
  if (purpose === 'test') fail(lines);
  for (const line of lines) say(line);
}

function has(command, args = ['--version']) {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

function run(command, args) {
  say(`running: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return result.status === 0;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const canApt = isRoot && has('apt-get', ['--version']);
let aptUpdated = false;

/**
 * Installs Debian packages when we are root and have apt-get; false otherwise or when apt-get
 * fails. A fresh machine has no package lists yet, so apt-get update runs first there; elsewhere
 * only when an install fails (the lists may be stale), and at most once per run.
 */
function aptInstall(packages) {
  if (!canApt) return false;
  const update = () => {
    aptUpdated = true;
    return run('apt-get', ['update']);
  };
  const listsDir = '/var/lib/apt/lists';
  const fresh = !existsSync(listsDir) || !readdirSync(listsDir).some((name) => name.includes('_Packages'));
  if (fresh && !aptUpdated) update();
  if (run('apt-get', ['install', '-y', ...packages])) return true;
  return !aptUpdated && update() && run('apt-get', ['install', '-y', ...packages]);
}

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) fail([`Node.js ${process.versions.node} is too old; Isthmus needs Node 20 or newer.`]);

// A C compiler: `npm run build` compiles native/malloc-trim.c, the binding through which every
// sidecar and gateway gives malloc's free pages back to the system (src/core/malloc-trim.ts).
// Node's headers, which it also needs, come with Node's own packages.
if (!has(process.env.CC || 'cc')) {
  if (!aptInstall(['gcc', 'libc6-dev'])) {
    lacking([
      'no C compiler (cc): the build leaves out dist/native/malloc-trim.node and dist/native/relay.node: sidecars and',
      '  gateways then keep the memory malloc frees, and gateways copy bytes in JavaScript.',
      "  Debian/Ubuntu: sudo apt-get install -y gcc libc6-dev (or set CC), then run this again.",
    ]);
  }
}

// npm packages: install when missing or when the lock file changed since the last install.
const installedLock = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
if (!existsSync(installedLock) || statSync(lock).mtimeMs > statSync(installedLock).mtimeMs) {
  if (!run('npm', ['ci', '--no-audit', '--no-fund'])) fail(['`npm ci` failed; see its output above.']);
}

// etcd: the federation store. Debian's package is etcd-server.
if (!has('etcd')) {
  if (canApt) {
    if (!aptInstall(['etcd-server'])) fail(['apt-get could not install etcd-server; install etcd 3.4 or newer and put `etcd` on PATH.']);
  } else {
    fail([
      'etcd is not installed, and it is the federation store Isthmus runs on.',
      'Install it, then run this command again:',
      '  Debian/Ubuntu: sudo apt-get install -y etcd-server',
      '  other systems: put the `etcd` binary (3.4 or newer) on PATH',
    ]);
  }
}

// The bench runs the peer chain (nginx sidecars, HAProxy gateway) beside ours, and
// src/bench/bench.test.ts starts that chain too, so tests need them as well.
// Debian puts both in /usr/sbin, which a non-root PATH often lacks; the bench looks there too.
const peerBinaries = [['nginx', ['-v'], 'nginx-light'], ['haproxy', ['-v'], 'haproxy']];
const missingPeers = () => peerBinaries.filter(([command, args]) => !has(command, args) && !has(`/usr/sbin/${command}`, args));
if ((purpose === 'bench' || purpose === 'test') && missingPeers().length > 0) {
  const packages = missingPeers().map(([, , pkg]) => pkg);
  const commands = missingPeers().map(([command]) => command);
  if (canApt) {
    if (!aptInstall(packages)) fail([`apt-get could not install ${packages.join(' ')}; the bench's peer chain needs nginx (with the ssl module) and HAProxy on PATH.`]);
  } else {
    fail([
      `${commands.join(' and ')} ${commands.length === 1 ? 'is' : 'are'} not installed; the bench's peer chain (nginx sidecars, HAProxy gateway) and its test need ${commands.length === 1 ? 'it' : 'them'}.`,
      'Install them, then run this command again:',
      `  Debian/Ubuntu: sudo apt-get install -y ${packages.join(' ')}`,
      '  other systems: put `nginx` (with the ssl module) and `haproxy` (2.x) on PATH',
    ]);
  }
}

// The dashboard test drives Debian's Chromium (playwright-core never downloads a browser here).
if (purpose === 'test' && !existsSync('/usr/bin/chromium')) {
  if (!aptInstall(['chromium'])) {
    say('chromium is not installed: the dashboard browser test will be skipped (apt-get install -y chromium to run it)');
  }
}

// The dev mesh's TCP sample (demo/redis in west) is Debian's redis-server; the tests drive it with redis-cli.
if ((purpose === 'test' || purpose === 'dev') && !(has('redis-server') && has('redis-cli'))) {
  if (!aptInstall(['redis-server', 'redis-tools'])) {
    lacking([
      'redis-server and redis-cli are not installed: `isthmus dev up` leaves its TCP sample (demo/redis) out without them,',
      '  and the TCP services test needs both. Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools',
    ]);
  }
}

if (purpose === 'test' && !has('openssl', ['version'])) {
  if (!aptInstall(['openssl'])) fail(['openssl is needed by the tests (certificates are checked with it): apt-get install -y openssl']);
}

// etcdctl, etcd's own client (Debian's etcd-client): the etcd security tests show with it, as an
// operator would, that etcd refuses a client without a certificate and enforces its roles.
if (purpose === 'test' && !has('etcdctl', ['version'])) {
  if (!aptInstall(['etcd-client'])) fail(['etcdctl is needed by the tests (etcd\'s TLS and roles are checked with it): apt-get install -y etcd-client']);
}

// The network-namespace tests (test/integration/netns.test.ts) build clusters in namespaces with
// `ip` (Debian's iproute2); without it, or without root, they are skipped and .ci/run says so.
if (purpose === 'test' && !has('ip', ['-V']) && !has('/usr/sbin/ip', ['-V']) && !has('/sbin/ip', ['-V'])) {
  if (!aptInstall(['iproute2'])) {
    say(`iproute2 is not installed${isRoot ? '' : ' (and this is not root)'}: the network namespace tests will be skipped (apt-get install -y iproute2, as root, to run them)`);
  }
}

try {
  const version = execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  say(`ready for ${purpose}: node ${process.versions.node}, ${version}`);
} catch {
  // etcd --version printed nothing useful; the checks above already passed.
}
