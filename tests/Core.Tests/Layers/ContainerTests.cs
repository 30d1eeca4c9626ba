using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Layers;

/// <summary>
/// The containers of the module graph against float64 finite differences of a reference built
/// from <see cref="Reference64"/>: a residual sum and a concatenation must route ∂L/∂y to every
/// branch and SUM the branches' input gradients where x fans out. Tolerances are
/// <see cref="GradientCheck"/>'s (float32 kernels, ~1e-6 relative rounding per accumulation,
/// against 2e-3 of the largest gradient).
/// </summary>
public sealed class ContainerTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void A_projection_residual_block_sums_the_input_gradients_of_its_body_and_its_shortcut()
    {
        const int n = 2, cin = 3, h = 6, w = 5, cout = 4;
        var convA = new Conv2d(_backend, "a", cin, cout, 3, stride: 2, padding: 1, bias: false);
        var bn = new BatchNorm(_backend, "bn", cout, SingleProcessCollective.Instance);
        var convB = new Conv2d(_backend, "b", cin, cout, 1, stride: 2, bias: true);
        convA.ResetParameters(1);
        convB.ResetParameters(2);
        var block = new Residual(_backend, new Sequential([convA, bn]), new Sequential([convB]));
        float[] x = Random(n * cin * h * w, 3);
        float[] wa = _backend.Read(convA.Weight.Value), wb = _backend.Read(convB.Weight.Value), bb = _backend.Read(convB.Bias!.Value);
        var y = block.Forward(_backend.From(x, n, cin, h, w), training: true);
        Assert.Equal([n, cout, 3, 3], y.Shape);
        float[] r = Random(y.Length, 4);
        var dx = block.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] xx, double[] a, double[] b, double[] bias)
        {
            double[] body = Reference64.Conv2d(xx, a, null, n, cin, h, w, cout, 3, 2, 1);
            double[] normalized = Reference64.BatchNorm(body, [.. Enumerable.Repeat(1.0, cout)], new double[cout], n, cout, 9).Y;
            double[] shortcut = Reference64.Conv2d(xx, b, bias, n, cin, h, w, cout, 1, 2, 0);
            return [.. normalized.Zip(shortcut, (p, q) => p + q)];
        }
        AssertClose(Ref(D(x), D(wa), D(wb), D(bb)), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v, D(wa), D(wb), D(bb)), r), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => Dot(Ref(D(x), v, D(wb), D(bb)), r), D(wa)), _backend.Read(convA.Weight.Grad), "d(body weight)");
        AssertClose(Numeric(v => Dot(Ref(D(x), D(wa), v, D(bb)), r), D(wb)), _backend.Read(convB.Weight.Grad), "d(shortcut weight)");
    }

    [Fact]
    public void An_identity_residual_passes_the_output_gradient_straight_to_the_input_and_adds_the_body_s()
    {
        const int n = 2, c = 3, h = 4, w = 4;
        var conv = new Conv2d(_backend, "conv", c, c, 3, padding: 1);
        conv.ResetParameters(5);
        var block = new Residual(_backend, conv);
        float[] x = Random(n * c * h * w, 6), wt = _backend.Read(conv.Weight.Value), b = _backend.Read(conv.Bias!.Value);
        var y = block.Forward(_backend.From(x, n, c, h, w), training: true);
        float[] r = Random(y.Length, 7);
        var dx = block.Backward(_backend.From(r, y.Shape));
        double[] Ref(double[] xx) => [.. Reference64.Conv2d(xx, D(wt), D(b), n, c, h, w, c, 3, 1, 1).Zip(xx, (p, q) => p + q)];
        AssertClose(Ref(D(x)), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v), r), D(x)), _backend.Read(dx), "dx");
    }

    [Fact]
    public void A_residual_with_the_fused_relu_masks_the_output_gradient_before_both_branches()
    {
        const int n = 2, c = 3, h = 4, w = 4;
        var conv = new Conv2d(_backend, "conv", c, c, 3, padding: 1);
        conv.ResetParameters(5);
        var block = new Residual(_backend, conv) { FusedRelu = true };
        float[] x = Random(n * c * h * w, 6), wt = _backend.Read(conv.Weight.Value), b = _backend.Read(conv.Bias!.Value);
        double[] Pre(double[] xx, double[] ww) => [.. Reference64.Conv2d(xx, ww, D(b), n, c, h, w, c, 3, 1, 1).Zip(xx, (p, q) => p + q)];
        double[] Ref(double[] xx, double[] ww) => [.. Pre(xx, ww).Select(v => Math.Max(v, 0))];
        double[] pre = Pre(D(x), D(wt));
        Assert.Contains(pre, v => v < 0);
        Assert.Contains(pre, v => v > 0);
        Assert.All(pre, v => Assert.True(Math.Abs(v) > 1e-3, $"{v} is too near the kink for the finite differences"));

        var y = block.Forward(_backend.From(x, n, c, h, w), training: true);
        float[] r = Random(y.Length, 7);
        var dx = block.Backward(_backend.From(r, y.Shape));
        AssertClose(Ref(D(x), D(wt)), _backend.Read(y), "relu(y)", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v, D(wt)), r), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => Dot(Ref(D(x), v), r), D(wt)), _backend.Read(conv.Weight.Grad), "d(body weight)");
    }

    [Fact]
    public void A_concatenation_splits_the_output_gradient_by_channels_and_sums_the_branches_input_gradients()
    {
        const int n = 2, cin = 3, h = 5, w = 5;
        var conv1 = new Conv2d(_backend, "b1", cin, 2, 1);
        var conv3 = new Conv2d(_backend, "b2", cin, 4, 3, padding: 1, bias: false);
        conv1.ResetParameters(8);
        conv3.ResetParameters(9);
        // Branch 3 is the input itself (a pass-through), so part of ∂L/∂x is a slice of ∂L/∂y.
        var concat = new Concat(_backend, [conv1, conv3, new Sequential([])]);
        float[] x = Random(n * cin * h * w, 10);
        float[] w1 = _backend.Read(conv1.Weight.Value), b1 = _backend.Read(conv1.Bias!.Value), w3 = _backend.Read(conv3.Weight.Value);
        var y = concat.Forward(_backend.From(x, n, cin, h, w), training: true);
        Assert.Equal([n, 2 + 4 + cin, h, w], y.Shape);
        float[] r = Random(y.Length, 11);
        var dx = concat.Backward(_backend.From(r, y.Shape));

        double[] Ref(double[] xx, double[] a, double[] c)
        {
            double[][] parts = [Reference64.Conv2d(xx, a, D(b1), n, cin, h, w, 2, 1, 1, 0), Reference64.Conv2d(xx, c, null, n, cin, h, w, 4, 3, 1, 1), xx];
            int[] channels = [2, 4, cin];
            var y64 = new List<double>();
            for (int s = 0; s < n; s++)
                for (int p = 0; p < parts.Length; p++)
                    y64.AddRange(parts[p].Skip(s * channels[p] * h * w).Take(channels[p] * h * w));
            return [.. y64];
        }
        AssertClose(Ref(D(x), D(w1), D(w3)), _backend.Read(y), "y", 1e-5);
        AssertClose(Numeric(v => Dot(Ref(v, D(w1), D(w3)), r), D(x)), _backend.Read(dx), "dx");
        AssertClose(Numeric(v => Dot(Ref(D(x), v, D(w3)), r), D(w1)), _backend.Read(conv1.Weight.Grad), "d(branch 1 weight)");
        AssertClose(Numeric(v => Dot(Ref(D(x), D(w1), v), r), D(w3)), _backend.Read(conv3.Weight.Grad), "d(branch 2 weight)");
    }

    [Fact]
    public void Residual_branches_of_different_shapes_are_refused_with_the_reason()
    {
        var block = new Residual(_backend, new Conv2d(_backend, "conv", 2, 4, 3, padding: 1));
        var e = Assert.Throws<ArgumentException>(() => block.OutputShape([1, 2, 5, 5]));
        Assert.Contains("the body gives [1, 4, 5, 5] but the shortcut gives [1, 2, 5, 5]", e.Message);
    }

    [Fact]
    public void Tensors_are_named_by_their_path_and_batch_norms_are_numbered_in_forward_order_whatever_the_nesting()
    {
        var spec = new ModelSpec("nested", m => m
            .Conv2d(4, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
            .Residual("block",
                body => body.Conv2d(8, 3, stride: 2, padding: 1, bias: false, name: "conv1").BatchNorm("bn1"),
                shortcut: s => s.Conv2d(8, 1, stride: 2, bias: false).BatchNorm(),
                then: t => t.Relu())
            .Concat("mix", b => b.Conv2d(2, 1, name: "conv"), b => b.Conv2d(3, 1, bias: false).BatchNorm())
            .Flatten().Linear(10, name: "fc"));
        var net = spec.Build(_backend, SingleProcessCollective.Instance, [1, 8, 8]);
        Assert.Equal(
        [
            "conv1.weight", "bn1.weight", "bn1.bias",
            "block.conv1.weight", "block.bn1.weight", "block.bn1.bias",
            "block.downsample.0.weight", "block.downsample.1.weight", "block.downsample.1.bias",
            "mix.branch1.conv.weight", "mix.branch1.conv.bias",
            "mix.branch2.0.weight", "mix.branch2.1.weight", "mix.branch2.1.bias",
            "fc.weight", "fc.bias",
        ], net.Parameters.Select(p => p.Name));
        Assert.Equal(["bn1", "block.bn1", "block.downsample.1", "mix.branch2.1"], net.BatchNorms.Select(b => b.Name));
        Assert.Equal([0, 1, 2, 3], net.BatchNorms.Select(b => b.LayerIndex));
        Assert.Contains("block.downsample.1.running_var", net.Buffers.Select(b => b.Name));
        Assert.Equal(10, net.Classes);
        // Only the first convolution's input (the data) needs no gradient.
        Assert.Equal([false], net.Layers.Take(1).Select(l => l.ComputeInputGradient));
        Assert.All(net.Layers.Skip(1), l => Assert.True(l.ComputeInputGradient, l.Name));
    }

    [Fact]
    public void A_layer_that_does_not_fit_the_shape_reaching_it_is_named()
    {
        var spec = new ModelSpec("bad", m => m.Conv2d(4, 3, name: "conv1").Linear(10, name: "fc"));
        var e = Assert.Throws<ArgumentException>(() => spec.Build(_backend, SingleProcessCollective.Instance, [1, 8, 8]));
        Assert.Equal("fc: Linear (flatten first) needs a rank-2 input, gets [1, 4, 6, 6]", e.Message);
    }
}
