// ocelot_netlink: a raw AF_NETLINK socket for Node (node-api only, C). Owns: the socket fd,
// socket options, non-blocking sendto, a sender thread per socket for queued sends (the
// kernel does a request's work inside sendmsg: on that thread it runs beside the event loop;
// a failed queued send comes back to the JS callback as a "send failed" event), and receive
// driven by a libuv poll that hands batches of datagrams (and ENOBUFS as an "overflow" event)
// to one JS callback. Not: any message
// encoding or decoding (TypeScript, src/fib/rtnetlink.ts). Also a tiny setsockopt-by-fd helper,
// blocking request sockets (one request, its whole answer) for short-lived callers, and file
// writes made from inside a network namespace (a pod's sysctls), and glibc's malloc thresholds.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif

// Events passed to the JS callback as its first argument.
enum { EV_DATA = 0, EV_OVERFLOW = 1, EV_ERROR = 2, EV_SEND_FAILED = 3 };

// One queued send: a copy of the bytes and the caller's token (reported back on failure).
typedef struct tx_item {
  struct tx_item *next;
  uint32_t token;
  size_t len;
  size_t cap;
  unsigned char data[];
} tx_item;

// Sent items are kept for reuse (up to this many): a fresh 128 KiB malloc is an mmap, and its
// free an munmap whose TLB shootdown interrupts every core running one of our threads.
#define TX_POOL_MAX 6

// Failed queued sends waiting for the event loop: (token, errno) pairs.
#define TX_FAIL_MAX 1024

// Receive limits per readable event: the loop is bounded, libuv calls again while readable.
#define RX_CHUNK (1u << 20)      // bytes gathered before one JS call
#define RX_MIN_ROOM (64u << 10)  // a netlink datagram never exceeds this (dumps use <= 32 KiB)
#define RX_MAX_DGRAMS 256

typedef struct {
  int fd;
  uint32_t port_id;
  uv_poll_t poll;
  int polling;
  int closed;
  int refs;  // the JS handle + the uv handle
  napi_env env;
  napi_ref callback;
  napi_async_context async_ctx;
  unsigned char *rx;
  // Queued sends (sendQueued): the thread starts at the first one.
  pthread_t tx_thread;
  int tx_started;
  int tx_stop;
  pthread_mutex_t tx_mu;
  pthread_cond_t tx_cv;
  tx_item *tx_head, *tx_tail;
  tx_item *tx_pool;  // sent items for reuse, under tx_mu
  int tx_npool;
  uint32_t tx_fail[2 * TX_FAIL_MAX];
  int tx_nfail;
  uv_async_t tx_async;
  // The sender thread's account (under tx_mu), for status and benchmarks: sends made, ns spent
  // inside sendto (the kernel's work), ns waiting with nothing queued after the first send, the
  // wall clock (CLOCK_REALTIME ns) of the first send's start and the last one's end, and the
  // most items ever queued at once.
  uint64_t tx_sends, tx_busy_ns, tx_idle_ns, tx_waits;
  int64_t tx_first_ns, tx_last_ns;
  uint32_t tx_queued, tx_max_queued;
} nl_sock;

static int64_t now_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

#define CHECK(call)                                                        \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error(env, NULL, "Netlink addon call failed: " #call);    \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  napi_value code, text, error;
  snprintf(msg, sizeof msg, "%s failed: %s (errno %d)", what, strerror(err), err);
  napi_create_int32(env, err, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, NULL, text, &error);
  napi_set_named_property(env, error, "errno", code);
  napi_throw(env, error);
  return NULL;
}

static int set_int_opt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value);
}

