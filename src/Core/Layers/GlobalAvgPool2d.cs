using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Global average pooling, PyTorch's AdaptiveAvgPool2d(1): [N, C, H, W] → [N, C, 1, 1], the
/// mean of each channel's H·W values. Backward gives every position dy/(H·W).
/// </summary>
public sealed class GlobalAvgPool2d(IBackend backend) : Layer(backend, "")
{
    private Tensor? _y, _dx;
    private int[]? _inputShape;

    public override int[] OutputShape(int[] s)
    {
        if (s.Length != 4 || s[2] < 1 || s[3] < 1)
            throw new ArgumentException($"global average pooling expects [N, C, H, W], got [{string.Join(", ", s)}]");
        return [s[0], s[1], 1, 1];
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        var y = Reuse(ref _y, OutputShape(x.Shape));
        Backend.GlobalAvgPoolForward(Layout(x.Shape), x, y);
        _inputShape = x.Shape;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var shape = _inputShape ?? throw new InvalidOperationException("global average pooling: backward before forward");
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, shape);
        Backend.GlobalAvgPoolBackward(Layout(shape), dy, dx);
        return dx;
    }

    private static ChannelLayout Layout(int[] s) => new(s[0], s[1], s[2] * s[3]);
}
