/* Runs tests/conformance/scenarios.txt through the C ABI (dongting.h).
 * See tests/conformance/README.md for the file format and the output. */
#define _POSIX_C_SOURCE 200809L
#include <dongting.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TOKENS 64

typedef struct {
    char *s;
    size_t len;
} str;

static char failure[4096];

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure, sizeof failure, fmt, ap);
    va_end(ap);
    return -1;
}

/* Expands `$P`, `{C*N}` and `-` (see README.md) into a new heap string. */
static int expand(const char *tok, const char *prefix, str *out) {
    if (strcmp(tok, "-") == 0) {
        out->s = calloc(1, 1);
        out->len = 0;
        return out->s ? 0 : fail("out of memory");
    }
    size_t cap = 64, len = 0;
    char *buf = malloc(cap);
    if (!buf) return fail("out of memory");
    for (const char *p = tok; *p;) {
        const char *add = p;
        size_t n = 1, reps = 1;
        if (p[0] == '$' && p[1] == 'P') {
            add = prefix;
            n = strlen(prefix);
            p += 2;
        } else if (p[0] == '{') {
            char c;
            unsigned long count;
            int used = 0;
            if (sscanf(p, "{%c*%lu}%n", &c, &count, &used) != 2 || used == 0) {
                free(buf);
                return fail("bad repeat in %s", tok);
            }
            static char one;
            one = c;
            add = &one;
            reps = count;
            p += used;
        } else {
            p++;
        }
        while (len + n * reps + 1 > cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                return fail("out of memory");
            }
            buf = grown;
        }
        for (size_t r = 0; r < reps; r++) {
            memcpy(buf + len, add, n);
            len += n;
        }
    }
    buf[len] = 0;
    out->s = buf;
    out->len = len;
    return 0;
}

#define MAX_SLOTS 64

/* A lock or watch handle made by a step, kept by client and key for the rest
 * of the run. */
typedef struct {
    char client;
    char *key;
    void *handle;
} slot;

typedef struct {
    uint32_t group;
    const char *lang;
    const char *servers; /* `$S` of new_client */
    dt_runtime *rt;
    dt_client *a, *b, *u;
    slot locks[MAX_SLOTS];
    int nlocks;
    slot watches[MAX_SLOTS];
    int nwatches;
} runner;

static slot *find_slot(slot *slots, int n, char client, const str *key) {
    for (int i = 0; i < n; i++)
        if (slots[i].client == client && strcmp(slots[i].key, key->s) == 0) return &slots[i];
    return NULL;
}

/* Keeps `handle` for (client, key); -1 when there is no room. */
static int add_slot(slot *slots, int *n, char client, const str *key, void *handle) {
    char *copy = *n < MAX_SLOTS ? strdup(key->s) : NULL;
    if (!copy) return fail("no room for another handle");
    slots[(*n)++] = (slot){client, copy, handle};
    return 0;
}

/* Checks a failed call against the expectation `ex`. */
static int expect_error(char **ex, int nex, int32_t err, const char *msg, size_t mlen) {
    const char *got = dt_error_name(err);
    if (strcmp(ex[0], "error") != 0) return fail("expected %s, got error %s (%.*s)", ex[0], got, (int)mlen, msg);
    if (nex < 2) return fail("error takes a code name");
    /* NAME1|NAME2: any of them. */
    char names[256];
    snprintf(names, sizeof names, "%s", ex[1]);
    for (char *save = NULL, *t = strtok_r(names, "|", &save); t; t = strtok_r(NULL, "|", &save))
        if (strcmp(t, got) == 0) return 0;
    return fail("expected error %s, got %s (%.*s)", ex[1], got, (int)mlen, msg);
}

static void text_of(const dt_node *n, char *buf, size_t cap) {
    switch (n->kind) {
    case DT_NODE_ABSENT: snprintf(buf, cap, "-"); break;
    case DT_NODE_DIR: snprintf(buf, cap, "<dir>"); break;
    case DT_NODE_LOCK: snprintf(buf, cap, "<lock>"); break;
    default: snprintf(buf, cap, "%.*s", (int)n->value_len, (const char *)n->value);
    }
}

/* Compares a result with an expected token: equal, or a short message. */
static int same(const char *want, const char *got, const char *what) {
    if (strcmp(want, got) == 0) return 0;
    return fail("%s: expected [%.40s%s], got [%.40s%s]", what, want, strlen(want) > 40 ? "..." : "", got,
                strlen(got) > 40 ? "..." : "");
}

