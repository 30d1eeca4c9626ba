using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// The data movement around the convolution GEMMs (<see cref="GemmKernels"/>): im2col of a
/// chunk of samples into col[n][Cin·KH·KW][OH·OW], and col2im as a gather (each input pixel
/// sums the column entries copied from it, taps in (kh, kw) order), so dx needs no atomics
/// and is deterministic. Both are grid-stride loops.
/// </summary>
internal static class ConvKernels
{
    /// <summary>
    /// Per column entry (grid-stride) of samples [first, first + count): col[n][(ci, kh, kw)][(oh, ow)]
    /// = x[first + n][ci][oh·S − P + kh][ow·S − P + kw], 0 in the padding.
    /// </summary>
    public static void Im2Col(int count, ConvGeometry g, int first, ArrayView<float> x, ArrayView<float> col)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < count; i += Grid.DimX * Group.DimX)
        {
            int oh = g.OutHeight, ow = g.OutWidth, hw = oh * ow, patch = g.PatchSize;
            int n = i / (patch * hw), rest = i - n * patch * hw;
            int r = rest / hw, p = rest - r * hw;
            int ci = r / (g.KernelH * g.KernelW), tap = r - ci * g.KernelH * g.KernelW;
            int kh = tap / g.KernelW, kw = tap - kh * g.KernelW;
            int y = p / ow, xo = p - y * ow;
            int ih = y * g.Stride - g.Padding + kh, iw = xo * g.Stride - g.Padding + kw;
            float v = 0f;
            if (ih >= 0 && ih < g.Height && iw >= 0 && iw < g.Width)
                v = x[(((first + n) * g.InChannels + ci) * g.Height + ih) * g.Width + iw];
            col[i] = v;
        }
    }

    /// <summary>
    /// Per input element (grid-stride) of samples [first, first + count): dx[first + n][ci][h][w] =
    /// Σ over taps (kh, kw), in order, of dcol[n][(ci, kh, kw)][(oh, ow)] where oh·S − P + kh = h and
    /// ow·S − P + kw = w. Overwrites dx.
    /// </summary>
    public static void Col2Im(int count, ConvGeometry g, int first, ArrayView<float> dcol, ArrayView<float> dx)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < count; i += Grid.DimX * Group.DimX)
        {
            int oh = g.OutHeight, ow = g.OutWidth, hw = oh * ow, patch = g.PatchSize;
            int image = g.InChannels * g.Height * g.Width;
            int n = i / image, rest = i - n * image;
            int ci = rest / (g.Height * g.Width), pix = rest - ci * g.Height * g.Width;
            int h = pix / g.Width, w = pix - h * g.Width;
            int colBase = n * patch * hw;
            float sum = 0f;
            for (int kh = 0; kh < g.KernelH; kh++)
            {
                int ty = h + g.Padding - kh;               // = oh·S
                if (ty < 0 || ty % g.Stride != 0) continue;
                int y = ty / g.Stride;
                if (y >= oh) continue;
                for (int kw = 0; kw < g.KernelW; kw++)
                {
                    int tx = w + g.Padding - kw;
                    if (tx < 0 || tx % g.Stride != 0) continue;
                    int xo = tx / g.Stride;
                    if (xo >= ow) continue;
                    int r = (ci * g.KernelH + kh) * g.KernelW + kw;
                    sum += dcol[colBase + r * hw + y * ow + xo];
                }
            }
            dx[(first * image) + i] = sum;
        }
    }
}
