namespace BnDist.Core.Backends;

/// <summary>
/// Max pooling over an NCHW batch: windows of Kernel×Kernel taken every Stride positions,
/// no padding; output [N, C, OH, OW] with OH = (H − Kernel) / Stride + 1.
/// </summary>
public readonly record struct PoolGeometry(int N, int Channels, int Height, int Width, int Kernel, int Stride)
{
    public int OutHeight => (Height - Kernel) / Stride + 1;
    public int OutWidth => (Width - Kernel) / Stride + 1;
}

/// <summary>
/// A tensor seen as [N, C, S]: N samples, C channels, S spatial positions per channel
/// (H·W for a feature map, 1 for a fully connected layer). Normalization layers reduce
/// over N and S (batch norm) or over groups of C and S (group norm).
/// </summary>
public readonly record struct ChannelLayout(int N, int Channels, int Spatial)
{
    public long Length => (long)N * Channels * Spatial;

    /// <summary>The number of values per channel: N·S (the m of docs/architecture.md §1, locally).</summary>
    public long CountPerChannel => (long)N * Spatial;
}
