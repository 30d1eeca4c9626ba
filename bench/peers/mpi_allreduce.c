/*
 * mpi_allreduce.c: all-reduce latency and bandwidth of MPI_Allreduce, a peer of BnDist's gRPC
 * collective. Same measurements and JSON lines as bench/peers/gloo_allreduce.py:
 *
 *   bn-stats:  for each C in --channels, MPI_Allreduce(MPI_SUM) of 2*C+1 MPI_DOUBLE values (the
 *              batch-norm statistics BnDist reduces). --warmup untimed ops, then --ops timed ops
 *              back to back, each timed on every rank with clock_gettime(CLOCK_MONOTONIC).
 *              Rank 0's per-op latencies give p50, p99 and mean in microseconds.
 *   gradients: for each S in --sizes-mib, MPI_Allreduce(MPI_SUM) of S*2^20/4 MPI_FLOAT values:
 *              3 untimed ops, then --reps timed ops; the median seconds per op on rank 0 gives
 *              algbw = bytes/time and busbw = algbw * 2(K-1)/K (as nccl-tests), in GB/s (1e9).
 *
 * K is the communicator size; --workers K is checked against it. --impl names the transport in
 * the output ("openmpi-tcp", "openmpi-sm"): the program cannot tell which BTL mpirun chose.
 * A barrier precedes each measurement. Rank 0 appends one JSON object per measurement to --out
 * and prints it.
 *
 * Build:  mpicc -O2 -o bench/out/mpi_allreduce bench/peers/mpi_allreduce.c
 * Run (loopback TCP; bench/peers/collectives.sh runs K=2 and 4, TCP and shared memory):
 *   mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
 *       --mca btl tcp,self --mca btl_tcp_if_include lo \
 *       bench/out/mpi_allreduce --workers 2 --impl openmpi-tcp --ops 200 --warmup 100 \
 *       --sizes-mib 1,4 --reps 3 --out bench/out/mpi.jsonl
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARMUP_GRADIENT_OPS 3 /* untimed gradient all-reduces before the --reps timed ones */
#define MAX_LIST 32

typedef struct {
    int workers;
    int channels[MAX_LIST], n_channels;
    int sizes_mib[MAX_LIST], n_sizes;
    int ops, warmup, reps;
    const char *impl;
    const char *out;
} Args;

static int rank_ = 0;

/* Print an error (rank 0 only, to avoid K copies) and abort every rank. */
static void die(const char *msg, const char *detail)
{
    if (rank_ == 0)
        fprintf(stderr, "mpi_allreduce: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    MPI_Abort(MPI_COMM_WORLD, 2);
    exit(2);
}

static int parse_positive(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0 || v > 1000000000L)
        die(what, s);
    return (int)v;
}

static int parse_nonnegative(const char *s, const char *what)
{
    return strcmp(s, "0") == 0 ? 0 : parse_positive(s, what);
}

/* "64,256,1024" -> {64, 256, 1024}; returns the count. */
static int parse_list(const char *s, int *out, const char *what)
{
    char buf[512];
    int n = 0;
    if (strlen(s) >= sizeof buf)
        die(what, "list too long");
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == MAX_LIST)
            die(what, "too many values");
        out[n++] = parse_positive(tok, what);
    }
    if (n == 0)
        die(what, "empty list");
    return n;
}

static void parse_args(int argc, char **argv, Args *a)
{
    static const int default_channels[] = {64, 256, 1024}, default_sizes[] = {1, 4, 16, 64};
    memset(a, 0, sizeof *a);
    memcpy(a->channels, default_channels, sizeof default_channels);
    a->n_channels = 3;
    memcpy(a->sizes_mib, default_sizes, sizeof default_sizes);
    a->n_sizes = 4;
    a->ops = 2000;
    a->warmup = 1000;
    a->reps = 10;
    a->impl = "openmpi";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            die("missing value after", k);
        const char *v = argv[++i];
        if (!strcmp(k, "--workers")) a->workers = parse_positive(v, "bad --workers");
        else if (!strcmp(k, "--channels")) a->n_channels = parse_list(v, a->channels, "bad --channels");
        else if (!strcmp(k, "--sizes-mib")) a->n_sizes = parse_list(v, a->sizes_mib, "bad --sizes-mib");
        else if (!strcmp(k, "--ops")) a->ops = parse_positive(v, "bad --ops");
        else if (!strcmp(k, "--warmup")) a->warmup = parse_nonnegative(v, "bad --warmup");
        else if (!strcmp(k, "--reps")) a->reps = parse_positive(v, "bad --reps");
        else if (!strcmp(k, "--impl")) a->impl = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else die("unknown argument (expected --workers --channels --ops --warmup --sizes-mib --reps --impl --out)", k);
    }
    if (!a->out)
        die("--out FILE is required", NULL);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Nearest-rank percentile of an ascending array (same rule as gloo_allreduce.py). */
