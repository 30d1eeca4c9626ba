namespace BnDist.Core.Backends;

/// <summary>
/// Pooling over an NCHW batch: windows of Kernel×Kernel taken every Stride positions over the
/// input zero-padded by Padding on each side; output [N, C, OH, OW] with
/// OH = (H + 2·Padding − Kernel) / Stride + 1 (PyTorch's floor mode). Padded positions never win
/// a max and count as zeros in an average (PyTorch's count_include_pad = True).
/// </summary>
public readonly record struct PoolGeometry(int N, int Channels, int Height, int Width, int Kernel, int Stride, int Padding = 0)
{
    // ⌊a/S⌋ + 1 as (a + S)/S: C# truncates toward zero, so a/S + 1 would be 1 for −S < a < 0,
    // a partial window of an input too small for one; this is < 1 for every a < 0.
    public int OutHeight => (Height + 2 * Padding - Kernel + Stride) / Stride;
    public int OutWidth => (Width + 2 * Padding - Kernel + Stride) / Stride;
}

/// <summary>
/// A run of channels copied between two NCHW tensors with the same N and spatial size S:
/// dst[n, DstOffset + c, s] = src[n, SrcOffset + c, s] for c &lt; Count. Channel concatenation
/// (forward) and its split (backward).
/// </summary>
public readonly record struct ChannelSlice(int N, int Spatial, int SrcChannels, int SrcOffset, int DstChannels, int DstOffset, int Count);

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
