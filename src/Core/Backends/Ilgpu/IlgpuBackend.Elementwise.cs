using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>Activations and max pooling: one element per thread of a grid-stride loop (see Kernels/ElementwiseKernels.cs, PoolKernels.cs).</summary>
public sealed partial class IlgpuBackend
{
    public void ReluForward(Tensor x, Tensor y)
    {
        OpChecks.Length(x.Length, y, nameof(y));
        if (x.Length > 0) _relu(Strided(x.Length), x.Length, V(x), V(y));
    }

    public void ReluBackward(Tensor y, Tensor dy, Tensor dx)
    {
        if (y.Length > 0) _reluBackward(Strided(y.Length), y.Length, V(y), V(dy), V(dx));
    }

    public void SigmoidForward(Tensor x, Tensor y)
    {
        OpChecks.Length(x.Length, y, nameof(y));
        if (x.Length > 0) _sigmoid(Strided(x.Length), x.Length, V(x), V(y));
    }

    public void SigmoidBackward(Tensor y, Tensor dy, Tensor dx)
    {
        if (y.Length > 0) _sigmoidBackward(Strided(y.Length), y.Length, V(y), V(dy), V(dx));
    }

    public void MaxPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        int outputs = g.N * g.Channels * g.OutHeight * g.OutWidth;
        if (outputs > 0) _maxPool(Strided(outputs), outputs, g, V(x), V(y));
    }

    public void MaxPool2dBackward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        if (dx.Length > 0) _maxPoolBackward(Strided(dx.Length), dx.Length, g, V(x), V(y), V(dy), V(dx));
    }
}
