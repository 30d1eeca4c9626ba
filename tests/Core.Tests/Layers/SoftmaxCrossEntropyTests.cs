using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

public sealed class SoftmaxCrossEntropyTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Loss_and_gradient_of_the_mean_match_float64_finite_differences()
    {
        const int n = 5, k = 10;
        float[] z = Random(n * k, 71, 4);
        int[] labels = [3, 0, 9, 3, 7];
        var loss = new SoftmaxCrossEntropy(_backend);
        var (sum, _) = loss.Forward(_backend.From(z, n, k), labels, n, computeGradient: true);
        Assert.Equal(Reference64.CrossEntropy(D(z), labels, n, k), sum / n, 6);
        AssertClose(Numeric(v => Reference64.CrossEntropy(v, labels, n, k), D(z)), _backend.Read(loss.Gradient), "dz");
    }

    [Fact]
    public void A_shard_scales_its_gradient_by_the_global_batch_so_shard_gradients_sum_to_the_whole()
    {
        const int n = 6, k = 4;
        float[] z = Random(n * k, 72, 3);
        int[] labels = [0, 1, 2, 3, 1, 0];
        var whole = new SoftmaxCrossEntropy(_backend);
        whole.Forward(_backend.From(z, n, k), labels, n, computeGradient: true);
        float[] expected = _backend.Read(whole.Gradient);
        // shard [0, 4) and [4, 6) of a global batch of 6
        var first = new SoftmaxCrossEntropy(_backend);
        first.Forward(_backend.From(z[..16], 4, k), labels[..4], n, computeGradient: true);
        var second = new SoftmaxCrossEntropy(_backend);
        second.Forward(_backend.From(z[16..], 2, k), labels[4..], n, computeGradient: true);
        float[] joined = [.. _backend.Read(first.Gradient), .. _backend.Read(second.Gradient)];
        Assert.Equal(expected, joined);
    }

    [Fact]
    public void Huge_logits_do_not_overflow()
    {
        var loss = new SoftmaxCrossEntropy(_backend);
        var (sum, correct) = loss.Forward(_backend.From([1000f, -1000f, 0f], 1, 3), [0], 1, computeGradient: true);
        Assert.Equal(0, sum, 6);
        Assert.Equal(1, correct);
    }

    [Fact]
    public void A_label_outside_the_classes_is_refused()
    {
        var loss = new SoftmaxCrossEntropy(_backend);
        Assert.Throws<ArgumentOutOfRangeException>(() => loss.Forward(_backend.From([1f, 2f], 1, 2), [2], 1, true));
    }
}
