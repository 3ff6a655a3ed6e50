/* verify.c — checking signatures on several cores.
 *
 * One pool serves two callers. Items (a tx signature, or a block's commit
 * certificate) are numbered; short-lived POSIX threads take the next
 * unchecked number from one atomic counter, so a slow item never leaves a
 * thread idle while others wait, and chain/ keeps no threads between runs.
 *
 * chain_txs_verify is a plain synchronous call: the calling thread works
 * too and joins the rest before returning. Small batches stay on the
 * caller's thread, where starting a thread would cost more than it saves.
 *
 * chain_blocks_check runs behind the caller instead: it checks a run of
 * synced blocks (each block's certificate, then its txs) in block order
 * while the caller applies them one by one, and the caller waits only for
 * the block it is about to apply. A waiting caller takes unchecked items
 * itself rather than sleep, so a run still finishes with no helper at all;
 * otherwise signature checks never sit on the thread that executes.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "chain/chain.h"
#include "chain/chain_internal.h"

#define PER_THREAD_MIN 16   /* fewer items per thread than this: not worth a thread */

typedef struct pool pool;
/* Checks item i; t is the calling thread's scratch tx. */
typedef void (*item_fn)(pool *p, size_t i, chain_tx *t);

struct pool {
    item_fn fn;
    size_t n;
    atomic_size_t next;       /* the next unclaimed item */
    pthread_t tid[CHAIN_VERIFY_THREADS_MAX];
    size_t started;
};

/* 1 if the encoding decodes and its signature verifies. */
static uint8_t verify_one(chain_tx *t, const uint8_t *tx, size_t len)
{
    chain_hash h;
    if (tx == NULL || len == 0 || len > CHAIN_TX_BYTES_MAX) return 0;
    if (chain_tx_decode(t, tx, len) != CHAIN_OK) return 0;
    if (chain_tx_sighash(&h, t) != CHAIN_OK) return 0;
    return chain_verify(&t->signer, &t->sig, &h) == CHAIN_OK;
}

/* Claims and checks one item: 1, or 0 when none is left. */
static int pool_step(pool *p, chain_tx *t)
{
    size_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n) return 0;
    p->fn(p, i, t);
    return 1;
}

static void *worker(void *arg)
{
    pool *p = arg;
    chain_tx *t = malloc(sizeof *t);   /* large: not on a thread's stack */
    if (t == NULL) return NULL;        /* the others (and the caller) finish */
    while (pool_step(p, t)) {
    }
    free(t);
    return NULL;
}

/* Starts up to threads - 1 helpers (fewer for a small run). A thread that
 * cannot start leaves its share to the others. */
static void pool_start(pool *p, item_fn fn, size_t n, unsigned threads)
{
    p->fn = fn;
    p->n = n;
    atomic_init(&p->next, 0);
    p->started = 0;
    size_t helpers = n / PER_THREAD_MIN;
    if (helpers > threads - 1u) helpers = threads - 1u;
    while (p->started < helpers && pthread_create(&p->tid[p->started], NULL, worker, p) == 0) p->started++;
}

/* Claims nothing more and joins the helpers. */
static void pool_stop(pool *p)
{
    atomic_store(&p->next, p->n);
    for (size_t i = 0; i < p->started; i++) pthread_join(p->tid[i], NULL);
    p->started = 0;
}

unsigned chain_verify_threads_default(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) return 1;
    return cpus > CHAIN_VERIFY_THREADS_MAX ? CHAIN_VERIFY_THREADS_MAX : (unsigned)cpus;
}

/* ------------------------------------------------------------------ txs */

typedef struct {
    pool p;                   /* first: the item callback gets &p */
    uint8_t *ok;
    const uint8_t *const *txs;
    const size_t *lens;
} tx_batch;

static void tx_item(pool *p, size_t i, chain_tx *t)
{
    tx_batch *b = (tx_batch *)p;
    b->ok[i] = verify_one(t, b->txs[i], b->lens[i]);
}

int chain_txs_verify(uint8_t *ok, const uint8_t *const *txs, const size_t *lens, size_t n,
                     unsigned threads)
{
    if ((ok == NULL || txs == NULL || lens == NULL) && n > 0) return CHAIN_EINVAL;
    if (threads == 0 || threads > CHAIN_VERIFY_THREADS_MAX) return CHAIN_EINVAL;
    for (size_t i = 0; i < n; i++) ok[i] = 0;
    tx_batch b = {.ok = ok, .txs = txs, .lens = lens};
    pool_start(&b.p, tx_item, n, threads);
    (void)worker(&b.p);
    /* Only a thread that got its buffer claims items, and it runs until
     * none is left; if none did, some txs are unchecked (flags stay 0). */
    int done = atomic_load(&b.p.next) >= n;
    pool_stop(&b.p);
    return done ? CHAIN_OK : CHAIN_ENOMEM;
}

/* ------------------------------------------------------------------ blocks */

/* Items are numbered block by block: block i's certificate is item
 * first[i], its txs follow. */
