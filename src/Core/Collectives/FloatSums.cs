using System.Numerics;

namespace BnDist.Core.Collectives;

/// <summary>The elementwise float32 addition every gradient all-reduce uses, vectorized.</summary>
public static class FloatSums
{
    /// <summary>target[i] += source[i]: each element rounds exactly as the scalar loop would.</summary>
    public static void AddTo(Span<float> target, ReadOnlySpan<float> source)
    {
        if (source.Length != target.Length) throw new ArgumentException($"adding {source.Length} values to {target.Length}");
        int i = 0;
        for (; i <= target.Length - Vector<float>.Count; i += Vector<float>.Count)
            (new Vector<float>(target[i..]) + new Vector<float>(source[i..])).CopyTo(target[i..]);
        for (; i < target.Length; i++) target[i] += source[i];
    }

    /// <summary>target[i] = incoming[i] + target[i]: the incoming partial sum first, so a ring's sums are left folds.</summary>
    public static void AddFirst(ReadOnlySpan<float> incoming, Span<float> target)
    {
        if (incoming.Length != target.Length) throw new ArgumentException($"adding {incoming.Length} values to {target.Length}");
        int i = 0;
        for (; i <= target.Length - Vector<float>.Count; i += Vector<float>.Count)
            (new Vector<float>(incoming[i..]) + new Vector<float>(target[i..])).CopyTo(target[i..]);
        for (; i < target.Length; i++) target[i] = incoming[i] + target[i];
    }
}
