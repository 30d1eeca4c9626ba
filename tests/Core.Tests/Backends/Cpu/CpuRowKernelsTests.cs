using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Tests.Backends.Cpu;

/// <summary>
/// The batch-norm row kernels give the same bits on every instruction-set path: each test holds the path this
/// process runs (see <see cref="CpuDispatchTests"/>; `make test` runs them under each runtime switch) to a
/// plain scalar statement of the one summation order (<see cref="CpuRowKernels"/>), so passing on every path
/// means every path computes the same statistics.
/// </summary>
public sealed unsafe class CpuRowKernelsTests
{
    // Lengths around the vector widths (4, 8, 16) and the model's spatial sizes (196, 784).
    public static TheoryData<int> Lengths() => [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 49, 196, 787];

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ShiftedSums_FollowTheOneFloat64OrderBitForBit(int n)
    {
        float[] x = Values(n, 1, offset: 3f);
        const float shift = 2.75f;
        // Canonical order: lane j of 8 takes (v[16b + j], v[16b + 8 + j]); lanes combined pairwise; tail in turn.
        double[] l1 = new double[8], l2 = new double[8];
        int i = 0;
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 8; j++)
            {
                double lo = x[i + j] - shift, hi = x[i + 8 + j] - shift; // float32 subtraction, then widened
                l1[j] += lo + hi;
                l2[j] = lo * lo + (hi * hi + l2[j]);
            }
        double s1 = Pairwise(l1), s2 = Pairwise(l2);
        for (; i < n; i++)
        {
            double v = x[i] - shift;
            s1 += v;
            s2 += v * v;
        }

        var (got1, got2) = CpuRowKernels.ShiftedSums(x, shift);
        Assert.Equal(BitConverter.DoubleToInt64Bits(s1), BitConverter.DoubleToInt64Bits(got1));
        Assert.Equal(BitConverter.DoubleToInt64Bits(s2), BitConverter.DoubleToInt64Bits(got2));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void DotSums_FollowTheOneFloat64OrderBitForBit(int n)
    {
        float[] g = Values(n, 2), h = Values(n, 3);
        double[] l1 = new double[8], l2 = new double[8];
        int i = 0;
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 8; j++)
            {
                l1[j] += (double)g[i + j] + g[i + 8 + j];
                l2[j] = (double)g[i + j] * h[i + j] + ((double)g[i + 8 + j] * h[i + 8 + j] + l2[j]);
            }
        double s1 = Pairwise(l1), s2 = Pairwise(l2);
        for (; i < n; i++)
        {
            s1 += g[i];
            s2 += (double)g[i] * h[i];
        }

        var (got1, got2) = CpuRowKernels.DotSums(g, h);
        Assert.Equal(BitConverter.DoubleToInt64Bits(s1), BitConverter.DoubleToInt64Bits(got1));
        Assert.Equal(BitConverter.DoubleToInt64Bits(s2), BitConverter.DoubleToInt64Bits(got2));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Sum_FollowsTheOneFloat32OrderBitForBit(int n)
    {
        float[] x = Values(n, 4);
        float[] lanes = new float[16];
        int i = 0;
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 16; j++)
                lanes[j] += x[i + j];
        for (int w = 8; w >= 1; w /= 2)
            for (int j = 0; j < w; j++)
                lanes[j] += lanes[j + w];
        float s = lanes[0];
        for (; i < n; i++)
            s += x[i];

        fixed (float* p = x)
            Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(CpuRowKernels.Sum(p, n)));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ElementwiseStages_MatchTheirScalarDefinitionBitForBit(int n)
    {
        float[] x = Values(n, 5), y = Values(n, 6), dy = Values(n, 7);
        const float k = 0.25f, d = -0.125f, inv = 1.7f, gamma = 0.9f, beta = -0.3f;
        float[] xhat = new float[n], outY = new float[n], aff = new float[n], aff2 = new float[n], relu = new float[n], sig = new float[n];
        CpuRowKernels.Normalize(x, xhat, outY, k, d, inv, gamma, beta);
        CpuRowKernels.Affine(x, aff, gamma, beta);
        CpuRowKernels.Affine2(x, y, aff2, gamma, inv, beta);
        CpuRowKernels.ReluBackward(y, dy, relu);
        CpuRowKernels.SigmoidBackward(y, dy, sig);
        for (int i = 0; i < n; i++)
        {
            float h = (x[i] - k - d) * inv;
            Same(h, xhat[i], "xhat", i);
            Same(CpuRowKernels.MulAdd(gamma, h, beta), outY[i], "y", i);
            Same(CpuRowKernels.MulAdd(gamma, x[i], beta), aff[i], "affine", i);
            Same(CpuRowKernels.MulAdd(gamma, x[i], CpuRowKernels.MulAdd(inv, y[i], beta)), aff2[i], "affine2", i);
            Same(y[i] > 0f ? dy[i] : 0f, relu[i], "relu backward", i);
            Same(dy[i] * y[i] * (1f - y[i]), sig[i], "sigmoid backward", i);
        }
    }

    [Fact]
    public void MulAdd_IsFusedExactlyWhereTheHardwareFuses()
    {
        // 1 + 2⁻²³ squared is 1 + 2⁻²² + 2⁻⁴⁶: fused, the 2⁻⁴⁶ survives the subtraction of 1 + 2⁻²²; unfused it does not.
        float a = 1f + MathF.Pow(2, -23), c = -(1f + MathF.Pow(2, -22));
        float expected = CpuDispatch.HasFma ? MathF.Pow(2, -46) : 0f;
        Assert.Equal(expected, CpuRowKernels.MulAdd(a, a, c));
    }

    private static double Pairwise(double[] l) => ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));

    private static void Same(float expected, float got, string what, int i) =>
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(got), $"{what}[{i}] = {got}, expected {expected}");

    private static float[] Values(int n, int seed, float offset = 0f)
    {
        var rng = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = offset + (rng.NextSingle() * 2f - 1f) * MathF.Pow(2, rng.Next(-40, 40));
        // Magnitudes spread over 2⁸⁰: float64 sums of these round, so any other order gives other bits.
        return v;
    }
}
