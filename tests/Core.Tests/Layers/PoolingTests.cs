using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

/// <summary>
/// AvgPool2d, MaxPool2d with padding and GlobalAvgPool2d against the explicitly padded float64
/// definitions of <see cref="Reference64Pooling"/> and their central finite differences.
/// Tolerances: an average sums at most K² = 9 (global: H·W = 35) float32 values of magnitude
/// ≤ 1.5, so its rounding is below 35·2⁻²⁴·1.5 ≈ 3e-6 absolute, under 1e-5 of the largest
/// output (≥ 0.4 for these inputs); both averages are linear, so their finite differences are
/// exact up to float64 rounding (~1e-11), and their backward sums at most ⌈K/S⌉² = 9 products.
/// A max is selected, not computed: y is exact, and with no two inputs within 2h of each other
/// the finite differences of the max are exact too.
/// </summary>
public sealed class PoolingTests : IDisposable
{
    private const double LinearTolerance = 1e-5;

    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(2, 3, 7, 5, 2, 1, 0)]
    [InlineData(2, 3, 7, 5, 2, 2, 0)]   // floor mode: the last row and column are never read
    [InlineData(2, 2, 5, 7, 2, 1, 1)]
    [InlineData(2, 2, 5, 7, 2, 2, 1)]
    [InlineData(1, 3, 9, 7, 3, 1, 0)]
    [InlineData(2, 2, 7, 9, 3, 2, 0)]
    [InlineData(1, 3, 7, 5, 3, 1, 1)]   // corners see 4 real values and 5 padded zeros
    [InlineData(2, 2, 9, 7, 3, 2, 1)]   // ResNet-style stride 2, pad 1, odd sizes
    public void AvgPool_matches_the_zero_padded_float64_average_over_kernel_squared_and_its_finite_differences(
        int n, int c, int h, int w, int k, int stride, int pad)
    {
        var pool = new AvgPool2d(_backend, k, stride, pad);
        float[] x = Random(n * c * h * w, 20 + k + stride + pad, offset: 0.5);
        var y = pool.Forward(_backend.From(x, n, c, h, w), training: true);
        Assert.Equal([n, c, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1], y.Shape);
        Assert.Equal(y.Shape, pool.OutputShape([n, c, h, w]));
        float[] r = Random(y.Length, 30 + k);
        var dx = pool.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] v) => Reference64Pooling.AvgPool(v, n, c, h, w, k, stride, pad);
        AssertClose(Ref(D(x)), _backend.Read(y), "y", LinearTolerance);
        AssertClose(Numeric(v => Dot(Ref(v), r), D(x)), _backend.Read(dx), "dx", LinearTolerance);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-3.0)]   // every input negative: a padded zero that won would show in y and misroute dx
    public void MaxPool_with_padding_matches_float64_and_finite_differences_and_padding_never_wins(double offset)
    {
        const int n = 2, c = 2, h = 7, w = 9, k = 3, stride = 2, pad = 1;
        // Distinct values 2/len apart (≥ 7e-3 ≫ 2h = 2e-4): no ties, and no probe changes a window's winner.
        int len = n * c * h * w;
        var rng = new Random(41);
        float[] x = [.. Enumerable.Range(0, len).Select(i => (float)(offset + 2.0 * i / len - 1)).OrderBy(_ => rng.Next())];
        var pool = new MaxPool2d(_backend, k, stride, pad);
        var y = pool.Forward(_backend.From(x, n, c, h, w), training: true);
        Assert.Equal([n, c, 4, 5], y.Shape);
        float[] r = Random(y.Length, 42);
        var dx = pool.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] v) => Reference64Pooling.MaxPool(v, n, c, h, w, k, stride, pad);
        AssertClose(Ref(D(x)), _backend.Read(y), "y", 0);
        AssertClose(Numeric(v => Dot(Ref(v), r), D(x)), _backend.Read(dx), "dx", LinearTolerance);
    }

    [Fact]
    public void GlobalAvgPool_gives_each_channel_s_mean_and_spreads_dy_over_h_times_w()
    {
        const int n = 2, c = 3, h = 5, w = 7;
        float[] x = Random(n * c * h * w, 50, offset: 0.5);
        var pool = new GlobalAvgPool2d(_backend);
        var y = pool.Forward(_backend.From(x, n, c, h, w), training: true);
        Assert.Equal([n, c, 1, 1], y.Shape);
        float[] r = Random(y.Length, 51);
        var dx = pool.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] v) => Reference64Pooling.GlobalAvgPool(v, n, c, h * w);
        AssertClose(Ref(D(x)), _backend.Read(y), "y", LinearTolerance);
        AssertClose(Numeric(v => Dot(Ref(v), r), D(x)), _backend.Read(dx), "dx", LinearTolerance);
    }

    [Theory]
    [InlineData("maxpool", 3, 2)]
    [InlineData("avgpool", 3, 2)]
    [InlineData("avgpool", 2, 2)]
    [InlineData("maxpool", 1, 1)]
    [InlineData("avgpool", 3, -1)]
    public void A_padding_outside_zero_to_half_the_kernel_is_refused_naming_the_padding(string kind, int kernel, int padding)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Make(kind, kernel, padding: padding));
        Assert.Equal("padding", e.ParamName);
        Assert.Contains($"{kind}: the padding must be in [0, kernel/2]", e.Message);
    }

    [Theory]
    [InlineData("maxpool", 0)]
    [InlineData("avgpool", 0)]
    [InlineData("avgpool", -2)]
    public void A_kernel_below_one_is_refused_naming_the_kernel(string kind, int kernel)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Make(kind, kernel));
        Assert.Equal("kernel", e.ParamName);
        Assert.Contains($"{kind}: the kernel must be ≥ 1", e.Message);
    }

    [Theory]
    [InlineData("maxpool", 3, 0, 1, 2, 2, 5, "maxpool(3) expects")]    // H < K
    [InlineData("avgpool", 3, 0, 1, 2, 5, 2, "avgpool(3) expects")]    // W < K
    [InlineData("avgpool", 4, 1, 1, 2, 1, 8, "avgpool(4) expects")]    // H + 2·P = 3 < K
    [InlineData("global", 1, 0, 1, 2, 0, 4, "global average pooling expects")]
    public void An_input_too_small_for_one_window_is_refused_naming_the_layer(string kind, int kernel, int padding, int n, int c, int h, int w, string expected)
    {
        var layer = Make(kind, kernel, padding: padding);
        var e = Assert.Throws<ArgumentException>(() => layer.OutputShape([n, c, h, w]));
        Assert.StartsWith(expected, e.Message);
        Assert.Contains($"[{n}, {c}, {h}, {w}]", e.Message);
        e = Assert.Throws<ArgumentException>(() => layer.Forward(_backend.Allocate(n, c, h, w), training: true));
        Assert.StartsWith(expected, e.Message);
    }

    [Fact]
    public void A_single_value_padded_by_one_fills_a_three_by_three_window_averaged_over_nine()
    {
        var pool = new AvgPool2d(_backend, 3, stride: 1, padding: 1);
        var y = pool.Forward(_backend.From([4.5f], 1, 1, 1, 1), training: true);
        Assert.Equal([1, 1, 1, 1], y.Shape);
        Assert.Equal(0.5f, _backend.Read(y)[0]);
        Assert.Equal([1f / 9], _backend.Read(pool.Backward(_backend.From([1f], 1, 1, 1, 1))));
    }

    [Theory]
    [InlineData("maxpool", 3, 2, 1, 3, 4)]
    [InlineData("avgpool", 3, 2, 1, 3, 4)]
    [InlineData("avgpool", 2, 0, 0, 3, 3)]
    [InlineData("global", 1, 0, 0, 1, 1)]
    public void An_empty_batch_pools_to_an_empty_output_and_an_empty_input_gradient(string kind, int kernel, int stride, int padding, int oh, int ow)
    {
        var layer = Make(kind, kernel, stride, padding);
        var y = layer.Forward(_backend.Allocate(0, 3, 6, 7), training: true);
        Assert.Equal([0, 3, oh, ow], y.Shape);
        var dx = layer.Backward(_backend.Allocate(y.Shape));
        Assert.Equal([0, 3, 6, 7], dx.Shape);
    }

    private Layer Make(string kind, int kernel, int stride = 0, int padding = 0) => kind switch
    {
        "maxpool" => new MaxPool2d(_backend, kernel, stride, padding),
        "avgpool" => new AvgPool2d(_backend, kernel, stride, padding),
        _ => new GlobalAvgPool2d(_backend),
    };
}
