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
        if (!Avx512F.IsSupported || !Vector512.IsHardwareAccelerated)
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, float value, float beta) => *c = beta == 0f ? value : MulAdd(beta, *c, value);
}
