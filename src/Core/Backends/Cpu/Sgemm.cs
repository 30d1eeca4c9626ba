using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Row-major single-precision GEMM: <c>C[m×n] = alpha·op(A)·op(B) + beta·C</c>, where op(A) is m×k
/// (A stored m×k with leading dimension <c>lda</c>, or k×m when <c>transA</c>) and op(B) is k×n
/// (B stored k×n, or n×k when <c>transB</c>). <c>beta == 0</c> never reads C.
/// </summary>
/// <remarks>
/// <para>
/// Goto/BLIS structure, transposed for row-major C: the vector dimension of the micro-kernel runs along
/// the columns of C (contiguous), so B is the "vector" operand and A the "broadcast" operand.
/// </para>
/// <code>
/// for pc in k, step kc ≤ KC               k cut into equal blocks (BlockK)
///   for jc in n, step nc ≤ NC             pack op(B)[pc.., jc..] → Bp: kc×nc in NR-wide panels (L2-resident)
///     for ic in m, step MC                pack op(A)[ic.., pc..] → Ap: mc×kc in MR-tall panels
///       for ir in mc, step MR             one A micro-panel (kc×MR ≤ 8 KiB) stays in L1 …
///         for jr in nc, step NR           … while the B micro-panels stream from L2
///           micro-kernel: C[MR×NR] (+)= Ap[ir]·Bp[jr]     (24 zmm / 12 ymm accumulators)
/// </code>
/// <para>
/// Tiles per instruction set (<see cref="CpuDispatch"/>; MR, NR, MC, NC are JIT-time constants of the path).
/// AVX-512: MR×NR = 8×48, 8 rows × 3 Vector512 = 24 accumulators, plus 3 B vectors and a broadcast = 28 of the
/// 32 zmm registers; per k step 3 loads + 8 broadcasts for 24 FMAs (Zen 4 retires one 512-bit FMA per cycle at
/// 4 cycles latency). AVX2 (and the 128-bit and scalar kernels, which share its packing): 6×16, the tile of the
/// BLIS/OpenBLAS Haswell and Zen kernels — 6 rows × 2 Vector256 = 12 accumulators + 2 B vectors + 1 broadcast =
/// 15 of the 16 ymm registers; 2 loads + 6 broadcasts per 12 FMAs. The 6-row tile leaves a row tail on the
/// model's channel counts (32 = 5·6 + 2, 64 = 10·6 + 4), computed on zero-padded A rows and staged.
/// </para>
/// <para>
/// The operands reach the driver as panel sources (<see cref="IPanels"/>): plain matrices
/// (<see cref="MatrixA"/>, <see cref="MatrixB"/>) are packed block by block, weights packed once per layer call
/// are used in place (<see cref="PackedA"/>), and the convolution packs im2col panels straight from the image
/// (<see cref="Im2Col.Patches"/>) so the column matrix never exists.
/// </para>
/// <para>
/// Determinism: every element of C is one FMA chain over p in each k block, in increasing p, followed by the
/// same alpha/beta update, whatever tile, thread or kernel width computes it; the k blocking depends on k
/// alone. So the serial and the pooled entry points agree bit-for-bit, for any thread count.
/// </para>
/// </remarks>
internal static unsafe partial class Sgemm
{
    // The tile and block sizes of this process's path (JIT-time constants, see CpuDispatch). AVX-512: 8×48
    // (24 zmm accumulators), A blocks of 128×256 and B blocks of 256×480 floats (480 KiB, for a 1 MiB L2).
    // AVX2, 128-bit and scalar: 6×16 (12 ymm accumulators), A blocks of 120×256 and B blocks of 256×256
    // (256 KiB: half of Zen 3's 512 KiB L2, leaving room for C and the next A micro-panel).
    internal static int MR { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => CpuDispatch.IsAvx512 ? 8 : 6; }
    internal static int NR { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => CpuDispatch.IsAvx512 ? 48 : 16; }
    internal const int KC = 256;
    internal static int MC { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => CpuDispatch.IsAvx512 ? 128 : 120; }
    internal static int NC { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => CpuDispatch.IsAvx512 ? 480 : NcNarrow; }

    /// <summary>NC of the 6×16 paths; a static field only so the benchmark can sweep it (BNDIST_SGEMM_NC).</summary>
    internal static readonly int NcNarrow =
        int.TryParse(Environment.GetEnvironmentVariable("BNDIST_SGEMM_NC"), out int nc) && nc >= 16 ? nc / 16 * 16 : 256;

