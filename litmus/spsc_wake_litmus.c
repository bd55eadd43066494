// Litmus for the SPSC ring's asymmetric-fence wake-up protocol (multiproc
// issue 16, item 9), as a blocking ping-pong between a parent and a forked
// child over MAP_SHARED|MAP_ANONYMOUS memory, with raw futex (shared, no
// FUTEX_PRIVATE_FLAG) and membarrier system calls.
//
// Publisher (light side): Release store of the index, compiler fence, plain
// load of `waiters`; if non-zero: epoch += 1, FUTEX_WAKE(epoch).
// Sleeper: waiters += 1, heavy barrier, then loop { key = epoch; re-check
// index; FUTEX_WAIT(epoch, key) }, waiters -= 1 (the order of
// src/algo/eventcount.rs; -k reads the key before announcing instead).
//
// A watchdog thread in the parent counts stalls: no round trip for > 1 s
// with an item in a channel and its consumer announced; it then rescues the
// sleeper (epoch += 1, wake) and the run goes on.
//
// Build: gcc -O2 -pthread -o spsc_wake_litmus spsc_wake_litmus.c
// Usage: spsc_wake_litmus [options]
//   -m exp|global|sym|none  heavy barrier: MEMBARRIER_CMD_GLOBAL_EXPEDITED
//                           (default), MEMBARRIER_CMD_GLOBAL, symmetric
//                           (SeqCst xchg publish + mfence sleeper), none
//                           (no fence at all: a control that must stall)
//   -r pre|child|none       REGISTER_GLOBAL_EXPEDITED in the parent before
//                           fork (pre, default), also in the child after
//                           fork (child), or never (none)
//   -p                      pin parent to CPU 0, child to CPU 1
//   -P                      "prime" (implies -p): before registering, run the
//                           parent on CPU 0, move it to CPU 1 (CPU 0 idles,
//                           lazily keeping the parent's mm), register there,
//                           fork there, then move the parent back to CPU 0
//   -t SECONDS              run time (default 60)
//   -s SPINS                spin iterations before sleeping (default 50)
//   -k                      read the epoch key before announcing
//   -i                      IPI check instead of a ping-pong: the parent
//                           spins in user space on CPU 0, the child issues
//                           100000 GLOBAL_EXPEDITED barriers from CPU 1;
//                           prints CPU 0's function-call interrupts (CAL)
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { M_EXP, M_GLOBAL, M_SYM, M_NONE };

struct chan {
    _Alignas(64) uint64_t idx;   // published position (the "tail")
    _Alignas(64) uint32_t epoch; // futex word
    uint32_t waiters;            // announced sleepers
};

struct shared {
    struct chan c[2];                // c[0]: parent -> child, c[1]: child -> parent
    _Alignas(64) uint64_t done[2];   // positions consumed on c[k]
    _Alignas(64) uint64_t trips;     // round trips completed (parent)
    int stop;
    int mode, keyfirst, spins;
    uint64_t stalls[2];              // stalls with the sleeper on c[k]
    uint64_t sleeps[2], mb_errors, wakes[2];
    int child_cpu_at_stall[2], parent_cpu_at_stall[2];
    int parent_cpu, child_cpu;
    uint64_t ipi_spin_stop;
};

static struct shared *S;

static long futex(uint32_t *w, int op, uint32_t v, const struct timespec *ts) {
    return syscall(SYS_futex, w, op, v, ts, NULL, 0);
}
static int membarrier(int cmd) { return (int)syscall(SYS_membarrier, cmd, 0, 0); }

static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (sched_setaffinity(0, sizeof s, &s)) { perror("sched_setaffinity"); exit(2); }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void publish(struct chan *c, uint64_t v) {
    if (S->mode == M_SYM) {
        __atomic_exchange_n(&c->idx, v, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST) == 0) return;
    } else {
        __atomic_store_n(&c->idx, v, __ATOMIC_RELEASE);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); // compiler fence only
        if (__atomic_load_n(&c->waiters, __ATOMIC_RELAXED) == 0) return;
    }
    __atomic_fetch_add(&c->epoch, 1, __ATOMIC_SEQ_CST);
    futex(&c->epoch, FUTEX_WAKE, INT_MAX, NULL);
}

