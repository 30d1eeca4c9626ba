using System.Diagnostics;
using BnDist.Core.Tensors;

namespace BnDist.Core.Backends;

/// <summary>
/// An <see cref="IBackend"/> that runs every op on another backend and accounts its wall time
/// per op (convolutions and pooling per geometry), for <c>bndist bench step --profile</c>. On
/// the CPU backend each op is synchronous, so the times are the ops'; on an accelerator they
/// are launch times only.
/// </summary>
public sealed class ProfilingBackend(IBackend inner) : IBackend
{
    private readonly Dictionary<string, (long Ticks, long Calls)> _times = [];

    public string Name => inner.Name;

    /// <summary>Seconds and calls per op since the last <see cref="Reset"/>, longest first.</summary>
    public IReadOnlyList<(string Op, double Seconds, long Calls)> Report() =>
        [.. _times.Select(p => (p.Key, p.Value.Ticks / (double)Stopwatch.Frequency, p.Value.Calls)).OrderByDescending(r => r.Item2)];

    public void Reset() => _times.Clear();

    private void Time(string op, Action run)
    {
        long start = Stopwatch.GetTimestamp();
        run();
        long ticks = Stopwatch.GetTimestamp() - start;
        var (t, c) = _times.GetValueOrDefault(op);
        _times[op] = (t + ticks, c + 1);
    }

    private static string Conv(in ConvGeometry g) =>
        $"{g.InChannels}→{g.OutChannels} {g.KernelH}×{g.KernelW}/{g.Stride} on {g.Height}×{g.Width}";

    private static string Pool(in PoolGeometry g) => $"{g.Kernel}×{g.Kernel}/{g.Stride} pad {g.Padding} on {g.Channels}×{g.Height}×{g.Width}";

