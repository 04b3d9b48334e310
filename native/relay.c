/*
 * The gateway's byte relay off the JavaScript thread (src/core/native-relay.ts). Once the
 * gateway has read a connection's ClientHello and dialled its destination, both sockets are
 * handed here: their descriptors are duplicated, Node closes its own, and one thread of this
 * module moves the bytes both ways with epoll, read and send. Per request on a kept mTLS
 * connection that is the system calls alone: no libuv callback, no JavaScript, no Buffer.
 *
 * What it keeps of the JavaScript splice (src/core/splice.ts):
 * - back-pressure: a side whose peer does not take what was read is not read again until the
 *   rest is sent (at most one read's bytes are held per direction);
 * - half-close: one side's FIN is passed on (shutdown(SHUT_WR) of the other) while the other
 *   direction keeps flowing; the pair ends when both directions have ended;
 * - an error or reset on either side closes both;
 * - no byte either way for `idleMs` closes both.
 * How each pair ended, and the bytes each side sent, go back to JavaScript through a
 * thread-safe function. While a pair is open, the bytes each side has sent so far are stored
 * after each read into its slot of a Float64Array that JavaScript gave at start and reads when
 * metrics are scraped (src/core/byte-meter.ts): two doubles per slot, each stored whole.
 *
 * Built by scripts/native.mjs as dist/native/relay.node (Linux: epoll).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { END_CLOSED = 0, END_IDLE = 1, END_ERROR = 2, END_STOPPED = 3 };

/* One read at most: what a TLS record or a few fit in. */
#define READ_BYTES (64 * 1024)
/* Reads of one side per wake-up before the other pairs get their turn. */
#define READS_PER_TURN 8

typedef struct pair pair;

/* One socket of a pair, as epoll knows it. */
typedef struct {
  pair *owner;
  int side;
  int fd;
  uint32_t events;
  int removed; /* out of epoll: done both ways, nothing more to wait for */
} end_t;

/* One direction: read from ends[side], sent to ends[1 - side]. */
typedef struct {
  char *held; /* read and not yet sent */
  size_t off, len;
  int eof;  /* its source sent FIN */
  int shut; /* ... and it was passed on */
  uint64_t bytes;
} flow_t;

struct pair {
  uint32_t id;
  int32_t slot; /* its two doubles in the counts array, or -1 */
  end_t ends[2];
  flow_t flows[2];
  int64_t idle_ms, last;
  int done;
  pair *next; /* in the thread's list */
  pair *next_new; /* in the queue of pairs handed over */
};

typedef struct {
  uint32_t id;
  int how;
  double from_a, from_b;
} ending_t;

typedef struct {
  int epfd, wakefd;
  pthread_t thread;
  pthread_mutex_t lock;
  /* Under lock: what the JavaScript thread hands the relay thread. */
  pair *added;
  uint32_t *stops;
  size_t nstops, capstops;
  int quit;
  /* The relay thread's own. */
  pair *pairs;
  char *buffer;
  /* JavaScript's Float64Array of live byte counts (two per slot), kept alive by counts_ref. */
  double *counts;
  size_t count_slots;
  napi_ref counts_ref;
  /* The JavaScript thread's own. */
  napi_threadsafe_function tsfn;
  uint32_t next_id;
  uint32_t active;
  int started;
} relay_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(relay_t *r) {
  uint64_t one = 1;
  ssize_t n = write(r->wakefd, &one, sizeof one);
  (void)n;
}

