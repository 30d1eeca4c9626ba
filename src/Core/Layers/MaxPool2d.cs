using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Max pooling (PyTorch's MaxPool2d(kernel, stride = kernel, padding), floor mode): padded
/// positions never win. Backward sends each output's gradient to the first maximal input of its
/// window. As PyTorch, the padding is at most half the kernel, so every window holds an input.
/// </summary>
public sealed class MaxPool2d(IBackend backend, int kernel, int stride = 0, int padding = 0) : Pool2d(backend, "maxpool", kernel, stride, padding)
{
    protected override void Forward(in PoolGeometry g, Tensor x, Tensor y) => Backend.MaxPool2dForward(g, x, y);

    protected override void Backward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => Backend.MaxPool2dBackward(g, x, y, dy, dx);
}

/// <summary>
/// Average pooling (PyTorch's AvgPool2d(kernel, stride = kernel, padding) with
/// count_include_pad = True, floor mode): every window's sum is divided by Kernel², padded
/// positions counting as zeros. Backward spreads dy/Kernel² over each window.
/// </summary>
public sealed class AvgPool2d(IBackend backend, int kernel, int stride = 0, int padding = 0) : Pool2d(backend, "avgpool", kernel, stride, padding)
{
    protected override void Forward(in PoolGeometry g, Tensor x, Tensor y) => Backend.AvgPool2dForward(g, x, y);

    protected override void Backward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx) => Backend.AvgPool2dBackward(g, dy, dx);
}

/// <summary>
/// What the pooling layers share: the kernel, stride and padding, checked once; the geometry of
/// an input; the output and input-gradient tensors, reused from step to step.
/// </summary>
public abstract class Pool2d : Layer
{
    private readonly string _what;
    private readonly int _kernel, _stride, _padding;
    private Tensor? _x, _y, _dx;

    protected Pool2d(IBackend backend, string what, int kernel, int stride, int padding) : base(backend, "")
    {
        (_kernel, _stride, _padding) = PoolShape.Check(what, kernel, stride, padding);
        _what = $"{what}({kernel})";
    }

    public override int[] OutputShape(int[] s) => PoolShape.Output(Geometry(s));

    public override Tensor Forward(Tensor x, bool training)
    {
        var g = Geometry(x.Shape);
        var y = Reuse(ref _y, PoolShape.Output(g));
        Forward(g, x, y);
        _x = x;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var x = _x ?? throw new InvalidOperationException($"{_what}: backward before forward");
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, x.Shape);
        Backward(Geometry(x.Shape), x, _y!, dy, dx);
        return dx;
    }

    protected abstract void Forward(in PoolGeometry g, Tensor x, Tensor y);

    protected abstract void Backward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx);

    private PoolGeometry Geometry(int[] s) => PoolShape.Geometry(_what, s, _kernel, _stride, _padding);
}

/// <summary>The argument and shape checks the pooling layers share.</summary>
internal static class PoolShape
{
    public static (int Kernel, int Stride, int Padding) Check(string what, int kernel, int stride, int padding)
    {
        if (kernel < 1) throw new ArgumentOutOfRangeException(nameof(kernel), kernel, $"{what}: the kernel must be ≥ 1");
        if (stride < 0) throw new ArgumentOutOfRangeException(nameof(stride), stride, $"{what}: the stride must be ≥ 1 (0: the kernel)");
        if (padding < 0 || 2 * padding > kernel)
            throw new ArgumentOutOfRangeException(nameof(padding), padding, $"{what}: the padding must be in [0, kernel/2]");
        return (kernel, stride > 0 ? stride : kernel, padding);
    }

    public static PoolGeometry Geometry(string what, int[] s, int kernel, int stride, int padding)
    {
        var g = s.Length == 4 ? new PoolGeometry(s[0], s[1], s[2], s[3], kernel, stride, padding) : default;
        if (s.Length != 4 || g.OutHeight < 1 || g.OutWidth < 1)
            throw new ArgumentException(
                $"{what} expects [N, C, H, W] with H + 2·{padding} ≥ {kernel} and W + 2·{padding} ≥ {kernel}, got [{string.Join(", ", s)}]");
        return g;
    }

    public static int[] Output(in PoolGeometry g) => [g.N, g.Channels, g.OutHeight, g.OutWidth];
}
