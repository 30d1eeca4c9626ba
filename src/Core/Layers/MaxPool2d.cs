using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Max pooling, kernel k and stride k by default, no padding (PyTorch's MaxPool2d(k)).
/// Backward sends each output's gradient to the first maximal input of its window.
/// </summary>
public sealed class MaxPool2d(IBackend backend, int kernel, int stride = 0) : Layer(backend, "")
{
    private readonly int _kernel = kernel > 0 ? kernel : throw new ArgumentOutOfRangeException(nameof(kernel));
    private readonly int _stride = stride > 0 ? stride : kernel;
    private Tensor? _x, _y, _dx;

    public override int[] OutputShape(int[] s)
    {
        var g = Geometry(s);
        return [s[0], s[1], g.OutHeight, g.OutWidth];
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        var g = Geometry(x.Shape);
        var y = Reuse(ref _y, [g.N, g.Channels, g.OutHeight, g.OutWidth]);
        Backend.MaxPool2dForward(g, x, y);
        _x = x;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var x = _x ?? throw new InvalidOperationException("maxpool: backward before forward");
        var dx = Reuse(ref _dx, x.Shape);
        Backend.MaxPool2dBackward(Geometry(x.Shape), x, _y!, dy, dx);
        return dx;
    }

    private PoolGeometry Geometry(int[] s)
    {
        if (s.Length != 4 || s[2] < _kernel || s[3] < _kernel)
            throw new ArgumentException($"maxpool({_kernel}) expects [N, C, H ≥ {_kernel}, W ≥ {_kernel}], got [{string.Join(", ", s)}]");
        return new PoolGeometry(s[0], s[1], s[2], s[3], _kernel, _stride);
    }
}
