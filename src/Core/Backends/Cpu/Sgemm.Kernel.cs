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
/// Fallbacks: <see cref="Kernel256"/> (AVX2+FMA: 4 rows × 2 Vector256 at a time) and <see cref="KernelScalar"/>.
/// Both accumulate the same per-element FMA chain as the AVX-512 path and share <see cref="StoreTile"/>.
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
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            int width = PanelWidth(nr);
            if (width == 48)
                Kernel512<Three>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
            else if (width == 32)
                Kernel512<Two>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
            else
                Kernel512<One>(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
        }
        else if (Vector256.IsHardwareAccelerated && Fma.IsSupported)
            Kernel256(kc, ap, bp, c, ldc, mr, nr, alpha, beta);
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
        for (int p = 0; p < kc; p++, ap += MR, bp += width)
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
        float* tile = stackalloc float[MR * NR];
        bool full = mr == MR && nr == width;
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

    /// <summary>AVX2 fallback: the 8×width tile in 4-row × 16-column pieces (8 ymm accumulators each).</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        int width = PanelWidth(nr);
        float* tile = stackalloc float[MR * NR];
        for (int i0 = 0; i0 < MR; i0 += 4)
        {
            for (int j0 = 0; j0 < width; j0 += 16)
            {
                Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
                Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
                float* a = ap + i0;
                float* b = bp + j0;
                for (int p = 0; p < kc; p++, a += MR, b += width)
                {
                    var b0 = Vector256.Load(b);
                    var b1 = Vector256.Load(b + 8);
                    var s = Vector256.Create(a[0]);
                    c00 = Fma.MultiplyAdd(s, b0, c00);
                    c01 = Fma.MultiplyAdd(s, b1, c01);
                    s = Vector256.Create(a[1]);
                    c10 = Fma.MultiplyAdd(s, b0, c10);
                    c11 = Fma.MultiplyAdd(s, b1, c11);
                    s = Vector256.Create(a[2]);
                    c20 = Fma.MultiplyAdd(s, b0, c20);
                    c21 = Fma.MultiplyAdd(s, b1, c21);
                    s = Vector256.Create(a[3]);
                    c30 = Fma.MultiplyAdd(s, b0, c30);
                    c31 = Fma.MultiplyAdd(s, b1, c31);
                }
                float* t = tile + i0 * width + j0;
                c00.Store(t); c01.Store(t + 8); t += width;
                c10.Store(t); c11.Store(t + 8); t += width;
                c20.Store(t); c21.Store(t + 8); t += width;
                c30.Store(t); c31.Store(t + 8);
            }
        }
        StoreTile(tile, width, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>Portable fallback: plain loops over the packed panels.</summary>
    [SkipLocalsInit]
    private static void KernelScalar(int kc, float* ap, float* bp, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        int width = PanelWidth(nr);
        float* tile = stackalloc float[MR * NR];
        new Span<float>(tile, MR * width).Clear();
        for (int p = 0; p < kc; p++, ap += MR, bp += width)
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < nr; j++)
                    tile[i * width + j] = MulAdd(ap[i], bp[j], tile[i * width + j]);
        StoreTile(tile, width, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>a·b + c, fused where the hardware fuses (so it matches the vector kernels bit-for-bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MulAdd(float a, float b, float c) => Fma.IsSupported ? MathF.FusedMultiplyAdd(a, b, c) : a * b + c;
}
