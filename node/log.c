/* log.c — the node's logger: one line per event, UTC time and level first.
 *
 * The logger is a small value the node owns (no global state), so tests and
 * several nodes in one process each log where they are told. Lines are
 * written with a single fprintf so concurrent writers do not interleave
 * within a line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "node/node.h"

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void node_vlog(const node_logger *lg, node_log_level level, const char *fmt, va_list ap) {
    if (!lg || level < lg->level || level > NODE_LOG_ERROR) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* A line is one event: newlines inside a message would forge lines. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    FILE *out = lg->out ? (FILE *)lg->out : stderr;
    fprintf(out, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, level_names[level], msg);
    fflush(out);
}

void node_log(const node_logger *lg, node_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    node_vlog(lg, level, fmt, ap);
    va_end(ap);
}

int node_log_level_parse(node_log_level *out, const char *s) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (node_log_level)i;
            return 0;
        }
    }
    return NODE_EINVAL;
}

const char *node_strerror(int err) {
    switch (err) {
    case NODE_OK: return "ok";
    case NODE_EINVAL: return "invalid argument";
    case NODE_ENOMEM: return "out of memory";
    case NODE_ECONFIG: return "bad configuration";
    case NODE_EIO: return "i/o error";
    case NODE_EFULL: return "queue full";
    case NODE_EDUP: return "already known";
    case NODE_ECHAIN: return "chain error";
    case NODE_ECONS: return "consensus error";
    case NODE_ESTOPPED: return "node is stopping";
    default: return "unknown error";
    }
}