static double percentile(const double *sorted, int n, int q)
{
    long r = ((long)q * n + 99) / 100; /* ceil(q*n/100) */
    if (r < 1) r = 1;
    return sorted[r - 1];
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Print one JSON line and append it to the output file (rank 0). */
static void emit(const Args *a, const char *line)
{
    FILE *f = fopen(a->out, "a");
    if (!f)
        die("cannot open --out for appending", a->out);
    fprintf(f, "%s\n", line);
    fclose(f);
    printf("%s\n", line);
    fflush(stdout);
}

static void bn_stats(const Args *a, int k)
{
    double *lat = malloc(sizeof(double) * a->ops);
    if (!lat) die("out of memory", NULL);
    for (int ci = 0; ci < a->n_channels; ci++) {
        int c = a->channels[ci], n = 2 * c + 1;
        double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
        if (!x || !y) die("out of memory", NULL);
        for (int i = 0; i < n; i++) x[i] = 1.0;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < a->warmup; i++)
            MPI_Allreduce(x, y, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < a->ops; i++) {
            double t0 = now_s();
            MPI_Allreduce(x, y, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            lat[i] = (now_s() - t0) * 1e6;
        }
        if (rank_ == 0) {
            double sum = 0;
            for (int i = 0; i < a->ops; i++) sum += lat[i];
            qsort(lat, a->ops, sizeof *lat, cmp_double);
            char line[512];
            snprintf(line, sizeof line,
                     "{\"impl\": \"%s\", \"kind\": \"bn-stats\", \"workers\": %d, \"channels\": %d, "
                     "\"values\": %d, \"ops\": %d, \"warmup\": %d, \"p50_us\": %.3f, \"p99_us\": %.3f, "
                     "\"mean_us\": %.3f}",
                     a->impl, k, c, n, a->ops, a->warmup, percentile(lat, a->ops, 50),
                     percentile(lat, a->ops, 99), sum / a->ops);
            emit(a, line);
        }
        free(x);
        free(y);
    }
    free(lat);
}

static void gradients(const Args *a, int k)
{
    double *secs = malloc(sizeof(double) * a->reps);
    if (!secs) die("out of memory", NULL);
    for (int si = 0; si < a->n_sizes; si++) {
        int mib = a->sizes_mib[si];
        long nbytes = (long)mib << 20, n = nbytes / 4;
        float *x = malloc(nbytes), *y = malloc(nbytes);
        if (!x || !y) die("out of memory", NULL);
        for (long i = 0; i < n; i++) x[i] = 1.0f;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < WARMUP_GRADIENT_OPS; i++)
            MPI_Allreduce(x, y, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < a->reps; i++) {
            double t0 = now_s();
            MPI_Allreduce(x, y, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            secs[i] = now_s() - t0;
        }
        if (rank_ == 0) {
            double med = median(secs, a->reps), algbw = (double)nbytes / med / 1e9;
            char line[512];
            snprintf(line, sizeof line,
                     "{\"impl\": \"%s\", \"kind\": \"gradients\", \"workers\": %d, \"mib\": %d, "
                     "\"bytes\": %ld, \"reps\": %d, \"median_ms\": %.3f, \"algbw_gbs\": %.4f, "
                     "\"busbw_gbs\": %.4f}",
                     a->impl, k, mib, nbytes, a->reps, med * 1e3, algbw, algbw * 2.0 * (k - 1) / k);
            emit(a, line);
        }
        free(x);
        free(y);
    }
    free(secs);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int k;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &k);
    Args a;
    parse_args(argc, argv, &a);
    if (a.workers && a.workers != k) {
        char detail[64];
        snprintf(detail, sizeof detail, "--workers %d but mpirun -np %d", a.workers, k);
        die("worker count mismatch", detail);
    }
    bn_stats(&a, k);
    gradients(&a, k);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
