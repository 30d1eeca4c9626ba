using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;
using static BnDist.Core.Tests.Support.GradientCheck;

namespace BnDist.Core.Tests.Models;

/// <summary>
/// The builder's batch norm + ReLU fusion (<see cref="LayerFusion"/>) changes how a network computes, never
/// what: the same tensor names, batch norms in the same order, and a training step of the same bits as the
/// unfused network's.
/// </summary>
public sealed class LayerFusionTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    private static readonly ModelSpec Tiny = new("tiny-resnet", m => m
        .Conv2d(8, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
        .Residual("block1",
            body => body.Conv2d(8, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
                        .Conv2d(8, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
            then: t => t.Relu())
        .Residual("block2",
            body => body.Conv2d(16, 3, stride: 2, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
                        .Conv2d(16, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
            shortcut: s => s.Conv2d(16, 1, stride: 2, bias: false).BatchNorm(),
            then: t => t.Relu())
        .Sequential("stage", s => s
            .Residual("0",
                body => body.Conv2d(16, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
                            .Conv2d(16, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
                then: t => t.Relu()))
        .GlobalAvgPool2d().Flatten().Linear(24, name: "fc1").BatchNorm("bn3").Relu().Linear(5, name: "fc2"));

    [Fact]
    public void Fusing_keeps_names_and_the_batch_norm_order_and_drops_only_the_fused_relus()
    {
        var fused = Tiny.Build(_backend, SingleProcessCollective.Instance, [1, 12, 12], 3, null, fuse: true);
        var plain = Tiny.Build(_backend, SingleProcessCollective.Instance, [1, 12, 12], 3, null, fuse: false);
        Assert.Equal(plain.Parameters.Select(p => p.Name), fused.Parameters.Select(p => p.Name));
        Assert.Equal(plain.Buffers.Select(b => b.Name), fused.Buffers.Select(b => b.Name));
        Assert.Equal(plain.BatchNorms.Select(b => (b.Name, b.LayerIndex)), fused.BatchNorms.Select(b => (b.Name, b.LayerIndex)));
        Assert.Equal(["bn1", "block1.bn1", "block2.bn1", "stage.0.bn1", "bn3"], fused.BatchNorms.Where(b => b.FusedRelu).Select(b => b.Name));
        Assert.Equal(8, plain.Layers.OfType<Relu>().Count());
        Assert.Empty(fused.Layers.OfType<Relu>());
        Assert.Equal(3, Residuals(fused.Root).Count(r => r.FusedRelu));
        Assert.DoesNotContain(Residuals(plain.Root), r => r.FusedRelu);
        // each block's input is the previous block's ReLU output (stage.0's across its sequence's boundary): it passes
        // its input gradient back through that ReLU
        Assert.Equal([(true, false), (true, true), (false, true)], Residuals(fused.Root).Select(r => (r.GradientArrivesMasked, r.InputFromRelu)));
    }

    [Fact]
    public void A_fused_training_step_gives_the_bits_of_the_unfused_one()
    {
        const int n = 6;
        var (dlogitsFused, stateFused) = Step(fuse: true, n);
        var (dlogitsPlain, statePlain) = Step(fuse: false, n);
        Assert.Equal(dlogitsPlain, dlogitsFused);
        Assert.Equal(statePlain.Keys, stateFused.Keys);
        foreach (var (name, values) in statePlain)
            Assert.True(values.SequenceEqual(stateFused[name]), $"{name} differs");
    }

    private static IEnumerable<Residual> Residuals(Module m) =>
        (m is Residual r ? [r] : Enumerable.Empty<Residual>()).Concat(m.Children.SelectMany(Residuals));

    /// <summary>Forward, loss, backward and the eval forward of one batch: the loss gradient, every gradient and the eval logits.</summary>
    private (float[] DLogits, Dictionary<string, float[]> State) Step(bool fuse, int n)
    {
        var net = Tiny.Build(_backend, SingleProcessCollective.Instance, [1, 12, 12], 3, null, fuse);
        using var x = _backend.From(Random(n * 144, 7, scale: 2, offset: 0.3), n, 1, 12, 12);
        int[] labels = [.. Enumerable.Range(0, n).Select(i => i % 5)];
        var logits = net.Forward(x, training: true);
        using var dlogits = _backend.Allocate(n, 5);
        _backend.SoftmaxCrossEntropy(n, 5, logits, labels, 1f / n, dlogits);
        net.Backward(dlogits);
        var state = net.Parameters.ToDictionary(p => p.Name + ".grad", p => _backend.Read(p.Grad));
        foreach (var b in net.Buffers.Where(b => b.Floats is not null)) state[b.Name] = b.Floats!.ToArray();
        state["eval logits"] = _backend.Read(net.Forward(x, training: false));
        return (_backend.Read(dlogits), state);
    }
}
