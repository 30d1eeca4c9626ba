namespace BnDist.Core.Checkpoints;

/// <summary>
/// One named tensor of a safetensors file: its <see cref="DType"/>, its <see cref="Shape"/>
/// (row-major, outermost dimension first, as PyTorch lists it; empty for a scalar) and its raw
/// little-endian element bytes in <see cref="Data"/>. The constructor enforces the spec rule
/// that the byte count equals the product of the shape times the element size, that every
/// dimension is non-negative, and that the name is not the reserved <c>__metadata__</c> key.
/// </summary>
/// <remarks>
/// <see cref="Data"/> is not copied: the tensor takes ownership of the array passed in. Treat
/// <see cref="Shape"/> as read-only; the writer re-checks shape against data length and refuses
/// to write a tensor whose shape was changed after construction.
/// </remarks>
public sealed class SafeTensor
{
    /// <summary>Creates a tensor; throws <see cref="ArgumentException"/> if the data length does not match.</summary>
    public SafeTensor(string name, SafeDType dtype, ReadOnlySpan<long> shape, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(data);
        if (name == SafeTensorsFile.MetadataKey)
            throw new ArgumentException($"'{SafeTensorsFile.MetadataKey}' is reserved for metadata, not a tensor name", nameof(name));
        _ = dtype.SizeInBytes(); // throws for a value outside the enum
        long needed = TryByteCount(dtype, shape)
            ?? throw new ArgumentException($"tensor {name}: shape {FormatShape(shape)} has a negative dimension or too many elements", nameof(shape));
        if (data.LongLength != needed)
            throw new ArgumentException($"tensor {name}: {Describe(dtype, shape)} needs {needed} bytes, got {data.LongLength}", nameof(data));
        Name = name;
        DType = dtype;
        Shape = shape.ToArray();
        Data = data;
    }

    /// <summary>The tensor's key in the header (a PyTorch state_dict key such as <c>conv1.weight</c>).</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public SafeDType DType { get; }

    /// <summary>Dimensions, outermost first; <c>[]</c> is a scalar, a zero dimension an empty tensor.</summary>
    public long[] Shape { get; }

    /// <summary>Raw element bytes, little-endian, row-major; length = <see cref="ElementCount"/> × element size.</summary>
    public byte[] Data { get; }

    /// <summary>Product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>E.g. <c>conv1.weight: F32 [32,1,3,3]</c>.</summary>
    public override string ToString() => $"{Name}: {Describe(DType, Shape)}";

    /// <summary>Whether this tensor has exactly this dtype and shape.</summary>
    public bool Matches(SafeDType dtype, ReadOnlySpan<long> shape) => DType == dtype && shape.SequenceEqual(Shape);

    /// <summary>
    /// Bytes a tensor of this dtype and shape occupies, or null when a dimension is negative or
    /// the count overflows a 64-bit integer.
    /// </summary>
    internal static long? TryByteCount(SafeDType dtype, ReadOnlySpan<long> shape)
    {
        long n = dtype.SizeInBytes();
        foreach (long d in shape)
        {
            if (d < 0) return null;
            try { n = checked(n * d); }
            catch (OverflowException) { return null; }
        }
        return n;
    }

    /// <summary>Shape as PyTorch prints it without spaces: <c>[32,1,3,3]</c>, <c>[]</c>.</summary>
    internal static string FormatShape(ReadOnlySpan<long> shape) => "[" + string.Join(",", shape.ToArray()) + "]";

    /// <summary>Dtype and shape, e.g. <c>F32 [32,1,3,3]</c>.</summary>
    internal static string Describe(SafeDType dtype, ReadOnlySpan<long> shape) => $"{dtype.ToSpecString()} {FormatShape(shape)}";
}