/* The events a socket waits for now: readable while its direction holds nothing, writable while the other holds bytes for it. */
static void arm(relay_t *r, pair *p, int side) {
  end_t *e = &p->ends[side];
  flow_t *in = &p->flows[side];
  flow_t *out = &p->flows[1 - side];
  if (e->removed) return;
  if (in->eof && out->shut) {
    /* Its FIN read and ours sent: a hang-up it reports now would wake the thread for nothing. */
    epoll_ctl(r->epfd, EPOLL_CTL_DEL, e->fd, NULL);
    e->removed = 1;
    return;
  }
  uint32_t want = 0;
  if (!in->eof && in->len == 0) want |= EPOLLIN;
  if (out->len > 0) want |= EPOLLOUT;
  if (want == e->events) return;
  struct epoll_event ev = { .events = want, .data.ptr = e };
  epoll_ctl(r->epfd, EPOLL_CTL_MOD, e->fd, &ev);
  e->events = want;
}

static void finish(relay_t *r, pair *p, int how) {
  if (p->done) return;
  p->done = 1;
  for (int s = 0; s < 2; s++) {
    if (!p->ends[s].removed) epoll_ctl(r->epfd, EPOLL_CTL_DEL, p->ends[s].fd, NULL);
    close(p->ends[s].fd);
    free(p->flows[s].held);
    p->flows[s].held = NULL;
  }
  ending_t *end = malloc(sizeof *end);
  if (!end) return;
  end->id = p->id;
  end->how = how;
  end->from_a = (double)p->flows[0].bytes;
  end->from_b = (double)p->flows[1].bytes;
  if (napi_call_threadsafe_function(r->tsfn, end, napi_tsfn_nonblocking) != napi_ok) free(end);
}

/* Sends what direction `side` holds; 0 when it is all sent or some is left for later, -1 on an error. */
static int flush(pair *p, int side) {
  flow_t *f = &p->flows[side];
  int to = p->ends[1 - side].fd;
  while (f->len > 0) {
    ssize_t n = send(to, f->held + f->off, f->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    f->off += (size_t)n;
    f->len -= (size_t)n;
  }
  free(f->held);
  f->held = NULL;
  f->off = 0;
  return 0;
}

/* Passes a direction's FIN on once its bytes are all sent. */
static void pass_end(pair *p, int side) {
  flow_t *f = &p->flows[side];
  if (f->eof && f->len == 0 && !f->shut) {
    shutdown(p->ends[1 - side].fd, SHUT_WR);
    f->shut = 1;
  }
}

/* Reads from ends[side] and sends to the other, until it would block, holds bytes, or ends. */
static int pump(relay_t *r, pair *p, int side, int64_t now) {
  flow_t *f = &p->flows[side];
  int from = p->ends[side].fd;
  int to = p->ends[1 - side].fd;
  for (int turn = 0; turn < READS_PER_TURN && !f->eof && f->len == 0; turn++) {
    ssize_t n = recv(from, r->buffer, READ_BYTES, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return -1;
    }
    if (n == 0) {
      f->eof = 1;
      break;
    }
    p->last = now;
    f->bytes += (uint64_t)n;
    if (p->slot >= 0) {
      double sofar = (double)f->bytes;
      __atomic_store(&r->counts[(size_t)p->slot * 2 + (size_t)side], &sofar, __ATOMIC_RELAXED);
    }
    ssize_t sent = 0;
    while (sent < n) {
      ssize_t w = send(to, r->buffer + sent, (size_t)(n - sent), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -1;
      }
      sent += w;
    }
    if (sent < n) {
      /* The other side takes no more now: the rest waits for it, and this side is not read meanwhile. */
      f->held = malloc((size_t)(n - sent));
      if (!f->held) return -1;
      memcpy(f->held, r->buffer + sent, (size_t)(n - sent));
      f->off = 0;
      f->len = (size_t)(n - sent);
      break;
    }
    if (n < READ_BYTES) break;
  }
  return 0;
}

static void on_event(relay_t *r, end_t *e, uint32_t events, int64_t now) {
  pair *p = e->owner;
  if (p->done) return;
  int side = e->side;
  if (events & EPOLLERR) return finish(r, p, END_ERROR);
  if (events & EPOLLOUT) {
    if (flush(p, 1 - side) < 0) return finish(r, p, END_ERROR);
    p->last = now;
    pass_end(p, 1 - side);
    /* What was held back on the other side can be read again. */
    if (p->flows[1 - side].len == 0 && !p->flows[1 - side].eof && pump(r, p, 1 - side, now) < 0) return finish(r, p, END_ERROR);
    pass_end(p, 1 - side);
  }
  if (events & (EPOLLIN | EPOLLHUP)) {
    if (pump(r, p, side, now) < 0) return finish(r, p, END_ERROR);
    pass_end(p, side);
  }
  if (p->flows[0].shut && p->flows[1].shut) return finish(r, p, END_CLOSED);
  /* Both ways shut on this socket while bytes were still due to it: it was reset. */
  if ((events & EPOLLHUP) && !p->flows[1 - side].shut) return finish(r, p, END_ERROR);
  arm(r, p, 0);
  arm(r, p, 1);
}

static void take_added(relay_t *r, int64_t now) {
  pthread_mutex_lock(&r->lock);
  pair *added = r->added;
  r->added = NULL;
  size_t nstops = r->nstops;
  uint32_t *stops = NULL;
  if (nstops > 0) {
    stops = r->stops;
    r->stops = NULL;
    r->nstops = r->capstops = 0;
  }
  pthread_mutex_unlock(&r->lock);
  while (added) {
    pair *p = added;
    added = p->next_new;
    p->next = r->pairs;
    r->pairs = p;
    p->last = now;
    int failed = 0;
    for (int s = 0; s < 2; s++) {
      struct epoll_event ev = { .events = 0, .data.ptr = &p->ends[s] };
      p->ends[s].events = 0;
      if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, p->ends[s].fd, &ev) < 0) failed = 1;
    }
    if (failed) {
      finish(r, p, END_ERROR);
      continue;
    }
    /* The ClientHello (and whatever followed it) goes to the destination first. */
    if (flush(p, 0) < 0) {
      finish(r, p, END_ERROR);
      continue;
    }
    pass_end(p, 0);
    arm(r, p, 0);
    arm(r, p, 1);
  }
  for (size_t i = 0; i < nstops; i++) {
    for (pair *p = r->pairs; p; p = p->next) {
      if (p->id == stops[i]) {
        finish(r, p, END_STOPPED);
        break;
      }
    }
  }
  free(stops);
}