static void free_all(str *v, int n) {
    for (int i = 0; i < n; i++) free(v[i].s);
}

/* Waits for `f`. When it failed: checks the error against the expectation
 * into *rc, frees `f` and returns 1. When it succeeded: returns 0, `f` kept. */
static int settle_error(dt_future *f, char **ex, int nex, int *rc) {
    dt_future_wait(f, -1);
    int32_t err = dt_future_error(f);
    if (err == DT_OK) return 0;
    const uint8_t *msg;
    size_t mlen;
    dt_future_error_message(f, &msg, &mlen);
    *rc = expect_error(ex, nex, err, (const char *)msg, mlen);
    dt_future_free(f);
    return 1;
}

/* The last segment of a node's key (`c` of `a.b.c`) into buf. */
static void last_segment(const dt_node *n, char *buf, size_t cap) {
    size_t start = n->key_len;
    while (start > 0 && n->key[start - 1] != '.') start--;
    snprintf(buf, cap, "%.*s", (int)(n->key_len - start), (const char *)n->key + start);
}

/* Compares the last key segments of `f`'s nodes with the tokens `ex`. */
static int same_segments(dt_future *f, size_t count, char **ex, int nex, const char *prefix, const char *what) {
    if (count != (size_t)nex) return fail("%s: expected %d children, got %zu", what, nex, count);
    char got[2048];
    for (size_t i = 0; i < count; i++) {
        dt_node n;
        dt_future_node(f, i, &n);
        last_segment(&n, got, sizeof got);
        str want;
        if (expand(ex[i], prefix, &want) != 0) return -1;
        int rc = same(want.s, got, what);
        free(want.s);
        if (rc != 0) return rc;
    }
    return 0;
}

/* list_pages C DIR LIMIT: list_page from the first child, then after each
 * page's last key while more follow; expects `children` of all the pages. */
static int list_pages_step(dt_client *c, uint32_t g, const str *dir, uint32_t limit, char **ex, int nex,
                           const char *prefix) {
    uint8_t *after = NULL;
    size_t after_len = 0;
    char *names[4096];
    int count = 0, rc = 0;
    for (;;) {
        dt_future *f = dt_kv_list_page(c, g, (const uint8_t *)dir->s, dir->len, after, after_len, limit);
        if (settle_error(f, ex, nex, &rc)) goto done;
        dt_reply reply;
        int more = 0;
        dt_future_reply(f, &reply);
        dt_future_more(f, &more);
        for (size_t i = 0; i < reply.node_count && count < 4096; i++) {
            dt_node n;
            char seg[2048];
            dt_future_node(f, i, &n);
            last_segment(&n, seg, sizeof seg);
            names[count++] = strdup(seg);
            if (i + 1 == reply.node_count) {
                free(after);
                after = malloc(n.key_len + 1);
                memcpy(after, n.key, n.key_len);
                after_len = n.key_len;
            }
        }
        dt_future_free(f);
        if (!more || reply.node_count == 0) break;
    }
    if (strcmp(ex[0], "children") != 0) {
        rc = fail("expected %s, got children", ex[0]);
        goto done;
    }
    if (count != nex - 1) {
        rc = fail("list_pages: expected %d children, got %d", nex - 1, count);
        goto done;
    }
    for (int i = 0; rc == 0 && i < count; i++) {
        str want;
        if (expand(ex[i + 1], prefix, &want) != 0) {
            rc = -1;
            break;
        }
        rc = same(want.s, names[i], "list_pages");
        free(want.s);
    }
done:
    for (int i = 0; i < count; i++) free(names[i]);
    free(after);
    return rc;
}