// Calls the JS callback (event, buffer|errno) inside a callback scope; a JS exception never
// crosses back into libuv: it is handed to Node's uncaught-exception machinery instead.
static void deliver(nl_sock *s, int event, napi_value arg) {
  napi_env env = s->env;
  napi_value cb, global, argv[2], result;
  if (napi_get_reference_value(env, s->callback, &cb) != napi_ok || cb == NULL) return;
  napi_get_global(env, &global);
  napi_create_int32(env, event, &argv[0]);
  argv[1] = arg;
  if (napi_make_callback(env, s->async_ctx, global, cb, 2, argv, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
}

static void stop_poll(nl_sock *s);

static void on_readable(uv_poll_t *handle, int status, int events) {
  nl_sock *s = (nl_sock *)handle->data;
  (void)events;
  if (s->closed) return;
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  size_t used = 0;
  int overflow = 0, fatal = 0;
  if (status < 0) {
    // libuv reports EPOLLERR as UV_EBADF and stops the watcher; on a netlink socket that is
    // the pending socket error, usually ENOBUFS (messages dropped). Read it, and poll again.
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == ENOBUFS) overflow = 1;
    else fatal = err ? err : -status;
    if (uv_poll_start(&s->poll, UV_READABLE, on_readable) < 0) s->polling = 0;
  }
  for (int n = 0; n < RX_MAX_DGRAMS && RX_CHUNK - used >= RX_MIN_ROOM; n++) {
    ssize_t r = recv(s->fd, s->rx + used, RX_CHUNK - used, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        overflow = 1;  // the kernel dropped messages; the socket itself stays usable
        continue;
      }
      fatal = errno;
      break;
    }
    used += (size_t)((r + 3) & ~3);  // keep each datagram 4-byte aligned
  }
  if (used > 0) {
    napi_value buf;
    void *data;
    if (napi_create_buffer_copy(s->env, used, s->rx, &data, &buf) == napi_ok)
      deliver(s, EV_DATA, buf);
  }
  if (overflow && !s->closed) {
    napi_value undef;
    napi_get_undefined(s->env, &undef);
    deliver(s, EV_OVERFLOW, undef);
  }
  if (fatal && !s->closed) {
    napi_value v;
    napi_create_int32(s->env, fatal, &v);
    deliver(s, EV_ERROR, v);
  }
  napi_close_handle_scope(s->env, scope);
}

// The struct lives until both the uv handle has closed and JS has dropped the handle.
static void release(nl_sock *s) {
  if (--s->refs > 0) return;
  pthread_mutex_destroy(&s->tx_mu);
  pthread_cond_destroy(&s->tx_cv);
  free(s->rx);
  free(s);
}

static void on_poll_closed(uv_handle_t *handle) { release((nl_sock *)handle->data); }

static void stop_poll(nl_sock *s) {
  if (!s->polling) return;
  s->polling = 0;
  uv_poll_stop(&s->poll);
}

// Closes the uv handle BEFORE the fd: libuv's close path deletes the fd *number* from epoll,
// which, once the number is reused by a newer socket, would silently unregister that one.
static void close_sock(napi_env env, nl_sock *s) {
  if (s->closed) return;
  s->closed = 1;
  stop_poll(s);
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  // The sender thread finishes its current sendmsg and drops what is still queued.
  if (s->tx_started) {
    pthread_mutex_lock(&s->tx_mu);
    s->tx_stop = 1;
    pthread_cond_signal(&s->tx_cv);
    pthread_mutex_unlock(&s->tx_mu);
    pthread_join(s->tx_thread, NULL);
    s->tx_started = 0;
  }
  while (s->tx_head) {
    tx_item *it = s->tx_head;
    s->tx_head = it->next;
    free(it);
  }
  s->tx_tail = NULL;
  while (s->tx_pool) {
    tx_item *it = s->tx_pool;
    s->tx_pool = it->next;
    free(it);
  }
  s->tx_npool = 0;
  uv_close((uv_handle_t *)&s->tx_async, on_poll_closed);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  if (s->callback) napi_delete_reference(env, s->callback);
  s->callback = NULL;
  if (s->async_ctx) napi_async_destroy(env, s->async_ctx);
  s->async_ctx = NULL;
}

static void finalize_sock(napi_env env, void *data, void *hint) {
  nl_sock *s = (nl_sock *)data;
  (void)hint;
  close_sock(env, s);
  release(s);
}

static nl_sock *get_sock(napi_env env, napi_value v) {
  nl_sock *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || s == NULL) {
    napi_throw_type_error(env, NULL, "Expected a netlink socket handle");
    return NULL;
  }
  if (s->closed) {
    napi_throw_error(env, NULL, "Netlink socket is closed");
    return NULL;
  }
  return s;
}

