using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// A trained tensor and its gradient, named as in PyTorch's state_dict ("conv1.weight").
/// <see cref="Version"/> increases whenever the value changes, so layers can cache values
/// derived from it (the folded inference scale of batch norm).
/// </summary>
public sealed class Parameter(string name, Tensor value, Tensor grad)
{
    public string Name { get; } = name;

    public Tensor Value { get; } = value;

    public Tensor Grad { get; } = grad;

    public int[] Shape => Value.Shape;

    public long Version { get; private set; }

    public void MarkChanged() => Version++;
}

/// <summary>
/// Non-trained state kept on the host (batch norm's running_mean, running_var and
/// num_batches_tracked): small, read at every step on the host anyway, saved in checkpoints.
/// Exactly one of <see cref="Floats"/> and <see cref="Longs"/> is set.
/// </summary>
public sealed class HostBuffer
{
    private HostBuffer(string name, int[] shape, float[]? floats, long[]? longs)
    {
        Name = name;
        Shape = shape;
        Floats = floats;
        Longs = longs;
    }

    public string Name { get; }

    public int[] Shape { get; }

    public float[]? Floats { get; }

    public long[]? Longs { get; }

    public static HostBuffer OfFloats(string name, float[] values) => new(name, [values.Length], values, null);

    /// <summary>A 0-d int64 scalar, like PyTorch's num_batches_tracked.</summary>
    public static HostBuffer OfScalar(string name, long[] cell) => new(name, [], null, cell);
}
