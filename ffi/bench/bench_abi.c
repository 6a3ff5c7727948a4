/*
 * Cost of C ABI calls: an operation that completes at once (NULL client:
 * argument check, future allocation, error read, free), and a get round trip
 * through the ABI (call, wait, read, free) against a 1-node embedded server.
 *
 *   bench_abi SERVICE_ADDR   (an already running node)   or   bench_abi
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dongting.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    dt_runtime *rt;
    if (dt_runtime_new(DT_API_VERSION, 2, &rt) != DT_OK) return 1;
    enum { FAST = 1000000 };
    double t0 = now();
    for (int i = 0; i < FAST; i++) {
        dt_future *f = dt_kv_get(NULL, 0, (const uint8_t *)"a", 1);
        if (dt_future_error(f) != DT_E_INVALID_ARGUMENT) return 2;
        dt_future_free(f);
    }
    double fast = (now() - t0) / FAST;
    printf("abi-call-completed-at-once ns=%.0f\n", fast * 1e9);
    if (argc > 1) {
        dt_client *c;
        if (dt_client_new(rt, (const uint8_t *)argv[1], strlen(argv[1]), 5000, &c) != DT_OK) return 3;
        dt_future *f = dt_kv_mkdir(c, 0, (const uint8_t *)"abench", 6);
        dt_future_wait(f, -1);
        dt_future_free(f);
        f = dt_kv_put(c, 0, (const uint8_t *)"abench.k", 8, (const uint8_t *)"v", 1);
        dt_future_wait(f, -1);
        dt_future_free(f);
        enum { GETS = 20000 };
        t0 = now();
        for (int i = 0; i < GETS; i++) {
            f = dt_kv_get(c, 0, (const uint8_t *)"abench.k", 8);
            dt_future_wait(f, -1);
            dt_node n;
            if (dt_future_node(f, 0, &n) != DT_OK) return 4;
            dt_future_free(f);
        }
        double rtt = (now() - t0) / GETS;
        printf("abi-get-round-trip us=%.1f\n", rtt * 1e6);
        dt_future_free(dt_client_close(c));
        dt_client_free(c);
    }
    dt_runtime_shutdown(rt, 5000);
    dt_runtime_free(rt);
    return 0;
}
