using System.Runtime.CompilerServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// The input gradient of a stride-2 convolution with K = 2·pad + 1 and an even input (resnet20's downsampling 3×3
/// and 1×1 shortcuts: 28×28 → 14×14, 14×14 → 7×7) as four stride-1 correlations of dy, one per parity of the
/// input position (polyphase): no column matrix, no col2im.
/// </summary>
/// <remarks>
/// <para>
/// dx[ci, iy, ix] = Σ w[co, ci, ky, kx]·dy[co, oy, ox] over iy = 2·oy − pad + ky, ix likewise. For iy = 2a + py only
/// the ky with ky ≡ py + pad (mod 2) reach it, from oy = a + (py + pad − ky)/2: a correlation of dy over its own
/// OH × OW grid with the taps of that parity (K = 3: 1 for py = 0, 2 for py = 1; 9 over the four phases, as many
/// FMAs as the forward pass; K = 1: the one tap of phase (0, 0), the other phases are zero). dy is copied into a
/// zero-bordered buffer of border pad, so taps past its edge read zeros; each phase is computed by
/// <see cref="Correlate"/> into [Cin, OH·OW] and the four are interleaved into dx.
/// </para>
/// <para>
/// Every element of dx is one FMA chain over its phase's rows (co, then taps in increasing ky, kx), from zero: the
/// same bits for any thread count.
/// </para>
/// </remarks>
internal static unsafe partial class CpuDirectConv
{
    /// <summary>Whether the input gradient of <paramref name="g"/> runs here: stride 2, K = 3 with pad 1 or K = 1 with pad 0,
    /// an even input, a forward pass that runs directly.</summary>
    public static bool SupportsStridedInputGradient(in ConvGeometry g) =>
        SupportsForward(g) && g.Stride == 2 && (g.KernelH, g.Padding) is (3, 1) or (1, 0) && g.Height % 2 == 0 && g.Width % 2 == 0;

    /// <summary>The taps (ky or kx) of parity p, in increasing order.</summary>
    private static int Taps(in ConvGeometry g, int p, Span<int> taps)
    {
        int count = 0;
        for (int k = 0; k < g.KernelH; k++)
            if ((p + g.Padding - k) % 2 == 0)
                taps[count++] = k;
        return count;
    }

    /// <summary>
    /// Weights and offsets of the four phases (py, px) in order, one after the other: for phase rows r = (co, ky, kx) of
    /// that parity, dst[r·ld + ci] = w[co, ci, ky, kx] (ld = <see cref="PaddedChannels"/>(Cin)) and offsets[r] the tap's
    /// place in dy padded by pad: co·(OH + 2·pad)(OW + 2·pad) + (pad + (py + pad − ky)/2)·(OW + 2·pad) + pad + (px + pad − kx)/2.
    /// </summary>
    public static void PackStridedInputGradient(in ConvGeometry g, float* w, float* dst, int* offsets)
    {
        int k = g.KernelH, kk = k * k, ld = PaddedChannels(g.InChannels), p = g.Padding;
        int wp = g.OutWidth + 2 * p, plane = (g.OutHeight + 2 * p) * wp;
        Span<int> ys = stackalloc int[k], xs = stackalloc int[k];
        int r = 0;
        for (int py = 0; py < 2; py++)
            for (int px = 0; px < 2; px++)
            {
                int ny = Taps(g, py, ys), nx = Taps(g, px, xs);
                for (int co = 0; co < g.OutChannels; co++)
                    for (int a = 0; a < ny; a++)
                        for (int b = 0; b < nx; b++, r++)
                        {
                            int ky = ys[a], kx = xs[b];
                            offsets[r] = co * plane + (p + (py + p - ky) / 2) * wp + p + (px + p - kx) / 2;
                            float* row = dst + (long)r * ld;
                            for (int ci = 0; ci < ld; ci++)
                                row[ci] = ci < g.InChannels ? w[((long)co * g.InChannels + ci) * kk + ky * k + kx] : 0f;
                        }
            }
    }

    /// <summary>
    /// dx (overwritten) of one sample from its dy: dy padded into <paramref name="padded"/> (its border zero: zero it once),
    /// the four phases computed into <paramref name="phases"/> (4·Cin·OH·OW floats), then interleaved into dx.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void StridedInputGradient(in ConvGeometry g, float* dy, float* padded, float* packed, int* offsets, float* phases, float* dx)
    {
        int oh = g.OutHeight, ow = g.OutWidth, p = g.Padding, cin = g.InChannels, ld = PaddedChannels(cin);
        if (p > 0)
            Pad(new ConvGeometry(1, g.OutChannels, oh, ow, cin, g.KernelH, g.KernelW, 1, p), g.OutChannels, dy, padded);
        else
            padded = dy; // no border to read
        Span<int> taps = stackalloc int[g.KernelH];
        int row = 0, size = oh * ow;
        for (int phase = 0; phase < 4; phase++)
        {
            int rows = g.OutChannels * Taps(g, phase >> 1, taps) * Taps(g, phase & 1, taps);
            float* y = phases + (long)phase * cin * size;
            if (rows == 0) // no tap reaches this parity (K = 1)
                new Span<float>(y, cin * size).Clear();
            else
                Correlate<One>(oh, ow, ow + 2 * p, rows, cin, padded, packed + (long)row * ld, offsets + row, null, y);
            row += rows;
        }
        Interleave(cin, oh, ow, phases, dx);
    }

    /// <summary>dx[c, 2a + py, 2b + px] = phases[(2·py + px), c, a, b].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Interleave(int channels, int oh, int ow, float* phases, float* dx)
    {
        long size = (long)oh * ow, stride = channels * size;
        int w = 2 * ow;
        for (int c = 0; c < channels; c++)
        {
            float* p00 = phases + c * size, p01 = p00 + stride, p10 = p01 + stride, p11 = p10 + stride;
            float* d = dx + c * 4 * size;
            for (int a = 0; a < oh; a++, p00 += ow, p01 += ow, p10 += ow, p11 += ow, d += 2 * w)
                for (int b = 0; b < ow; b++)
                {
                    d[2 * b] = p00[b];
                    d[2 * b + 1] = p01[b];
                    d[w + 2 * b] = p10[b];
                    d[w + 2 * b + 1] = p11[b];
                }
        }
    }
}