// Creates the socket inside the network namespace at ns_path (a /run/netns/NAME file), by
// switching this thread there for the socket() call only; "" means the current namespace.
static int socket_in_netns(const char *ns_path, int protocol, int flags, int *err) {
  if (ns_path[0] == 0) {
    int fd = socket(AF_NETLINK, flags, protocol);
    *err = errno;
    return fd;
  }
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(ns_path, O_RDONLY | O_CLOEXEC);
  int fd = -1;
  *err = 0;
  if (self < 0 || target < 0) *err = errno;
  else if (setns(target, CLONE_NEWNET) < 0) *err = errno;
  else {
    fd = socket(AF_NETLINK, flags, protocol);
    if (fd < 0) *err = errno;
    if (setns(self, CLONE_NEWNET) < 0) abort();  // cannot continue in the wrong namespace
  }
  if (self >= 0) close(self);
  if (target >= 0) close(target);
  return fd;
}

// Delivers the failed queued sends to JS: [token, errno, token, errno, ...].
static void on_tx_failed(uv_async_t *handle) {
  nl_sock *s = (nl_sock *)handle->data;
  if (s->closed) return;
  uint32_t fails[2 * TX_FAIL_MAX];
  pthread_mutex_lock(&s->tx_mu);
  int n = s->tx_nfail;
  memcpy(fails, s->tx_fail, (size_t)n * 2 * sizeof fails[0]);
  s->tx_nfail = 0;
  pthread_mutex_unlock(&s->tx_mu);
  if (n == 0) return;
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  napi_value arr, v;
  if (napi_create_array_with_length(s->env, (size_t)n * 2, &arr) == napi_ok) {
    for (int i = 0; i < 2 * n; i++) {
      napi_create_uint32(s->env, fails[i], &v);
      napi_set_element(s->env, arr, (uint32_t)i, v);
    }
    deliver(s, EV_SEND_FAILED, arr);
  }
  napi_close_handle_scope(s->env, scope);
}

// The sender thread: sends queued items in order until told to stop.
static void *tx_main(void *arg) {
  nl_sock *s = (nl_sock *)arg;
  struct sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK;
  for (;;) {
    pthread_mutex_lock(&s->tx_mu);
    if (s->tx_head == NULL && !s->tx_stop) {
      int64_t w0 = now_ns(CLOCK_MONOTONIC);
      s->tx_waits++;
      while (s->tx_head == NULL && !s->tx_stop) pthread_cond_wait(&s->tx_cv, &s->tx_mu);
      if (s->tx_sends > 0) s->tx_idle_ns += (uint64_t)(now_ns(CLOCK_MONOTONIC) - w0);
    }
    if (s->tx_stop) {
      pthread_mutex_unlock(&s->tx_mu);
      return NULL;
    }
    tx_item *it = s->tx_head;
    s->tx_head = it->next;
    if (s->tx_head == NULL) s->tx_tail = NULL;
    s->tx_queued--;
    if (s->tx_sends == 0) s->tx_first_ns = now_ns(CLOCK_REALTIME);
    pthread_mutex_unlock(&s->tx_mu);
    int64_t b0 = now_ns(CLOCK_MONOTONIC);
    ssize_t r;
    do r = sendto(s->fd, it->data, it->len, 0, (struct sockaddr *)&to, sizeof to);
    while (r < 0 && errno == EINTR);
    int err = r < 0 ? errno : ((size_t)r != it->len ? EMSGSIZE : 0);
    int64_t b1 = now_ns(CLOCK_MONOTONIC);
    pthread_mutex_lock(&s->tx_mu);
    s->tx_sends++;
    s->tx_busy_ns += (uint64_t)(b1 - b0);
    s->tx_last_ns = now_ns(CLOCK_REALTIME);
    if (err && s->tx_nfail < TX_FAIL_MAX) {
      s->tx_fail[2 * s->tx_nfail] = it->token;
      s->tx_fail[2 * s->tx_nfail + 1] = (uint32_t)err;
      s->tx_nfail++;
    }
    if (s->tx_npool < TX_POOL_MAX) {
      it->next = s->tx_pool;
      s->tx_pool = it;
      s->tx_npool++;
      it = NULL;
    }
    pthread_mutex_unlock(&s->tx_mu);
    free(it);
    if (err) uv_async_send(&s->tx_async);
  }
}

