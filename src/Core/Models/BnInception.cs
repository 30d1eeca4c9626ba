using BnDist.Core.Backends;
using BnDist.Core.Collectives;

namespace BnDist.Core.Models;

/// <summary>
/// BN-Inception (Ioffe &amp; Szegedy 2015 §4.2: Inception modules with 1×1, 3×3, double-3×3 and
/// pooling-projection branches, batch norm after every convolution, no dropout, no local
/// response normalization) scaled to 28×28 and 32×32 images; the table of widths is in
/// docs/models.md. Every convolution is a "BasicConv2d" (<c>conv</c> without bias, <c>bn</c>, ReLU),
/// named as torchvision's GoogLeNet: <c>inception3a.branch2.1.conv.weight</c>.
/// </summary>
public static class BnInception
{
    public const string Name = "bn-inception";

    /// <summary>An Inception module's widths: 1×1; 3×3 reduce, 3×3; double-3×3 reduce, double 3×3; pool projection.</summary>
    private readonly record struct ModuleWidths(int A, int BReduce, int B, int CReduce, int C, int D, bool MaxPool = false);

    /// <summary>A reduction module's widths (stride 2, pass-through max pooling).</summary>
    private readonly record struct ReductionWidths(int BReduce, int B, int CReduce, int C);

    public static ModelSpec Spec(int classes) => new(Name, m =>
    {
        BasicConv(m, "conv1", 32, 3, padding: 1);
        Inception(m, "inception3a", new ModuleWidths(16, 16, 24, 16, 24, 8));
        Inception(m, "inception3b", new ModuleWidths(24, 24, 32, 24, 32, 16));
        Reduce(m, "inception3c", new ReductionWidths(32, 40, 32, 40));
        Inception(m, "inception4a", new ModuleWidths(64, 32, 48, 32, 48, 32));
        Reduce(m, "inception4b", new ReductionWidths(48, 64, 48, 64));
        Inception(m, "inception5a", new ModuleWidths(96, 64, 96, 64, 96, 64, MaxPool: true));
        m.GlobalAvgPool2d().Flatten().Linear(classes, name: "fc");
    });

    public static Network Create(IBackend backend, ICollective collective, int[] sampleShape, int classes, ulong seed, NormalizationOptions norm) =>
        Spec(classes).Build(backend, collective, sampleShape, seed, norm);

    /// <summary>A BasicConv2d as a named child of <paramref name="s"/>.</summary>
    private static Sequence BasicConv(Sequence s, string? name, int channels, int kernel, int stride = 1, int padding = 0) =>
        s.Sequential(name, c => BasicConvHere(c, channels, kernel, stride, padding));

    /// <summary>A BasicConv2d's layers directly in <paramref name="s"/> (a branch that is one BasicConv2d).</summary>
    private static Sequence BasicConvHere(Sequence s, int channels, int kernel, int stride = 1, int padding = 0) =>
        s.Conv2d(channels, kernel, stride, padding, bias: false, name: "conv").Norm("bn").Relu();

    private static void Inception(Sequence m, string name, ModuleWidths w) => m.Concat(name,
        b => BasicConvHere(b, w.A, 1),
        b => { BasicConv(b, null, w.BReduce, 1); BasicConv(b, null, w.B, 3, padding: 1); },
        b => { BasicConv(b, null, w.CReduce, 1); BasicConv(b, null, w.C, 3, padding: 1); BasicConv(b, null, w.C, 3, padding: 1); },
        b =>
        {
            if (w.MaxPool) b.MaxPool2d(3, 1, padding: 1);
            else b.AvgPool2d(3, 1, padding: 1);
            BasicConv(b, null, w.D, 1);
        });

    private static void Reduce(Sequence m, string name, ReductionWidths w) => m.Concat(name,
        b => { BasicConv(b, null, w.BReduce, 1); BasicConv(b, null, w.B, 3, stride: 2, padding: 1); },
        b => { BasicConv(b, null, w.CReduce, 1); BasicConv(b, null, w.C, 3, padding: 1); BasicConv(b, null, w.C, 3, stride: 2, padding: 1); },
        b => b.MaxPool2d(3, 2, padding: 1));
}
