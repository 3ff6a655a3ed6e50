/* audit.c — reading a node's local audit log for `consentctl audit-export`.
 *
 * The node appends one JSON object per check or patient listing to
 * DATA_DIR/audit.log (node/audit.c): {"time", "caller", "route", "patient",
 * "grantee", "decision"}. The operator exports it, optionally from a time
 * on, as the same JSON lines, so other tools can take it from there. The
 * file is read from the node's data directory, never over the API: the log
 * itself says who asked about whom and is for the operator only.
 *
 * A line that is not such an object (a torn last line after a machine
 * crash, or a damaged file) is skipped and counted rather than stopping the
 * export; lines are bounded so a corrupt file cannot exhaust memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wallet/wallet.h"

#define AUDIT_FILE "audit.log"
#define AUDIT_LINE_MAX 1024   /* the node writes lines under 512 bytes */

/* 1 if line is an audit object at or after since_s, 0 if earlier, -1 if
 * it is not an audit line. */
static int audit_line_keep(const char *line, size_t len, uint64_t since_s)
{
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *t = j ? json_object_get(j, "time") : NULL;
    int rc = -1;
    if (json_is_object(j) && json_is_integer(t) && json_integer_value(t) >= 0 &&
        json_is_string(json_object_get(j, "route")) && json_is_string(json_object_get(j, "decision")))
        rc = (uint64_t)json_integer_value(t) >= since_s;
    json_decref(j);
    return rc;
}

int wallet_audit_export(FILE *out, char *err, const char *data_dir, uint64_t since_s,
                        uint64_t *exported, uint64_t *skipped)
{
    char path[4096], line[AUDIT_LINE_MAX + 2];
    if (snprintf(path, sizeof path, "%s/%s", data_dir, AUDIT_FILE) >= (int)sizeof path) {
        snprintf(err, WALLET_ERR_LEN, "--data: path too long");
        return CHAIN_EINVAL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, WALLET_ERR_LEN, "%.200s: %s", path, strerror(errno));
        return CHAIN_EIO;
    }
    *exported = *skipped = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            /* Over the bound: skip the rest of this line. */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
            (*skipped)++;
            continue;
        }
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        if (len == 0) continue;
        int keep = audit_line_keep(line, len, since_s);
        if (keep < 0) (*skipped)++;
        if (keep <= 0) continue;
        if (fprintf(out, "%s\n", line) < 0) {
            snprintf(err, WALLET_ERR_LEN, "cannot write the export: %s", strerror(errno));
            rc = CHAIN_EIO;
            break;
        }
        (*exported)++;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, WALLET_ERR_LEN, "%.200s: read error", path);
        rc = CHAIN_EIO;
    }
    fclose(f);
    return rc;
}