// sendQueued(handle, buffer, offset, length, token): copies the bytes and queues them for the
// socket's sender thread; a failure comes back as EV_SEND_FAILED with the token.
static napi_value nl_send_queued(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *data;
  size_t len;
  uint32_t off, n, token;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_sock *s = get_sock(env, argv[0]);
  if (s == NULL) return NULL;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_value_uint32(env, argv[2], &off));
  CHECK(napi_get_value_uint32(env, argv[3], &n));
  CHECK(napi_get_value_uint32(env, argv[4], &token));
  if ((size_t)off + n > len) {
    napi_throw_range_error(env, NULL, "Send range is outside the buffer");
    return NULL;
  }
  tx_item *it = NULL;
  pthread_mutex_lock(&s->tx_mu);
  if (s->tx_pool && s->tx_pool->cap >= n) {
    it = s->tx_pool;
    s->tx_pool = it->next;
    s->tx_npool--;
  }
  pthread_mutex_unlock(&s->tx_mu);
  if (it == NULL) {
    // At least 128 KiB (a FIB batch), so that one item fits the next batches too.
    size_t cap = n < (128u << 10) + 4096 ? (128u << 10) + 4096 : n;
    it = malloc(sizeof *it + cap);
    if (it == NULL) return throw_errno(env, "malloc", ENOMEM);
    it->cap = cap;
  }
  it->next = NULL;
  it->token = token;
  it->len = n;
  memcpy(it->data, (char *)data + off, n);
  if (!s->tx_started) {
    int e = pthread_create(&s->tx_thread, NULL, tx_main, s);
    if (e != 0) {
      free(it);
      return throw_errno(env, "pthread_create", e);
    }
    pthread_setname_np(s->tx_thread, "ocelot-nl-tx");  // seen in /proc/PID/task/*/comm
    s->tx_started = 1;
  }
  pthread_mutex_lock(&s->tx_mu);
  if (s->tx_tail) s->tx_tail->next = it;
  else s->tx_head = it;
  s->tx_tail = it;
  if (++s->tx_queued > s->tx_max_queued) s->tx_max_queued = s->tx_queued;
  pthread_cond_signal(&s->tx_cv);
  pthread_mutex_unlock(&s->tx_mu);
  return NULL;
}

// open(protocol, groups, rcvbufBytes, callback, netnsPath) -> handle
static napi_value nl_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], handle, name;
  char ns_path[256] = "";
  int32_t protocol, rcvbuf;
  uint32_t groups;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "Expected open(protocol, groups, rcvbuf, callback)");
    return NULL;
  }
  CHECK(napi_get_value_int32(env, argv[0], &protocol));
  CHECK(napi_get_value_uint32(env, argv[1], &groups));
  CHECK(napi_get_value_int32(env, argv[2], &rcvbuf));
  if (argc >= 5) {
    size_t n;
    CHECK(napi_get_value_string_utf8(env, argv[4], ns_path, sizeof ns_path, &n));
  }
  int err;
  int fd = socket_in_netns(ns_path, protocol, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, &err);
  if (fd < 0) return throw_errno(env, ns_path[0] ? "socket(AF_NETLINK) in netns" : "socket(AF_NETLINK)", err);
  if (rcvbuf > 0 && set_int_opt(fd, SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf) < 0)
    set_int_opt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf);  // unprivileged: capped by rmem_max
  if (rcvbuf > 0 && set_int_opt(fd, SOL_SOCKET, SO_SNDBUFFORCE, rcvbuf) < 0)
    set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, rcvbuf);
  set_int_opt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);        // optional: older kernels ignore
  set_int_opt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);        // errors do not echo the request
  set_int_opt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1); // dumps honour header filters
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind(AF_NETLINK)", err);
  }
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  nl_sock *s = calloc(1, sizeof *s);
  if (s == NULL || (s->rx = malloc(RX_CHUNK)) == NULL) {
    free(s);
    close(fd);
    return throw_errno(env, "malloc", ENOMEM);
  }
  s->fd = fd;
  s->refs = 3;  // the JS handle, the poll handle, the async handle
  pthread_mutex_init(&s->tx_mu, NULL);
  pthread_cond_init(&s->tx_cv, NULL);
  s->port_id = sa.nl_pid;
  s->env = env;
  CHECK(napi_create_reference(env, argv[3], 1, &s->callback));
  CHECK(napi_create_string_utf8(env, "ocelot:netlink", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &s->async_ctx));
  uv_poll_init(loop, &s->poll, fd);
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  s->polling = 1;
  uv_async_init(loop, &s->tx_async, on_tx_failed);
  s->tx_async.data = s;
  uv_unref((uv_handle_t *)&s->tx_async);
  CHECK(napi_create_external(env, s, finalize_sock, NULL, &handle));
  return handle;
}

