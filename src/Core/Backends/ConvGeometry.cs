namespace BnDist.Core.Backends;

/// <summary>
/// The shape of one 2-d convolution over an NCHW batch: input [N, Cin, H, W], weight
/// [Cout, Cin, KH, KW] (PyTorch's layout), output [N, Cout, OH, OW] with
/// OH = (H + 2·pad − KH) / stride + 1 and OW likewise.
/// </summary>
public readonly record struct ConvGeometry(
    int N, int InChannels, int Height, int Width,
    int OutChannels, int KernelH, int KernelW, int Stride, int Padding)
{
    // (H + 2P − K + S)/S, not (H + 2P − K)/S + 1: C#'s division truncates toward zero, which would
    // give one output from a partial window when the input is short of one window by less than S.
    public int OutHeight => (Height + 2 * Padding - KernelH + Stride) / Stride;
    public int OutWidth => (Width + 2 * Padding - KernelW + Stride) / Stride;

    /// <summary>Rows of the im2col matrix: Cin·KH·KW.</summary>
    public int PatchSize => InChannels * KernelH * KernelW;

    /// <summary>Forward multiply-adds ×2 (one FMA = 2 FLOP).</summary>
    public long ForwardFlops => 2L * N * OutChannels * OutHeight * OutWidth * PatchSize;

    public ConvGeometry WithBatch(int n) => this with { N = n };
}
