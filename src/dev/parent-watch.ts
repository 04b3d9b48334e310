/**
 * Preloaded (`node --import`) into every sidecar and gateway that `isthmus dev up --processes`
 * starts. dev up stops its children itself; this covers the one case it cannot: dev up killed
 * with SIGKILL (or crashing), which would leave the children running on the mesh's ports. When
 * the parent dies the child is re-parented, so its ppid changes: it then stops itself the way
 * Ctrl-C would, and exits hard if that takes more than 10 s. The timers are unref'd, so this
 * never keeps a process alive and costs one getppid a second.
 */
const parent = process.ppid;
setInterval(() => {
  if (process.ppid === parent) return;
  process.kill(process.pid, 'SIGTERM');
  setTimeout(() => process.exit(1), 10_000).unref();
}, 1000).unref();
