/* test_wallet_audit.c — `consentctl audit-export` (wallet_audit_export):
 * the --since filter, skipped malformed, torn and over-long lines, and the
 * errors for a missing log. Files live in a fresh mkdtemp directory; no
 * randomness.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wallet/wallet.h"

#define K64 "1111111111111111111111111111111111111111111111111111111111111111"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/wallet_audit_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_log(const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/audit.log", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Runs the export into a memory buffer; returns its rc. */
static int export(char *out, size_t cap, uint64_t since, uint64_t *n, uint64_t *skipped)
{
    char err[WALLET_ERR_LEN];
    FILE *f = fmemopen(out, cap, "w");
    ck_assert_ptr_nonnull(f);
    int rc = wallet_audit_export(f, err, dir, since, n, skipped);
    fclose(f);
    return rc;
}

#define LINE(t, d) "{\"time\":" #t ",\"caller\":\"" K64 "\",\"route\":\"check\",\"patient\":\"" K64 \
                   "\",\"grantee\":null,\"decision\":\"" d "\"}\n"

START_TEST(export_filters_by_time_and_skips_bad_lines)
{
    char longline[3000];
    memset(longline, 'x', sizeof longline - 2);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    char text[8192];
    snprintf(text, sizeof text, "%s%s%s%s%s%s%s", LINE(100, "permit"), "not json\n", LINE(200, "deny"),
             "\n", longline, "{\"time\":\"x\",\"route\":\"check\",\"decision\":\"deny\"}\n",
             "{\"time\":300,\"route\":\"check\",\"decis");   /* torn last line */
    write_log(text);
    char out[8192] = {0};
    uint64_t n = 0, skipped = 0;
    ck_assert_int_eq(export(out, sizeof out, 0, &n, &skipped), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(skipped, 4);
    ck_assert_str_eq(out, LINE(100, "permit") LINE(200, "deny"));
    memset(out, 0, sizeof out);
    ck_assert_int_eq(export(out, sizeof out, 150, &n, &skipped), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(out, LINE(200, "deny"));
    memset(out, 0, sizeof out);
    ck_assert_int_eq(export(out, sizeof out, 201, &n, &skipped), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(export_errors)
{
    char out[64], err[WALLET_ERR_LEN];
    uint64_t n = 0, skipped = 0;
    ck_assert_int_eq(export(out, sizeof out, 0, &n, &skipped), CHAIN_EIO);   /* no log yet */
    char longdir[5000];
    memset(longdir, 'a', sizeof longdir - 1);
    longdir[sizeof longdir - 1] = 0;
    ck_assert_int_eq(wallet_audit_export(stdout, err, longdir, 0, &n, &skipped), CHAIN_EINVAL);
    /* An empty log exports nothing. */
    write_log("");
    ck_assert_int_eq(export(out, sizeof out, 0, &n, &skipped), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(skipped, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wallet_audit");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, export_filters_by_time_and_skips_bad_lines);
    tcase_add_test(tc, export_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
