using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

public sealed class GroupNormTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Theory]
    [InlineData(3, 4, 2, 6)]
    [InlineData(2, 6, 3, 1)]
    [InlineData(2, 4, 1, 5)]
    public void Forward_and_gradients_match_float64_finite_differences(int n, int c, int groups, int s)
    {
        var gn = new GroupNorm(_backend, "gn", groups, c);
        float[] gamma = Random(c, 61, 0.5, 1), beta = Random(c, 62);
        _backend.Upload(gamma, gn.Gamma.Value);
        _backend.Upload(beta, gn.Beta.Value);
        float[] x = Random(n * c * s, 63, 2, 0.3);
        int[] shape = s == 1 ? [n, c] : [n, c, 1, s];
        var y = gn.Forward(_backend.From(x, shape), training: true);
        float[] r = Random(y.Length, 64);
        var dx = gn.Backward(_backend.From(r, shape));
        double L(double[] xx, double[] g, double[] b) => Dot(Reference64.GroupNorm(xx, g, b, n, c, s, groups), r);
        AssertClose(Reference64.GroupNorm(D(x), D(gamma), D(beta), n, c, s, groups), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => L(v, D(gamma), D(beta)), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => L(D(x), v, D(beta)), D(gamma)), _backend.Read(gn.Gamma.Grad), "dgamma");
        AssertClose(Numeric(v => L(D(x), D(gamma), v), D(beta)), _backend.Read(gn.Beta.Grad), "dbeta");
    }

    [Fact]
    public void Channels_that_groups_do_not_divide_are_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new GroupNorm(_backend, "gn1", 3, 32));
        Assert.Contains("32 channels cannot be split into 3 groups", e.Message);
    }
}
