/* A libmongoc application for the capture lab: single-threaded (mongoc_client_t) or
 * pooled (mongoc_client_pool_t). Usage: mongoc_client single|pooled URI SECONDS [THREADS]
 * The driver is Debian's libmongoc, unmodified; truth comes from the server's log and
 * libmongoc's documented design (single-threaded: one connection per server carrying both
 * checks and operations; pooled: background monitoring threads plus the pool). */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static void work(mongoc_client_t *client, double until, const char *name) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, "labdb", name);
  int i = 0;
  while (now() < until) {
    bson_t *doc = BCON_NEW("i", BCON_INT32(i++));
    bson_error_t err;
    if (!mongoc_collection_insert_one(coll, doc, NULL, NULL, &err)) fprintf(stderr, "insert: %s\n", err.message);
    bson_destroy(doc);
    bson_t *filter = bson_new();
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *out;
    while (mongoc_cursor_next(cur, &out)) {}
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    usleep(500000);
  }
  mongoc_collection_destroy(coll);
}

struct job { mongoc_client_pool_t *pool; double until; int n; };

static void *pooled_worker(void *p) {
  struct job *j = p;
  char name[32];
  snprintf(name, sizeof name, "mongoc_pool_%d", j->n);
  mongoc_client_t *c = mongoc_client_pool_pop(j->pool);
  work(c, j->until, name);
  mongoc_client_pool_push(j->pool, c);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s single|pooled URI SECONDS [THREADS]\n", argv[0]); return 2; }
  mongoc_init();
  double until = now() + atof(argv[3]);
  bson_error_t err;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[2], &err);
  if (!uri) { fprintf(stderr, "uri: %s\n", err.message); return 2; }
  if (strcmp(argv[1], "single") == 0) {
    mongoc_client_t *c = mongoc_client_new_from_uri(uri);
    work(c, until, "mongoc_single");
    /* keep the process (and its connections) alive to the end of the window */
    while (now() < until) usleep(100000);
    _exit(0);
  }
  mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
  int threads = argc > 4 ? atoi(argv[4]) : 2;
  pthread_t t[64];
  struct job jobs[64];
  for (int i = 0; i < threads && i < 64; i++) { jobs[i] = (struct job){pool, until, i}; pthread_create(&t[i], NULL, pooled_worker, &jobs[i]); }
  for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
  while (now() < until) usleep(100000);
  _exit(0);
}
