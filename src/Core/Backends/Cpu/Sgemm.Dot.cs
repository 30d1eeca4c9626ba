using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// C = A·Bᵀ + beta·C for short, wide operands (m and n small, k long): A [m×k] and B [n×k] are both read
/// along k, so nothing is packed or transposed.
/// </summary>
/// <remarks>
/// <para>
/// This is the shape of a weight gradient with a small patch, e.g. conv1's dWᵀ[9×32] = col[9×784]·dyᵀ
/// per sample. There the blocked GEMM spends more time transposing its operands into panels (k×n with
/// n = 9) than multiplying; a dot-product kernel needs no packing at all.
/// </para>
/// <para>
/// Tile: 3 rows of A × 8 rows of B = 24 Vector512 accumulators, each a 16-lane partial dot product along k;
/// per 16 k it loads 3 + 8 vectors for 24 FMAs. The last partial chunk of k uses masked loads (zeros past k).
/// At the end each accumulator is reduced across lanes (<see cref="Vector512.Sum{T}"/>, a fixed order). Tiles
/// at the m/n edges alias their missing rows to row 0 and drop those results. C is addressed with a row and
/// a column stride, so the transposed product (e.g. dW from dWᵀ) is written directly.
/// </para>
/// </remarks>
internal static unsafe partial class Sgemm
{
    /// <summary>c[i·ldc + j·cs] = Σ_p a[i·lda + p]·b[j·ldb + p] + beta·c[…] (beta == 0: C not read).</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MultiplyABt(int m, int n, int k, float* a, int lda, float* b, int ldb, float beta,
        float* c, int ldc, int cs)
    {
        if (CpuDispatch.IsAvx2)
        {
            MultiplyABt256(m, n, k, a, lda, b, ldb, beta, c, ldc, cs);
            return;
        }
        if (CpuDispatch.IsVector128)
        {
            MultiplyABt128(m, n, k, a, lda, b, ldb, beta, c, ldc, cs);
            return;
        }
        if (!CpuDispatch.IsAvx512)
        {
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float s = 0f;
                    for (int p = 0; p < k; p++)
                        s = MulAdd(a[(long)i * lda + p], b[(long)j * ldb + p], s);
                    Store(c + (long)i * ldc + (long)j * cs, s, beta);
                }
            return;
        }

        float* sums = stackalloc float[24];
        var keep = Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            Vector512.Create(k % 16)).AsSingle(); // the lanes of the last, partial chunk that lie below k
        int full = k / 16 * 16;
        for (int i0 = 0; i0 < m; i0 += 3)
        {
            int mr = Math.Min(3, m - i0);
            float* a0 = a + (long)i0 * lda, a1 = mr > 1 ? a0 + lda : a0, a2 = mr > 2 ? a1 + lda : a0;
            for (int j0 = 0; j0 < n; j0 += 8)
            {
                int nr = Math.Min(8, n - j0);
                float* b0 = b + (long)j0 * ldb;
                float* b1 = nr > 1 ? b0 + ldb : b0, b2 = nr > 2 ? b0 + 2L * ldb : b0, b3 = nr > 3 ? b0 + 3L * ldb : b0;
                float* b4 = nr > 4 ? b0 + 4L * ldb : b0, b5 = nr > 5 ? b0 + 5L * ldb : b0, b6 = nr > 6 ? b0 + 6L * ldb : b0;
                float* b7 = nr > 7 ? b0 + 7L * ldb : b0;
                Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default, s04 = default, s05 = default, s06 = default, s07 = default;
                Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default, s14 = default, s15 = default, s16 = default, s17 = default;
                Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default, s24 = default, s25 = default, s26 = default, s27 = default;
                for (int p = 0; p < k; p += 16)
                {
                    var mask = p < full ? Vector512<float>.AllBitsSet : keep;
                    var x0 = Avx512F.MaskLoad(a0 + p, mask, Vector512<float>.Zero);
                    var x1 = Avx512F.MaskLoad(a1 + p, mask, Vector512<float>.Zero);
                    var x2 = Avx512F.MaskLoad(a2 + p, mask, Vector512<float>.Zero);
                    var y = Avx512F.MaskLoad(b0 + p, mask, Vector512<float>.Zero);
                    s00 = Avx512F.FusedMultiplyAdd(x0, y, s00); s10 = Avx512F.FusedMultiplyAdd(x1, y, s10); s20 = Avx512F.FusedMultiplyAdd(x2, y, s20);
                    y = Avx512F.MaskLoad(b1 + p, mask, Vector512<float>.Zero);
                    s01 = Avx512F.FusedMultiplyAdd(x0, y, s01); s11 = Avx512F.FusedMultiplyAdd(x1, y, s11); s21 = Avx512F.FusedMultiplyAdd(x2, y, s21);
                    y = Avx512F.MaskLoad(b2 + p, mask, Vector512<float>.Zero);
                    s02 = Avx512F.FusedMultiplyAdd(x0, y, s02); s12 = Avx512F.FusedMultiplyAdd(x1, y, s12); s22 = Avx512F.FusedMultiplyAdd(x2, y, s22);
                    y = Avx512F.MaskLoad(b3 + p, mask, Vector512<float>.Zero);
                    s03 = Avx512F.FusedMultiplyAdd(x0, y, s03); s13 = Avx512F.FusedMultiplyAdd(x1, y, s13); s23 = Avx512F.FusedMultiplyAdd(x2, y, s23);
                    y = Avx512F.MaskLoad(b4 + p, mask, Vector512<float>.Zero);
                    s04 = Avx512F.FusedMultiplyAdd(x0, y, s04); s14 = Avx512F.FusedMultiplyAdd(x1, y, s14); s24 = Avx512F.FusedMultiplyAdd(x2, y, s24);
                    y = Avx512F.MaskLoad(b5 + p, mask, Vector512<float>.Zero);
                    s05 = Avx512F.FusedMultiplyAdd(x0, y, s05); s15 = Avx512F.FusedMultiplyAdd(x1, y, s15); s25 = Avx512F.FusedMultiplyAdd(x2, y, s25);
                    y = Avx512F.MaskLoad(b6 + p, mask, Vector512<float>.Zero);
                    s06 = Avx512F.FusedMultiplyAdd(x0, y, s06); s16 = Avx512F.FusedMultiplyAdd(x1, y, s16); s26 = Avx512F.FusedMultiplyAdd(x2, y, s26);
                    y = Avx512F.MaskLoad(b7 + p, mask, Vector512<float>.Zero);
                    s07 = Avx512F.FusedMultiplyAdd(x0, y, s07); s17 = Avx512F.FusedMultiplyAdd(x1, y, s17); s27 = Avx512F.FusedMultiplyAdd(x2, y, s27);
                }
                sums[0] = Vector512.Sum(s00); sums[1] = Vector512.Sum(s01); sums[2] = Vector512.Sum(s02); sums[3] = Vector512.Sum(s03);
                sums[4] = Vector512.Sum(s04); sums[5] = Vector512.Sum(s05); sums[6] = Vector512.Sum(s06); sums[7] = Vector512.Sum(s07);
                sums[8] = Vector512.Sum(s10); sums[9] = Vector512.Sum(s11); sums[10] = Vector512.Sum(s12); sums[11] = Vector512.Sum(s13);
                sums[12] = Vector512.Sum(s14); sums[13] = Vector512.Sum(s15); sums[14] = Vector512.Sum(s16); sums[15] = Vector512.Sum(s17);
                sums[16] = Vector512.Sum(s20); sums[17] = Vector512.Sum(s21); sums[18] = Vector512.Sum(s22); sums[19] = Vector512.Sum(s23);
                sums[20] = Vector512.Sum(s24); sums[21] = Vector512.Sum(s25); sums[22] = Vector512.Sum(s26); sums[23] = Vector512.Sum(s27);
                for (int i = 0; i < mr; i++)
                    for (int j = 0; j < nr; j++)
                        Store(c + (long)(i0 + i) * ldc + (long)(j0 + j) * cs, sums[i * 8 + j], beta);
            }
        }
    }

    /// <summary>
    /// <see cref="MultiplyABt"/> on AVX2: tiles of 2 rows of A × 4 rows of B = 8 Vector256 accumulators (+ 2 A and
    /// 1 B vector: 11 of 16 ymm), 8 lanes of k at a time; the last k % 8 products are added after the lanes
    /// are summed. Edge tiles alias their missing rows to the tile's first and drop those results.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyABt256(int m, int n, int k, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, int cs)
    {
        int full = k / 8 * 8;
        for (int i0 = 0; i0 < m; i0 += 2)
        {
            int mr = Math.Min(2, m - i0);
            float* a0 = a + (long)i0 * lda, a1 = mr > 1 ? a0 + lda : a0;
            for (int j0 = 0; j0 < n; j0 += 4)
            {
                int nr = Math.Min(4, n - j0);
                float* b0 = b + (long)j0 * ldb;
                float* b1 = nr > 1 ? b0 + ldb : b0, b2 = nr > 2 ? b0 + 2L * ldb : b0, b3 = nr > 3 ? b0 + 3L * ldb : b0;
                Vector256<float> s00 = default, s01 = default, s02 = default, s03 = default;
                Vector256<float> s10 = default, s11 = default, s12 = default, s13 = default;
                for (int p = 0; p < full; p += 8)
                {
                    var x0 = Avx.LoadVector256(a0 + p);
                    var x1 = Avx.LoadVector256(a1 + p);
                    var y = Avx.LoadVector256(b0 + p);
                    s00 = Fma.MultiplyAdd(x0, y, s00); s10 = Fma.MultiplyAdd(x1, y, s10);
                    y = Avx.LoadVector256(b1 + p);
                    s01 = Fma.MultiplyAdd(x0, y, s01); s11 = Fma.MultiplyAdd(x1, y, s11);
                    y = Avx.LoadVector256(b2 + p);
                    s02 = Fma.MultiplyAdd(x0, y, s02); s12 = Fma.MultiplyAdd(x1, y, s12);
                    y = Avx.LoadVector256(b3 + p);
                    s03 = Fma.MultiplyAdd(x0, y, s03); s13 = Fma.MultiplyAdd(x1, y, s13);
                }
                StoreDots(c, ldc, cs, i0, j0, mr, nr, beta, k, full, a0, a1, b0, b1, b2, b3,
                    Vector256.Sum(s00), Vector256.Sum(s01), Vector256.Sum(s02), Vector256.Sum(s03),
                    Vector256.Sum(s10), Vector256.Sum(s11), Vector256.Sum(s12), Vector256.Sum(s13));
            }
        }
    }

    /// <summary><see cref="MultiplyABt256"/> with 128-bit vectors (SSE, NEON): 4 lanes of k at a time.</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MultiplyABt128(int m, int n, int k, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, int cs)
    {
        int full = k / 4 * 4;
        for (int i0 = 0; i0 < m; i0 += 2)
        {
            int mr = Math.Min(2, m - i0);
            float* a0 = a + (long)i0 * lda, a1 = mr > 1 ? a0 + lda : a0;
            for (int j0 = 0; j0 < n; j0 += 4)
            {
                int nr = Math.Min(4, n - j0);
                float* b0 = b + (long)j0 * ldb;
                float* b1 = nr > 1 ? b0 + ldb : b0, b2 = nr > 2 ? b0 + 2L * ldb : b0, b3 = nr > 3 ? b0 + 3L * ldb : b0;
                Vector128<float> s00 = default, s01 = default, s02 = default, s03 = default;
                Vector128<float> s10 = default, s11 = default, s12 = default, s13 = default;
                for (int p = 0; p < full; p += 4)
                {
                    var x0 = Vector128.Load(a0 + p);
                    var x1 = Vector128.Load(a1 + p);
                    var y = Vector128.Load(b0 + p);
                    s00 = Vector128.MultiplyAddEstimate(x0, y, s00); s10 = Vector128.MultiplyAddEstimate(x1, y, s10);
                    y = Vector128.Load(b1 + p);
                    s01 = Vector128.MultiplyAddEstimate(x0, y, s01); s11 = Vector128.MultiplyAddEstimate(x1, y, s11);
                    y = Vector128.Load(b2 + p);
                    s02 = Vector128.MultiplyAddEstimate(x0, y, s02); s12 = Vector128.MultiplyAddEstimate(x1, y, s12);
                    y = Vector128.Load(b3 + p);
                    s03 = Vector128.MultiplyAddEstimate(x0, y, s03); s13 = Vector128.MultiplyAddEstimate(x1, y, s13);
                }
                StoreDots(c, ldc, cs, i0, j0, mr, nr, beta, k, full, a0, a1, b0, b1, b2, b3,
                    Vector128.Sum(s00), Vector128.Sum(s01), Vector128.Sum(s02), Vector128.Sum(s03),
                    Vector128.Sum(s10), Vector128.Sum(s11), Vector128.Sum(s12), Vector128.Sum(s13));
            }
        }
    }

    /// <summary>Adds the products of k in [full, k) to the 2×4 lane sums and stores the tile's valid part.</summary>
    [SkipLocalsInit]
    private static void StoreDots(float* c, int ldc, int cs, int i0, int j0, int mr, int nr, float beta, int k, int full,
        float* a0, float* a1, float* b0, float* b1, float* b2, float* b3,
        float s00, float s01, float s02, float s03, float s10, float s11, float s12, float s13)
    {
        for (int p = full; p < k; p++)
        {
            s00 = MulAdd(a0[p], b0[p], s00); s01 = MulAdd(a0[p], b1[p], s01); s02 = MulAdd(a0[p], b2[p], s02); s03 = MulAdd(a0[p], b3[p], s03);
            s10 = MulAdd(a1[p], b0[p], s10); s11 = MulAdd(a1[p], b1[p], s11); s12 = MulAdd(a1[p], b2[p], s12); s13 = MulAdd(a1[p], b3[p], s13);
        }
        float* sums = stackalloc float[8] { s00, s01, s02, s03, s10, s11, s12, s13 };
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                Store(c + (long)(i0 + i) * ldc + (long)(j0 + j) * cs, sums[i * 4 + j], beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, float value, float beta) => *c = beta == 0f ? value : MulAdd(beta, *c, value);
}
