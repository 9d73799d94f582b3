// A pool of worker threads for the matrix-vector products of decode.
//
// One decoded token runs a few hundred products of a few microseconds each, so waking a
// sleeping thread for every product (a futex round trip, as DispatchQueue.concurrentPerform
// does) costs a large share of the token. Here a worker that has finished a task first spins
// for about 20 µs. Then it keeps checking between `sched_yield` calls, which let another
// thread that waits for its core run, such as OpenBLAS's own threads between the products of
// this pool. After about 2 ms it sleeps on a condition variable. So back-to-back products hand
// over in well under a microsecond, and an idle process (a chat waiting for input) uses no
// processor time.
//
// A task is cut into chunks that the caller and the workers claim one at a time, so that a
// worker the system has not scheduled (the cores busy with another process) delays nothing:
// the caller claims its chunks too, and waits only for chunks that a worker has started.
//
// `claim` packs the task's number (bits 32–63), its chunk count (bits 16–31) and the next
// unclaimed chunk (bits 0–15). A chunk is claimed by a compare-and-swap of the whole word, so
// a worker that wakes after its task ended claims nothing of it (nor of the next task, whose
// word differs), and a task's context stays alive while any of its chunks is claimed and
// unfinished, because the caller returns only after all its chunks are finished.

#include "ckernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define XL_PAUSE() _mm_pause()
#else
#define XL_PAUSE() ((void)0)
#endif

enum { max_threads = 64, spin_limit = 20000 };

// How long an idle worker spins, then yields, before it sleeps (nanoseconds).
static const int64_t spin_nanoseconds = 20000, yield_nanoseconds = 2000000;

static int64_t now_nanoseconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_mutex_t setup;
  _Atomic uint64_t claim;
  _Atomic uint32_t finished;
  _Atomic int sleepers;
  // Held by the one caller whose task is running; a caller that finds it held runs alone.
  atomic_flag busy;
  _Atomic int threads;  // threads a task may use, the caller included
  int started;          // worker threads created so far
  // Written by the caller before it publishes a new task in `claim`.
  xl_pool_task task;
  void *context;
} pool = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .wake = PTHREAD_COND_INITIALIZER,
  .setup = PTHREAD_MUTEX_INITIALIZER,
  .busy = ATOMIC_FLAG_INIT,
  .threads = 1,
};

// Claims and runs chunks of task number `number` until none is left.
static void run_chunks(uint32_t number) {
  for (;;) {
    uint64_t word = atomic_load_explicit(&pool.claim, memory_order_acquire);
    if ((uint32_t)(word >> 32) != number) return;
    // The chunk count is part of the word, so a worker still holding an old task's number
    // never compares against a later task's count.
    const uint32_t chunk = (uint32_t)word & 0xFFFFu, total = ((uint32_t)word >> 16) & 0xFFFFu;
    if (chunk >= total) return;
    if (!atomic_compare_exchange_weak(&pool.claim, &word, word + 1)) continue;
    pool.task(pool.context, (int)chunk);
    atomic_fetch_add_explicit(&pool.finished, 1, memory_order_release);
  }
}

static void *worker_main(void *argument) {
  // Workers are numbered from 1; the caller of a task counts as thread 0.
  const int index = (int)(intptr_t)argument;
  uint32_t seen = (uint32_t)(atomic_load(&pool.claim) >> 32);
  for (;;) {
    int64_t idle_since = 0;
    int spins = 0;
    uint32_t number;
    while ((number = (uint32_t)(atomic_load_explicit(&pool.claim, memory_order_acquire) >> 32)) == seen) {
      if (++spins < 64) {
        XL_PAUSE();
        continue;
      }
      spins = 0;
      const int64_t now = now_nanoseconds();
      if (idle_since == 0) idle_since = now;
      const int64_t idle = now - idle_since;
      if (idle < spin_nanoseconds) continue;
      if (idle < yield_nanoseconds) {
        sched_yield();
        continue;
      }
      // Sequentially consistent with the caller's store to `claim` followed by its read of
      // `sleepers`: either the caller counts this sleeper and signals, or this thread reads the
      // new task number before it waits.
      pthread_mutex_lock(&pool.lock);
      atomic_fetch_add(&pool.sleepers, 1);
      while ((uint32_t)(atomic_load(&pool.claim) >> 32) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.lock);
      idle_since = 0;
    }
    seen = number;
    if (index < atomic_load_explicit(&pool.threads, memory_order_relaxed)) run_chunks(number);
  }
  return NULL;
}

void xl_pool_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > max_threads) threads = max_threads;
  pthread_mutex_lock(&pool.setup);
  for (; pool.started < threads - 1; pool.started++) {
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    const int created = pthread_create(&thread, &attributes, worker_main, (void *)(intptr_t)(pool.started + 1));
    pthread_attr_destroy(&attributes);
    if (created != 0) break;
  }
  // Fewer threads than asked when the system refused to create more.
  atomic_store(&pool.threads, threads <= pool.started + 1 ? threads : pool.started + 1);
  pthread_mutex_unlock(&pool.setup);
}

int xl_pool_threads(void) { return atomic_load(&pool.threads); }

void xl_pool_run(xl_pool_task task, void *context, int chunks) {
  if (chunks <= 0) return;
  if (chunks == 1 || chunks > 0xFFFF || atomic_load(&pool.threads) == 1 || atomic_flag_test_and_set(&pool.busy)) {
    // Alone: one chunk, more chunks than `claim` can count, no workers, or another thread's
    // task occupies the pool.
    for (int chunk = 0; chunk < chunks; chunk++) task(context, chunk);
    return;
  }
  pool.task = task;
  pool.context = context;
  atomic_store_explicit(&pool.finished, 0, memory_order_relaxed);
  const uint32_t number = (uint32_t)(atomic_load(&pool.claim) >> 32) + 1;
  atomic_store(&pool.claim, (uint64_t)number << 32 | (uint64_t)chunks << 16);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
  }
  run_chunks(number);
  // Only chunks that a worker claimed and has not finished remain.
  for (int spins = 0; atomic_load_explicit(&pool.finished, memory_order_acquire) < (uint32_t)chunks; spins++) {
    if (spins < spin_limit) {
      XL_PAUSE();
    } else {
      sched_yield();
    }
  }
  atomic_flag_clear(&pool.busy);
}
