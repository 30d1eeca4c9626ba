using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// The register-tiled micro-kernels: C[mr×nr] (+)= Ap·Bp over one k block, for one MR-row A panel and one
/// B panel of width 16, 32 or 48.
/// </summary>
/// <remarks>
/// <para>
/// AVX-512 path (<see cref="Kernel512{TV}"/>): the tile is 8 rows × TV.Count Vector512 held in up to 24
/// zmm registers for the whole k loop; each step loads TV.Count vectors of B, broadcasts the 8 A values
/// and issues 8·TV.Count FMAs. The panel width is a type parameter (a struct implementing
/// <see cref="IVectors"/>) so the JIT compiles one specialized loop per width with the unused
/// accumulators folded away — the 16- and 32-wide variants serve the last panel of each row of tiles.
/// </para>
/// <para>
/// Other paths: <see cref="Kernel6x16Avx2"/> (AVX2+FMA, 6×16 in 12 ymm accumulators), <see cref="Kernel6x16Vector128"/>
/// (SSE/NEON, two 6×8 halves) and <see cref="KernelScalar"/>. All accumulate the same per-element multiply-add
/// chain as the AVX-512 path (fused wherever the hardware fuses) and share <see cref="StoreTile"/>, so on every
/// machine with FMA the paths agree bit for bit.
/// </para>
/// <para>
/// Update: t = acc (·alpha unless alpha = 1); C = t if beta = 0 (C is not read: it may hold NaNs),
/// else C = fma(beta, C, t) — bitwise the same in the vector and the scalar store, so full tiles and edge
/// tiles (mr &lt; 8 or nr &lt; width, staged through a stack tile) agree.
/// </para>
/// </remarks>
internal static unsafe partial class Sgemm
{
    internal interface IVectors { static abstract int Count { get; } }
    internal struct One : IVectors { public static int Count => 1; }
    internal struct Two : IVectors { public static int Count => 2; }
    internal struct Three : IVectors { public static int Count => 3; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        if (CpuDispatch.IsAvx512)
        {
            int width = PanelWidth(nr);
            if (width == 48)
                Kernel512<Three>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
            else if (width == 32)
                Kernel512<Two>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
            else
                Kernel512<One>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
        }
        else if (CpuDispatch.IsAvx2)
            Kernel6x16Avx2(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
        else if (CpuDispatch.IsVector128)
            Kernel6x16Vector128(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
        else
            KernelScalar(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
    }

    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512<TV>(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
        where TV : struct, IVectors
    {
        int width = 16 * TV.Count;
        Vector512<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c50 = default, c51 = default, c52 = default;
        Vector512<float> c60 = default, c61 = default, c62 = default, c70 = default, c71 = default, c72 = default;
        Vector512<float> b1 = default, b2 = default;
        for (int p = 0; p < kc; p++, ap += 8, bp += width)
        {
            var b0 = Vector512.Load(bp);
            if (TV.Count > 1) b1 = Vector512.Load(bp + 16);
            if (TV.Count > 2) b2 = Vector512.Load(bp + 32);
            var a = Vector512.Create(ap[0]);
            c00 = Avx512F.FusedMultiplyAdd(a, b0, c00);
            if (TV.Count > 1) c01 = Avx512F.FusedMultiplyAdd(a, b1, c01);
            if (TV.Count > 2) c02 = Avx512F.FusedMultiplyAdd(a, b2, c02);
            a = Vector512.Create(ap[1]);
            c10 = Avx512F.FusedMultiplyAdd(a, b0, c10);
            if (TV.Count > 1) c11 = Avx512F.FusedMultiplyAdd(a, b1, c11);
            if (TV.Count > 2) c12 = Avx512F.FusedMultiplyAdd(a, b2, c12);
            a = Vector512.Create(ap[2]);
            c20 = Avx512F.FusedMultiplyAdd(a, b0, c20);
            if (TV.Count > 1) c21 = Avx512F.FusedMultiplyAdd(a, b1, c21);
            if (TV.Count > 2) c22 = Avx512F.FusedMultiplyAdd(a, b2, c22);
            a = Vector512.Create(ap[3]);
            c30 = Avx512F.FusedMultiplyAdd(a, b0, c30);
            if (TV.Count > 1) c31 = Avx512F.FusedMultiplyAdd(a, b1, c31);
            if (TV.Count > 2) c32 = Avx512F.FusedMultiplyAdd(a, b2, c32);
            a = Vector512.Create(ap[4]);
            c40 = Avx512F.FusedMultiplyAdd(a, b0, c40);
            if (TV.Count > 1) c41 = Avx512F.FusedMultiplyAdd(a, b1, c41);
            if (TV.Count > 2) c42 = Avx512F.FusedMultiplyAdd(a, b2, c42);
            a = Vector512.Create(ap[5]);
            c50 = Avx512F.FusedMultiplyAdd(a, b0, c50);
            if (TV.Count > 1) c51 = Avx512F.FusedMultiplyAdd(a, b1, c51);
            if (TV.Count > 2) c52 = Avx512F.FusedMultiplyAdd(a, b2, c52);
            a = Vector512.Create(ap[6]);
            c60 = Avx512F.FusedMultiplyAdd(a, b0, c60);
            if (TV.Count > 1) c61 = Avx512F.FusedMultiplyAdd(a, b1, c61);
            if (TV.Count > 2) c62 = Avx512F.FusedMultiplyAdd(a, b2, c62);
            a = Vector512.Create(ap[7]);
            c70 = Avx512F.FusedMultiplyAdd(a, b0, c70);
            if (TV.Count > 1) c71 = Avx512F.FusedMultiplyAdd(a, b1, c71);
            if (TV.Count > 2) c72 = Avx512F.FusedMultiplyAdd(a, b2, c72);
        }

        // Full tile: update C straight from the registers; edge tile: stage through the stack.
        float* tile = stackalloc float[8 * 48];
        bool full = mr == 8 && nr == width;
        float* dst = full ? c : tile;
        int ld = full ? ldc : width;
        var alphaV = Vector512.Create(alpha);
        var betaV = Vector512.Create(beta);
        bool accumulate = full && beta != 0f;
        bool scale = full && alpha != 1f;
        StoreRow<TV>(dst, c00, c01, c02, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c10, c11, c12, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c20, c21, c22, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c30, c31, c32, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c40, c41, c42, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c50, c51, c52, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c60, c61, c62, alphaV, betaV, scale, accumulate);
        StoreRow<TV>(dst += ld, c70, c71, c72, alphaV, betaV, scale, accumulate);
        if (!full)
            StoreTile(tile, width, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<TV>(float* dst, Vector512<float> r0, Vector512<float> r1, Vector512<float> r2,
        Vector512<float> alpha, Vector512<float> beta, bool scale, bool accumulate) where TV : struct, IVectors
    {
        Update(dst, r0, alpha, beta, scale, accumulate);
        if (TV.Count > 1) Update(dst + 16, r1, alpha, beta, scale, accumulate);
        if (TV.Count > 2) Update(dst + 32, r2, alpha, beta, scale, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* c, Vector512<float> acc, Vector512<float> alpha, Vector512<float> beta, bool scale, bool accumulate)
    {
        if (scale)
            acc *= alpha;
        if (accumulate)
            acc = Avx512F.FusedMultiplyAdd(beta, Vector512.Load(c), acc);
        acc.Store(c);
    }

    /// <summary>Applies the alpha/beta update from a staged tile (row stride <paramref name="width"/>) to C.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreTile(float* tile, int width, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        for (int i = 0; i < mr; i++, tile += width, c += ldc)
        {
            for (int j = 0; j < nr; j++)
            {
                float t = tile[j];
                if (alpha != 1f)
                    t *= alpha;
                c[j] = beta == 0f ? t : MulAdd(beta, c[j], t);
            }
        }
    }

    /// <summary>
    /// AVX2+FMA: the 6×16 tile of the BLIS/OpenBLAS Haswell and Zen kernels — 6 rows × 2 Vector256 = 12
    /// accumulators, plus 2 B vectors and 1 broadcast A value: 15 of the 16 ymm registers. Per k step 2 loads and
    /// 6 broadcasts feed 12 FMAs (two FMA pipes: 6 cycles per step at 4-cycle latency, 12 independent chains
    /// cover 2 pipes × 4 cycles + 4). The k loop is unrolled by 2.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16Avx2(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        int p = 0;
        for (; p + 2 <= kc; p += 2, ap += 12, bp += 32)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var a = Vector256.Create(ap[0]);
            c00 = Fma.MultiplyAdd(a, b0, c00); c01 = Fma.MultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[1]);
            c10 = Fma.MultiplyAdd(a, b0, c10); c11 = Fma.MultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[2]);
            c20 = Fma.MultiplyAdd(a, b0, c20); c21 = Fma.MultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[3]);
            c30 = Fma.MultiplyAdd(a, b0, c30); c31 = Fma.MultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[4]);
            c40 = Fma.MultiplyAdd(a, b0, c40); c41 = Fma.MultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[5]);
            c50 = Fma.MultiplyAdd(a, b0, c50); c51 = Fma.MultiplyAdd(a, b1, c51);