/* Frees the pairs that ended, once no event of this round can name them any more. */
static void sweep(relay_t *r) {
  pair **link = &r->pairs;
  while (*link) {
    pair *p = *link;
    if (p->done) {
      *link = p->next;
      free(p);
    } else link = &p->next;
  }
}

static void *run(void *arg) {
  relay_t *r = arg;
  struct epoll_event events[64];
  int64_t next_idle = -1;
  for (;;) {
    int timeout = -1;
    if (next_idle >= 0) {
      int64_t left = next_idle - now_ms();
      timeout = left < 0 ? 0 : (left > 60000 ? 60000 : (int)left);
    }
    int n = epoll_wait(r->epfd, events, 64, timeout);
    if (n < 0 && errno != EINTR) break;
    int64_t now = now_ms();
    int any_done = 0;
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == NULL) {
        uint64_t count;
        ssize_t got = read(r->wakefd, &count, sizeof count);
        (void)got;
        pthread_mutex_lock(&r->lock);
        int quit = r->quit;
        pthread_mutex_unlock(&r->lock);
        if (quit) goto out;
        take_added(r, now);
        any_done = 1;
        continue;
      }
      end_t *e = events[i].data.ptr;
      on_event(r, e, events[i].events, now);
      if (e->owner->done) any_done = 1;
    }
    /* Idle pairs: checked when the earliest may have expired, or whenever pairs came or went. */
    if (any_done || next_idle < 0 || now >= next_idle) {
      next_idle = -1;
      for (pair *p = r->pairs; p; p = p->next) {
        if (p->done) continue;
        int64_t due = p->last + p->idle_ms;
        if (due <= now) finish(r, p, END_IDLE);
        else if (next_idle < 0 || due < next_idle) next_idle = due;
      }
    }
    sweep(r);
  }
