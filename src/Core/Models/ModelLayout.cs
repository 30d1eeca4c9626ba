using BnDist.Core.Checkpoints;
using BnDist.Core.Layers;

namespace BnDist.Core.Models;

/// <summary>One named tensor of a network's state: a trained parameter or a buffer.</summary>
public sealed record TensorSpec(string Name, SafeDType DType, long[] Shape, bool IsParameter)
{
    public override string ToString() => $"{Name}: {SafeTensor.Describe(DType, Shape)}";
}

/// <summary>
/// One batch-norm layer as the coordinator needs it: its collective index (forward order), the
/// prefix of its buffers (<c>{Name}.running_mean</c>, <c>.running_var</c>,
/// <c>.num_batches_tracked</c>), its channels and its running-average factor (null: cumulative).
/// </summary>
public sealed record BatchNormSpec(int Layer, string Name, int Channels, double? Momentum);

/// <summary>
/// What a network's state looks like, without the network: the names, dtypes and shapes of its
/// parameters and buffers in their fixed order, and its batch-norm layers. The coordinator keeps
/// checkpoints and the authoritative running averages from this alone, so it never has to build
/// a user's model; every rank sends its layout, and ranks whose models differ are refused.
/// </summary>
public sealed record ModelLayout(string Architecture, string Normalization, IReadOnlyList<TensorSpec> Tensors,
    IReadOnlyList<BatchNormSpec> BatchNorms)
{
    public static ModelLayout Of(Network network) => new(
        network.Architecture,
        network.Normalization,
        [
            .. network.Parameters.Select(p => new TensorSpec(p.Name, SafeDType.F32, Longs(p.Shape), IsParameter: true)),
            .. network.Buffers.Select(b => new TensorSpec(b.Name, b.Floats is not null ? SafeDType.F32 : SafeDType.I64, Longs(b.Shape), IsParameter: false)),
        ],
        [.. network.BatchNorms.Select(bn => new BatchNormSpec(bn.LayerIndex, bn.Name, bn.Channels, bn.Running.Momentum))]);

    public IEnumerable<TensorSpec> Parameters => Tensors.Where(t => t.IsParameter);

    /// <summary>The first thing that makes this layout unusable, or null: names, shapes, and batch norms that match their buffers.</summary>
    public string? Problem()
    {
        if (string.IsNullOrWhiteSpace(Architecture)) return "the model has no architecture name";
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in Tensors)
        {
            if (string.IsNullOrEmpty(t.Name)) return "a tensor has an empty name";
            if (!names.Add(t.Name)) return $"two tensors are named {t.Name}";
            if (t.Shape.Any(d => d < 0)) return $"tensor {t.Name} has a negative dimension";
            if (t.DType is not (SafeDType.F32 or SafeDType.I64)) return $"tensor {t.Name} is {t.DType}, not F32 or I64";
            if (t.IsParameter && t.DType != SafeDType.F32) return $"parameter {t.Name} is {t.DType}, not F32";
        }
        var byName = Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        for (int i = 0; i < BatchNorms.Count; i++)
        {
            var bn = BatchNorms[i];
            if (bn.Layer != i) return $"batch norm {bn.Name} has collective index {bn.Layer}, expected {i} (forward order)";
            if (bn.Channels < 1) return $"batch norm {bn.Name} has {bn.Channels} channels";
            if (bn.Momentum is { } m && !(m > 0 && m <= 1)) return $"batch norm {bn.Name} has momentum {m}, outside (0, 1]";
            foreach (var (suffix, dtype, shape) in BufferSpecs(bn))
            {
                string name = bn.Name + suffix;
                if (!byName.TryGetValue(name, out var t) || t.IsParameter || t.DType != dtype || !t.Shape.SequenceEqual(shape))
                    return $"batch norm {bn.Name} needs a buffer {name}: {SafeTensor.Describe(dtype, shape)}";
            }
        }
        return null;
    }

    /// <summary>How <paramref name="other"/> differs from this layout, in words, or null when they are the same.</summary>
    public string? Difference(ModelLayout other)
    {
        if (Architecture != other.Architecture || Normalization != other.Normalization)
            return $"model {other.Architecture}/{other.Normalization} instead of {Architecture}/{Normalization}";
        for (int i = 0; i < Math.Max(Tensors.Count, other.Tensors.Count); i++)
        {
            var (a, b) = (i < Tensors.Count ? Tensors[i] : null, i < other.Tensors.Count ? other.Tensors[i] : null);
            if (a is null) return $"an extra tensor {b}";
            if (b is null) return $"no tensor {a}";
            if (a.Name != b.Name || a.DType != b.DType || a.IsParameter != b.IsParameter || !a.Shape.SequenceEqual(b.Shape))
                return $"tensor #{i} is {b}{(b.IsParameter ? "" : " (buffer)")} instead of {a}{(a.IsParameter ? "" : " (buffer)")}";
        }
        if (!BatchNorms.SequenceEqual(other.BatchNorms))
            return $"batch norms [{string.Join(", ", other.BatchNorms)}] instead of [{string.Join(", ", BatchNorms)}]";
        return null;
    }

    /// <summary>The buffers of a batch-norm layer: suffix, dtype and shape.</summary>
    public static IEnumerable<(string Suffix, SafeDType DType, long[] Shape)> BufferSpecs(BatchNormSpec bn) =>
    [
        (".running_mean", SafeDType.F32, [bn.Channels]),
        (".running_var", SafeDType.F32, [bn.Channels]),
        (".num_batches_tracked", SafeDType.I64, []),
    ];

    private static long[] Longs(int[] shape) => [.. shape.Select(d => (long)d)];
}
