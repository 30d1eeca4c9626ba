using BnDist.Core.Tensors;

namespace BnDist.Core.Backends;

/// <summary>
/// The argument checks every backend makes before an op, in one place so that the CPU and
/// ILGPU backends refuse the same calls with the same words.
/// </summary>
internal static class OpChecks
{
    /// <summary><paramref name="t"/> holds exactly <paramref name="length"/> elements.</summary>
    public static void Length(int length, Tensor t, string what)
    {
        if (length != t.Length)
            throw new ArgumentException($"{what}: {length} elements for a tensor of shape {t} ({t.Length} elements)");
    }

    /// <summary><paramref name="t"/> is [N, C, S] of <paramref name="layout"/>.</summary>
    public static void Layout(in ChannelLayout layout, Tensor t)
    {
        if (layout.Length != t.Length)
            throw new ArgumentException($"layout [{layout.N}, {layout.Channels}, {layout.Spatial}] does not match tensor {t}");
    }

    /// <summary>x is [N, C, H, W] and y [N, C, OH, OW] of <paramref name="g"/>, which has a whole window.</summary>
    public static void Pool(in PoolGeometry g, Tensor x, Tensor y)
    {
        if (g.Kernel < 1 || g.Stride < 1 || g.Padding < 0 || g.OutHeight < 1 || g.OutWidth < 1)
            throw new ArgumentException($"{g}: no window fits");
        Length(g.N * g.Channels * g.Height * g.Width, x, "the input");
        Length(g.N * g.Channels * g.OutHeight * g.OutWidth, y, "the output");
    }

    /// <summary>The copied channels lie within both tensors, which have the slice's shapes.</summary>
    public static void Slice(in ChannelSlice s, Tensor source, Tensor destination)
    {
        if (s.N < 0 || s.Spatial < 0 || s.Count < 0 || s.SrcOffset < 0 || s.DstOffset < 0 ||
            s.SrcOffset + s.Count > s.SrcChannels || s.DstOffset + s.Count > s.DstChannels)
            throw new ArgumentException($"{s}: the copied channels must lie within both tensors");
        Length(s.N * s.SrcChannels * s.Spatial, source, nameof(source));
        Length(s.N * s.DstChannels * s.Spatial, destination, nameof(destination));
    }

    /// <summary>0 ≤ p &lt; 1, one key per sample, and x, mask, y of [N, sampleSize].</summary>
    public static void Dropout(int n, int sampleSize, int keys, float p, Tensor x, Tensor mask, Tensor y)
    {
        if (!(p >= 0f && p < 1f)) throw new ArgumentOutOfRangeException(nameof(p), p, "the drop probability must be in [0, 1)");
        if (keys != n) throw new ArgumentException($"{keys} sample keys for a batch of {n}");
        Length(n * sampleSize, x, nameof(x));
        Length(n * sampleSize, mask, nameof(mask));
        Length(n * sampleSize, y, nameof(y));
    }
}