struct chain_blocks_check {
    pool p;                   /* first: the item callback gets &p */
    const chain_block *blocks;
    size_t n_blocks;
    const chain_genesis *g;
    size_t *first;            /* n_blocks + 1 */
    uint32_t *block_of;       /* per item */
    uint8_t *ok;              /* per item: a tx's flag (the cert's is unused) */
    int *cert_rc;             /* per block */
    atomic_size_t *left;      /* per block: items not yet checked */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    chain_tx *t;              /* the caller's scratch tx */
    chain__run *run;          /* blocks applied, not yet written */
};

static void block_item(pool *p, size_t k, chain_tx *t)
{
    chain_blocks_check *c = (chain_blocks_check *)p;
    uint32_t i = c->block_of[k];
    const chain_block *b = &c->blocks[i];
    if (k == c->first[i]) {
        c->cert_rc[i] = chain_cert_verify(&b->cert, c->g, &b->hdr);
    } else {
        size_t j = k - c->first[i] - 1;
        c->ok[k] = verify_one(t, b->txs[j], b->tx_lens[j]);
    }
    /* The last item of a block publishes it (the decrement orders the
     * writes above before the waiter's load of left[i]). */
    if (atomic_fetch_sub(&c->left[i], 1) == 1) {
        pthread_mutex_lock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

static void check_free(chain_blocks_check *c)
{
    free(c->first);
    free(c->block_of);
    free(c->ok);
    free(c->cert_rc);
    free(c->left);
    free(c->t);
    chain__run_destroy(c->run);
    free(c);
}

void chain_blocks_check_end(chain_blocks_check *c)
{
    if (c == NULL) return;
    pool_stop(&c->p);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    check_free(c);
}

int chain_blocks_check_start(chain_blocks_check **out, const chain_genesis *g, const chain_block *blocks,
                             size_t n, unsigned threads)
{
    if (out == NULL || g == NULL || (blocks == NULL && n > 0)) return CHAIN_EINVAL;
    if (threads == 0 || threads > CHAIN_VERIFY_THREADS_MAX) return CHAIN_EINVAL;
    *out = NULL;
    size_t items = 0;
    for (size_t i = 0; i < n; i++) {
        if (blocks[i].n_txs > CHAIN_BLOCK_TXS_MAX) return CHAIN_EBOUNDS;
        items += 1 + blocks[i].n_txs;
    }
    if (n > UINT32_MAX) return CHAIN_EBOUNDS;
    chain_blocks_check *c = calloc(1, sizeof *c);
    if (c == NULL) return CHAIN_ENOMEM;
    c->first = malloc((n + 1) * sizeof *c->first);
    c->block_of = malloc((items ? items : 1) * sizeof *c->block_of);
    c->ok = calloc(items ? items : 1, 1);
    c->cert_rc = malloc((n ? n : 1) * sizeof *c->cert_rc);
    c->left = malloc((n ? n : 1) * sizeof *c->left);
    c->t = malloc(sizeof *c->t);
    c->run = chain__run_create();
    int mu = pthread_mutex_init(&c->mu, NULL) == 0;
    int cv = mu && pthread_cond_init(&c->cv, NULL) == 0;
    if (!c->first || !c->block_of || !c->ok || !c->cert_rc || !c->left || !c->t || !c->run || !mu || !cv) {
        if (cv) pthread_cond_destroy(&c->cv);
        if (mu) pthread_mutex_destroy(&c->mu);
        check_free(c);
        return CHAIN_ENOMEM;
    }
    c->blocks = blocks;
    c->n_blocks = n;
    c->g = g;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        c->first[i] = k;
        c->cert_rc[i] = CHAIN_ECERT;
        atomic_init(&c->left[i], 1 + (size_t)blocks[i].n_txs);
        for (uint32_t j = 0; j <= blocks[i].n_txs; j++) c->block_of[k++] = (uint32_t)i;
    }
    c->first[n] = k;
    pool_start(&c->p, block_item, items, threads);
    *out = c;
    return CHAIN_OK;
}

int chain_blocks_check_wait(chain_blocks_check *c, size_t i, const uint8_t **sig_ok)
{
    if (c == NULL || sig_ok == NULL || i >= c->n_blocks) return CHAIN_EINVAL;
    while (atomic_load(&c->left[i]) > 0 && pool_step(&c->p, c->t)) {
    }
    pthread_mutex_lock(&c->mu);
    while (atomic_load(&c->left[i]) > 0) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    *sig_ok = c->ok + c->first[i] + 1;
    return c->cert_rc[i];
}

int chain_apply_checked(chain_store *st, chain_blocks_check *c, size_t i)
{
    if (st == NULL || c == NULL || i >= c->n_blocks || c->g != chain_store_genesis(st)) return CHAIN_EINVAL;
    const uint8_t *ok;
    int rc = chain_blocks_check_wait(c, i, &ok);
    if (rc != CHAIN_OK) return rc;
    return chain__run_apply(c->run, st, &c->blocks[i], ok);
}

size_t chain_blocks_check_unwritten(const chain_blocks_check *c, size_t *txs)
{
    if (c == NULL) {
        if (txs != NULL) *txs = 0;
        return 0;
    }
    return chain__run_unwritten(c->run, txs);
}

int chain_blocks_check_write(chain_store *st, chain_blocks_check *c)
{
    if (st == NULL || c == NULL || c->g != chain_store_genesis(st)) return CHAIN_EINVAL;
    return chain__run_write(c->run, st);
}
