/*
 * Tests of the C API against an embedded 3-node cluster started through it.
 * Every public function and its error paths; callbacks fired on IO threads;
 * cancel; shutdown with calls in flight; fork(); and a live-handle count of 0
 * at the end. Prints "c: N passed, N failed" last; exits 1 on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dongting.h"

static int passed, failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                    \
    } while (0)

#define S(str) (const uint8_t *)(str), strlen(str)

/* Waits for f and returns its error code. */
static int32_t settle(dt_future *f) {
    if (dt_future_wait(f, 30000) != DT_OK) return DT_E_PENDING;
    return dt_future_error(f);
}

/* Runs f to completion and tells whether it failed with `code` and a message
 * ending in `tail`; frees f. */
static int fails_with(dt_future *f, int32_t code, const char *tail) {
    const uint8_t *m = NULL;
    size_t n = 0, t = strlen(tail);
    int ok = settle(f) == code && dt_future_error_message(f, &m, &n) == DT_OK && n >= t &&
             memcmp(m + n - t, tail, t) == 0;
    if (!ok) fprintf(stderr, "  (got %s: %.*s)\n", dt_error_name(dt_future_error(f)), (int)n, (const char *)m);
    dt_future_free(f);
    return ok;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Runs f to completion, frees it and returns its code. */
static int32_t run(dt_future *f) {
    int32_t c = settle(f);
    if (c != DT_OK && getenv("DT_TEST_VERBOSE")) {
        const uint8_t *m = NULL;
        size_t n = 0;
        dt_future_error_message(f, &m, &n);
        fprintf(stderr, "  (call failed: %s: %.*s)\n", dt_error_name(c), (int)n, (const char *)m);
    }
    dt_future_free(f);
    return c;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free_port");
        exit(2);
    }
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

#define NODES 3
static char data_dir[64];
static dt_runtime *rt;
static dt_server *servers[NODES];
static char service_list[256];
static dt_client *client;

static void config_text(char *buf, size_t len, int id, const int *rep, const int *svc) {
    snprintf(buf, len,
             "node_id = %d\ndata_dir = \"%s/node%d\"\nservice_port = %d\n"
             "elect_timeout_ms = 1500\nheartbeat_interval_ms = 150\n"
             "servers = [ { id = 1, address = \"127.0.0.1:%d\" }, { id = 2, address = "
             "\"127.0.0.1:%d\" }, { id = 3, address = \"127.0.0.1:%d\" } ]\n"
             "[[groups]]\nid = 0\nmembers = [1, 2, 3]\n",
             id, data_dir, id, svc[id - 1], rep[0], rep[1], rep[2]);
}

/* Every DT_E_ code and the name dt_error_name gives it (ffi/tests/header_codes.rs
 * checks this list against the header). */
static const struct {
    int code;
    const char *name;
} ERROR_CODES[] = {
    {DT_E_CLIENT_ERROR, "CLIENT_ERROR"},
    {DT_E_SYS_ERROR, "SYS_ERROR"},
    {DT_E_COMMAND_NOT_SUPPORTED, "COMMAND_NOT_SUPPORTED"},
    {DT_E_NOT_INIT, "NOT_INIT"},
    {DT_E_STOPPING, "STOPPING"},
    {DT_E_FLOW_CONTROL, "FLOW_CONTROL"},
    {DT_E_NOT_RAFT_LEADER, "NOT_RAFT_LEADER"},
    {DT_E_RAFT_GROUP_NOT_FOUND, "RAFT_GROUP_NOT_FOUND"},
    {DT_E_RAFT_GROUP_STOPPED, "RAFT_GROUP_STOPPED"},
    {DT_E_TIMEOUT, "TIMEOUT"},
    {DT_E_PROTOCOL_ERROR, "PROTOCOL_ERROR"},
    {DT_E_NETWORK_ERROR, "NETWORK_ERROR"},
    {DT_E_CLOSED, "CLOSED"},
    {DT_E_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
    {DT_E_CANCELLED, "CANCELLED"},
    {DT_E_RUNTIME_SHUT_DOWN, "RUNTIME_SHUT_DOWN"},
    {DT_E_FORKED, "FORKED"},
    {DT_E_UNSUPPORTED_API_VERSION, "UNSUPPORTED_API_VERSION"},
    {DT_E_CONFIG_ERROR, "CONFIG_ERROR"},
    {DT_E_SERVER_START_FAILED, "SERVER_START_FAILED"},
    {DT_E_RESOURCE, "RESOURCE"},
    {DT_E_WRONG_RESULT_KIND, "WRONG_RESULT_KIND"},
    {DT_E_PENDING, "PENDING"},
    {DT_E_SERVER_STOPPED, "SERVER_STOPPED"},
    {DT_E_UNKNOWN_OUTCOME, "UNKNOWN_OUTCOME"},
    {DT_E_KV_INTERNAL, "INTERNAL"},
    {DT_E_KV_NOT_FOUND, "NOT_FOUND"},
    {DT_E_KV_IS_DIR, "IS_DIR"},
    {DT_E_KV_NOT_DIR, "NOT_DIR"},
    {DT_E_KV_PARENT_NOT_DIR, "PARENT_NOT_DIR"},
    {DT_E_KV_INVALID_KEY, "INVALID_KEY"},
    {DT_E_KV_INVALID_VALUE, "INVALID_VALUE"},
    {DT_E_KV_PARENT_NOT_FOUND, "PARENT_NOT_FOUND"},
    {DT_E_KV_DIR_NOT_EMPTY, "DIR_NOT_EMPTY"},
    {DT_E_KV_KEY_TOO_LONG, "KEY_TOO_LONG"},
    {DT_E_KV_VALUE_TOO_LARGE, "VALUE_TOO_LARGE"},
    {DT_E_KV_CAS_MISMATCH, "CAS_MISMATCH"},
    {DT_E_KV_NOT_OWNER, "NOT_OWNER"},
    {DT_E_KV_NOT_TEMP_NODE, "NOT_TEMP_NODE"},
    {DT_E_KV_IS_TEMP_NODE, "IS_TEMP_NODE"},
    {DT_E_KV_INVALID_TTL, "INVALID_TTL"},
    {DT_E_KV_UNDER_TEMP_DIR, "UNDER_TEMP_DIR"},
    {DT_E_KV_PARENT_IS_LOCK, "PARENT_IS_LOCK"},
    {DT_E_KV_NOT_LOCK_NODE, "NOT_LOCK_NODE"},
    {DT_E_KV_IS_LOCK, "IS_LOCK"},
    {DT_E_KV_INVALID_COMMAND, "INVALID_COMMAND"},
    {DT_E_KV_TOO_MANY_KEYS, "TOO_MANY_KEYS"},
    {DT_E_KV_SEQ_TOO_OLD, "SEQ_TOO_OLD"},
    {DT_E_KV_INDEX_NOT_INCREASING, "INDEX_NOT_INCREASING"},
    {DT_E_KV_HISTORY_COMPACTED, "HISTORY_COMPACTED"},
    {DT_E_KV_INVALID_SNAPSHOT, "INVALID_SNAPSHOT"},
    {DT_E_KV_TOO_MANY_WAITERS, "TOO_MANY_WAITERS"},
};

/* Each code round-trips through dt_error_name, and no two codes share a number or a name. */
static void test_error_names(void) {
    size_t n = sizeof ERROR_CODES / sizeof ERROR_CODES[0];
    int distinct = 1;
    for (size_t i = 0; i < n; i++) {
        const char *name = dt_error_name(ERROR_CODES[i].code);
        CHECK(name != NULL && strcmp(name, ERROR_CODES[i].name) == 0);
        if (name == NULL || strcmp(name, ERROR_CODES[i].name) != 0)
            fprintf(stderr, "  (code %d: got %s, want %s)\n", ERROR_CODES[i].code, name ? name : "NULL",
                    ERROR_CODES[i].name);
        for (size_t j = 0; j < i; j++)
            if (ERROR_CODES[i].code == ERROR_CODES[j].code || strcmp(ERROR_CODES[i].name, ERROR_CODES[j].name) == 0)
                distinct = 0;
    }
    CHECK(distinct);
    CHECK(strcmp(dt_error_name(DT_OK), "OK") == 0);
    CHECK(strcmp(dt_error_name(DT_E_KV_BASE + 3), "UNKNOWN") == 0);
}

static void test_versions_and_runtime(void) {
    CHECK(dt_api_version() == DT_API_VERSION);
    CHECK(strlen(dt_version()) > 0);
    CHECK(strcmp(dt_error_name(DT_E_KV_NOT_FOUND), "NOT_FOUND") == 0);
    CHECK(strcmp(dt_error_name(DT_E_TIMEOUT), "TIMEOUT") == 0);
    CHECK(strcmp(dt_error_name(DT_E_FORKED), "FORKED") == 0);
    CHECK(strcmp(dt_error_name(-3), "UNKNOWN") == 0);
    dt_runtime *r = NULL;
    CHECK(dt_runtime_new(0, 1, &r) == DT_E_UNSUPPORTED_API_VERSION && r == NULL);
    CHECK(dt_runtime_new(DT_API_VERSION + 1, 1, &r) == DT_E_UNSUPPORTED_API_VERSION && r == NULL);
    CHECK(dt_runtime_new(DT_API_VERSION, 1, NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_runtime_new(DT_API_VERSION, 100000, &r) == DT_E_INVALID_ARGUMENT && r == NULL);
    CHECK(dt_runtime_shutdown(NULL, 0) == DT_E_INVALID_ARGUMENT);
    dt_runtime_free(NULL);
    CHECK(dt_runtime_new(DT_API_VERSION, 2, &rt) == DT_OK && rt != NULL);
}

static void test_server_errors(void) {
    /* Error paths; the nodes start in start_nodes. */
    dt_future *f = dt_server_start(rt, S("node_id = 0"));
    CHECK(settle(f) == DT_E_CONFIG_ERROR);
    dt_server *none = NULL;
    CHECK(dt_future_server(f, &none) == DT_E_CONFIG_ERROR && none == NULL);
    const uint8_t *msg = NULL;
    size_t msg_len = 0;
    CHECK(dt_future_error_message(f, &msg, &msg_len) == DT_OK && msg_len > 0);
    CHECK(dt_future_retryable(f) == 0);
    dt_future_free(f);
    f = dt_server_start(NULL, S("x"));
    CHECK(settle(f) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    f = dt_server_start(rt, NULL, 5);
    CHECK(settle(f) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    f = dt_server_start(rt, (const uint8_t *)"\xff\xfe", 2);
    CHECK(settle(f) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    f = dt_server_start_file(rt, S("/nonexistent/dongting.toml"));
    CHECK(settle(f) == DT_E_CONFIG_ERROR);
    dt_future_free(f);

}

static void start_nodes(void) {
    int rep[NODES], svc[NODES];
    for (int i = 0; i < NODES; i++) {
        rep[i] = free_port();
        svc[i] = free_port();
    }
    char cfg[1024];
    char path[128];
    snprintf(path, sizeof path, "%s/node1.toml", data_dir);
    config_text(cfg, sizeof cfg, 1, rep, svc);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(cfg, fp);
        fclose(fp);
    }
    dt_future *fs[NODES];
    fs[0] = dt_server_start_file(rt, S(path));
    for (int i = 1; i < NODES; i++) {
        config_text(cfg, sizeof cfg, i + 1, rep, svc);
        fs[i] = dt_server_start(rt, S(cfg));
    }
    service_list[0] = 0;
    for (int i = 0; i < NODES; i++) {
        CHECK(settle(fs[i]) == DT_OK);
        dt_reply r;
        CHECK(dt_future_reply(fs[i], &r) == DT_OK && r.kind == DT_REPLY_SERVER);
        CHECK(dt_future_server(fs[i], &servers[i]) == DT_OK && servers[i] != NULL);
        dt_future_free(fs[i]);
        uint32_t id = 0;
        CHECK(dt_server_node_id(servers[i], &id) == DT_OK && id == (uint32_t)i + 1);
        char addr[64];
        size_t need = 0;
        CHECK(dt_server_service_addr(servers[i], addr, 2, &need) == DT_E_INVALID_ARGUMENT && need > 2);
        CHECK(dt_server_service_addr(servers[i], addr, sizeof addr, &need) == DT_OK);
        if (i) strcat(service_list, ",");
        strcat(service_list, addr);
    }
    CHECK(dt_server_node_id(NULL, NULL) == DT_E_INVALID_ARGUMENT);
    dt_group_status gs;
    CHECK(dt_server_group_status(servers[0], 77, &gs) == DT_E_RAFT_GROUP_NOT_FOUND);
    CHECK(dt_server_group_status(servers[0], 0, NULL) == DT_E_INVALID_ARGUMENT);
    int leader = 0;
    for (int t = 0; t < 600 && !leader; t++) {
        for (int i = 0; i < NODES; i++) {
            if (dt_server_group_status(servers[i], 0, &gs) == DT_OK && gs.role == DT_ROLE_LEADER &&
                gs.ready) {
                leader = i + 1;
            }
        }
        if (!leader) sleep_ms(100);
    }
    CHECK(leader != 0);

    /* The leader's metrics, as its HTTP port would serve them. */
    size_t need = 0;
    CHECK(dt_server_metrics(servers[leader - 1], NULL, 0, &need) == DT_E_INVALID_ARGUMENT && need > 100);
    char *text = malloc(need + 256);
    CHECK(text != NULL && dt_server_metrics(servers[leader - 1], text, need + 256, &need) == DT_OK);
    CHECK(text != NULL && strstr(text, "dongting_group_is_leader{group=\"0\"} 1") != NULL);
    CHECK(text != NULL && strlen(text) + 1 == need);
    free(text);
    CHECK(dt_server_metrics(NULL, NULL, 0, NULL) == DT_E_INVALID_ARGUMENT);
}

static void test_client_new(void) {
    dt_client *c = NULL;
    CHECK(dt_client_new(NULL, S("127.0.0.1:1"), 1000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, S(""), 1000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, S("no-port"), 1000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, NULL, 3, 1000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, S("127.0.0.1:1"), 1000, NULL) == DT_E_INVALID_ARGUMENT);
    /* A zero timeout is refused, not taken as a default. */
    CHECK(dt_client_new(rt, S("127.0.0.1:1"), 0, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, S("127.0.0.1:1"), DT_MAX_TIMEOUT_MS + 1, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(dt_client_new(rt, S("127.0.0.1:1"), DT_MAX_TIMEOUT_MS, &c) == DT_OK && c != NULL);
    dt_client_free(c);
    c = NULL;
    /* Port 0 is refused at once, also beside a good address. */
    double start = now_s();
    CHECK(dt_client_new(rt, S("127.0.0.1:0"), 60000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    char mixed[300];
    snprintf(mixed, sizeof mixed, "%s,localhost:0", service_list);
    CHECK(dt_client_new(rt, S(mixed), 60000, &c) == DT_E_INVALID_ARGUMENT && c == NULL);
    CHECK(now_s() - start < 5.0);
    CHECK(dt_client_new(rt, S(service_list), 10000, &client) == DT_OK && client != NULL);
}

static int node_is(const dt_node *n, const char *key, const char *value) {
    return n->key_len == strlen(key) && memcmp(n->key, key, n->key_len) == 0 &&
           n->value_len == strlen(value) && (n->value_len == 0 || memcmp(n->value, value, n->value_len) == 0);
}

static void test_operations(void) {
    dt_reply r;
    dt_node n;
    dt_future *f = dt_kv_mkdir(client, 0, S("app"));
    CHECK(settle(f) == DT_OK);
    CHECK(dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_WRITE && r.created == 1 && r.index > 0);
    dt_future_free(f);
    f = dt_kv_mkdir(client, 0, S("app"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.created == 0);
    dt_future_free(f);

    f = dt_kv_put(client, 0, S("app.a"), S("one"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.created == 1);
    dt_future_free(f);

    f = dt_kv_get(client, 0, S("app.a"));
    CHECK(settle(f) == DT_OK);
    CHECK(dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_GET && r.node_count == 1);
    CHECK(dt_future_node(f, 0, &n) == DT_OK && node_is(&n, "app.a", "one") && n.kind == DT_NODE_VALUE);
    CHECK(n.create_index > 0 && n.update_index >= n.create_index && n.ttl_deadline_ms == 0);
    CHECK(dt_future_node(f, 1, &n) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_node(f, 0, NULL) == DT_E_INVALID_ARGUMENT);
    int32_t code = 0;
    CHECK(dt_future_code(f, 0, &code) == DT_E_INVALID_ARGUMENT);
    dt_server *srv = NULL;
    CHECK(dt_future_server(f, &srv) == DT_E_WRONG_RESULT_KIND && srv == NULL);
    const uint8_t *msg = NULL;
    size_t len = 99;
    CHECK(dt_future_error_message(f, &msg, &len) == DT_OK && len == 0);
    dt_future_free(f);

    f = dt_kv_get(client, 0, S("app.none"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.node_count == 0);
    dt_future_free(f);

    dt_slice keys[3] = {{(const uint8_t *)"app.b", 5}, {(const uint8_t *)"app.c", 5}, {(const uint8_t *)"app.zz", 6}};
    dt_slice values[2] = {{(const uint8_t *)"B", 1}, {(const uint8_t *)"C", 1}};
    f = dt_kv_batch_put(client, 0, keys, values, 2);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.code_count == 2);
    CHECK(dt_future_code(f, 0, &code) == DT_OK && code == DT_OK);
    dt_future_free(f);
    f = dt_kv_batch_get(client, 0, keys, 3);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_BATCH_GET);
    CHECK(r.node_count == 3 && r.code_count == 3);
    CHECK(dt_future_node(f, 1, &n) == DT_OK && node_is(&n, "app.c", "C"));
    CHECK(dt_future_node(f, 2, &n) == DT_OK && n.kind == DT_NODE_ABSENT);
    dt_future_free(f);

    f = dt_kv_list(client, 0, S("app"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_LIST && r.node_count == 3);
    CHECK(dt_future_node(f, 0, &n) == DT_OK && node_is(&n, "app.a", "one"));
    dt_future_free(f);
    f = dt_kv_list(client, 0, NULL, 0);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.node_count >= 1);
    CHECK(dt_future_node(f, 0, &n) == DT_OK && n.kind == DT_NODE_DIR);
    dt_future_free(f);

    /* Pages of two: app.a app.b, then app.c with nothing after it. */
    int more = -1;
    f = dt_kv_list_page(client, 0, S("app"), NULL, 0, 2);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_LIST && r.node_count == 2);
    CHECK(dt_future_more(f, &more) == DT_OK && more == 1);
    CHECK(dt_future_node(f, 1, &n) == DT_OK && node_is(&n, "app.b", "B"));
    dt_future_free(f);
    f = dt_kv_list_page(client, 0, S("app"), S("app.b"), 2);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.node_count == 1);
    CHECK(dt_future_more(f, &more) == DT_OK && more == 0);
    CHECK(dt_future_node(f, 0, &n) == DT_OK && node_is(&n, "app.c", "C"));
    CHECK(dt_future_more(f, NULL) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    CHECK(run(dt_kv_list_page(client, 0, S("app"), NULL, 0, 10001)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_list_page(client, 0, S("app"), NULL, 3, 10)) == DT_E_INVALID_ARGUMENT);

    f = dt_kv_batch_remove(client, 0, keys, 2);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.code_count == 2);
    dt_future_free(f);

    CHECK(run(dt_kv_compare_and_set(client, 0, S("app.a"), S("one"), S("two"))) == DT_OK);
    f = dt_kv_compare_and_set(client, 0, S("app.a"), S("one"), S("three"));
    CHECK(settle(f) == DT_E_KV_CAS_MISMATCH);
    CHECK(dt_future_reply(f, &r) == DT_E_KV_CAS_MISMATCH);
    dt_future_free(f);
    CHECK(run(dt_kv_compare_and_set(client, 0, S("app.new"), NULL, 0, S("v"))) == DT_OK);

    f = dt_kv_put_temp(client, 0, S("app.t"), S("tv"), 60000);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.deadline_ms > 0);
    dt_future_free(f);
    f = dt_kv_get(client, 0, S("app.t"));
    CHECK(settle(f) == DT_OK && dt_future_node(f, 0, &n) == DT_OK && n.ttl_deadline_ms > 0 && n.ttl_owner != 0);
    dt_future_free(f);
    f = dt_kv_update_ttl(client, 0, S("app.t"), 30000);
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK && r.deadline_ms > 0);
    dt_future_free(f);
    CHECK(run(dt_kv_make_temp_dir(client, 0, S("tmp"), 60000)) == DT_OK);
    CHECK(run(dt_kv_put_temp(client, 0, S("app.t"), S("v"), 0)) == DT_E_KV_INVALID_TTL);
    CHECK(run(dt_kv_update_ttl(client, 0, S("app.a"), 1000)) == DT_E_KV_NOT_TEMP_NODE);
    CHECK(run(dt_kv_make_temp_dir(client, 0, S("x"), 999999999999ULL)) == DT_E_KV_INVALID_TTL);
    /* TTLs run 1 to DT_MAX_TTL_MS (30 days); the message names the value. */
    CHECK(fails_with(dt_kv_put_temp(client, 0, S("app.t"), S("v"), DT_MAX_TTL_MS + 1), DT_E_KV_INVALID_TTL,
                     "ttl_ms must be between 1 and 2592000000, got 2592000001"));
    CHECK(fails_with(dt_kv_update_ttl(client, 0, S("app.t"), 0), DT_E_KV_INVALID_TTL,
                     "ttl_ms must be between 1 and 2592000000, got 0"));
    CHECK(run(dt_kv_update_ttl(client, 0, S("app.t"), DT_MAX_TTL_MS)) == DT_OK);
    CHECK(run(dt_kv_make_temp_dir(client, 0, S("tmp30d"), DT_MAX_TTL_MS)) == DT_OK);
    CHECK(run(dt_kv_remove(client, 0, S("tmp30d"))) == DT_OK);

    CHECK(run(dt_kv_remove(client, 0, S("app.a"))) == DT_OK);
    f = dt_kv_remove(client, 0, S("app.a"));
    CHECK(settle(f) == DT_E_KV_NOT_FOUND);
    CHECK(dt_future_error_message(f, &msg, &len) == DT_OK && len > 0);
    CHECK(dt_future_leader_hint(f, &msg, &len) == DT_OK && len == 0);
    CHECK(dt_future_retryable(f) == 0);
    dt_future_free(f);
    CHECK(run(dt_kv_put(client, 0, S("nodir.x"), S("v"))) == DT_E_KV_PARENT_NOT_FOUND);
    CHECK(run(dt_kv_put(client, 0, (const uint8_t *)"\xff", 1, S("v"))) == DT_E_KV_INVALID_KEY);
    CHECK(run(dt_kv_remove(client, 0, S("app"))) == DT_E_KV_DIR_NOT_EMPTY);
    CHECK(run(dt_kv_get(client, 9, S("app"))) == DT_E_RAFT_GROUP_NOT_FOUND);

    /* Invalid arguments complete the future at once. */
    f = dt_kv_put(NULL, 0, S("a"), S("b"));
    CHECK(dt_future_is_ready(f) == 1 && dt_future_error(f) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    CHECK(run(dt_kv_put(client, 0, NULL, 3, S("b"))) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_get(client, 0, NULL, 1)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_remove(NULL, 0, S("a"))) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_mkdir(NULL, 0, S("a"))) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_list(client, 0, NULL, 2)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_batch_put(client, 0, NULL, values, 2)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_batch_get(client, 0, NULL, 1)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_batch_remove(NULL, 0, keys, 1)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_batch_get(client, 0, keys, 0)) == DT_E_KV_TOO_MANY_KEYS);
    CHECK(run(dt_kv_compare_and_set(client, 0, S("a"), NULL, 1, S("b"))) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_put_temp(NULL, 0, S("a"), S("b"), 10)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_make_temp_dir(client, 0, NULL, 1, 10)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_update_ttl(NULL, 0, S("a"), 10)) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_wait(NULL, 0) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_is_ready(NULL) == 0);
    CHECK(dt_future_error(NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_cancel(NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_reply(NULL, &r) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_error_message(NULL, &msg, &len) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_leader_hint(NULL, &msg, &len) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_set_callback(NULL, NULL, NULL) == DT_E_INVALID_ARGUMENT);
    dt_future_free(NULL);
}

/* Callbacks. */
static void test_watch(void) {
    dt_watch *w = NULL;
    dt_slice bad[1] = {{(const uint8_t *)"bad..key", 8}};
    CHECK(dt_watch_new(client, 0, bad, 1, 0, &w) == DT_E_KV_INVALID_KEY && w == NULL);
    dt_slice keys[1] = {{(const uint8_t *)"wd", 2}};
    CHECK(dt_watch_new(NULL, 0, keys, 1, 0, &w) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_watch_new(client, 0, keys, 1, 0, NULL) == DT_E_INVALID_ARGUMENT);
    dt_reply r;
    dt_future *f = dt_kv_mkdir(client, 0, S("wd"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK);
    dt_future_free(f);
    /* From the mkdir's index: a follower serving the watch may not have
       applied it yet, and "from now" (0) would then include it. */
    CHECK(dt_watch_new(client, 0, keys, 1, r.index, &w) == DT_OK && w != NULL);
    dt_watch_event e;
    CHECK(dt_watch_next(w, 50, &e) == DT_E_PENDING);
    CHECK(dt_watch_next(w, 50, NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_watch_next(w, 0, &e) == DT_E_PENDING);
    CHECK(dt_watch_next(w, DT_MAX_TIMEOUT_MS + 1, &e) == DT_E_INVALID_ARGUMENT);
    f = dt_kv_put(client, 0, S("wd.x"), S("v1"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK);
    dt_future_free(f);
    CHECK(dt_watch_next(w, 5000, &e) == DT_OK);
    CHECK(e.kind == DT_WATCH_CHANGED && e.node_kind == DT_NODE_VALUE && e.index == r.index);
    CHECK(e.key_len == 4 && memcmp(e.key, "wd.x", 4) == 0);
    CHECK(e.value_len == 2 && memcmp(e.value, "v1", 2) == 0);
    f = dt_kv_remove(client, 0, S("wd.x"));
    CHECK(settle(f) == DT_OK && dt_future_reply(f, &r) == DT_OK);
    dt_future_free(f);
    CHECK(dt_watch_next(w, 5000, &e) == DT_OK);
    CHECK(e.kind == DT_WATCH_CHANGED && e.node_kind == DT_NODE_ABSENT && e.index == r.index && e.value_len == 0);
    CHECK(dt_watch_close(w) == DT_OK);
    CHECK(dt_watch_close(w) == DT_OK);
    CHECK(dt_watch_next(w, 50, &e) == DT_E_CLOSED);
    dt_watch_free(w);
    dt_watch_free(NULL);
    /* Freed without close: unregistered in the background. */
    CHECK(dt_watch_new(client, 0, keys, 1, 0, &w) == DT_OK);
    dt_watch_free(w);
}

static pthread_t main_thread;
static atomic_int cb_count, cb_on_other_thread, cb_ok, cb_freed;

static void count_cb(dt_future *f, void *ud) {
    (void)ud;
    atomic_fetch_add(&cb_count, 1);
    if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&cb_on_other_thread, 1);
    if (dt_future_error(f) == DT_OK) atomic_fetch_add(&cb_ok, 1);
}

static void free_in_cb(dt_future *f, void *ud) {
    atomic_int *codes = ud;
    atomic_fetch_add(codes, dt_future_error(f) == DT_OK ? 1 : 1000);
    dt_future_free(f);
    atomic_fetch_add(&cb_freed, 1);
}

struct seen {
    atomic_int calls;
    atomic_int code;
};

static void record_cb(dt_future *f, void *ud) {
    struct seen *s = ud;
    atomic_store(&s->code, dt_future_error(f));
    atomic_fetch_add(&s->calls, 1);
}

static void test_callbacks(void) {
    main_thread = pthread_self();
    enum { N = 100 };
    dt_future *fs[N];
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "app.k%d", i);
        fs[i] = dt_kv_put(client, 0, S(key), S("v"));
        CHECK(dt_future_set_callback(fs[i], count_cb, NULL) == DT_OK);
    }
    CHECK(dt_future_set_callback(fs[0], count_cb, NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_future_set_callback(fs[0], NULL, NULL) == DT_E_INVALID_ARGUMENT);
    for (int i = 0; i < N; i++) CHECK(dt_future_wait(fs[i], 30000) == DT_OK);
    for (int t = 0; t < 100 && atomic_load(&cb_count) < N; t++) sleep_ms(10);
    CHECK(atomic_load(&cb_count) == N + 0);
    CHECK(atomic_load(&cb_ok) == N);
    CHECK(atomic_load(&cb_on_other_thread) > 0);
    /* A callback on a completed future runs at once on this thread. */
    int before_other = atomic_load(&cb_on_other_thread);
    dt_future *done = dt_kv_get(NULL, 0, S("x"));
    CHECK(dt_future_set_callback(done, count_cb, NULL) == DT_OK);
    CHECK(atomic_load(&cb_count) == N + 1 && atomic_load(&cb_on_other_thread) == before_other);
    dt_future_free(done);
    for (int i = 0; i < N; i++) dt_future_free(fs[i]);

    /* Futures freed by their own callback, on IO threads. */
    atomic_int codes = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "app.f%d", i);
        CHECK(dt_future_set_callback(dt_kv_put(client, 0, S(key), S("v")), free_in_cb, &codes) == DT_OK);
    }
    for (int t = 0; t < 3000 && atomic_load(&cb_freed) < 50; t++) sleep_ms(10);
    CHECK(atomic_load(&cb_freed) == 50 && atomic_load(&codes) == 50);

    /* Wait with a timeout, poll, cancel; the callback fires once, on cancel. */
    dt_client *dead = NULL;
    CHECK(dt_client_new(rt, S("127.0.0.1:1"), 60000, &dead) == DT_OK);
    struct seen s = {0, -1};
    dt_future *f = dt_kv_get(dead, 0, S("a"));
    CHECK(dt_future_set_callback(f, record_cb, &s) == DT_OK);
    CHECK(dt_future_wait(f, 20) == DT_E_PENDING);
    CHECK(dt_future_is_ready(f) == 0);
    CHECK(dt_future_error(f) == DT_E_PENDING);
    dt_reply r;
    CHECK(dt_future_reply(f, &r) == DT_E_PENDING);
    CHECK(dt_future_cancel(f) == DT_OK);
    CHECK(atomic_load(&s.calls) == 1 && atomic_load(&s.code) == DT_E_CANCELLED);
    CHECK(dt_future_cancel(f) == DT_OK);
    CHECK(atomic_load(&s.calls) == 1);
    CHECK(dt_future_wait(f, -1) == DT_OK && dt_future_error(f) == DT_E_CANCELLED);
    dt_future_free(f);
    /* Freeing a pending future cancels it and fires its callback. */
    struct seen s2 = {0, -1};
    f = dt_kv_put(dead, 0, S("a"), S("b"));
    CHECK(dt_future_set_callback(f, record_cb, &s2) == DT_OK);
    dt_future_free(f);
    CHECK(atomic_load(&s2.calls) == 1 && atomic_load(&s2.code) == DT_E_CANCELLED);
    dt_client_free(dead);
}

static void test_shutdown_in_flight(void) {
    dt_runtime *r2 = NULL;
    CHECK(dt_runtime_new(DT_API_VERSION, 1, &r2) == DT_OK);
    dt_client *c = NULL;
    CHECK(dt_client_new(r2, S("127.0.0.1:1"), 60000, &c) == DT_OK);
    enum { N = 20 };
    struct seen s[N];
    dt_future *fs[N];
    for (int i = 0; i < N; i++) {
        atomic_init(&s[i].calls, 0);
        atomic_init(&s[i].code, -1);
        fs[i] = dt_kv_get(c, 0, S("a"));
        CHECK(dt_future_set_callback(fs[i], record_cb, &s[i]) == DT_OK);
    }
    CHECK(dt_runtime_shutdown(r2, 5000) == DT_OK);
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&s[i].calls) == 1 && atomic_load(&s[i].code) == DT_E_RUNTIME_SHUT_DOWN);
        dt_future_free(fs[i]);
    }
    CHECK(dt_runtime_shutdown(r2, 5000) == DT_OK);
    CHECK(run(dt_kv_put(c, 0, S("a"), S("b"))) == DT_E_RUNTIME_SHUT_DOWN);
    CHECK(run(dt_client_close(c)) == DT_E_RUNTIME_SHUT_DOWN);
    dt_client *c2 = NULL;
    CHECK(dt_client_new(r2, S("127.0.0.1:1"), 1000, &c2) == DT_E_RUNTIME_SHUT_DOWN && c2 == NULL);
    CHECK(run(dt_server_start(r2, S("node_id = 1"))) == DT_E_CONFIG_ERROR);
    dt_client_free(c);
    dt_runtime_free(r2);
}

static void test_fork(void) {
    /* The child reports through a pipe: its exit status is not ours to judge
     * (a leak checker flags the runtime a forked child cannot free). */
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: every call fails with DT_E_FORKED; nothing hangs. */
        close(fds[0]);
        dt_future *f = dt_kv_get(client, 0, S("app"));
        int ok = dt_future_wait(f, 5000) == DT_OK && dt_future_error(f) == DT_E_FORKED;
        dt_future_free(f);
        dt_client *c = NULL;
        ok = ok && dt_client_new(rt, S("127.0.0.1:1"), 1000, &c) == DT_E_FORKED;
        ok = ok && dt_runtime_shutdown(rt, 0) == DT_E_FORKED;
        char verdict = ok ? 'y' : 'n';
        if (write(fds[1], &verdict, 1) != 1) _exit(4);
        _exit(0);
    }
    close(fds[1]);
    char verdict = 0;
    CHECK(pid > 0 && read(fds[0], &verdict, 1) == 1 && verdict == 'y');
    close(fds[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    /* The parent is unaffected. */
    CHECK(run(dt_kv_get(client, 0, S("app"))) == DT_OK);
}

static void test_close_and_stop(void) {
    CHECK(run(dt_client_close(client)) == DT_OK);
    CHECK(run(dt_kv_get(client, 0, S("app"))) == DT_E_CLOSED);
    CHECK(run(dt_client_close(NULL)) == DT_E_INVALID_ARGUMENT);
    dt_client_free(client);
    CHECK(run(dt_server_stop(servers[0], 1000)) == DT_OK);
    CHECK(run(dt_server_stop(servers[0], 1000)) == DT_OK);
    CHECK(run(dt_server_stop(NULL, 0)) == DT_E_INVALID_ARGUMENT);
    dt_server_free(servers[0]);
    /* Servers 2 and 3 are still running: the runtime shutdown stops them. */
    CHECK(dt_runtime_shutdown(rt, 10000) == DT_OK);
    dt_group_status gs;
    CHECK(dt_server_group_status(servers[1], 0, &gs) == DT_E_RUNTIME_SHUT_DOWN);
    for (int i = 1; i < NODES; i++) dt_server_free(servers[i]);
    dt_runtime_free(rt);
}

static void test_locks(void) {
    dt_client *other = NULL;
    CHECK(dt_client_new(rt, S(service_list), 10000, &other) == DT_OK);
    dt_lock *a = NULL, *b = NULL;
    CHECK(dt_lock_new(client, 0, S("bad..key"), &a) == DT_E_KV_INVALID_KEY && a == NULL);
    CHECK(dt_lock_new(NULL, 0, S("k"), &a) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_lock_new(client, 0, S("k"), NULL) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_kv_mkdir(client, 0, S("locks"))) == DT_OK);
    CHECK(dt_lock_new(client, 0, S("locks.c"), &a) == DT_OK && a != NULL);
    CHECK(dt_lock_new(other, 0, S("locks.c"), &b) == DT_OK && b != NULL);

    dt_future *f = dt_lock_try_lock(a, 10000, 0);
    CHECK(settle(f) == DT_OK);
    dt_reply r;
    CHECK(dt_future_reply(f, &r) == DT_OK && r.kind == DT_REPLY_LOCK);
    uint64_t t1 = 0;
    CHECK(dt_future_token(f, &t1) == DT_OK && t1 > 0);
    CHECK(dt_future_token(f, NULL) == DT_E_INVALID_ARGUMENT);
    dt_future_free(f);
    CHECK(dt_lock_is_held(a) == 1);
    uint64_t rest = 0;
    CHECK(dt_lock_lease_rest_ms(a, &rest) == DT_OK && rest > 9000);
    CHECK(dt_lock_lease_rest_ms(a, NULL) == DT_E_INVALID_ARGUMENT);

    /* b does not wait: token 0; then it waits and a's unlock promotes it. */
    f = dt_lock_try_lock(b, 10000, 0);
    uint64_t t = 99;
    CHECK(settle(f) == DT_OK && dt_future_token(f, &t) == DT_OK && t == 0);
    dt_future_free(f);
    CHECK(dt_lock_is_held(b) == 0);
    dt_future *waiting = dt_lock_try_lock(b, 10000, 8000);
    sleep_ms(200);
    CHECK(dt_future_is_ready(waiting) == 0);
    CHECK(run(dt_lock_unlock(a)) == DT_OK);
    uint64_t t2 = 0;
    CHECK(settle(waiting) == DT_OK && dt_future_token(waiting, &t2) == DT_OK && t2 > t1);
    dt_future_free(waiting);
    CHECK(dt_lock_is_held(b) == 1 && dt_lock_is_held(a) == 0);
    CHECK(run(dt_lock_update_lease(a, 5000)) == DT_E_KV_NOT_OWNER);
    CHECK(run(dt_lock_update_lease(b, 0)) == DT_E_INVALID_ARGUMENT);
    /* Leases run 1 to DT_MAX_TTL_MS, waits 0 to DT_MAX_TTL_MS. */
    CHECK(fails_with(dt_lock_update_lease(b, DT_MAX_TTL_MS + 1), DT_E_INVALID_ARGUMENT,
                     "lease_ms must be between 1 and 2592000000, got 2592000001"));
    CHECK(fails_with(dt_lock_try_lock(b, 0, 0), DT_E_INVALID_ARGUMENT,
                     "lease_ms must be between 1 and 2592000000, got 0"));
    CHECK(fails_with(dt_lock_try_lock(b, 1000, DT_MAX_TTL_MS + 1), DT_E_INVALID_ARGUMENT,
                     "wait_timeout_ms must be between 0 and 2592000000, got 2592000001"));
    CHECK(run(dt_lock_update_lease(b, 20000)) == DT_OK);
    CHECK(run(dt_lock_unlock(b)) == DT_OK);
    CHECK(dt_lock_is_held(b) == 0);

    /* A write's future is not a lock result; NULL handles are refused. */
    f = dt_kv_put(client, 0, S("locks.v"), S("x"));
    CHECK(settle(f) == DT_OK && dt_future_token(f, &t) == DT_E_WRONG_RESULT_KIND);
    dt_future_free(f);
    CHECK(run(dt_lock_try_lock(NULL, 1000, 0)) == DT_E_INVALID_ARGUMENT);
    CHECK(run(dt_lock_unlock(NULL)) == DT_E_INVALID_ARGUMENT);
    CHECK(dt_lock_is_held(NULL) == 0);
    dt_lock_free(NULL);
    dt_lock_free(a);
    dt_lock_free(b);
    CHECK(run(dt_client_close(other)) == DT_OK);
    dt_client_free(other);
}

int main(void) {
    snprintf(data_dir, sizeof data_dir, "/tmp/dongting-c-XXXXXX");
    if (!mkdtemp(data_dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_error_names();
    test_versions_and_runtime();
    test_server_errors();
    start_nodes();
    test_client_new();
    test_operations();
    test_watch();
    test_locks();
    test_callbacks();
    test_shutdown_in_flight();
    test_fork();
    test_close_and_stop();
    CHECK(dt_live_handles() == 0);
    if (dt_live_handles() != 0) fprintf(stderr, "live handles: %lld\n", (long long)dt_live_handles());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", data_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", data_dir);
    printf("c: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