out:
  for (pair *p = r->pairs; p; p = p->next) finish(r, p, END_STOPPED);
  sweep(r);
  return NULL;
}

/* On the JavaScript thread: onEnd(id, how, fromA, fromB). */
static void call_js(napi_env env, napi_value fn, void *context, void *data) {
  relay_t *r = context;
  ending_t *end = data;
  if (env != NULL && fn != NULL) {
    napi_value args[4], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_uint32(env, end->id, &args[0]);
    napi_create_int32(env, end->how, &args[1]);
    napi_create_double(env, end->from_a, &args[2]);
    napi_create_double(env, end->from_b, &args[3]);
    if (r->active > 0 && --r->active == 0) napi_unref_threadsafe_function(env, r->tsfn);
    napi_call_function(env, undefined, fn, 4, args, NULL);
  }
  free(end);
}

static void cleanup(void *arg) {
  relay_t *r = arg;
  if (r->started) {
    pthread_mutex_lock(&r->lock);
    r->quit = 1;
    pthread_mutex_unlock(&r->lock);
    wake(r);
    pthread_join(r->thread, NULL);
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    close(r->epfd);
    close(r->wakefd);
  }
  pthread_mutex_destroy(&r->lock);
  free(r->buffer);
  free(r->stops);
  free(r);
}

static napi_value throw_errno(napi_env env, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/*
 * start(onEnd, counts): the relay thread, once per process (or worker). `counts`, a Float64Array,
 * gets each open pair's bytes so far at its slot (relay()'s last argument).
 */
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  relay_t *r;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&r) != napi_ok) return NULL;
  if (r->started) {
    napi_throw_error(env, NULL, "the relay has started already");
    return NULL;
  }
  bool typed = false;
  if (argc > 1) napi_is_typedarray(env, argv[1], &typed);
  if (typed) {
    napi_typedarray_type type;
    size_t length;
    void *data;
    if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array) {
      napi_throw_type_error(env, NULL, "start(onEnd, counts): counts is a Float64Array");
      return NULL;
    }
    if (napi_create_reference(env, argv[1], 1, &r->counts_ref) != napi_ok) return NULL;
    r->counts = data;
    r->count_slots = length / 2;
  }
  napi_value name;
  napi_create_string_utf8(env, "isthmus-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, r, call_js, &r->tsfn) != napi_ok) return NULL;
  napi_unref_threadsafe_function(env, r->tsfn);
  r->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (r->epfd < 0) return throw_errno(env, "epoll_create1");
  r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->wakefd < 0) return throw_errno(env, "eventfd");
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wakefd, &ev) < 0) return throw_errno(env, "epoll_ctl");
  r->buffer = malloc(READ_BYTES);
  if (!r->buffer) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (pthread_create(&r->thread, NULL, run, r) != 0) return throw_errno(env, "pthread_create");
  r->started = 1;
  return NULL;
}

static int take_fd(int fd) {
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (own < 0) return -1;
  int flags = fcntl(own, F_GETFL);
  if (flags < 0 || fcntl(own, F_SETFL, flags | O_NONBLOCK) < 0) {
    close(own);
    return -1;
  }
  return own;
}

/*
 * relay(fdA, fdB, idleMs, first, aEnded, slot) -> id. Duplicates both descriptors (the caller
 * then closes its own); `first` (a Buffer or undefined) is sent to b before anything else;
 * aEnded: a's FIN was read already; slot: where in start()'s counts the pair's bytes so far go
 * (-1 or beyond the array: nowhere).
 */
