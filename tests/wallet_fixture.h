/* wallet_fixture.h — a one-shot HTTP server for the wallet client tests.
 *
 * A child process accepts one connection on 127.0.0.1, reads the request
 * head, answers `resp` and exits with the verdict of `check` on what it read
 * (0 when the request was as expected), so the parent asserts on both the
 * client's result and the request the client sent.
 */
#ifndef CONSENT_TESTS_WALLET_FIXTURE_H
#define CONSENT_TESTS_WALLET_FIXTURE_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*wfx_check_fn)(const char *head, const void *arg);

/* Returns the server's port; *pid is the child to waitpid() on. */
static inline int wfx_serve_once(pid_t *pid, const char *resp, wfx_check_fn check, const void *arg)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(ls, 1), 0);
    ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
    *pid = fork();
    ck_assert_int_ge(*pid, 0);
    if (*pid == 0) {
        char buf[4096];
        size_t n = 0;
        buf[0] = 0;
        int fd = accept(ls, NULL, NULL);
        while (n < sizeof buf - 1) {
            ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = 0;
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        if (send(fd, resp, strlen(resp), MSG_NOSIGNAL) < 0)
            _exit(1);
        close(fd);
        _exit(check(buf, arg));
    }
    close(ls);
    return ntohs(sa.sin_port);
}

#endif