static void heavy(void) {
    switch (S->mode) {
    case M_EXP:
        if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)) __atomic_fetch_add(&S->mb_errors, 1, __ATOMIC_RELAXED);
        break;
    case M_GLOBAL:
        if (membarrier(MEMBARRIER_CMD_GLOBAL)) __atomic_fetch_add(&S->mb_errors, 1, __ATOMIC_RELAXED);
        break;
    case M_SYM: __atomic_thread_fence(__ATOMIC_SEQ_CST); break; // mfence
    default: break;
    }
}

static int ready(struct chan *c, uint64_t want) {
    int o = S->mode == M_SYM ? __ATOMIC_SEQ_CST : __ATOMIC_ACQUIRE;
    return __atomic_load_n(&c->idx, o) >= want;
}

static void wait_for(int k, uint64_t want) {
    struct chan *c = &S->c[k];
    for (int i = 0; i < S->spins; i++) {
        if (ready(c, want)) return;
        __builtin_ia32_pause();
    }
    S->sleeps[k]++;
    uint32_t key = 0;
    if (S->keyfirst) key = __atomic_load_n(&c->epoch, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&c->waiters, 1, __ATOMIC_SEQ_CST);
    heavy();
    for (int first = 1;; first = 0) {
        if (!(S->keyfirst && first)) key = __atomic_load_n(&c->epoch, __ATOMIC_SEQ_CST);
        if (ready(c, want)) break;
        futex(&c->epoch, FUTEX_WAIT, key, NULL);
    }
    __atomic_fetch_sub(&c->waiters, 1, __ATOMIC_RELAXED);
}

static void *watchdog(void *arg) {
    (void)arg;
    uint64_t last = 0;
    double since = now();
    while (!__atomic_load_n(&S->stop, __ATOMIC_RELAXED)) {
        usleep(100000);
        uint64_t t = __atomic_load_n(&S->trips, __ATOMIC_RELAXED);
        if (t != last) { last = t; since = now(); continue; }
        if (now() - since < 1.0) continue;
        for (int k = 0; k < 2; k++) {
            struct chan *c = &S->c[k];
            uint64_t idx = __atomic_load_n(&c->idx, __ATOMIC_SEQ_CST);
            uint64_t done = __atomic_load_n(&S->done[k], __ATOMIC_SEQ_CST);
            uint32_t w = __atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST);
            if (idx > done && w != 0) {
                S->stalls[k]++;
                fprintf(stderr, "STALL on c[%d] (sleeper: %s) at trip %llu: idx %llu consumed %llu waiters %u; parent cpu %d child cpu %d\n",
                        k, k == 0 ? "child" : "parent", (unsigned long long)t, (unsigned long long)idx,
                        (unsigned long long)done, w, S->parent_cpu, S->child_cpu);
                __atomic_fetch_add(&c->epoch, 1, __ATOMIC_SEQ_CST);
                futex(&c->epoch, FUTEX_WAKE, INT_MAX, NULL);
            }
        }
        since = now();
    }
    return NULL;
}

static unsigned long long cal(int cpu) {
    FILE *f = fopen("/proc/interrupts", "r");
    char line[4096];
    unsigned long long v[64] = {0};
    while (f && fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ') p++;
        if (strncmp(p, "CAL:", 4)) continue;
        p += 4;
        for (int i = 0; i < 64; i++) { char *e; v[i] = strtoull(p, &e, 10); if (e == p) break; p = e; }
    }
    if (f) fclose(f);
    return v[cpu];
}