static napi_value relay(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  relay_t *r;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&r) != napi_ok) return NULL;
  if (!r->started) {
    napi_throw_error(env, NULL, "start() the relay first");
    return NULL;
  }
  int32_t fd_a, fd_b;
  double idle_ms;
  bool a_ended = false;
  if (napi_get_value_int32(env, argv[0], &fd_a) != napi_ok || napi_get_value_int32(env, argv[1], &fd_b) != napi_ok || napi_get_value_double(env, argv[2], &idle_ms) != napi_ok) {
    napi_throw_type_error(env, NULL, "relay(fdA, fdB, idleMs, first, aEnded)");
    return NULL;
  }
  napi_get_value_bool(env, argv[4], &a_ended);
  int32_t slot = -1;
  if (argc > 5 && napi_get_value_int32(env, argv[5], &slot) != napi_ok) slot = -1;
  if (slot < 0 || r->counts == NULL || (size_t)slot >= r->count_slots) slot = -1;
  void *first = NULL;
  size_t first_len = 0;
  bool is_buffer = false;
  if (argc > 3) napi_is_buffer(env, argv[3], &is_buffer);
  if (is_buffer) napi_get_buffer_info(env, argv[3], &first, &first_len);
  pair *p = calloc(1, sizeof *p);
  if (!p) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  p->ends[0].fd = take_fd(fd_a);
  p->ends[1].fd = take_fd(fd_b);
  if (p->ends[0].fd < 0 || p->ends[1].fd < 0) {
    int saved = errno;
    if (p->ends[0].fd >= 0) close(p->ends[0].fd);
    if (p->ends[1].fd >= 0) close(p->ends[1].fd);
    free(p);
    errno = saved;
    return throw_errno(env, "the sockets could not be taken over");
  }
  if (first_len > 0) {
    p->flows[0].held = malloc(first_len);
    if (!p->flows[0].held) {
      close(p->ends[0].fd);
      close(p->ends[1].fd);
      free(p);
      napi_throw_error(env, NULL, "out of memory");
      return NULL;
    }
    memcpy(p->flows[0].held, first, first_len);
    p->flows[0].len = first_len;
  }
  p->flows[0].eof = a_ended;
  for (int s = 0; s < 2; s++) {
    p->ends[s].owner = p;
    p->ends[s].side = s;
  }
  p->idle_ms = idle_ms < 1 ? 1 : (int64_t)idle_ms;
  p->slot = slot;
  p->id = ++r->next_id;
  if (r->active++ == 0) napi_ref_threadsafe_function(env, r->tsfn);
  pthread_mutex_lock(&r->lock);
  p->next_new = r->added;
  r->added = p;
  pthread_mutex_unlock(&r->lock);
  wake(r);
  napi_value id;
  napi_create_uint32(env, p->id, &id);
  return id;
}

/* stop(id): closes that pair now; its onEnd says END_STOPPED (unless it ended first). */
static napi_value stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  relay_t *r;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&r) != napi_ok) return NULL;
  uint32_t id;
  if (napi_get_value_uint32(env, argv[0], &id) != napi_ok || !r->started) return NULL;
  pthread_mutex_lock(&r->lock);
  if (r->nstops == r->capstops) {
    size_t cap = r->capstops ? r->capstops * 2 : 16;
    uint32_t *grown = realloc(r->stops, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&r->lock);
      napi_throw_error(env, NULL, "out of memory");
      return NULL;
    }
    r->stops = grown;
    r->capstops = cap;
  }
  r->stops[r->nstops++] = id;
  pthread_mutex_unlock(&r->lock);
  wake(r);
  return NULL;
}

NAPI_MODULE_INIT() {
  relay_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->lock, NULL);
  r->epfd = r->wakefd = -1;
  napi_add_env_cleanup_hook(env, cleanup, r);
  napi_property_descriptor props[] = {
    { "start", NULL, start, NULL, NULL, NULL, napi_default, r },
    { "relay", NULL, relay, NULL, NULL, NULL, napi_default, r },
    { "stop", NULL, stop, NULL, NULL, NULL, napi_default, r },
  };
  if (napi_define_properties(env, exports, 3, props) != napi_ok) return NULL;
  return exports;
}