/* watch, next_event and unwatch: the watch of client `client` on key args[0]. */
static int watch_step(runner *r, char client, dt_client *c, const char *name, str *args, int nargs, char **ex,
                      int nex, const char *prefix) {
    int want = strcmp(name, "next_event") == 0 ? 2 : 1;
    if (nargs != want) return fail("%s takes %d arguments, got %d", name, want, nargs);
    slot *s = find_slot(r->watches, r->nwatches, client, &args[0]);
    if (strcmp(name, "watch") == 0) {
        if (s) return fail("client %c already watches %s", client, args[0].s);
        dt_slice key = {(const uint8_t *)args[0].s, args[0].len};
        dt_watch *w = NULL;
        int32_t err = dt_watch_new(c, r->group, &key, 1, 0, &w);
        if (err != DT_OK) return expect_error(ex, nex, err, "", 0);
        if (add_slot(r->watches, &r->nwatches, client, &args[0], w) != 0) {
            dt_watch_free(w);
            return -1;
        }
        return same(ex[0], "ok", name);
    }
    if (!s) return fail("client %c does not watch %s", client, args[0].s);
    dt_watch *w = s->handle;
    if (strcmp(name, "unwatch") == 0) {
        int32_t err = dt_watch_close(w);
        if (err != DT_OK) return expect_error(ex, nex, err, "", 0);
        return same(ex[0], "ok", name);
    }
    dt_watch_event ev;
    int32_t err = dt_watch_next(w, (uint32_t)strtoul(args[1].s, NULL, 10), &ev);
    char got[4096];
    if (err == DT_E_PENDING) {
        snprintf(got, sizeof got, "none");
    } else if (err != DT_OK) {
        return expect_error(ex, nex, err, "", 0);
    } else {
        const char *state = ev.node_kind == DT_NODE_ABSENT ? "absent"
                            : ev.node_kind == DT_NODE_DIR  ? "dir"
                            : ev.node_kind == DT_NODE_LOCK ? "lock"
                                                           : "value";
        int n = snprintf(got, sizeof got, "event %.*s %s", (int)ev.key_len, (const char *)ev.key, state);
        if (ev.node_kind == DT_NODE_VALUE && n > 0 && (size_t)n < sizeof got)
            snprintf(got + n, sizeof got - (size_t)n, " %.*s", (int)ev.value_len, (const char *)ev.value);
    }
    char want_text[4096] = "";
    size_t used = 0;
    for (int i = 0; i < nex; i++) {
        str t;
        if (expand(ex[i], prefix, &t) != 0) return -1;
        int n = snprintf(want_text + used, sizeof want_text - used, "%s%s", i ? " " : "", t.s);
        free(t.s);
        if (n < 0 || (size_t)n >= sizeof want_text - used) return fail("expectation too long");
        used += (size_t)n;
    }
    return same(want_text, got, name);
}

/* new_client ADDRESSES TIMEOUT_MS: makes a client and closes it. */
static int new_client_step(runner *r, char **op, int nop, char **ex, int nex, const char *prefix) {
    if (nop != 3) return fail("new_client takes ADDRESSES and TIMEOUT_MS");
    str a;
    if (expand(op[1], prefix, &a) != 0) return -1;
    /* `$S`: the cluster's addresses. */
    char addrs[4096] = "";
    size_t used = 0;
    for (const char *p = a.s; *p && used + 1 < sizeof addrs;) {
        if (p[0] == '$' && p[1] == 'S') {
            used += (size_t)snprintf(addrs + used, sizeof addrs - used, "%s", r->servers);
            p += 2;
        } else {
            addrs[used++] = *p++;
            addrs[used] = 0;
        }
    }
    free(a.s);
    if (used + 1 >= sizeof addrs) return fail("addresses too long");
    dt_client *c = NULL;
    int32_t err = dt_client_new(r->rt, (const uint8_t *)addrs, strlen(addrs), (uint32_t)strtoul(op[2], NULL, 10), &c);
    if (err != DT_OK) return expect_error(ex, nex, err, "", 0);
    dt_future *f = dt_client_close(c);
    dt_future_wait(f, -1);
    err = dt_future_error(f);
    dt_future_free(f);
    dt_client_free(c);
    if (err != DT_OK) return expect_error(ex, nex, err, "", 0);
    return strcmp(ex[0], "error") == 0 ? fail("expected error %s, got success", nex > 1 ? ex[1] : "")
                                       : same(ex[0], "ok", "new_client");
}

