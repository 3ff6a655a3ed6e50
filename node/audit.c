/* audit.c — the node's local audit log of who asked about whom.
 *
 * Checks and patient listings reveal who is interested in which patient, so
 * every one is recorded, whatever the answer: one JSON line per request in
 * DATA_DIR/audit.log. The file is private to the operator (created 0600 and
 * forced back to 0600 if someone widened it) and never holds more than keys,
 * a route name, the decision and the time.
 *
 * Lines are gathered in a buffer and handed to the kernel with one
 * write(2) on O_APPEND per batch: node__audit_flush runs after the
 * requests of one socket read are answered and before any of their
 * answers is written (http.c's flush hook), and whenever the buffer is
 * full. So no answer leaves the node before its audit line is in the
 * kernel, and a pipelined batch of checks costs one write(2), not one per
 * check. The trade-off: a node crash in the middle of a batch loses the
 * lines of that batch, whose answers were never sent either. fsync, which
 * protects against a crash of the machine, costs milliseconds, so it runs
 * in batches: at most once per NODE_AUDIT_SYNC_MS (sooner after
 * NODE_AUDIT_SYNC_LINES lines) and at close, never per request, and on
 * libuv's thread pool (uv_fs_fdatasync), so the loop never waits for the
 * disk while requests queue behind it (one sync in flight at a time). Lines
 * after the last fsync of a quiet node are in the page cache, safe from a
 * node crash but not from a power cut, until the next request or the
 * node's stop.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/node_int.h"

#define AUDIT_LINE_MAX 512
#define AUDIT_ROUTE_LEN_MAX 32
#define AUDIT_BUF_BYTES (64u << 10)

struct node__audit {
    int fd;
    uv_loop_t *loop;             /* NULL: fsync inline */
    uv_fs_t sync_req;
    int syncing, closed;
    uint32_t unsynced;          /* lines written since the last fsync */
    uint64_t last_sync_ms;
    uint64_t failures;           /* lines that could not be written */
    uint32_t pending;            /* lines in buf */
    size_t len;
    char buf[AUDIT_BUF_BYTES];
};

int node__audit_open(node__audit **out, const char *data_dir, uv_loop_t *loop)
{
    char path[NODE_PATH_MAX + 32];
    if (out == NULL || data_dir == NULL) return NODE_EINVAL;
    int n = snprintf(path, sizeof path, "%s/%s", data_dir, NODE_AUDIT_FILE);
    if (n < 0 || (size_t)n >= sizeof path) return NODE_EINVAL;
    node__audit *a = calloc(1, sizeof *a);
    if (a == NULL) return NODE_ENOMEM;
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0 || fchmod(a->fd, 0600) != 0) {
        if (a->fd >= 0) close(a->fd);
        free(a);
        return NODE_EIO;
    }
    a->loop = loop;
    a->sync_req.data = a;
    *out = a;
    return NODE_OK;
}

static void audit_free(node__audit *a)
{
    if (a->unsynced > 0 && fdatasync(a->fd) != 0) a->failures++;   /* lines after the last sync */
    close(a->fd);
    free(a);
}

static void sync_done(uv_fs_t *req)
{
    node__audit *a = req->data;
    if (req->result < 0) a->failures++;
    uv_fs_req_cleanup(req);
    a->syncing = 0;
    if (a->closed) audit_free(a);
}

static void audit_sync(node__audit *a, uint64_t now_ms)
{
    if (a->unsynced == 0 || a->syncing) return;   /* a sync in flight covers most; the next takes the rest */
    if (a->loop == NULL || uv_fs_fdatasync(a->loop, &a->sync_req, a->fd, sync_done) != 0) {
        if (fdatasync(a->fd) != 0) a->failures++;
    } else {
        a->syncing = 1;
    }
    a->unsynced = 0;
    a->last_sync_ms = now_ms;
}

int node__audit_flush(node__audit *a, uint64_t now_ms)
{
    if (a == NULL || a->len == 0) return NODE_OK;
    int rc = NODE_OK;
    size_t done = 0;
    while (done < a->len) {
        ssize_t w = write(a->fd, a->buf + done, a->len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    if (done != a->len) {
        /* A batch is all or nothing: a half line left by a short write (a
         * full disk, a file size limit) would run into the next batch's
         * first line. This node is the file's only writer, so the batch
         * began `done` bytes before the end. */
        off_t end = done > 0 ? lseek(a->fd, 0, SEEK_END) : -1;
        if (end >= (off_t)done && ftruncate(a->fd, end - (off_t)done) != 0) a->failures++;
        a->failures += a->pending;
        rc = NODE_EIO;
    } else {
        a->unsynced += a->pending;
    }
    a->len = 0;
    a->pending = 0;
    if (a->unsynced >= NODE_AUDIT_SYNC_LINES || now_ms - a->last_sync_ms >= NODE_AUDIT_SYNC_MS ||
        now_ms < a->last_sync_ms)
        audit_sync(a, now_ms);
    return rc;
}

void node__audit_close(node__audit *a)
{
    if (a == NULL) return;
    a->loop = NULL;   /* from here on a sync runs inline */
    node__audit_flush(a, 0);
    if (a->syncing) a->closed = 1;   /* sync_done frees it */
    else audit_free(a);
}

uint64_t node__audit_failures(const node__audit *a)
{
    return a ? a->failures : 0;
}

static int route_ok(const char *route)
{
    size_t n = strnlen(route, AUDIT_ROUTE_LEN_MAX + 1);
    if (n == 0 || n > AUDIT_ROUTE_LEN_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        /* Names we write ourselves: no quoting needed for these. */
        if (route[i] < 0x21 || route[i] > 0x7e || route[i] == '"' || route[i] == '\\') return 0;
    }
    return 1;
}

/* Renders "key" as "<hex>" or null into buf; returns its length. */
static void key_field(char *out, size_t cap, const chain_pubkey *k)
{
    char hx[2 * CHAIN_KEY_LEN + 1];
    assert(cap >= 2 * CHAIN_KEY_LEN + 3);
    if (k == NULL) {
        snprintf(out, cap, "null");
        return;
    }
    chain_hex(hx, k->b, CHAIN_KEY_LEN);
    snprintf(out, cap, "\"%s\"", hx);
}

int node__audit_log(node__audit *a, uint64_t now_ms, const chain_pubkey *caller, const char *route,
                    const chain_pubkey *patient, const chain_pubkey *grantee, const char *decision)
{
    if (a == NULL || route == NULL || patient == NULL || decision == NULL) return NODE_EINVAL;
    if (!route_ok(route) || !route_ok(decision)) return NODE_EINVAL;
    char who[80], pat[80], gr[80];
    key_field(who, sizeof who, caller);
    key_field(pat, sizeof pat, patient);
    key_field(gr, sizeof gr, grantee);
    int rc = NODE_OK;
    if (sizeof a->buf - a->len < AUDIT_LINE_MAX) rc = node__audit_flush(a, now_ms);
    int n = snprintf(a->buf + a->len, AUDIT_LINE_MAX,
                     "{\"time\":%" PRIu64 ",\"caller\":%s,\"route\":\"%s\",\"patient\":%s,"
                     "\"grantee\":%s,\"decision\":\"%s\"}\n",
                     now_ms / 1000, who, route, pat, gr, decision);
    assert(n > 0 && n < AUDIT_LINE_MAX);   /* fields are bounded above */
    a->len += (size_t)n;
    a->pending++;
    return rc;
}
