namespace BnDist.Core.Tensors;

/// <summary>
/// A dense float32 tensor in row-major (NCHW) order, owned by one compute backend. Layers
/// hold tensors but never touch their elements: every operation goes through the
/// <see cref="Backends.IBackend"/> that allocated them, so the same layer code runs on the
/// CPU and on an accelerator. A tensor of length 0 (an empty shard) is valid everywhere.
/// </summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(int[] shape)
    {
        Shape = shape;
        long length = 1;
        foreach (int d in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(d, nameof(shape));
            length *= d;
        }
        if (length > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(shape), $"tensor of {length} elements is too large");
        Length = (int)length;
    }

    /// <summary>The dimensions, outermost first. Not to be mutated.</summary>
    public int[] Shape { get; }

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    public int Rank => Shape.Length;

    /// <summary>A tensor of another shape with the same elements and the same storage.</summary>
    public abstract Tensor Reshape(params int[] shape);

    public bool HasShape(ReadOnlySpan<int> shape) => Shape.AsSpan().SequenceEqual(shape);

    public override string ToString() => $"[{string.Join(", ", Shape)}]";

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>The product of the dimensions from <paramref name="start"/> on (1 for none).</summary>
    public int SizeFrom(int start)
    {
        int size = 1;
        for (int i = start; i < Shape.Length; i++) size *= Shape[i];
        return size;
    }
}
