namespace BnDist.Core.Tensors;

/// <summary>A tensor whose elements live in a managed float array on the host.</summary>
public sealed class CpuTensor : Tensor
{
    public CpuTensor(int[] shape) : base(shape) => Data = new float[Length];

    private CpuTensor(int[] shape, float[] data) : base(shape)
    {
        if (Length != data.Length)
            throw new ArgumentException($"cannot view {data.Length} elements as [{string.Join(", ", shape)}]");
        Data = data;
    }

    /// <summary>The elements, row-major. Length == <see cref="Tensor.Length"/>.</summary>
    public float[] Data { get; }

    public Span<float> Span => Data;

    public override Tensor Reshape(params int[] shape) => new CpuTensor(shape, Data);
}
