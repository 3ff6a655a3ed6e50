/* verify.c — checking the signatures of many transactions on several cores.
 *
 * chain_txs_verify splits a batch over short-lived POSIX threads that take
 * the next unchecked index from one atomic counter, so a slow tx never
 * leaves a thread idle while others wait. The calling thread works too and
 * joins the rest before returning: the caller sees a plain synchronous call
 * and chain/ keeps no threads between calls. Small batches stay on the
 * caller's thread, where starting a thread would cost more than it saves.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "chain/chain.h"

#define PER_THREAD_MIN 16   /* fewer txs per thread than this: not worth a thread */

typedef struct {
    uint8_t *ok;
    const uint8_t *const *txs;
    const size_t *lens;
    size_t n;
    atomic_size_t next;
} batch;

/* 1 if the encoding decodes and its signature verifies. */
static uint8_t verify_one(chain_tx *t, const uint8_t *tx, size_t len)
{
    chain_hash h;
    if (tx == NULL || len == 0 || len > CHAIN_TX_BYTES_MAX) return 0;
    if (chain_tx_decode(t, tx, len) != CHAIN_OK) return 0;
    if (chain_tx_sighash(&h, t) != CHAIN_OK) return 0;
    return chain_verify(&t->signer, &t->sig, &h) == CHAIN_OK;
}

static void *worker(void *arg)
{
    batch *b = arg;
    chain_tx *t = malloc(sizeof *t);   /* large: not on a thread's stack */
    if (t == NULL) return NULL;        /* the others (and the caller) finish */
    for (;;) {
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->n) break;
        b->ok[i] = verify_one(t, b->txs[i], b->lens[i]);
    }
    free(t);
    return NULL;
}

unsigned chain_verify_threads_default(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) return 1;
    return cpus > CHAIN_VERIFY_THREADS_MAX ? CHAIN_VERIFY_THREADS_MAX : (unsigned)cpus;
}

int chain_txs_verify(uint8_t *ok, const uint8_t *const *txs, const size_t *lens, size_t n,
                     unsigned threads)
{
    if ((ok == NULL || txs == NULL || lens == NULL) && n > 0) return CHAIN_EINVAL;
    if (threads == 0 || threads > CHAIN_VERIFY_THREADS_MAX) return CHAIN_EINVAL;
    for (size_t i = 0; i < n; i++) ok[i] = 0;
    batch b = {ok, txs, lens, n, 0};
    size_t helpers = n / PER_THREAD_MIN;
    if (helpers > threads - 1u) helpers = threads - 1u;
    pthread_t tid[CHAIN_VERIFY_THREADS_MAX];
    size_t started = 0;
    /* A thread that cannot start leaves its share to the others. */
    while (started < helpers && pthread_create(&tid[started], NULL, worker, &b) == 0) started++;
    (void)worker(&b);
    for (size_t i = 0; i < started; i++) pthread_join(tid[i], NULL);
    /* A thread that got its buffer ran until no index was left; only if
     * none did are some txs unchecked (their flags stay 0). */
    return atomic_load(&b.next) >= n ? CHAIN_OK : CHAIN_ENOMEM;
}
