using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

/// <summary>ReLU, Sigmoid, MaxPool2d and Flatten against float64 definitions and finite differences.</summary>
public sealed class ActivationTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Relu_gradient_matches_finite_differences_away_from_the_kink()
    {
        // 37 values (not a multiple of the vector width), none within 1e-2 of 0 where FD is undefined.
        float[] x = [.. Random(37, 11).Select(v => Math.Abs(v) < 1e-2 ? 0.5f : v)];
        var relu = new Relu(_backend);
        var y = relu.Forward(_backend.From(x, 37), training: true);
        float[] r = Random(37, 12);
        var dx = relu.Backward(_backend.From(r, 37));
        AssertClose([.. D(x).Select(v => Math.Max(v, 0))], _backend.Read(y), "y", 0);
        AssertClose(Numeric(v => Dot([.. v.Select(t => Math.Max(t, 0))], r), D(x)), _backend.Read(dx), "dx");
    }

    [Fact]
    public void Sigmoid_matches_its_definition_and_finite_differences_including_large_inputs()
    {
        float[] x = [.. Random(35, 13, scale: 6), 90f, -90f];
        var sigmoid = new Sigmoid(_backend);
        var y = sigmoid.Forward(_backend.From(x, x.Length), training: true);
        float[] r = Random(x.Length, 14);
        var dx = sigmoid.Backward(_backend.From(r, x.Length));
        static double S(double v) => 1 / (1 + Math.Exp(-v));
        AssertClose([.. D(x).Select(S)], _backend.Read(y), "y", 1e-6);
        AssertClose(Numeric(v => Dot([.. v.Select(S)], r), D(x)), _backend.Read(dx), "dx");
    }

    [Fact]
    public void MaxPool_routes_the_gradient_to_the_window_maximum()
    {
        const int n = 2, c = 3, h = 6, w = 4;
        float[] x = Random(n * c * h * w, 15);
        var pool = new MaxPool2d(_backend, 2);
        var y = pool.Forward(_backend.From(x, n, c, h, w), training: true);
        Assert.Equal([n, c, 3, 2], y.Shape);
        float[] r = Random(y.Length, 16);
        var dx = pool.Backward(_backend.From(r, y.Shape));
        AssertClose(Reference64.MaxPool(D(x), n, c, h, w, 2), _backend.Read(y), "y", 0);
        AssertClose(Numeric(v => Dot(Reference64.MaxPool(v, n, c, h, w, 2), r), D(x)), _backend.Read(dx), "dx");
    }

    [Fact]
    public void Flatten_keeps_NCHW_order_and_restores_the_shape_backward()
    {
        float[] x = Random(2 * 3 * 2 * 2, 17);
        var flatten = new Flatten(_backend);
        var y = flatten.Forward(_backend.From(x, 2, 3, 2, 2), training: true);
        Assert.Equal([2, 12], y.Shape);
        Assert.Equal(x, _backend.Read(y));
        var dx = flatten.Backward(_backend.From(x, 2, 12));
        Assert.Equal([2, 3, 2, 2], dx.Shape);
    }
}
