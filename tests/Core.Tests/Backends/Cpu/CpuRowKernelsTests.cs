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

    public static TheoryData<int, bool> LengthsWithRelu()
    {
        var data = new TheoryData<int, bool>();
        foreach (int n in (int[])[0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 49, 196, 787])
        {
            data.Add(n, false);
            data.Add(n, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(LengthsWithRelu))]
    public void BackwardSums_FollowTheOneFloat64OrderBitForBit(int n, bool relu)
    {
        float[] g = Values(n, 2), x = Values(n, 3);
        var m = Map(relu);
        // x̂ and the masked g as the scalar definitions give them, then the one summation order.
        float[] h = [.. x.Select(v => (v - m.Shift - m.MeanMinusShift) * m.InvStd)];
        float[] gm = [.. g.Select((v, i) => !relu || CpuRowKernels.MulAdd(m.Gamma, h[i], m.Beta) > 0f ? v : 0f)];
        if (relu && n >= 16) Assert.Contains(0f, gm); // the mask does cut
        double[] l1 = new double[8], l2 = new double[8];
        int i = 0;
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 8; j++)
            {
                l1[j] += (double)gm[i + j] + gm[i + 8 + j];
                l2[j] = (double)gm[i + j] * h[i + j] + ((double)gm[i + 8 + j] * h[i + 8 + j] + l2[j]);
            }
        double s1 = Pairwise(l1), s2 = Pairwise(l2);
        for (; i < n; i++)
        {
            s1 += gm[i];
            s2 += (double)gm[i] * h[i];
        }

        var (got1, got2) = CpuBatchNormRows.BackwardSums(g, x, m);
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
    [MemberData(nameof(LengthsWithRelu))]
    public void ElementwiseStages_MatchTheirScalarDefinitionBitForBit(int n, bool relu)
    {
        float[] x = Values(n, 5), y = Values(n, 6), dy = Values(n, 7);
        var m = Map(relu);
        const float a = 1.3f, b = -0.7f, c = 0.2f;
        float[] outY = new float[n], dx = new float[n], aff = new float[n], reluDx = new float[n], sig = new float[n], sumRelu = new float[n];
        float[] sumReluDx = new float[n];
        CpuBatchNormRows.Normalize(x, outY, m);
        CpuBatchNormRows.BackwardInput(dy, x, dx, m, a, b, c);
        CpuBatchNormRows.Affine(x, aff, m.Gamma, m.Beta, relu);
        CpuRowKernels.ReluBackward(y, dy, reluDx);
        CpuRowKernels.SigmoidBackward(y, dy, sig);
        CpuRowKernels.AddRelu(x, y, sumRelu);
        CpuRowKernels.AddReluBackward(x, dy, y, sumReluDx);
        float Relu(float v) => relu ? MathF.Max(v, 0f) : v;
        for (int i = 0; i < n; i++)
        {
            float h = (x[i] - m.Shift - m.MeanMinusShift) * m.InvStd;
            float v = CpuRowKernels.MulAdd(m.Gamma, h, m.Beta);
            Same(Relu(v), outY[i], "y", i);
            // the fused ReLU's backward is the separate one's, fed with the forward's own output
            float g = relu ? (Relu(v) > 0f ? dy[i] : 0f) : dy[i];
            Same(CpuRowKernels.MulAdd(a, g, CpuRowKernels.MulAdd(b, h, c)), dx[i], "dx", i);
            Same(Relu(CpuRowKernels.MulAdd(m.Gamma, x[i], m.Beta)), aff[i], "affine", i);
            Same(y[i] > 0f ? dy[i] : 0f, reluDx[i], "relu backward", i);
            Same(dy[i] * y[i] * (1f - y[i]), sig[i], "sigmoid backward", i);
            Same(MathF.Max(x[i] + y[i], 0f), sumRelu[i], "add + relu", i);
            Same(y[i] > 0f ? x[i] + dy[i] : 0f, sumReluDx[i], "add + relu backward", i);
        }
        // the fused sum + ReLU gives the bits of the two separate passes
        float[] separate = new float[n];
        System.Numerics.Tensors.TensorPrimitives.Add(x, y, separate);
        CpuElementwise.Relu(separate, separate);
        Assert.Equal(separate, sumRelu);
    }

    private static ChannelMap Map(bool relu) => new(0.25f, -0.125f, 1.7f, 0.9f, -0.3f, relu);

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
