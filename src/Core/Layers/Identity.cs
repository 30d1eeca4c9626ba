using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>y = x (PyTorch's nn.Identity): a placeholder, e.g. where --norm none removes a normalization.</summary>
public sealed class Identity(IBackend backend) : Layer(backend, "")
{
    public override int[] OutputShape(int[] s) => s;

    public override Tensor Forward(Tensor x, bool training) => x;

    public override Tensor Backward(Tensor dy) => dy;
}