static int run_step(runner *r, char **op, int nop, char **ex, int nex, const char *prefix) {
    if (strcmp(op[0], "sleep") == 0) {
        if (nop != 2) return fail("sleep takes milliseconds");
        long ms = atol(op[1]);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return 0;
    }
    if (nex == 0) return fail("missing expectation");
    if (strcmp(op[0], "new_client") == 0) return new_client_step(r, op, nop, ex, nex, prefix);
    if (nop < 2) return fail("missing client");
    dt_client *c = strcmp(op[1], "a") == 0 ? r->a : strcmp(op[1], "b") == 0 ? r->b : strcmp(op[1], "u") == 0 ? r->u : NULL;
    if (!c) return fail("unknown client %s", op[1]);
    str args[MAX_TOKENS];
    int nargs = nop - 2;
    for (int i = 0; i < nargs; i++) {
        if (expand(op[i + 2], prefix, &args[i]) != 0) {
            free_all(args, i);
            return -1;
        }
    }
#define A(i) (const uint8_t *)args[i].s, args[i].len
#define WANT(n)                                                               \
    if (nargs != (n)) {                                                       \
        free_all(args, nargs);                                                \
        return fail("%s takes %d arguments, got %d", op[0], (n), nargs);      \
    }
    dt_slice keys[MAX_TOKENS], values[MAX_TOKENS];
    dt_future *f = NULL;
    const char *name = op[0];
    if (strcmp(name, "watch") == 0 || strcmp(name, "next_event") == 0 || strcmp(name, "unwatch") == 0) {
        int rc = watch_step(r, op[1][0], c, name, args, nargs, ex, nex, prefix);
        free_all(args, nargs);
        return rc;
    }
    uint32_t g = r->group;
    if (strcmp(name, "put") == 0) { WANT(2) f = dt_kv_put(c, g, A(0), A(1)); }
    else if (strcmp(name, "get") == 0) { WANT(1) f = dt_kv_get(c, g, A(0)); }
    else if (strcmp(name, "remove") == 0) { WANT(1) f = dt_kv_remove(c, g, A(0)); }
    else if (strcmp(name, "mkdir") == 0) { WANT(1) f = dt_kv_mkdir(c, g, A(0)); }
    else if (strcmp(name, "list") == 0) { WANT(1) f = dt_kv_list(c, g, A(0)); }
    else if (strcmp(name, "list_page") == 0) { WANT(3) f = dt_kv_list_page(c, g, A(0), A(1), (uint32_t)strtoul(args[2].s, NULL, 10)); }
    else if (strcmp(name, "list_pages") == 0) {
        WANT(2)
        int rc = list_pages_step(c, g, &args[0], (uint32_t)strtoul(args[1].s, NULL, 10), ex, nex, prefix);
        free_all(args, nargs);
        return rc;
    }
    else if (strcmp(name, "cas") == 0) { WANT(3) f = dt_kv_compare_and_set(c, g, A(0), A(1), A(2)); }
    else if (strcmp(name, "put_temp") == 0) { WANT(3) f = dt_kv_put_temp(c, g, A(0), A(1), strtoull(args[2].s, NULL, 10)); }
    else if (strcmp(name, "make_temp_dir") == 0) { WANT(2) f = dt_kv_make_temp_dir(c, g, A(0), strtoull(args[1].s, NULL, 10)); }
    else if (strcmp(name, "update_ttl") == 0) { WANT(2) f = dt_kv_update_ttl(c, g, A(0), strtoull(args[1].s, NULL, 10)); }
    else if (strcmp(name, "try_lock") == 0 || strcmp(name, "unlock") == 0 || strcmp(name, "update_lease") == 0) {
        int want = name[0] == 't' ? 3 : name[0] == 'u' && name[1] == 'n' ? 1 : 2;
        WANT(want)
        /* One handle per client and key, made on first use. */
        slot *s = find_slot(r->locks, r->nlocks, op[1][0], &args[0]);
        dt_lock *l = s ? s->handle : NULL;
        if (!l) {
            int32_t err = dt_lock_new(c, g, A(0), &l);
            if (err != DT_OK) {
                free_all(args, nargs);
                return expect_error(ex, nex, err, "", 0);
            }
            if (add_slot(r->locks, &r->nlocks, op[1][0], &args[0], l) != 0) {
                dt_lock_free(l);
                free_all(args, nargs);
                return -1;
            }
        }
        if (name[0] == 't')
            f = dt_lock_try_lock(l, strtoull(args[1].s, NULL, 10), strtoull(args[2].s, NULL, 10));
        else if (want == 1)
            f = dt_lock_unlock(l);
        else
            f = dt_lock_update_lease(l, strtoull(args[1].s, NULL, 10));
    } else if (strcmp(name, "batch_put") == 0) {
        if (nargs % 2) {
            free_all(args, nargs);
            return fail("batch_put takes key/value pairs");
        }
        for (int i = 0; i < nargs / 2; i++) {
            keys[i] = (dt_slice){(const uint8_t *)args[2 * i].s, args[2 * i].len};
            values[i] = (dt_slice){(const uint8_t *)args[2 * i + 1].s, args[2 * i + 1].len};
        }
        f = dt_kv_batch_put(c, g, keys, values, (size_t)nargs / 2);
    } else if (strcmp(name, "batch_get") == 0 || strcmp(name, "batch_remove") == 0) {
        for (int i = 0; i < nargs; i++) keys[i] = (dt_slice){(const uint8_t *)args[i].s, args[i].len};
        f = name[6] == 'g' ? dt_kv_batch_get(c, g, keys, (size_t)nargs) : dt_kv_batch_remove(c, g, keys, (size_t)nargs);
    } else {
        free_all(args, nargs);
        return fail("unknown step %s", name);
    }
#undef A
#undef WANT
    free_all(args, nargs);
    const char *kind = ex[0];
    int rc = 0;
    if (settle_error(f, ex, nex, &rc)) return rc;
    dt_reply reply;
    dt_future_reply(f, &reply);
    char got[2048];
    if (strcmp(kind, "error") == 0) {
        rc = fail("expected error %s, got success", nex > 1 ? ex[1] : "");
    } else if (strcmp(kind, "ok") == 0) {
        rc = 0;
    } else if (strcmp(kind, "locked") == 0 || strcmp(kind, "not_locked") == 0) {
        uint64_t token = 0;
        dt_future_token(f, &token);
        rc = same(kind, token > 0 ? "locked" : "not_locked", "try_lock");
    } else if (strcmp(kind, "lock") == 0) {
        dt_node n = {0};
        if (reply.node_count > 0) dt_future_node(f, 0, &n);
        text_of(&n, got, sizeof got);
        rc = same("<lock>", got, "get");
    } else if (strcmp(kind, "value") == 0 || strcmp(kind, "absent") == 0 || strcmp(kind, "dir") == 0) {
        dt_node n = {0};
        if (reply.node_count > 0) dt_future_node(f, 0, &n);
        text_of(&n, got, sizeof got);
        if (kind[0] == 'v') {
            str want;
            if (nex < 2 || expand(ex[1], prefix, &want) != 0) {
                rc = nex < 2 ? fail("value takes a value") : -1;
            } else {
                rc = same(want.s, got, "get");
                free(want.s);
            }
        } else {
            rc = same(kind[0] == 'a' ? "-" : "<dir>", got, "get");
        }
    } else if (strcmp(kind, "page") == 0) {
        int more = -1;
        dt_future_more(f, &more);
        if (nex < 2) rc = fail("page takes more or end");
        else rc = same(ex[1], more == 1 ? "more" : "end", "page");
        if (rc == 0) rc = same_segments(f, reply.node_count, ex + 2, nex - 2, prefix, "page");
    } else if (strcmp(kind, "children") == 0 || strcmp(kind, "values") == 0 || strcmp(kind, "codes") == 0) {
        size_t count = kind[1] == 'o' ? reply.code_count : reply.node_count;
        if (count != (size_t)(nex - 1)) {
            rc = fail("%s: expected %d entries, got %zu", kind, nex - 1, count);
        }
        for (size_t i = 0; rc == 0 && i < count; i++) {
            if (kind[1] == 'o') {
                int32_t code;
                dt_future_code(f, i, &code);
                snprintf(got, sizeof got, "%s", dt_error_name(code));
                rc = same(ex[i + 1], got, "codes");
            } else {
                dt_node n;
                dt_future_node(f, i, &n);
                if (kind[0] == 'c') {
                    last_segment(&n, got, sizeof got);
                } else {
                    text_of(&n, got, sizeof got);
                }
                str want;
                if (strcmp(ex[i + 1], "-") == 0 && kind[0] == 'v') {
                    rc = same("-", got, kind);
                } else if (expand(ex[i + 1], prefix, &want) == 0) {
                    rc = same(want.s, got, kind);
                    free(want.s);
                } else {
                    rc = -1;
                }
            }
        }
    } else {
        rc = fail("unknown expectation %s", kind);
    }
    dt_future_free(f);
    return rc;
}

