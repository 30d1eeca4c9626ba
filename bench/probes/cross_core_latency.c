/* cross_core_latency: the one-way latency of a cache line passed between two CPUs (ping-pong).
 *
 * Why: on a virtual machine the hypervisor places the vCPUs on physical cores as it likes and moves
 * them over time. Two vCPUs on one core complex share an L3 (a line passes in ~30 ns on Zen 4);
 * on two chiplets it goes through the I/O die (~170 ns), and every shared-memory collective between
 * them slows by 2x. bench/gradients.sh prints this figure beside each measurement, so that two
 * numbers are compared only when they were taken with the same placement.
 *
 * Usage: cross_core_latency [CPU_A CPU_B]   (default 0 1); prints the median of 9 runs in ns.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROUND_TRIPS = 50000, RUNS = 9 };

static _Alignas(64) atomic_long flag;
static int cpu_b;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        fprintf(stderr, "cross_core_latency: cannot run on CPU %d\n", cpu);
        exit(2);
    }
}

static void *answer(void *unused)
{
    (void)unused;
    pin(cpu_b);
    for (long i = 0; i < (long)ROUND_TRIPS * RUNS; i++) {
        while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 1) { }
        atomic_store_explicit(&flag, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv)
{
    int cpu_a = argc > 2 ? atoi(argv[1]) : 0;
    cpu_b = argc > 2 ? atoi(argv[2]) : 1;
    pin(cpu_a);
    pthread_t t;
    pthread_create(&t, NULL, answer, NULL);
    double ns[RUNS];
    long i = 0;
    for (int run = 0; run < RUNS; run++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long end = i + ROUND_TRIPS; i < end; i++) {
            atomic_store_explicit(&flag, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&flag, memory_order_acquire) != 2 * i + 2) { }
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns[run] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / ROUND_TRIPS / 2;
    }
    pthread_join(t, NULL);
    qsort(ns, RUNS, sizeof ns[0], cmp);
    printf("%.0f\n", ns[RUNS / 2]);
    return 0;
}
