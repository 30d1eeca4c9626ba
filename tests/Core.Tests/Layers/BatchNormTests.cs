using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

/// <summary>Batch norm against a direct two-pass float64 reference (forward, backward, running statistics).</summary>
public sealed class BatchNormTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    private BatchNorm NewBn(int c, double? momentum = 0.1) =>
        new(_backend, "bn", c, SingleProcessCollective.Instance, 0, momentum: momentum);

    private (float[] Gamma, float[] Beta) RandomAffine(BatchNorm bn, int c)
    {
        float[] gamma = Random(c, 21, 0.5, 1.0), beta = Random(c, 22);
        _backend.Upload(gamma, bn.Gamma.Value);
        _backend.Upload(beta, bn.Beta.Value);
        return (gamma, beta);
    }

    [Theory]
    [InlineData(4, 3, 1)]     // BatchNorm1d: m = N
    [InlineData(3, 2, 20)]    // BatchNorm2d: m = N·H·W, S not a multiple of the vector width
    [InlineData(2, 5, 64)]
    public void Training_forward_and_backward_match_the_two_pass_float64_reference(int n, int c, int s)
    {
        var bn = NewBn(c);
        var (gamma, beta) = RandomAffine(bn, c);
        float[] x = Random(n * c * s, 23, scale: 2, offset: 0.5);
        int[] shape = s == 1 ? [n, c] : [n, c, 4, s / 4];
        var y = bn.Forward(_backend.From(x, shape), training: true);
        var (yRef, meanRef, varRef) = Reference64.BatchNorm(D(x), D(gamma), D(beta), n, c, s);
        AssertClose(yRef, _backend.Read(y), "y", 1e-5);
        AssertClose(meanRef, bn.BatchMean.ToArray(), "mean", 1e-6);
        AssertClose(varRef, bn.BatchVariance.ToArray(), "var", 1e-6);

        float[] r = Random(y.Length, 24);
        var dx = bn.Backward(_backend.From(r, shape));
        double L(double[] xx, double[] g, double[] b) => Dot(Reference64.BatchNorm(xx, g, b, n, c, s).Y, r);
        AssertClose(Numeric(v => L(v, D(gamma), D(beta)), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => L(D(x), v, D(beta)), D(gamma)), _backend.Read(bn.Gamma.Grad), "dgamma");
        AssertClose(Numeric(v => L(D(x), D(gamma), v), D(beta)), _backend.Read(bn.Beta.Grad), "dbeta");
    }

    [Theory]
    [InlineData(4, 3, 1)]
    [InlineData(3, 2, 20)]
    [InlineData(2, 5, 64)]
    public void With_the_fused_relu_forward_and_backward_match_the_float64_reference_of_batch_norm_then_relu(int n, int c, int s)
    {
        var bn = NewBn(c);
        bn.FusedRelu = true;
        var (gamma, beta) = RandomAffine(bn, c);
        float[] x = Random(n * c * s, 23, scale: 2, offset: 0.5);
        int[] shape = s == 1 ? [n, c] : [n, c, 4, s / 4];
        static double[] Relu(double[] v) => [.. v.Select(t => Math.Max(t, 0))];
        double[] pre = Reference64.BatchNorm(D(x), D(gamma), D(beta), n, c, s).Y;
        // the ReLU cuts, and no value sits within the finite differences' reach of its kink
        Assert.Contains(pre, v => v < 0);
        Assert.Contains(pre, v => v > 0);
        // (a step h = 1e-4 of one x moves y by about γ·h/σ ≈ 1e-4)
        Assert.All(pre, v => Assert.True(Math.Abs(v) > 1e-3, $"{v} is too near the kink for the finite differences"));

        var y = bn.Forward(_backend.From(x, shape), training: true);
        AssertClose(Relu(pre), _backend.Read(y), "relu(y)", 1e-5);

        float[] r = Random(y.Length, 24);
        var dx = bn.Backward(_backend.From(r, shape));
        double L(double[] xx, double[] g, double[] b) => Dot(Relu(Reference64.BatchNorm(xx, g, b, n, c, s).Y), r);
        AssertClose(Numeric(v => L(v, D(gamma), D(beta)), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => L(D(x), v, D(beta)), D(gamma)), _backend.Read(bn.Gamma.Grad), "dgamma");
        AssertClose(Numeric(v => L(D(x), D(gamma), v), D(beta)), _backend.Read(bn.Beta.Grad), "dbeta");

        // eval: relu(a·x + b) with the folded running statistics
        float[] xe = Random(n * c * s, 25);
        var ye = _backend.Read(bn.Forward(_backend.From(xe, shape), training: false));
        var expected = new double[xe.Length];
        for (int i = 0; i < xe.Length; i++)
        {
            int ch = i / s % c;
            double a = gamma[ch] / Math.Sqrt(bn.RunningVariance[ch] + 1e-5);
            expected[i] = Math.Max(0, a * xe[i] + (beta[ch] - a * bn.RunningMean[ch]));
        }
        Assert.Contains(0f, ye);
        AssertClose(expected, ye, "relu(y_eval)", 1e-6);
    }

    [Fact]
    public void Variance_stays_right_when_the_mean_is_ten_thousand_standard_deviations()
    {
        const int n = 64, c = 3, s = 49;
        var rng = new Random(5);
        // float32 data: mean 1e4, std 1 (mean/std = 1e4)
        float[] x = [.. Enumerable.Range(0, n * c * s).Select(_ => (float)(1e4 + Gaussian(rng)))];
        var bn = NewBn(c);
        bn.Forward(_backend.From(x, n, c, 7, 7), training: true);
        var (_, meanRef, varRef) = Reference64.BatchNorm(D(x), [1, 1, 1], [0, 0, 0], n, c, s);
        for (int ch = 0; ch < c; ch++)
        {
            Assert.InRange(varRef[ch], 0.8, 1.2);
            // float32 output of a float64 computation: ~1e-7 relative; 1e-5 leaves room.
            Assert.True(Math.Abs(bn.BatchVariance[ch] - varRef[ch]) <= 1e-5 * varRef[ch], $"channel {ch}: {bn.BatchVariance[ch]} vs {varRef[ch]}");
            Assert.True(Math.Abs(bn.BatchMean[ch] - meanRef[ch]) <= 1e-3, $"channel {ch}: mean {bn.BatchMean[ch]} vs {meanRef[ch]}");
        }

        // The naive float32 E[x²] − E[x]² on the same data is off by orders of magnitude:
        // the failure this test exists to exclude.
        float sum = 0, sumSq = 0;
        for (int i = 0; i < n; i++) for (int j = 0; j < s; j++) { float v = x[i * c * s + j]; sum += v; sumSq += v * v; }
        float naive = sumSq / (n * s) - (sum / (n * s)) * (sum / (n * s));
        Assert.True(Math.Abs(naive - varRef[0]) > 0.5, $"naive float32 variance {naive} happened to be right");
    }

    [Fact]
    public void Running_statistics_follow_the_ema_with_the_unbiased_variance()
    {
        const int n = 5, c = 2, s = 3;
        var bn = NewBn(c);
        double[] mean = [0, 0], var = [1, 1];
        for (int step = 0; step < 4; step++)
        {
            float[] x = Random(n * c * s, 30 + step, scale: 1 + step, offset: step);
            bn.Forward(_backend.From(x, n, c, 1, s), training: true);
            var (_, mu, v) = Reference64.BatchNorm(D(x), [1, 1], [0, 0], n, c, s);
            for (int ch = 0; ch < c; ch++)
            {
                mean[ch] = 0.9 * mean[ch] + 0.1 * mu[ch];
                var[ch] = 0.9 * var[ch] + 0.1 * v[ch] * (n * s) / (n * s - 1.0);
            }
        }
        AssertClose(mean, bn.RunningMean.ToArray(), "running_mean", 1e-5);
        AssertClose(var, bn.RunningVariance.ToArray(), "running_var", 1e-5);
        Assert.Equal(4L, bn.Buffers.Single(b => b.Name == "bn.num_batches_tracked").Longs![0]);
    }

    [Fact]
    public void Cumulative_mode_gives_the_population_averages_of_algorithm_2()
    {
        const int n = 4, c = 2, s = 5;
        var bn = NewBn(c, momentum: null);
        double[] meanSum = new double[c], varSum = new double[c];
        const int steps = 5;
        for (int step = 0; step < steps; step++)
        {
            float[] x = Random(n * c * s, 40 + step, scale: 1 + step, offset: -step);
            bn.Forward(_backend.From(x, n, c, 1, s), training: true);
            var (_, mu, v) = Reference64.BatchNorm(D(x), [1, 1], [0, 0], n, c, s);
            for (int ch = 0; ch < c; ch++)
            {
                meanSum[ch] += mu[ch];
                varSum[ch] += v[ch] * (n * s) / (n * s - 1.0);
            }
        }
        AssertClose([.. meanSum.Select(v => v / steps)], bn.RunningMean.ToArray(), "E[mu_B]", 1e-5);
        AssertClose([.. varSum.Select(v => v / steps)], bn.RunningVariance.ToArray(), "m/(m-1)·E[var_B]", 1e-5);
    }

    [Fact]
    public void Eval_mode_equals_the_folded_affine_map_of_the_running_statistics()
    {
        const int n = 3, c = 4, s = 6;
        var bn = NewBn(c);
        var (gamma, beta) = RandomAffine(bn, c);
        bn.Forward(_backend.From(Random(n * c * s, 50, 3, 1), n, c, 2, 3), training: true);
        float[] x = Random(n * c * s, 51);
        var y = _backend.Read(bn.Forward(_backend.From(x, n, c, 2, 3), training: false));
        var expected = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            int ch = i / s % c;
            double a = gamma[ch] / Math.Sqrt(bn.RunningVariance[ch] + 1e-5);
            expected[i] = a * x[i] + (beta[ch] - a * bn.RunningMean[ch]);
        }
        AssertClose(expected, y, "y_eval", 1e-6);

        // Changing γ after the fold must be seen (the fold is cached per parameter version).
        _backend.Fill(bn.Gamma.Value, 0f);
        bn.Gamma.MarkChanged();
        var y2 = _backend.Read(bn.Forward(_backend.From(x, n, c, 2, 3), training: false));
        for (int i = 0; i < x.Length; i++)
            Assert.Equal(beta[i / s % c] - 0f, y2[i], 5);
    }

    [Fact]
    public void Training_with_a_single_value_per_channel_is_refused_clearly()
    {
        var bn = NewBn(3);
        var e = Assert.Throws<InvalidOperationException>(() => bn.Forward(_backend.From(Random(3, 1), 1, 3), training: true));
        Assert.Contains("more than one value per channel", e.Message);
    }

    private static double Gaussian(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