// send(handle, buffer, offset, length) -> bytes sent, or -errno (EAGAIN, ENOBUFS, ...)
static napi_value nl_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  void *data;
  size_t len;
  uint32_t off, n;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_sock *s = get_sock(env, argv[0]);
  if (s == NULL) return NULL;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_value_uint32(env, argv[2], &off));
  CHECK(napi_get_value_uint32(env, argv[3], &n));
  if ((size_t)off + n > len) {
    napi_throw_range_error(env, NULL, "Send range is outside the buffer");
    return NULL;
  }
  struct sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK;
  ssize_t r;
  do r = sendto(s->fd, (char *)data + off, n, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  while (r < 0 && errno == EINTR);
  CHECK(napi_create_int32(env, r < 0 ? -errno : (int32_t)r, &out));
  return out;
}

// setOption(handle, level, name, value) for NETLINK_ADD_MEMBERSHIP, NETLINK_NO_ENOBUFS, ...
static napi_value nl_set_option(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t level, name, value;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_sock *s = get_sock(env, argv[0]);
  if (s == NULL) return NULL;
  CHECK(napi_get_value_int32(env, argv[1], &level));
  CHECK(napi_get_value_int32(env, argv[2], &name));
  CHECK(napi_get_value_int32(env, argv[3], &value));
  if (set_int_opt(s->fd, level, name, value) < 0) return throw_errno(env, "setsockopt", errno);
  return NULL;
}

// dropOwnEchoes(handle, portId): attaches a classic BPF filter that drops notifications whose
// nlmsg_pid is portId, i.e. the kernel's echoes of requests sent by our own request socket.
static napi_value nl_drop_own_echoes(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t port;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_sock *s = get_sock(env, argv[0]);
  if (s == NULL) return NULL;
  CHECK(napi_get_value_uint32(env, argv[1], &port));
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 12),  // nlmsg_pid, loaded in network byte order
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl(port), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  if (setsockopt(s->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return throw_errno(env, "setsockopt(SO_ATTACH_FILTER)", errno);
  return NULL;
}

// info(handle) -> { portId, rcvbuf, sndbuf }
static napi_value nl_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], obj, v;
  int rcv = 0, snd = 0;
  socklen_t l = sizeof rcv;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  nl_sock *s = get_sock(env, argv[0]);
  if (s == NULL) return NULL;
  getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv, &l);
  l = sizeof snd;
  getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &snd, &l);
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_uint32(env, s->port_id, &v));
  CHECK(napi_set_named_property(env, obj, "portId", v));
  CHECK(napi_create_int32(env, rcv, &v));
  CHECK(napi_set_named_property(env, obj, "rcvbuf", v));
  CHECK(napi_create_int32(env, snd, &v));
  CHECK(napi_set_named_property(env, obj, "sndbuf", v));
  if (s->tx_started) {
    // The sender thread's account (milliseconds; first/last as Unix epoch ms).
    pthread_mutex_lock(&s->tx_mu);
    double f[6] = {(double)s->tx_sends, s->tx_busy_ns / 1e6, s->tx_idle_ns / 1e6,
                   (double)s->tx_waits, s->tx_first_ns / 1e6, s->tx_last_ns / 1e6};
    uint32_t maxq = s->tx_max_queued;
    pthread_mutex_unlock(&s->tx_mu);
    napi_value tx;
    static const char *names[6] = {"sends", "busyMs", "idleMs", "waits", "firstAt", "lastAt"};
    CHECK(napi_create_object(env, &tx));
    for (int i = 0; i < 6; i++) {
      CHECK(napi_create_double(env, f[i], &v));
      CHECK(napi_set_named_property(env, tx, names[i], v));
    }
    CHECK(napi_create_uint32(env, maxq, &v));
    CHECK(napi_set_named_property(env, tx, "maxQueued", v));
    CHECK(napi_set_named_property(env, obj, "sender", tx));
  }
  return obj;
}