static int mkdir_sync(dt_client *c, uint32_t g, const char *dir) {
    dt_future *f = dt_kv_mkdir(c, g, (const uint8_t *)dir, strlen(dir));
    dt_future_wait(f, -1);
    int32_t err = dt_future_error(f);
    dt_future_free(f);
    return err == DT_OK ? 0 : fail("setup: mkdir %s: %s", dir, dt_error_name(err));
}

static dt_client *client(dt_runtime *rt, const char *servers, uint32_t timeout_ms) {
    dt_client *c = NULL;
    if (dt_client_new(rt, (const uint8_t *)servers, strlen(servers), timeout_ms, &c) != DT_OK) return NULL;
    return c;
}

static void close_client(dt_client *c) {
    dt_future *f = dt_client_close(c);
    dt_future_wait(f, -1);
    dt_future_free(f);
    dt_client_free(c);
}

int main(void) {
    const char *servers = getenv("DT_SERVERS"), *group = getenv("DT_GROUP"), *path = getenv("DT_SCENARIOS");
    const char *lang = getenv("DT_LANG") ? getenv("DT_LANG") : "c";
    if (!servers || !group || !path) {
        fprintf(stderr, "conformance: DT_SERVERS, DT_GROUP and DT_SCENARIOS must be set\n");
        return 2;
    }
    FILE *file = fopen(path, "r");
    if (!file) {
        fprintf(stderr, "conformance: cannot read %s\n", path);
        return 2;
    }
    dt_runtime *rt = NULL;
    if (dt_runtime_new(DT_API_VERSION, 2, &rt) != DT_OK) {
        fprintf(stderr, "conformance: no runtime\n");
        return 2;
    }
    runner r = {(uint32_t)atoi(group), lang, servers, rt, client(rt, servers, 10000), client(rt, servers, 10000),
                client(rt, "127.0.0.1:1", 500), {{0}}, 0, {{0}}, 0};
    if (!r.a || !r.b || !r.u) {
        fprintf(stderr, "conformance: cannot create clients\n");
        return 2;
    }
    char line[16384], name[256] = "", prefix[512] = "";
    int passed = 0, failed = 0, lineno = 0, in_scenario = 0, broken = 0;
    for (;;) {
        char *got_line = fgets(line, sizeof line, file);
        if (got_line) lineno++;
        char *tokens[MAX_TOKENS];
        int n = 0;
        if (got_line) {
            for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t && n < MAX_TOKENS;
                 t = strtok_r(NULL, " \t\r\n", &save))
                tokens[n++] = t;
            if (n == 0 || tokens[0][0] == '#') continue;
        }
        if (!got_line || strcmp(tokens[0], "scenario") == 0) {
            if (in_scenario) {
                if (broken) {
                    failed++;
                    printf("FAIL %s: %s\n", name, failure);
                } else {
                    passed++;
                    printf("PASS %s\n", name);
                }
                fflush(stdout);
            }
            if (!got_line) break;
            snprintf(name, sizeof name, "%s", n > 1 ? tokens[1] : "?");
            snprintf(prefix, sizeof prefix, "conf.%s.%s", lang, name);
            in_scenario = 1;
            broken = 0;
            char dir[600];
            snprintf(dir, sizeof dir, "conf.%s", lang);
            if (mkdir_sync(r.a, r.group, "conf") || mkdir_sync(r.a, r.group, dir) || mkdir_sync(r.a, r.group, prefix))
                broken = 1;
            continue;
        }
        if (!in_scenario || broken) {
            if (!in_scenario) {
                fprintf(stderr, "conformance: line %d: step before the first scenario\n", lineno);
                return 2;
            }
            continue;
        }
        int arrow = n;
        for (int i = 0; i < n; i++)
            if (strcmp(tokens[i], "=>") == 0) arrow = i;
        if (run_step(&r, tokens, arrow, tokens + arrow + 1, arrow < n ? n - arrow - 1 : 0, prefix) != 0) {
            char msg[sizeof failure + 32];
            snprintf(msg, sizeof msg, "line %d: %s", lineno, failure);
            snprintf(failure, sizeof failure, "%.4000s", msg);
            broken = 1;
        }
    }
    fclose(file);
    for (int i = 0; i < r.nlocks; i++) {
        dt_lock_free(r.locks[i].handle);
        free(r.locks[i].key);
    }
    for (int i = 0; i < r.nwatches; i++) {
        dt_watch_free(r.watches[i].handle);
        free(r.watches[i].key);
    }
    close_client(r.a);
    close_client(r.b);
    close_client(r.u);
    dt_runtime_shutdown(rt, 5000);
    dt_runtime_free(rt);
    printf("%s: %d passed, %d failed\n", lang, passed, failed);
    return failed == 0 ? 0 : 1;
}
