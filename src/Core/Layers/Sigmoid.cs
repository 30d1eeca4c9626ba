using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>y = 1/(1 + e^−x); backward dx = dy·y·(1 − y).</summary>
public sealed class Sigmoid(IBackend backend) : Layer(backend, "")
{
    private Tensor? _y, _dx;

    public override int[] OutputShape(int[] s) => s;

    public override Tensor Forward(Tensor x, bool training)
    {
        var y = Reuse(ref _y, x.Shape);
        Backend.SigmoidForward(x, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var y = _y ?? throw new InvalidOperationException("sigmoid: backward before forward");
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, y.Shape);
        Backend.SigmoidBackward(y, dy, dx);
        return dx;
    }
}
