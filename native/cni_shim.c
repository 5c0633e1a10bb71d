/*
 * The CNI plugins' first process (ocelot-cni, ocelot-ipam as installed by `ocelot install-cni`):
 * hands the invocation (its environment and stdin) to the node daemon of this network namespace
 * over the daemon's root-only unix socket, where the datastore is open and the code warm, and
 * writes the daemon's answer (stdout, exit code) as the plugin's own. When no daemon answers
 * there, or it declines (it cannot see CNI_NETNS, or runs another datastore), or
 * OCELOT_CNI_HANDOFF=0, it runs the plugin itself: Node.js and the plugin's bundle from the
 * payload, given the same stdin. Owns: finding the socket (as `ocelot status` finds the status
 * socket: /run/ocelot/cni.sock, or /run/ocelot/netns/<name>/cni.sock in a named namespace) and
 * the framing (src/cni/handoff.ts has the other end and the format). Nothing else: the plugin's
 * work is the daemon's or the bundle's.
 *
 * Usage (the launcher's): cni_shim <payload dir> <loader name> <plugin> [args...]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAGIC "OCNI"
#define FRAME_VERSION 1
/* Larger than any network configuration a runtime sends; a larger stdin is not handed off. */
#define MAX_STDIN (4u << 20)
#define MAX_REPLY (16u << 20)
/* A hang bound: the daemon answers in milliseconds; kubelet's own limit is minutes. */
#define REPLY_TIMEOUT_MS (240 * 1000)

static char *payload, *loader_name, *plugin;
static char **plugin_args;
static int plugin_argc;

struct buf {
  uint8_t *p;
  size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      perror("ocelot cni shim: out of memory");
      exit(1);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) {
  uint8_t x[4] = {v >> 24, v >> 16, v >> 8, v};
  put(b, x, 4);
}

static uint32_t get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Runs the plugin in this process's place: Node.js through the payload's loader, stdin replayed. */
static void run_plugin_here(const struct buf *in) {
  int fd = memfd_create("ocelot-cni-stdin", 0);
  if (fd < 0 || (in->len && write(fd, in->p, in->len) != (ssize_t)in->len) ||
      lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    perror("ocelot cni shim: replaying stdin");
    exit(1);
  }
  if (fd != 0) close(fd);
  char loader[4096], libs[4096], node[4096], app[4096];
  snprintf(loader, sizeof loader, "%s/lib/%s", payload, loader_name);
  snprintf(libs, sizeof libs, "%s/lib", payload);
  snprintf(node, sizeof node, "%s/node", payload);
  snprintf(app, sizeof app, "%s/app/bin/%s", payload, plugin);
  char **argv = calloc(plugin_argc + 6, sizeof *argv);
  int i = 0;
  argv[i++] = loader;
  argv[i++] = "--library-path";
  argv[i++] = libs;
  argv[i++] = node;
  argv[i++] = app;
  for (int j = 0; j < plugin_argc; j++) argv[i++] = plugin_args[j];
  argv[i] = NULL;
  execv(loader, argv);
  perror("ocelot cni shim: exec");
  exit(1);
}