int main(int argc, char **argv) {
    int mode = M_EXP, reg = 0 /*0 pre,1 child,2 none*/, pinned = 0, prime = 0, ipi = 0, keyfirst = 0, spins = 50;
    double secs = 60;
    int o;
    while ((o = getopt(argc, argv, "m:r:pPt:s:ki")) != -1) {
        switch (o) {
        case 'm': mode = !strcmp(optarg, "exp") ? M_EXP : !strcmp(optarg, "global") ? M_GLOBAL : !strcmp(optarg, "sym") ? M_SYM : M_NONE; break;
        case 'r': reg = !strcmp(optarg, "pre") ? 0 : !strcmp(optarg, "child") ? 1 : 2; break;
        case 'p': pinned = 1; break;
        case 'P': prime = pinned = 1; break;
        case 't': secs = atof(optarg); break;
        case 's': spins = atoi(optarg); break;
        case 'k': keyfirst = 1; break;
        case 'i': ipi = 1; pinned = 1; break;
        default: fprintf(stderr, "bad option\n"); return 2;
        }
    }
    S = mmap(NULL, sizeof *S, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED) { perror("mmap"); return 2; }
    memset(S, 0, sizeof *S);
    S->mode = mode; S->keyfirst = keyfirst; S->spins = spins;

    pthread_t wd;
    if (!ipi) pthread_create(&wd, NULL, watchdog, NULL); // before registering, like the crate's stress
    if (prime) {
        pin(0);
        for (double t0 = now(); now() - t0 < 0.05;) {} // run user code on CPU 0 (unregistered)
        pin(1);                                         // CPU 0 idles, lazily on our mm
        for (double t0 = now(); now() - t0 < 0.05;) {}
    }
    int reg_cpu = sched_getcpu();
    if (reg != 2 && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)) { perror("register"); return 2; }
    if (ipi) fprintf(stderr, "registered on cpu %d (prime=%d)\n", reg_cpu, prime);
    if (pinned && !prime) pin(0);

    pid_t child = fork();
    if (child < 0) { perror("fork"); return 2; }
    if (child == 0) {
        if (pinned) pin(1);
        if (reg == 1 && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)) { perror("child register"); _exit(2); }
        S->child_cpu = sched_getcpu();
        if (ipi) {
            while (!__atomic_load_n(&S->ipi_spin_stop, __ATOMIC_ACQUIRE) && !__atomic_load_n(&S->trips, __ATOMIC_ACQUIRE)) {}
            unsigned long long a0 = cal(0), a1 = cal(1);
            double t1 = now();
            for (int i = 0; i < 100000; i++) membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
            double t2 = now();
            unsigned long long b0 = cal(0), b1 = cal(1);
            printf("ipi-check (prime=%d): child on cpu %d, parent spinning on cpu %d: 100000 GLOBAL_EXPEDITED in %.3f s (%.2f us each) -> CAL cpu0 +%llu, cpu1 +%llu\n",
                   prime, sched_getcpu(), S->parent_cpu, t2 - t1, (t2 - t1) * 10, b0 - a0, b1 - a1);
            fflush(stdout);
            __atomic_store_n(&S->stop, 1, __ATOMIC_RELEASE);
            _exit(0);
        }
        for (uint64_t n = 1; !__atomic_load_n(&S->stop, __ATOMIC_RELAXED); n++) {
            wait_for(0, n);
            __atomic_store_n(&S->done[0], n, __ATOMIC_RELAXED);
            S->child_cpu = sched_getcpu();
            publish(&S->c[1], n);
        }
        _exit(0);
    }
    if (prime) pin(0); // back to CPU 0: idle -> us, same mm, rq state not refreshed
    S->parent_cpu = sched_getcpu();
    if (ipi) {
        __atomic_store_n(&S->trips, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&S->stop, __ATOMIC_ACQUIRE)) {} // spin in user space on CPU 0
        waitpid(child, NULL, 0);
        return 0;
    }
    double t0 = now();
    uint64_t n;
    for (n = 1;; n++) {
        publish(&S->c[0], n);
        wait_for(1, n);
        __atomic_store_n(&S->done[1], n, __ATOMIC_RELAXED);
        __atomic_store_n(&S->trips, n, __ATOMIC_RELAXED);
        if ((n & 1023) == 0) { S->parent_cpu = sched_getcpu(); if (now() - t0 > secs) break; }
    }
    __atomic_store_n(&S->stop, 1, __ATOMIC_RELAXED);
    // free the child if it sleeps
    publish(&S->c[0], n + 1);
    __atomic_fetch_add(&S->c[0].epoch, 1, __ATOMIC_SEQ_CST);
    futex(&S->c[0].epoch, FUTEX_WAKE, INT_MAX, NULL);
    waitpid(child, NULL, 0);
    pthread_join(wd, NULL);
    static const char *mn[] = {"exp", "global", "sym", "none"}, *rn[] = {"pre", "child", "none"};
    printf("mode=%s reg=%s pinned=%d prime=%d keyfirst=%d spins=%d: %llu round trips in %.1f s; stalls: child-sleeper %llu, parent-sleeper %llu; sleeps child %llu parent %llu; membarrier errors %llu\n",
           mn[mode], rn[reg], pinned, prime, keyfirst, spins, (unsigned long long)n, now() - t0,
           (unsigned long long)S->stalls[0], (unsigned long long)S->stalls[1], (unsigned long long)S->sleeps[0],
           (unsigned long long)S->sleeps[1], (unsigned long long)S->mb_errors);
    return 0;
}
