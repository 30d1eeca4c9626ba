using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

/// <summary>
/// Inverted dropout with a <see cref="BatchContext"/>: the statistics of the mask, the exact
/// values of y and dx, and the property that makes K workers equal one process: a sample's
/// mask depends on (seed, step, layer index, data-set index) and on nothing else in the batch.
/// Inputs are drawn away from 0, so y ≠ 0 tells a kept element from a dropped one.
/// </summary>
public sealed class DropoutTests : IDisposable
{
    private const ulong Seed = 1234;
    private const int Channels = 3, Side = 5;   // a sample is [3, 5, 5]: 75 values

    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.9f)]
    public void The_kept_fraction_is_within_five_binomial_sigmas_of_one_minus_p(float p)
    {
        // 2¹⁷ draws: σ = √(m·p(1 − p)) ≤ 181 kept elements. The 24-bit uniform of DropoutMask.Keep
        // moves P(keep) from 1 − p by < 2⁻²⁴, i.e. < 0.01 elements here.
        const int n = 8, perSample = 16384;
        var dropout = Make(p, step: 7, Enumerable.Range(100, n));
        var y = _backend.Read(dropout.Forward(_backend.From(Away(n * perSample, 1), n, perSample), training: true));
        long kept = y.Count(v => v != 0f), m = y.Length;
        double sigma = Math.Sqrt(m * p * (1.0 - p));
        Assert.InRange(kept, m * (1.0 - p) - 5 * sigma, m * (1.0 - p) + 5 * sigma);
    }

    /// <summary>
    /// y = x·s with s = 1f/(1f − p) in float32 (PyTorch too multiplies by the scaled mask): exactly
    /// x/(1 − p) where 1/(1 − p) is a float (p = 0.5, 0.75), otherwise within the two roundings of
    /// s and of the product, 2·2⁻²⁴ ≈ 1.19e-7 relative (1 − p itself is exact in float32 here).
    /// </summary>
    [Theory]
    [InlineData(0.5f)]
    [InlineData(0.75f)]
    [InlineData(0.3f)]
    public void Survivors_are_exactly_x_over_one_minus_p_and_the_rest_are_zero(float p)
    {
        const int n = 6;
        float[] x = Away(n * Channels * Side * Side, 2);
        var dropout = Make(p, step: 1, Enumerable.Range(0, n));
        float[] y = _backend.Read(dropout.Forward(_backend.From(x, n, Channels, Side, Side), training: true));
        float scale = 1f / (1f - p);
        for (int i = 0; i < x.Length; i++)
        {
            if (y[i] == 0f) continue;
            Assert.Equal(x[i] * scale, y[i]);
            if (p != 0.3f) Assert.Equal(x[i] / (1f - p), y[i]);
            Assert.True(Math.Abs(y[i] - x[i] / (1.0 - p)) <= Math.Abs(y[i]) * 1.2e-7, $"y[{i}] = {y[i]}, x/(1 − p) = {x[i] / (1.0 - p)}");
        }
        Assert.Contains(y, v => v == 0f);
        Assert.Contains(y, v => v != 0f);
    }

    [Fact]
    public void Backward_multiplies_dy_by_the_mask_the_forward_applied()
    {
        const int n = 4;
        const float p = 0.3f;
        float[] x = Away(n * Channels * Side * Side, 3), dy = Random(x.Length, 4);
        var dropout = Make(p, step: 2, [9, 3, 5, 1]);
        float[] y = _backend.Read(dropout.Forward(_backend.From(x, n, Channels, Side, Side), training: true));
        float[] dx = _backend.Read(dropout.Backward(_backend.From(dy, n, Channels, Side, Side)));
        float scale = 1f / (1f - p);
        for (int i = 0; i < x.Length; i++)
        {
            // The mask as the forward's y/x: 0, or the scale up to the one rounding of x·scale (2⁻²⁴, doubled for margin).
            double ratio = y[i] / (double)x[i];
            float mask = ratio == 0 ? 0f : scale;
            Assert.True(Math.Abs(ratio - mask) <= 1.2e-7 * scale, $"y/x at {i} is {ratio}, neither 0 nor {scale}");
            Assert.Equal(dy[i] * mask, dx[i]);
        }
    }

    /// <summary>
    /// One process holds samples 10…15 in order; two workers hold {13, 10, 15} and {12, 14, 11},
    /// shuffled and in other company. Every sample's values are a function of its index, so
    /// equal masks mean equal outputs, bit for bit.
    /// </summary>
    [Fact]
    public void A_sample_s_mask_depends_only_on_seed_step_and_its_index_so_K_workers_drop_what_one_process_drops()
    {
        int[] all = [10, 11, 12, 13, 14, 15];
        int[][] workers = [[13, 10, 15], [12, 14, 11]];
        var whole = Outputs(all);
        foreach (int[] shard in workers)
            foreach (var (sample, y) in Outputs(shard))
                Assert.Equal(whole[sample], y);
        Assert.Equal(Outputs([12])[12], whole[12]);   // alone in its batch

        Dictionary<int, float[]> Outputs(int[] samples)
        {
            var dropout = Make(0.5f, step: 3, samples);
            int size = Channels * Side * Side;
            float[] x = [.. samples.SelectMany(s => Away(size, 1000 + s))];
            float[] y = _backend.Read(dropout.Forward(_backend.From(x, samples.Length, Channels, Side, Side), training: true));
            return samples.Select((s, i) => (s, y[(i * size)..((i + 1) * size)])).ToDictionary(t => t.s, t => t.Item2);
        }
    }

    /// <summary>
    /// Masks of the same sample under another step, layer index or seed agree on an element with
    /// probability ½ at p = ½: the fraction that differs over 8192 elements (σ = 0.0055) must be
    /// within 5σ of ½, which equal or correlated masks are not.
    /// </summary>
    [Theory]
    [InlineData(4L, 0, Seed)]
    [InlineData(3L, 1, Seed)]
    [InlineData(3L, 0, Seed + 1)]
    public void Another_step_layer_index_or_seed_gives_an_independent_mask(long step, int index, ulong seed)
    {
        const int n = 2, perSample = 4096;
        float[] x = Away(n * perSample, 5);
        float[] Mask(long s, int i, ulong sd)
        {
            var dropout = Make(0.5f, s, [77, 78], i, sd);
            return _backend.Read(dropout.Forward(_backend.From(x, n, perSample), training: true));
        }
        float[] reference = Mask(3L, 0, Seed), other = Mask(step, index, seed);
        double differing = reference.Zip(other).Count(t => (t.First == 0f) != (t.Second == 0f)) / (double)x.Length;
        Assert.InRange(differing, 0.5 - 5 * 0.0055, 0.5 + 5 * 0.0055);
    }

    [Fact]
    public void Evaluation_returns_x_itself_and_backward_returns_dy_even_without_a_context()
    {
        var dropout = new Dropout(_backend, 0.5f);
        var x = _backend.From(Away(12, 6), 2, 6);
        var y = dropout.Forward(x, training: false);
        Assert.Same(x, y);
        Assert.Equal(Away(12, 6), _backend.Read(y));
        var dy = _backend.From(Random(12, 7), 2, 6);
        Assert.Same(dy, dropout.Backward(dy));
    }

    [Fact]
    public void P_zero_returns_x_itself_in_training()
    {
        var dropout = Make(0f, step: 0, [0, 1]);
        var x = _backend.From(Away(12, 8), 2, 6);
        Assert.Same(x, dropout.Forward(x, training: true));
        var dy = _backend.From(Random(12, 9), 2, 6);
        Assert.Same(dy, dropout.Backward(dy));
    }

    [Fact]
    public void An_empty_batch_with_an_empty_context_gives_empty_outputs_and_gradients()
    {
        var dropout = Make(0.5f, step: 0, []);
        var y = dropout.Forward(_backend.Allocate(0, Channels, Side, Side), training: true);
        Assert.Equal([0, Channels, Side, Side], y.Shape);
        Assert.Equal([0, Channels, Side, Side], dropout.Backward(_backend.Allocate(0, Channels, Side, Side)).Shape);
    }

    [Fact]
    public void A_context_whose_count_differs_from_the_batch_is_refused_naming_both_counts()
    {
        var dropout = Make(0.5f, step: 0, [4, 5, 6]);
        var e = Assert.Throws<InvalidOperationException>(() => dropout.Forward(_backend.Allocate(4, 8), training: true));
        Assert.Contains("holds 3 samples", e.Message);
        Assert.Contains("the input 4", e.Message);
    }

    [Theory]
    [InlineData(-0.1f)]
    [InlineData(1f)]
    [InlineData(1.5f)]
    [InlineData(float.NaN)]
    public void A_probability_outside_zero_to_one_is_refused(float p)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(_backend, p));
        Assert.Equal("p", e.ParamName);
        Assert.Contains("p must be in [0, 1)", e.Message);
    }

    [Fact]
    public void A_network_numbers_its_dropout_layers_in_forward_order_and_gives_them_its_own_context()
    {
        var spec = new ModelSpec("dropped", m => m.Linear(8).Relu().Dropout(0.5f).Linear(6).Dropout(0.5f).Linear(3));
        var net = spec.Build(_backend, SingleProcessCollective.Instance, [5]);
        var other = spec.Build(_backend, SingleProcessCollective.Instance, [5]);
        var dropouts = net.Layers.OfType<Dropout>().ToList();
        Assert.Equal([0, 1], dropouts.Select(d => d.Index));
        Assert.All(dropouts, d => Assert.Same(net.Context, d.Context));
        Assert.NotSame(net.Context, other.Context);
        Assert.All(other.Layers.OfType<Dropout>(), d => Assert.Same(other.Context, d.Context));

        net.Context.Set(0, [2, 7]);
        Assert.Equal([2, 3], net.Forward(_backend.From(Random(10, 10), 2, 5), training: true).Shape);
    }

    private Dropout Make(float p, long step, IEnumerable<int> samples, int index = 0, ulong seed = Seed)
    {
        var context = new BatchContext { Seed = seed };
        context.Set(step, [.. samples]);
        return new Dropout(_backend, p) { Context = context, Index = index };
    }

    /// <summary>Values in ±[0.5, 1.5]: never 0, so a kept element is never mistaken for a dropped one.</summary>
    private static float[] Away(int n, int seed) => [.. Random(n, seed).Select(v => v + MathF.CopySign(0.5f, v))];
}