/* The /run/netns name of this process's network namespace, as `ip netns identify` finds it. */
static int netns_name(char *out, size_t n) {
  struct stat self, st;
  if (stat("/proc/self/ns/net", &self) != 0) return 0;
  DIR *d = opendir("/run/netns");
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[512];
    snprintf(p, sizeof p, "/run/netns/%s", e->d_name);
    if (stat(p, &st) == 0 && st.st_dev == self.st_dev && st.st_ino == self.st_ino) {
      snprintf(out, n, "%s", e->d_name);
      found = 1;
    }
  }
  closedir(d);
  return found;
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Writes the CNI error JSON (code 11: try again later) for a daemon that went away mid-call. */
static void fail(const char *why) {
  printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"ocelot node daemon: %s\"}\n", why);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s <payload dir> <loader name> <plugin> [args...]\n", argv[0]);
    return 2;
  }
  payload = argv[1];
  loader_name = argv[2];
  plugin = argv[3];
  plugin_args = argv + 4;
  plugin_argc = argc - 4;

  struct buf in = {0};
  for (;;) {
    uint8_t chunk[65536];
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    put(&in, chunk, r);
  }
  const char *off = getenv("OCELOT_CNI_HANDOFF");
  if ((off && strcmp(off, "0") == 0) || in.len > MAX_STDIN) run_plugin_here(&in);

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  const char *own = getenv("OCELOT_CNI_SOCKET");
  char name[256];
  int plen;
  if (own && *own)
    plen = snprintf(addr.sun_path, sizeof addr.sun_path, "%s", own);
  else if (netns_name(name, sizeof name))
    plen = snprintf(addr.sun_path, sizeof addr.sun_path, "/run/ocelot/netns/%.200s/cni.sock", name);
  else
    plen = snprintf(addr.sun_path, sizeof addr.sun_path, "/run/ocelot/cni.sock");
  /* A path too long for a socket address names no daemon. */
  if (plen < 0 || (size_t)plen >= sizeof addr.sun_path) run_plugin_here(&in);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) run_plugin_here(&in);

  /* The request: MAGIC, version, plugin, every environment entry, stdin; each length-prefixed. */
  struct buf req = {0};
  put(&req, MAGIC, 4);
  put_u32(&req, FRAME_VERSION);
  put_u32(&req, strlen(plugin));
  put(&req, plugin, strlen(plugin));
  /* Which network namespace the call comes from: the daemon runs only calls from its own. */
  char caller[128] = "OCELOT_CNI_CALLER_NETNS=";
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) == 0)
    snprintf(caller, sizeof caller, "OCELOT_CNI_CALLER_NETNS=%lu:%lu", (unsigned long)ns.st_dev,
             (unsigned long)ns.st_ino);
  uint32_t count = 1;
  for (char **e = environ; *e; e++)
    if (strncmp(*e, "OCELOT_CNI_CALLER_NETNS=", 24) != 0) count++;
  put_u32(&req, count);
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "OCELOT_CNI_CALLER_NETNS=", 24) == 0) continue;
    put_u32(&req, strlen(*e));
    put(&req, *e, strlen(*e));
  }
  put_u32(&req, strlen(caller));
  put(&req, caller, strlen(caller));
  put_u32(&req, in.len);
  if (in.len) put(&req, in.p, in.len);
  for (size_t done = 0; done < req.len;) {
    ssize_t w = write(s, req.p + done, req.len - done);
    if (w < 0 && errno == EINTR) continue;
    /* Nothing was done yet: the daemon went away before reading. */
    if (w <= 0) run_plugin_here(&in);
    done += w;
  }
  shutdown(s, SHUT_WR);

  /* The reply: MAGIC, status (0 done, 1 declined), then exit code and stdout. */
  struct buf rep = {0};
  int64_t deadline = now_ms() + REPLY_TIMEOUT_MS;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) fail("no answer within 240 s");
    struct pollfd p = {.fd = s, .events = POLLIN};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    uint8_t chunk[65536];
    ssize_t r = read(s, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("reading its answer failed");
    if (r == 0) break;
    put(&rep, chunk, r);
    if (rep.len > MAX_REPLY) fail("answer too large");
  }
  close(s);
  /* Taken and not answered (the daemon died mid-call): the runtime tries again. */
  if (rep.len == 0) fail("closed the connection without an answer");
  if (rep.len < 5 || memcmp(rep.p, MAGIC, 4) != 0) fail("malformed answer");
  if (rep.p[4] == 1) run_plugin_here(&in);
  if (rep.p[4] != 0 || rep.len < 13) fail("malformed answer");
  int32_t code = (int32_t)get_u32(rep.p + 5);
  uint32_t len = get_u32(rep.p + 9);
  if (rep.len != 13 + (size_t)len) fail("malformed answer");
  for (size_t done = 0; done < len;) {
    ssize_t w = write(1, rep.p + 13 + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return 1;
    done += w;
  }
  return code;
}
