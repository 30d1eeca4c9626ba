using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Tests.Backends.Cpu;

public unsafe class SgemmTests
{
    /// <summary>
    /// Error bound for one element. Each element is a chain of k fused multiply-adds (one rounding each), then
    /// ·alpha and fma(beta, c, ·) — k + 2 roundings of relative size ≤ u = 2⁻²⁴ — so the classical dot-product bound
    /// |ĉ − c| ≤ γ·(|alpha|·Σ_p |a_ip||b_pj| + |beta|·|c_ij|) holds with γ = (k + 2)·u / (1 − (k + 2)·u).
    /// We allow γ = (k + 2)·eps32 with eps32 = 2⁻²³ = 2u (a factor 2 of slack for the denominator and the float64
    /// reference), plus 1e-30 absolute for exact zeros.
    /// </summary>
    internal static double Tolerance(int k, double absSum) => (k + 2) * Math.Pow(2, -23) * absSum + 1e-30;

    public static TheoryData<int, int, int, bool, bool> Cases()
    {
        var data = new TheoryData<int, int, int, bool, bool>();
        foreach (var (m, n, k) in new[] { (1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 288, 196), (129, 257, 31) })
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    data.Add(m, n, k, ta, tb);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Multiply_MatchesFloat64Reference(int m, int n, int k, bool transA, bool transB)
    {
        var rng = new Random(m * 1000003 + n * 1009 + k * 7 + (transA ? 1 : 0) + (transB ? 2 : 0));
        // Leading dimensions deliberately larger than the rows they hold.
        int lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2;
        float[] a = Random(rng, (transA ? k : m) * lda), b = Random(rng, (transB ? n : k) * ldb);

        foreach (var (alpha, beta) in new[] { (1.5f, -0.75f), (0.7f, 0f), (1f, 1f), (-2f, 0.5f) })
        {
            float[] c0 = Random(rng, m * ldc);
            if (beta == 0f)
                Array.Fill(c0, float.NaN); // beta == 0 must not read C
            float[] c1 = (float[])c0.Clone(), c2 = (float[])c0.Clone();
            fixed (float* pa = a, pb = b, pc1 = c1, pc2 = c2)
            {
                Sgemm.Multiply(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc1, ldc);
                using var pool = new CpuThreadPool(2);
                Sgemm.Multiply(pool, transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc2, ldc);
            }

            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double dot = 0, abs = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double av = transA ? a[p * lda + i] : a[i * lda + p];
                        double bv = transB ? b[j * ldb + p] : b[p * ldb + j];
                        dot += av * bv;
                        abs += Math.Abs(av * bv);
                    }
                    double cOld = beta == 0f ? 0 : c0[i * ldc + j];
                    double expected = alpha * dot + beta * cOld;
                    double tol = Tolerance(k, Math.Abs(alpha) * abs + Math.Abs(beta * cOld));
                    float got = c1[i * ldc + j];
                    Assert.True(Math.Abs(got - expected) <= tol,
                        $"C[{i},{j}] = {got}, expected {expected} ± {tol} (alpha {alpha}, beta {beta})");
                    Assert.Equal(BitConverter.SingleToInt32Bits(got), BitConverter.SingleToInt32Bits(c2[i * ldc + j]));
                }
                // Padding between rows of C is never written.
                for (int j = n; j < ldc; j++)
                    Assert.Equal(BitConverter.SingleToInt32Bits(c0[i * ldc + j]), BitConverter.SingleToInt32Bits(c1[i * ldc + j]));
            }
        }
    }

    [Theory]
    [InlineData(300, 40, 50)]   // tall: the pool splits along m
    [InlineData(40, 700, 300)]  // wide, two k blocks: split along n
    [InlineData(513, 517, 259)] // every edge at once
    public void PooledMultiply_IsBitIdenticalForAnyThreadCount(int m, int n, int k)
    {
        var rng = new Random(m + n + k);
        float[] a = Random(rng, m * k), b = Random(rng, n * k), c0 = Random(rng, m * n);
        int[]? reference = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new CpuThreadPool(threads);
            float[] c = (float[])c0.Clone();
            fixed (float* pa = a, pb = b, pc = c)
                Sgemm.Multiply(pool, false, true, m, n, k, 0.9f, pa, k, pb, k, 0.25f, pc, n);
            int[] bits = Array.ConvertAll(c, BitConverter.SingleToInt32Bits);
            reference ??= bits;
            Assert.Equal(reference, bits);
        }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(7, 13, 37)]   // partial tiles in both directions, partial last k chunk
    [InlineData(9, 32, 784)]  // conv1's dWᵀ per sample
    public void MultiplyABt_MatchesFloat64Reference(int m, int n, int k)
    {
        var rng = new Random(m * 31 + n * 7 + k);
        int lda = k + 1, ldb = k + 3;
        float[] a = Random(rng, m * lda), b = Random(rng, n * ldb);
        foreach (float beta in new[] { 0f, 0.5f })
        {
            // C written transposed, as the conv writes dW from dWᵀ: element (i, j) at [j·m + i].
            float[] c0 = Random(rng, m * n), c = (float[])c0.Clone();
            if (beta == 0f)
                Array.Fill(c, float.NaN);
            fixed (float* pa = a, pb = b, pc = c)
                Sgemm.MultiplyABt(m, n, k, pa, lda, pb, ldb, beta, pc, 1, m);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double dot = 0, abs = 0;
                    for (int p = 0; p < k; p++)
                    {
                        dot += (double)a[i * lda + p] * b[j * ldb + p];
                        abs += Math.Abs((double)a[i * lda + p] * b[j * ldb + p]);
                    }
                    double expected = dot + beta * c0[j * m + i];
                    double tol = Tolerance(k, abs + Math.Abs(beta * c0[j * m + i]));
                    Assert.True(Math.Abs(c[j * m + i] - expected) <= tol, $"C[{i},{j}] = {c[j * m + i]}, expected {expected} ± {tol}");
                }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PrePackedA_IsBitIdenticalToMatrixA(bool transA)
    {
        const int m = 37, n = 50, k = 300; // two k blocks, a row tail
        var rng = new Random(5);
        int lda = transA ? m : k;
        float[] a = Random(rng, m * k), b = Random(rng, k * n), c1 = new float[m * n], c2 = new float[m * n];
        float[] packed = new float[Sgemm.PrePackedSize(m, k)];
        fixed (float* pa = a, pb = b, pc1 = c1, pc2 = c2, pp = packed)
        {
            Sgemm.Multiply(transA, false, m, n, k, 1f, pa, lda, pb, n, 0f, pc1, n);
            Sgemm.PrePackA(transA, m, k, pa, lda, pp);
            Sgemm.Run(m, n, k, 1f, new Sgemm.PackedA(pp, m), new Sgemm.MatrixB(false, pb, n), 0f, pc2, n);
        }
        Assert.Equal(Array.ConvertAll(c1, BitConverter.SingleToInt32Bits), Array.ConvertAll(c2, BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void Multiply_ZeroK_ScalesC()
    {
        float[] c = [1f, 2f, 3f, 4f];
        fixed (float* pc = c)
        {
            Sgemm.Multiply(false, false, 2, 2, 0, 1f, null, 1, null, 2, 0.5f, pc, 2);
            Assert.Equal([0.5f, 1f, 1.5f, 2f], c);
            c.AsSpan().Fill(float.NaN);
            Sgemm.Multiply(false, false, 2, 2, 0, 1f, null, 1, null, 2, 0f, pc, 2);
            Assert.Equal([0f, 0f, 0f, 0f], c);
        }
    }

    internal static float[] Random(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
            values[i] = rng.NextSingle() * 2f - 1f;
        return values;
    }
}
