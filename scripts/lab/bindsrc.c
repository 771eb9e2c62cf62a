/* LD_PRELOAD shim: bind IPv4 sockets connecting to 127.0.0.0/8 to $LAB_SRC_ADDR first, so
 * one loopback machine can host "several application hosts". The drivers are untouched. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real)(int, const struct sockaddr *, socklen_t);
  if (!real) real = dlsym(RTLD_NEXT, "connect");
  const char *src = getenv("LAB_SRC_ADDR");
  if (src && addr && addr->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) {
      struct sockaddr_in me = {0};
      me.sin_family = AF_INET;
      inet_pton(AF_INET, src, &me.sin_addr);
      bind(fd, (struct sockaddr *)&me, sizeof me); /* port 0: the kernel picks one */
    }
  }
  return real(fd, addr, len);
}
