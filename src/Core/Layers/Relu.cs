using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>y = max(x, 0); backward passes dy where y &gt; 0 (the subgradient 0 at x = 0, as PyTorch).</summary>
public sealed class Relu(IBackend backend) : Layer(backend, "")
{
    private Tensor? _y, _dx;

    public override int[] OutputShape(int[] s) => s;

    public override Tensor Forward(Tensor x, bool training)
    {
        var y = Reuse(ref _y, x.Shape);
        Backend.ReluForward(x, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var y = _y ?? throw new InvalidOperationException("relu: backward before forward");
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, y.Shape);
        Backend.ReluBackward(y, dy, dx);
        return dx;
    }
}