// close(handle): stops polling and closes the fd; idempotent.
static napi_value nl_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  nl_sock *s = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (napi_get_value_external(env, argv[0], (void **)&s) == napi_ok && s != NULL)
    close_sock(env, s);
  return NULL;
}

// setsockoptFd(fd, level, name, value: number | Buffer) for TCP sockets owned by Node
// (IP_TTL, IP_MINTTL, IPV6_UNICAST_HOPS, TCP_MD5SIG with a struct tcp_md5sig built in JS).
static napi_value sock_setsockopt_fd(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, level, name;
  napi_valuetype t;
  bool is_buf = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[1], &level));
  CHECK(napi_get_value_int32(env, argv[2], &name));
  CHECK(napi_typeof(env, argv[3], &t));
  CHECK(napi_is_buffer(env, argv[3], &is_buf));
  int r;
  if (is_buf) {
    void *data;
    size_t len;
    CHECK(napi_get_buffer_info(env, argv[3], &data, &len));
    r = setsockopt(fd, level, name, data, (socklen_t)len);
  } else if (t == napi_number) {
    int32_t value;
    CHECK(napi_get_value_int32(env, argv[3], &value));
    r = set_int_opt(fd, level, name, value);
  } else {
    napi_throw_type_error(env, NULL, "Expected a number or a Buffer as the option value");
    return NULL;
  }
  if (r < 0) return throw_errno(env, "setsockopt", errno);
  return NULL;
}

// mallocThresholds(mmapBytes, trimBytes): glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD set
// to fixed values, which also turns off glibc's raising of both after a large mmap'd chunk is
// freed (up to 32 MiB: later large allocations then stay in the arenas and free memory at
// their tops is kept). Global to every arena, threads' ones included, from the call on.
// Returns false where the C library is not glibc or refused a value.
static napi_value malloc_thresholds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t mmap_bytes, trim_bytes;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &mmap_bytes));
  CHECK(napi_get_value_int32(env, argv[1], &trim_bytes));
  bool ok = false;
#ifdef __GLIBC__
  ok = mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1 && mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1;
#else
  (void)mmap_bytes;
  (void)trim_bytes;
#endif
  napi_value r;
  CHECK(napi_get_boolean(env, ok, &r));
  return r;
}

// attachFilterFd(fd, program: Buffer of struct sock_filter[]): SO_ATTACH_FILTER on a socket owned
// by Node (the BFD receive sockets drop packets whose TTL is not 255, RFC 5881 §5).
static napi_value sock_attach_filter_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  bool is_buf = false;
  void *data;
  size_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_is_buffer(env, argv[1], &is_buf));
  if (!is_buf) {
    napi_throw_type_error(env, NULL, "Expected a Buffer of struct sock_filter");
    return NULL;
  }
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  size_t n = len / sizeof(struct sock_filter);
  if (n == 0 || n > BPF_MAXINSNS || len % sizeof(struct sock_filter) != 0) {
    napi_throw_range_error(env, NULL, "A filter is 1..4096 instructions of 8 bytes");
    return NULL;
  }
  struct sock_fprog prog = {.len = (unsigned short)n, .filter = (struct sock_filter *)data};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return throw_errno(env, "setsockopt(SO_ATTACH_FILTER)", errno);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// Blocking request sockets: one request, its whole answer, for short-lived callers (the CNI
