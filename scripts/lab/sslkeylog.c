/* LD_PRELOAD shim: a TLS key log and per-connection TLS truth for drivers that use OpenSSL
 * but have no key log option of their own (libmongoc, PHP ext-mongodb). The drivers are
 * untouched; this is Wireshark's sslkeylog.so technique.
 *
 * - SSL_CTX_new / SSL_new are interposed to install SSL_CTX_set_keylog_callback, which
 *   appends each secret, in the SSLKEYLOGFILE format, to $SSLKEYLOGFILE.
 * - With $LAB_TLS_EVENTS set, two kinds of JSON lines are appended there, joined later by
 *   the session's client random:
 *     {"kind":"tls-keys","client_random":..,"version":..,"cipher":..}  from the keylog
 *       callback, once per connection: what OpenSSL negotiated for the driver;
 *     {"kind":"tls-hello","client_random":..,"local":"ip:port"}  from the write path,
 *       when a ClientHello leaves a socket: which connection that session is.
 *   libmongoc drives TLS through its own BIO over its socket stream (and a single-threaded
 *   client handshakes with every server at once on one thread), so the SSL object does not
 *   name its socket; the ClientHello on the wire does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t real_write(int fd, const void *buf, size_t n) {
  static ssize_t (*real)(int, const void *, size_t);
  if (!real) real = dlsym(RTLD_NEXT, "write");
  return real(fd, buf, n);
}

/* Append one line to the file named by an environment variable; one write() per line under
 * a lock, so the lines of concurrent threads never interleave. */
static void append_line(const char *env, const char *line) {
  const char *path = getenv(env);
  if (!path || !*path) return;
  pthread_mutex_lock(&lock);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    size_t n = strlen(line);
    char *buf = malloc(n + 2);
    if (buf) {
      memcpy(buf, line, n);
      buf[n] = '\n';
      real_write(fd, buf, n + 1);
      free(buf);
    }
    close(fd);
  }
  pthread_mutex_unlock(&lock);
}

static void hex(const unsigned char *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = 0;
}

static void keylog(const SSL *ssl, const char *line) {
  append_line("SSLKEYLOGFILE", line);
  /* The client's traffic secret (TLS 1.3) or master secret (TLS 1.2) is logged once per
   * connection, after the ServerHello: version and cipher are settled by then. */
  if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) != 0 && strncmp(line, "CLIENT_RANDOM ", 14) != 0) return;
  unsigned char random[SSL3_RANDOM_SIZE];
  char random_hex[2 * SSL3_RANDOM_SIZE + 1];
  if (SSL_get_client_random(ssl, random, sizeof random) != sizeof random) return;
  hex(random, sizeof random, random_hex);
  const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
  char event[256];
  snprintf(event, sizeof event, "{\"kind\":\"tls-keys\",\"client_random\":\"%s\",\"version\":\"%s\",\"cipher\":\"%s\"}",
           random_hex, SSL_get_version(ssl), cipher ? SSL_CIPHER_get_name(cipher) : "");
  append_line("LAB_TLS_EVENTS", event);
}

static void install(SSL_CTX *ctx) {
  if (ctx && !SSL_CTX_get_keylog_callback(ctx)) SSL_CTX_set_keylog_callback(ctx, keylog);
}

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  static SSL_CTX *(*real)(const SSL_METHOD *);
  if (!real) real = dlsym(RTLD_NEXT, "SSL_CTX_new");
  SSL_CTX *ctx = real(method);
  install(ctx);
  return ctx;
}

/* A context made before the shim could see it (or through SSL_CTX_new_ex) still gets the
 * callback when a connection is made from it. */
SSL *SSL_new(SSL_CTX *ctx) {
  static SSL *(*real)(SSL_CTX *);
  if (!real) real = dlsym(RTLD_NEXT, "SSL_new");
  install(ctx);
  return real(ctx);
}

/* A TLS record carrying a ClientHello: content type 22, version 3.x, handshake type 1; the
 * client random follows the handshake header (4 bytes) and client_version (2 bytes). */
static void note_client_hello(int fd, const unsigned char *p, size_t n) {
  if (n < 43 || p[0] != 22 || p[1] != 3 || p[5] != 1) return;
  struct sockaddr_in local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0 || local.sin_family != AF_INET) return;
  char addr[INET_ADDRSTRLEN], random_hex[2 * SSL3_RANDOM_SIZE + 1], event[192];
  inet_ntop(AF_INET, &local.sin_addr, addr, sizeof addr);
  hex(p + 11, SSL3_RANDOM_SIZE, random_hex);
  snprintf(event, sizeof event, "{\"kind\":\"tls-hello\",\"client_random\":\"%s\",\"local\":\"%s:%d\"}", random_hex,
           addr, ntohs(local.sin_port));
  append_line("LAB_TLS_EVENTS", event);
}

/* The first bytes of a gathered write, enough to read a ClientHello's header and random. */
static void note_iov(int fd, const struct iovec *iov, int count) {
  unsigned char head[43];
  size_t have = 0;
  for (int i = 0; i < count && have < sizeof head; i++) {
    size_t take = iov[i].iov_len < sizeof head - have ? iov[i].iov_len : sizeof head - have;
    memcpy(head + have, iov[i].iov_base, take);
    have += take;
  }
  note_client_hello(fd, head, have);
}

ssize_t write(int fd, const void *buf, size_t n) {
  note_client_hello(fd, buf, n);
  return real_write(fd, buf, n);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  static ssize_t (*real)(int, const void *, size_t, int);
  if (!real) real = dlsym(RTLD_NEXT, "send");
  note_client_hello(fd, buf, n);
  return real(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
  static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
  if (!real) real = dlsym(RTLD_NEXT, "sendto");
  note_client_hello(fd, buf, n);
  return real(fd, buf, n, flags, to, tolen);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
  static ssize_t (*real)(int, const struct iovec *, int);
  if (!real) real = dlsym(RTLD_NEXT, "writev");
  note_iov(fd, iov, count);
  return real(fd, iov, count);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  static ssize_t (*real)(int, const struct msghdr *, int);
  if (!real) real = dlsym(RTLD_NEXT, "sendmsg");
  if (msg) note_iov(fd, msg->msg_iov, (int)msg->msg_iovlen);
  return real(fd, msg, flags);
}
