using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

public sealed class Conv2dTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(2, 3, 6, 5, 4, 3, 1, 1, true)]
    [InlineData(1, 1, 7, 7, 2, 3, 2, 0, false)]
    [InlineData(3, 2, 5, 5, 3, 1, 1, 0, true)]
    [InlineData(2, 2, 6, 6, 2, 5, 1, 2, false)]
    public void Forward_and_all_gradients_match_float64_finite_differences(int n, int cin, int h, int w, int cout, int k, int stride, int pad, bool bias)
    {
        var conv = new Conv2d(_backend, "conv", cin, cout, k, stride, pad, bias);
        conv.ResetParameters(7);
        float[] x = Random(n * cin * h * w, 1);
        float[] wt = _backend.Read(conv.Weight.Value);
        float[] b = bias ? _backend.Read(conv.Bias!.Value) : [];
        var y = conv.Forward(_backend.From(x, n, cin, h, w), training: true);
        float[] r = Random(y.Length, 2);
        var dx = conv.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] xx, double[] ww, double[]? bb) => Reference64.Conv2d(xx, ww, bb, n, cin, h, w, cout, k, stride, pad);
        AssertClose(Ref(D(x), D(wt), bias ? D(b) : null), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v, D(wt), bias ? D(b) : null), r), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => Dot(Ref(D(x), v, bias ? D(b) : null), r), D(wt)), _backend.Read(conv.Weight.Grad), "dw");
        if (bias) AssertClose(Numeric(v => Dot(Ref(D(x), D(wt), v), r), D(b)), _backend.Read(conv.Bias!.Grad), "db");
    }

    [Fact]
    public void Initialization_is_uniform_within_one_over_root_fan_in_and_seeded()
    {
        var a = new Conv2d(_backend, "conv1", 32, 64, 3, bias: true);
        var b = new Conv2d(_backend, "conv1", 32, 64, 3, bias: true);
        a.ResetParameters(3);
        b.ResetParameters(3);
        float[] w = _backend.Read(a.Weight.Value);
        double bound = 1 / Math.Sqrt(32 * 9);
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        Assert.True(w.Max() > 0.9 * bound && w.Min() < -0.9 * bound, "the draws fill the interval");
        Assert.Equal(w, _backend.Read(b.Weight.Value));
    }

    [Fact]
    public void An_input_short_of_one_window_by_less_than_the_stride_is_refused_naming_the_layer()
    {
        // (2 − 3)/2 + 1 truncates to 1: a partial window must not make a 1×1 output.
        var conv = new Conv2d(_backend, "conv", 1, 1, 3, stride: 2);
        var e = Assert.Throws<ArgumentException>(() => conv.OutputShape([1, 1, 2, 2]));
        Assert.Contains("conv: a 2×2 input is smaller than the 3×3 kernel", e.Message);
    }

    [Fact]
    public void An_empty_batch_gives_an_empty_output_and_zero_gradients()
    {
        var conv = new Conv2d(_backend, "conv", 2, 3, 3, padding: 1);
        conv.ResetParameters(1);
        var y = conv.Forward(_backend.Allocate(0, 2, 5, 5), training: true);
        Assert.Equal([0, 3, 5, 5], y.Shape);
        conv.Backward(_backend.Allocate(0, 3, 5, 5));
        Assert.All(_backend.Read(conv.Weight.Grad), v => Assert.Equal(0f, v));
    }
}