// plugin) that have no use for an event loop round trip per message. Encoding stays in TS.

// Reads a JS string argument into buf (at most size - 1 bytes); false after throwing.
static bool get_path(napi_env env, napi_value v, char *buf, size_t size) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, buf, size, &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "Expected a path string");
    return false;
  }
  if (n >= size - 1) {
    napi_throw_range_error(env, NULL, "Path is too long");
    return false;
  }
  return true;
}

// requestOpen(protocol, netnsPath, timeoutMs) -> fd: a blocking socket (created inside the
// network namespace at netnsPath, "" for ours) whose send and receive give up after timeoutMs.
static napi_value nl_request_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  char ns_path[256];
  int32_t protocol, timeout_ms;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "Expected requestOpen(protocol, netnsPath, timeoutMs)");
    return NULL;
  }
  CHECK(napi_get_value_int32(env, argv[0], &protocol));
  if (!get_path(env, argv[1], ns_path, sizeof ns_path)) return NULL;
  CHECK(napi_get_value_int32(env, argv[2], &timeout_ms));
  int err;
  int fd = socket_in_netns(ns_path, protocol, SOCK_RAW | SOCK_CLOEXEC, &err);
  if (fd < 0) return throw_errno(env, ns_path[0] ? "socket(AF_NETLINK) in netns" : "socket(AF_NETLINK)", err);
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  set_int_opt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  set_int_opt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  set_int_opt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    err = errno;
    close(fd);
    return throw_errno(env, "bind(AF_NETLINK)", err);
  }
  CHECK(napi_create_int32(env, fd, &out));
  return out;
}

#define REQ_RX_ROOM (64u << 10)     // one netlink datagram fits (dumps use <= 32 KiB)
#define REQ_MAX_ANSWER (64u << 20)  // a bound on one answer (a dump of a very large table)

// request(fd, buffer) -> Buffer: sends one request message and receives until the error/ACK or
// the DONE that carries its sequence number; returns every datagram received on the way.
static napi_value nl_request(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  void *data;
  size_t len;
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  if (len < sizeof(struct nlmsghdr)) {
    napi_throw_range_error(env, NULL, "A request is at least one netlink header");
    return NULL;
  }
  uint32_t seq = ((struct nlmsghdr *)data)->nlmsg_seq;
  struct sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK;
  ssize_t r;
  do r = sendto(fd, data, len, 0, (struct sockaddr *)&to, sizeof to);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "sendto(AF_NETLINK)", errno);
  size_t cap = 2 * REQ_RX_ROOM, used = 0;
  unsigned char *rx = malloc(cap);
  if (rx == NULL) return throw_errno(env, "malloc", ENOMEM);
  int done = 0, err = 0;
  while (!done) {
    if (cap - used < REQ_RX_ROOM) {
      if (cap >= REQ_MAX_ANSWER) {
        err = EMSGSIZE;
        break;
      }
      unsigned char *bigger = realloc(rx, cap * 2);
      if (bigger == NULL) {
        err = ENOMEM;
        break;
      }
      rx = bigger;
      cap *= 2;
    }
    ssize_t n = recv(fd, rx + used, cap - used, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
      break;
    }
    size_t o = used;
    used += (size_t)((n + 3) & ~3);
    while (o + sizeof(struct nlmsghdr) <= used) {
      struct nlmsghdr *h = (struct nlmsghdr *)(rx + o);
      if (h->nlmsg_len < sizeof *h || o + h->nlmsg_len > used) break;
      if (h->nlmsg_seq == seq && (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE))
        done = 1;
      o += NLMSG_ALIGN(h->nlmsg_len);
    }
  }
  if (err) {
    free(rx);
    return throw_errno(env, "recv(AF_NETLINK)", err);
  }
  void *copy;
  napi_status st = napi_create_buffer_copy(env, used, rx, &copy, &out);
  free(rx);
  CHECK(st);
  return out;
}

// requestClose(fd)
static napi_value nl_request_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  if (fd >= 0) close(fd);
  return NULL;
}

