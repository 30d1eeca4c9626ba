using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// A tensor whose elements live in accelerator memory: a dense float buffer owned by this
/// tensor, or a view of another tensor's buffer (<see cref="Reshape"/>). Disposing the owner
/// frees the memory; disposing a view does nothing. A tensor of length 0 has no buffer.
/// </summary>
public sealed class IlgpuTensor : Tensor
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    internal IlgpuTensor(int[] shape, Accelerator accelerator) : base(shape)
    {
        Accelerator = accelerator;
        if (Length == 0)
        {
            View = ArrayView<float>.Empty;
            return;
        }
        _buffer = accelerator.Allocate1D<float>(Length);
        View = _buffer.View;
    }

    private IlgpuTensor(int[] shape, Accelerator accelerator, ArrayView<float> view) : base(shape)
    {
        if (Length != view.Length)
            throw new ArgumentException($"cannot view {view.Length} elements as [{string.Join(", ", shape)}]");
        Accelerator = accelerator;
        View = view;
    }

    /// <summary>The accelerator whose memory holds the elements.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The elements, row-major; <see cref="ArrayView{T}.Empty"/> for a tensor of length 0.</summary>
    public ArrayView<float> View { get; private set; }

    /// <summary>Whether this tensor frees its memory on <see cref="Dispose"/> (false for views).</summary>
    public bool OwnsMemory => _buffer is not null;

    public override Tensor Reshape(params int[] shape) => new IlgpuTensor((int[])shape.Clone(), Accelerator, View);

    public override void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
        View = ArrayView<float>.Empty;
        base.Dispose();
    }
}