    /// <summary>Below this many multiply-adds the pooled entry point runs serially (waking costs ~µs).</summary>
    private const long ParallelThreshold = 1L << 18;

    /// <summary>Serial GEMM on the calling thread (for callers that are already parallel).</summary>
    public static void Multiply(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        Validate(transA, transB, m, n, k, lda, ldb, ldc);
        Run(0, m, 0, n, k, alpha, new MatrixA(transA, a, lda), new MatrixB(transB, b, ldb), beta, c, ldc);
    }

    /// <summary>
    /// GEMM parallelized over <paramref name="pool"/>: C is cut into slabs of whole NR-column or MR-row
    /// panels, each slab a serial GEMM with its own packing buffers.
    /// Bit-identical to the serial entry point.
    /// </summary>
    public static void Multiply(CpuThreadPool pool, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        ArgumentNullException.ThrowIfNull(pool);
        Validate(transA, transB, m, n, k, lda, ldb, ldc);
        Run(pool, m, n, k, alpha, new MatrixA(transA, a, lda), new MatrixB(transB, b, ldb), beta, c, ldc);
    }

    /// <summary>Serial GEMM over panel sources: C[m×n] = alpha·A·B + beta·C.</summary>
    internal static void Run<TA, TB>(int m, int n, int k, float alpha, in TA a, in TB b, float beta, float* c, int ldc)
        where TA : struct, IPanels where TB : struct, IPanels
        => Run(0, m, 0, n, k, alpha, a, b, beta, c, ldc);

    /// <summary>Pooled GEMM over panel sources (see the pooled <see cref="Multiply(CpuThreadPool, bool, bool, int, int, int, float, float*, int, float*, int, float, float*, int)"/>).</summary>
    internal static void Run<TA, TB>(CpuThreadPool pool, int m, int n, int k, float alpha, in TA a, in TB b, float beta, float* c, int ldc)
        where TA : struct, IPanels where TB : struct, IPanels
    {
        if (pool.Threads == 1 || (long)m * n * k < ParallelThreshold)
        {
            Run(0, m, 0, n, k, alpha, a, b, beta, c, ldc);
            return;
        }

        // Cut C into 2·threads slabs of whole panels (pulled dynamically, so a late or slowed thread costs
        // little), across n or across m, whichever gives the shorter critical path: slabs per thread × panels
        // per slab × panel area. A column slab re-packs all of A and a row slab all of B, both O(1/slab size).
        int threads = pool.Threads;
        int nPanels = (n + NR - 1) / NR, mPanels = (m + MR - 1) / MR;
        int nPieces = Math.Min(nPanels, 2 * threads), mPieces = Math.Min(mPanels, 2 * threads);
        long nSpan = Ceil(nPanels, nPieces) * Ceil(nPieces, threads) * (long)NR * m;
        long mSpan = Ceil(mPanels, mPieces) * Ceil(mPieces, threads) * (long)MR * n;
        bool splitN = nSpan <= mSpan;
        int panels = splitN ? nPanels : mPanels;
        var job = SlabJob<TA, TB>.Current;
        job.Set(m, n, k, alpha, a, b, beta, c, ldc, splitN, panels, splitN ? nPieces : mPieces);
        try
        {
            pool.For(job.Pieces, job.Body);
        }
        finally
        {
            job.Clear();
        }
    }

    /// <summary>
    /// The blocked driver for the block C[i0.., j0..] of size m×n (c points at C[0, 0]; the sources are
    /// addressed with absolute row/column indices, so a slab is just an offset).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TA, TB>(int i0, int m, int j0, int n, int k, float alpha, in TA a, in TB b, float beta, float* c, int ldc)
        where TA : struct, IPanels where TB : struct, IPanels
    {
        if (m <= 0 || n <= 0)
            return;
        c += (long)i0 * ldc + j0;
        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }

        var buffers = PackBuffers.Current;
        int kcMax = BlockK(k);
        int ncMax = Balanced(n, NC, NR);
        for (int pc = 0; pc < k; pc += kcMax)
        {
            int kc = Math.Min(kcMax, k - pc);
            float betaBlock = pc == 0 ? beta : 1f;
            for (int jc = 0; jc < n; jc += ncMax)
            {
                int nc = Math.Min(ncMax, n - jc);
                float* bp = b.Panels(j0 + jc, nc, pc, kc, buffers.B);
                for (int ic = 0; ic < m; ic += MC)
                {
                    int mc = Math.Min(MC, m - ic);
                    float* ap = a.Panels(i0 + ic, mc, pc, kc, buffers.A);
                    for (int ir = 0; ir < mc; ir += MR)
                    {
                        int mr = Math.Min(MR, mc - ir);
                        float* apPanel = ap + ir * kc;
                        float* cRow = c + (long)(ic + ir) * ldc + jc;
                        for (int jr = 0; jr < nc; jr += NR)
                            MicroKernel(kc, apPanel, bp + jr * kc, cRow + jr, ldc, mr, Math.Min(NR, nc - jr), alpha, betaBlock);
                    }
                }
            }
        }
    }

    private static long Ceil(int a, int b) => (a + b - 1) / b;

    /// <summary>C = beta·C (beta == 0 writes zeros without reading C).</summary>
    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            float* row = c + (long)i * ldc;
            if (beta == 0f)
                new Span<float>(row, n).Clear();
            else if (beta != 1f)
                for (int j = 0; j < n; j++)
                    row[j] *= beta;
        }
    }

    /// <summary>The k block size: k cut into ⌈k/KC⌉ equal blocks, so k = 288 runs as 2×144 rather than
    /// 256 + 32 (a short block pays a full C load/store for little work).</summary>
    internal static int BlockK(int k) => Balanced(k, KC, 1);

    /// <summary>Splits <paramref name="total"/> into ⌈total/max⌉ near-equal blocks rounded up to
    /// <paramref name="unit"/>; returns the block size.</summary>
    private static int Balanced(int total, int max, int unit)
    {
        int blocks = (total + max - 1) / max;
        int size = (total + blocks - 1) / blocks;
        return Math.Min(max, (size + unit - 1) / unit * unit);
    }

    private static void Validate(bool transA, bool transB, int m, int n, int k, int lda, int ldb, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfLessThan(lda, Math.Max(1, transA ? m : k));
        ArgumentOutOfRangeException.ThrowIfLessThan(ldb, Math.Max(1, transB ? k : n));
        ArgumentOutOfRangeException.ThrowIfLessThan(ldc, Math.Max(1, n));
    }

    /// <summary>
    /// Per-thread packing buffers, 64-byte aligned, allocated on a thread's first GEMM and kept for the
    /// thread's lifetime (freed by the finalizer once the thread is gone). A: MC×KC, B: KC×NC floats.
    /// </summary>
    private sealed class PackBuffers
    {
        [ThreadStatic] private static PackBuffers? t_current;

        public readonly float* A = Alloc(MC * KC);
        public readonly float* B = Alloc(KC * NC);

        public static PackBuffers Current => t_current ??= new PackBuffers();

        ~PackBuffers()
        {
            NativeMemory.AlignedFree(A);
            NativeMemory.AlignedFree(B);
        }

        private static float* Alloc(int floats) => (float*)NativeMemory.AlignedAlloc((nuint)floats * sizeof(float), 64);
    }

    /// <summary>
    /// A pooled GEMM's arguments, cached per calling thread (and per source types) together with its
    /// delegate, so a parallel call allocates nothing. Slab s covers panels [s·P/S, (s+1)·P/S).
    /// </summary>
    private sealed class SlabJob<TA, TB> where TA : struct, IPanels where TB : struct, IPanels
    {
        [ThreadStatic] private static SlabJob<TA, TB>? t_current;

        public readonly Action<int> Body;
        private TA _a;
        private TB _b;
        private bool _splitN;
        private int _m, _n, _k, _ldc, _panels;
        private float _alpha, _beta;
        private float* _c;

        private SlabJob() => Body = RunSlab;

        public static SlabJob<TA, TB> Current => t_current ??= new SlabJob<TA, TB>();

        public int Pieces { get; private set; }

        public void Set(int m, int n, int k, float alpha, in TA a, in TB b, float beta, float* c, int ldc,
            bool splitN, int panels, int pieces)
        {
            (_m, _n, _k, _alpha, _a, _b, _beta, _ldc) = (m, n, k, alpha, a, b, beta, ldc);
            (_splitN, _panels, Pieces) = (splitN, panels, pieces);
            _c = c;
        }

        public void Clear()
        {
            (_a, _b) = (default, default);
            _c = null;
        }

        private void RunSlab(int slab)
        {
            int p0 = (int)((long)slab * _panels / Pieces), p1 = (int)((long)(slab + 1) * _panels / Pieces);
            if (_splitN)
                Run(0, _m, p0 * NR, Math.Min(_n, p1 * NR) - p0 * NR, _k, _alpha, _a, _b, _beta, _c, _ldc);
            else
                Run(p0 * MR, Math.Min(_m, p1 * MR) - p0 * MR, 0, _n, _k, _alpha, _a, _b, _beta, _c, _ldc);
        }
    }
}