            b0 = Avx.LoadVector256(bp + 16);
            b1 = Avx.LoadVector256(bp + 24);
            a = Vector256.Create(ap[6]);
            c00 = Fma.MultiplyAdd(a, b0, c00); c01 = Fma.MultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[7]);
            c10 = Fma.MultiplyAdd(a, b0, c10); c11 = Fma.MultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[8]);
            c20 = Fma.MultiplyAdd(a, b0, c20); c21 = Fma.MultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[9]);
            c30 = Fma.MultiplyAdd(a, b0, c30); c31 = Fma.MultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[10]);
            c40 = Fma.MultiplyAdd(a, b0, c40); c41 = Fma.MultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[11]);
            c50 = Fma.MultiplyAdd(a, b0, c50); c51 = Fma.MultiplyAdd(a, b1, c51);
        }
        if (p < kc)
        {
            var b0 = Avx.LoadVector256(bp);
            var b1 = Avx.LoadVector256(bp + 8);
            var a = Vector256.Create(ap[0]);
            c00 = Fma.MultiplyAdd(a, b0, c00); c01 = Fma.MultiplyAdd(a, b1, c01);
            a = Vector256.Create(ap[1]);
            c10 = Fma.MultiplyAdd(a, b0, c10); c11 = Fma.MultiplyAdd(a, b1, c11);
            a = Vector256.Create(ap[2]);
            c20 = Fma.MultiplyAdd(a, b0, c20); c21 = Fma.MultiplyAdd(a, b1, c21);
            a = Vector256.Create(ap[3]);
            c30 = Fma.MultiplyAdd(a, b0, c30); c31 = Fma.MultiplyAdd(a, b1, c31);
            a = Vector256.Create(ap[4]);
            c40 = Fma.MultiplyAdd(a, b0, c40); c41 = Fma.MultiplyAdd(a, b1, c41);
            a = Vector256.Create(ap[5]);
            c50 = Fma.MultiplyAdd(a, b0, c50); c51 = Fma.MultiplyAdd(a, b1, c51);
        }

        // Full tile: update C straight from the registers; edge tile: stage through the stack.
        float* tile = stackalloc float[6 * 16];
        bool full = mr == 6 && nr == 16;
        float* dst = full ? c : tile;
        int ld = full ? ldc : 16;
        var alphaV = Vector256.Create(alpha);
        var betaV = Vector256.Create(beta);
        bool accumulate = full && beta != 0f;
        bool scale = full && alpha != 1f;
        Update(dst, c00, alphaV, betaV, scale, accumulate); Update(dst + 8, c01, alphaV, betaV, scale, accumulate); dst += ld;
        Update(dst, c10, alphaV, betaV, scale, accumulate); Update(dst + 8, c11, alphaV, betaV, scale, accumulate); dst += ld;
        Update(dst, c20, alphaV, betaV, scale, accumulate); Update(dst + 8, c21, alphaV, betaV, scale, accumulate); dst += ld;
        Update(dst, c30, alphaV, betaV, scale, accumulate); Update(dst + 8, c31, alphaV, betaV, scale, accumulate); dst += ld;
        Update(dst, c40, alphaV, betaV, scale, accumulate); Update(dst + 8, c41, alphaV, betaV, scale, accumulate); dst += ld;
        Update(dst, c50, alphaV, betaV, scale, accumulate); Update(dst + 8, c51, alphaV, betaV, scale, accumulate);
        if (!full)
            StoreTile(tile, 16, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Update(float* c, Vector256<float> acc, Vector256<float> alpha, Vector256<float> beta, bool scale, bool accumulate)
    {
        if (scale)
            acc *= alpha;
        if (accumulate)
            acc = Fma.MultiplyAdd(beta, Avx.LoadVector256(c), acc);
        Avx.Store(c, acc);
    }

    /// <summary>
    /// 128-bit vectors (SSE, NEON): the 6×16 tile as two 6×8 halves, each 6 rows × 2 Vector128 = 12 accumulators
    /// + 2 B vectors + 1 broadcast (15 of SSE's 16 xmm; NEON has 32). Multiply-adds are fused where the hardware
    /// fuses (NEON; SSE without FMA3 rounds twice, as <see cref="MulAdd"/> does in the scalar kernels).
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16Vector128(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        float* tile = stackalloc float[6 * 16];
        for (int j0 = 0; j0 < 16; j0 += 8)
        {
            Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
            Vector128<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
            float* a = ap, b = bp + j0;
            for (int p = 0; p < kc; p++, a += 6, b += 16)
            {
                var b0 = Vector128.Load(b);
                var b1 = Vector128.Load(b + 4);
                var s = Vector128.Create(a[0]);
                c00 = Vector128.MultiplyAddEstimate(s, b0, c00); c01 = Vector128.MultiplyAddEstimate(s, b1, c01);
                s = Vector128.Create(a[1]);
                c10 = Vector128.MultiplyAddEstimate(s, b0, c10); c11 = Vector128.MultiplyAddEstimate(s, b1, c11);
                s = Vector128.Create(a[2]);
                c20 = Vector128.MultiplyAddEstimate(s, b0, c20); c21 = Vector128.MultiplyAddEstimate(s, b1, c21);
                s = Vector128.Create(a[3]);
                c30 = Vector128.MultiplyAddEstimate(s, b0, c30); c31 = Vector128.MultiplyAddEstimate(s, b1, c31);
                s = Vector128.Create(a[4]);
                c40 = Vector128.MultiplyAddEstimate(s, b0, c40); c41 = Vector128.MultiplyAddEstimate(s, b1, c41);
                s = Vector128.Create(a[5]);
                c50 = Vector128.MultiplyAddEstimate(s, b0, c50); c51 = Vector128.MultiplyAddEstimate(s, b1, c51);
            }
            float* t = tile + j0;
            c00.Store(t); c01.Store(t + 4); t += 16;
            c10.Store(t); c11.Store(t + 4); t += 16;
            c20.Store(t); c21.Store(t + 4); t += 16;
            c30.Store(t); c31.Store(t + 4); t += 16;
            c40.Store(t); c41.Store(t + 4); t += 16;
            c50.Store(t); c51.Store(t + 4);
        }
        StoreTile(tile, 16, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>Portable fallback: plain loops over the packed panels.</summary>
    [SkipLocalsInit]
    private static void KernelScalar(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        int width = PanelWidth(nr), rows = MR;
        float* tile = stackalloc float[8 * 48];
        new Span<float>(tile, rows * width).Clear();
        for (int p = 0; p < kc; p++, ap += rows, bp += width)
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++)
                    tile[i * width + j] = MulAdd(ap[i], bp[j], tile[i * width + j]);
        StoreTile(tile, width, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>a·b + c, fused where the hardware fuses (so it matches the vector kernels bit-for-bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MulAdd(float a, float b, float c) => CpuDispatch.HasFma ? MathF.FusedMultiplyAdd(a, b, c) : a * b + c;
}