    public Tensor Allocate(params int[] shape) => inner.Allocate(shape);

    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Upload(source, destination);
        Add("Upload", start);
    }

    public void Download(Tensor source, Span<float> destination)
    {
        long start = Stopwatch.GetTimestamp();
        inner.Download(source, destination);
        Add("Download", start);
    }

    public bool TryGetHostMemory(Tensor tensor, out Memory<float> memory) => inner.TryGetHostMemory(tensor, out memory);

    private void Add(string op, long start)
    {
        var (t, c) = _times.GetValueOrDefault(op);
        _times[op] = (t + Stopwatch.GetTimestamp() - start, c + 1);
    }

    public void Fill(Tensor tensor, float value) => Time("Fill", () => inner.Fill(tensor, value));

    public void Copy(Tensor source, Tensor destination) => Time("Copy", () => inner.Copy(source, destination));

    public void Conv2dForward(in ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        var geo = g;
        Time("Conv2dForward " + Conv(g), () => inner.Conv2dForward(geo, x, w, bias, y));
    }

    public void Conv2dBackward(in ConvGeometry g, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db)
    {
        var geo = g;
        Time($"Conv2dBackward {Conv(g)}{(dx is null ? " (no dx)" : "")}", () => inner.Conv2dBackward(geo, x, w, dy, dx, dw, db));
    }

    public void LinearForward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor? b, Tensor y) =>
        Time("LinearForward", () => inner.LinearForward(n, inFeatures, outFeatures, x, w, b, y));

    public void LinearBackward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db) =>
        Time("LinearBackward", () => inner.LinearBackward(n, inFeatures, outFeatures, x, w, dy, dx, dw, db));

    public void ReluForward(Tensor x, Tensor y) => Time("ReluForward", () => inner.ReluForward(x, y));

    public void ReluBackward(Tensor y, Tensor dy, Tensor dx) => Time("ReluBackward", () => inner.ReluBackward(y, dy, dx));

    public void SigmoidForward(Tensor x, Tensor y) => Time("SigmoidForward", () => inner.SigmoidForward(x, y));

    public void SigmoidBackward(Tensor y, Tensor dy, Tensor dx) => Time("SigmoidBackward", () => inner.SigmoidBackward(y, dy, dx));

    public void MaxPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        var geo = g;
        Time("MaxPool2dForward " + Pool(g), () => inner.MaxPool2dForward(geo, x, y));
    }

    public void MaxPool2dBackward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        var geo = g;
        Time("MaxPool2dBackward " + Pool(g), () => inner.MaxPool2dBackward(geo, x, y, dy, dx));
    }

    public void Add(Tensor a, Tensor b, Tensor y) => Time("Add", () => inner.Add(a, b, y));

    public void AddRelu(Tensor a, Tensor b, Tensor y) => Time("Add + ReLU", () => inner.AddRelu(a, b, y));

    public void AddReluBackward(Tensor a, Tensor b, Tensor y, Tensor dx) =>
        Time("Add + ReLU backward", () => inner.AddReluBackward(a, b, y, dx));

    public void Multiply(Tensor a, Tensor b, Tensor y) => Time("Multiply", () => inner.Multiply(a, b, y));

    public void CopyChannels(in ChannelSlice slice, Tensor source, Tensor destination)
    {
        var s = slice;
        Time("CopyChannels", () => inner.CopyChannels(s, source, destination));
    }

    public void AvgPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        var geo = g;
        Time("AvgPool2dForward " + Pool(g), () => inner.AvgPool2dForward(geo, x, y));
    }

    public void AvgPool2dBackward(in PoolGeometry g, Tensor dy, Tensor dx)
    {
        var geo = g;
        Time("AvgPool2dBackward " + Pool(g), () => inner.AvgPool2dBackward(geo, dy, dx));
    }

    public void GlobalAvgPoolForward(in ChannelLayout layout, Tensor x, Tensor y)
    {
        var l = layout;
        Time("GlobalAvgPoolForward", () => inner.GlobalAvgPoolForward(l, x, y));
    }

    public void GlobalAvgPoolBackward(in ChannelLayout layout, Tensor dy, Tensor dx)
    {
        var l = layout;
        Time("GlobalAvgPoolBackward", () => inner.GlobalAvgPoolBackward(l, dy, dx));
    }

    public void DropoutForward(int n, int sampleSize, ReadOnlySpan<ulong> sampleKeys, float p, Tensor x, Tensor mask, Tensor y)
    {
        long start = Stopwatch.GetTimestamp();
        inner.DropoutForward(n, sampleSize, sampleKeys, p, x, mask, y);
        Add("DropoutForward", start);
    }

    public void ChannelShiftedSums(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, Span<double> sums)
    {
        long start = Stopwatch.GetTimestamp();
        inner.ChannelShiftedSums(layout, x, shift, sums);
        Add("BatchNorm sums", start);
    }

    public void BatchNormNormalize(in ChannelLayout layout, Tensor x, in BatchNormTransform transform, Tensor y)
    {
        long start = Stopwatch.GetTimestamp();
        inner.BatchNormNormalize(layout, x, transform, y);
        Add(transform.Relu ? "BatchNorm normalize + ReLU" : "BatchNorm normalize", start);
    }

    public void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform, Span<double> sums)
    {
        long start = Stopwatch.GetTimestamp();
        inner.BatchNormBackwardSums(layout, dy, x, transform, sums);
        Add(transform.Relu ? "BatchNorm backward sums (ReLU)" : "BatchNorm backward sums", start);
    }

    public void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx)
    {
        long start = Stopwatch.GetTimestamp();
        inner.BatchNormBackwardInput(layout, dy, x, transform, meanDy, meanDyXhat, dx);
        Add(transform.Relu ? "BatchNorm backward input (ReLU)" : "BatchNorm backward input", start);
    }

    public void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, bool relu, Tensor y)
    {
        long start = Stopwatch.GetTimestamp();
        inner.ChannelAffine(layout, x, scale, shift, relu, y);
        Add(relu ? "ChannelAffine + ReLU" : "ChannelAffine", start);
    }

    public void GroupNormForward(in ChannelLayout layout, int groups, float eps, Tensor x, Tensor gamma, Tensor beta,
        Tensor xhat, Tensor invStd, Tensor y)
    {
        var l = layout;
        Time("GroupNormForward", () => inner.GroupNormForward(l, groups, eps, x, gamma, beta, xhat, invStd, y));
    }

    public void GroupNormBackward(in ChannelLayout layout, int groups, Tensor dy, Tensor xhat, Tensor gamma, Tensor invStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        var l = layout;
        Time("GroupNormBackward", () => inner.GroupNormBackward(l, groups, dy, xhat, gamma, invStd, dx, dgamma, dbeta));
    }

    public (double LossSum, int Correct) SoftmaxCrossEntropy(int n, int classes, Tensor logits, ReadOnlySpan<int> labels, float scale, Tensor? dlogits)
    {
        long start = Stopwatch.GetTimestamp();
        var result = inner.SoftmaxCrossEntropy(n, classes, logits, labels, scale, dlogits);
        Add("SoftmaxCrossEntropy", start);
        return result;
    }

    public void SgdUpdate(Tensor w, Tensor grad, Tensor velocity, float lr, float momentum, float weightDecay) =>
        Time("SgdUpdate", () => inner.SgdUpdate(w, grad, velocity, lr, momentum, weightDecay));

    public void Dispose() => inner.Dispose();
}