// writeFilesInNetns(netnsPath, paths: string[], values: string[]) -> number[]: writes each
// value to its file (e.g. /proc/sys/net/... of that namespace) with this thread inside the
// network namespace, then switches back; one errno per file (0 = written). Sysctls of a
// network namespace are those of the namespace the writer is in, hence the switch.
static napi_value write_files_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out, v;
  char ns_path[256];
  uint32_t n, nv;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "Expected writeFilesInNetns(netnsPath, paths, values)");
    return NULL;
  }
  if (!get_path(env, argv[0], ns_path, sizeof ns_path)) return NULL;
  CHECK(napi_get_array_length(env, argv[1], &n));
  CHECK(napi_get_array_length(env, argv[2], &nv));
  if (n != nv || n > 64) {
    napi_throw_range_error(env, NULL, "Expected as many values as paths (at most 64)");
    return NULL;
  }
  // Everything read from JS before the switch: no JS runs while in the other namespace.
  char (*paths)[512] = calloc(n ? n : 1, sizeof *paths);
  char (*values)[64] = calloc(n ? n : 1, sizeof *values);
  int *errs = calloc(n ? n : 1, sizeof *errs);
  if (paths == NULL || values == NULL || errs == NULL) {
    free(paths);
    free(values);
    free(errs);
    return throw_errno(env, "malloc", ENOMEM);
  }
  bool ok = true;
  for (uint32_t i = 0; i < n && ok; i++) {
    ok = napi_get_element(env, argv[1], i, &v) == napi_ok && get_path(env, v, paths[i], sizeof paths[i]);
    ok = ok && napi_get_element(env, argv[2], i, &v) == napi_ok &&
         get_path(env, v, values[i], sizeof values[i]);
  }
  int self = -1, target = -1, err = 0;
  if (ok) {
    self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    target = open(ns_path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0) err = errno;
    else if (setns(target, CLONE_NEWNET) < 0) err = errno;
    else {
      for (uint32_t i = 0; i < n; i++) {
        int fd = open(paths[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
          errs[i] = errno;
          continue;
        }
        size_t l = strlen(values[i]);
        ssize_t w = write(fd, values[i], l);
        if (w < 0) errs[i] = errno;
        else if ((size_t)w != l) errs[i] = EIO;
        close(fd);
      }
      if (setns(self, CLONE_NEWNET) < 0) abort();  // cannot continue in the wrong namespace
    }
  }
  if (self >= 0) close(self);
  if (target >= 0) close(target);
  free(paths);
  free(values);
  if (!ok) {
    free(errs);
    return NULL;  // an exception is pending
  }
  if (err) {
    free(errs);
    return throw_errno(env, "setns(CLONE_NEWNET)", err);
  }
  napi_status st = napi_create_array_with_length(env, n, &out);
  for (uint32_t i = 0; st == napi_ok && i < n; i++) {
    st = napi_create_int32(env, errs[i], &v);
    if (st == napi_ok) st = napi_set_element(env, out, i, v);
  }
  free(errs);
  CHECK(st);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, nl_open, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, nl_send, NULL, NULL, NULL, napi_default, NULL},
      {"sendQueued", NULL, nl_send_queued, NULL, NULL, NULL, napi_default, NULL},
      {"setOption", NULL, nl_set_option, NULL, NULL, NULL, napi_default, NULL},
      {"dropOwnEchoes", NULL, nl_drop_own_echoes, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, nl_info, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, nl_close, NULL, NULL, NULL, napi_default, NULL},
      {"setsockoptFd", NULL, sock_setsockopt_fd, NULL, NULL, NULL, napi_default, NULL},
      {"attachFilterFd", NULL, sock_attach_filter_fd, NULL, NULL, NULL, napi_default, NULL},
      {"mallocThresholds", NULL, malloc_thresholds, NULL, NULL, NULL, napi_default, NULL},
      {"requestOpen", NULL, nl_request_open, NULL, NULL, NULL, napi_default, NULL},
      {"request", NULL, nl_request, NULL, NULL, NULL, napi_default, NULL},
      {"requestClose", NULL, nl_request_close, NULL, NULL, NULL, napi_default, NULL},
      {"writeFilesInNetns", NULL, write_files_in_netns, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
