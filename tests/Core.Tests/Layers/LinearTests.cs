using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

public sealed class LinearTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(4, 7, 5, true)]
    [InlineData(1, 3, 2, false)]
    [InlineData(9, 33, 17, true)]
    public void Forward_and_all_gradients_match_float64_finite_differences(int n, int inF, int outF, bool bias)
    {
        var fc = new Linear(_backend, "fc", inF, outF, bias);
        fc.ResetParameters(5);
        float[] x = Random(n * inF, 3);
        float[] w = _backend.Read(fc.Weight.Value);
        float[] b = bias ? _backend.Read(fc.Bias!.Value) : [];
        var y = fc.Forward(_backend.From(x, n, inF), training: true);
        float[] r = Random(y.Length, 4);
        var dx = fc.Backward(_backend.From(r, n, outF));

        double[] Ref(double[] xx, double[] ww, double[]? bb) => Reference64.Linear(xx, ww, bb, n, inF, outF);
        AssertClose(Ref(D(x), D(w), bias ? D(b) : null), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v, D(w), bias ? D(b) : null), r), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => Dot(Ref(D(x), v, bias ? D(b) : null), r), D(w)), _backend.Read(fc.Weight.Grad), "dw");
        if (bias) AssertClose(Numeric(v => Dot(Ref(D(x), D(w), v), r), D(b)), _backend.Read(fc.Bias!.Grad), "db");
    }
}
