namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Max and average pooling over planes [start, end) of an NCHW tensor (a plane is one channel
/// of one sample), with zero padding (<see cref="PoolGeometry"/>): padded positions never win
/// a max and count as zeros in an average, whose divisor is always Kernel² (PyTorch's
/// count_include_pad = True); as in PyTorch, forward divides the window's sum and backward sums
/// dy/Kernel² over the windows, and so does the ILGPU backend, bit for bit. Max-pool backward recomputes each window's first maximum from x
/// and y instead of storing indices, which keeps the forward output the only state and the
/// result deterministic. Average-pool backward gathers, for each input, the windows that
/// contain it, so every dx is written once, in a fixed order.
/// </summary>
internal static class CpuPooling
{
    public static void MaxForward(PoolGeometry g, float[] x, float[] y, int start, int end)
    {
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, outPlane = oh * ow;
        for (int p = start; p < end; p++)
        {
            int xBase = p * plane, yBase = p * outPlane;
            for (int i = 0; i < oh; i++)
            {
                var (r0, r1) = Window(i, g.Stride, g.Padding, g.Kernel, g.Height);
                for (int j = 0; j < ow; j++)
                {
                    var (c0, c1) = Window(j, g.Stride, g.Padding, g.Kernel, g.Width);
                    float best = float.NegativeInfinity;
                    for (int r = r0; r < r1; r++)
                    {
                        int row = xBase + r * g.Width;
                        for (int c = c0; c < c1; c++)
                        {
                            float v = x[row + c];
                            if (v > best || float.IsNaN(v)) best = v;
                        }
                    }
                    y[yBase + i * ow + j] = best;
                }
            }
        }
    }

    public static void MaxBackward(PoolGeometry g, float[] x, float[] y, float[] dy, float[] dx, int start, int end)
    {
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, outPlane = oh * ow;
        for (int p = start; p < end; p++)
        {
            int xBase = p * plane, yBase = p * outPlane;
            Array.Clear(dx, xBase, plane);
            for (int i = 0; i < oh; i++)
            {
                var (r0, r1) = Window(i, g.Stride, g.Padding, g.Kernel, g.Height);
                for (int j = 0; j < ow; j++)
                {
                    var (c0, c1) = Window(j, g.Stride, g.Padding, g.Kernel, g.Width);
                    float best = y[yBase + i * ow + j];
                    int at = FirstIndexOf(x, xBase, g.Width, r0, r1, c0, c1, best);
                    dx[at] += dy[yBase + i * ow + j];
                }
            }
        }
    }

    public static void AvgForward(PoolGeometry g, float[] x, float[] y, int start, int end)
    {
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, outPlane = oh * ow;
        float area = g.Kernel * g.Kernel;
        for (int p = start; p < end; p++)
        {
            int xBase = p * plane, yBase = p * outPlane;
            for (int i = 0; i < oh; i++)
            {
                var (r0, r1) = Window(i, g.Stride, g.Padding, g.Kernel, g.Height);
                for (int j = 0; j < ow; j++)
                {
                    var (c0, c1) = Window(j, g.Stride, g.Padding, g.Kernel, g.Width);
                    float sum = 0f;
                    for (int r = r0; r < r1; r++)
                    {
                        int row = xBase + r * g.Width;
                        for (int c = c0; c < c1; c++) sum += x[row + c];
                    }
                    y[yBase + i * ow + j] = sum / area;
                }
            }
        }
    }

    public static void AvgBackward(PoolGeometry g, float[] dy, float[] dx, int start, int end)
    {
        int oh = g.OutHeight, ow = g.OutWidth, plane = g.Height * g.Width, outPlane = oh * ow;
        float area = g.Kernel * g.Kernel;
        for (int p = start; p < end; p++)
        {
            int xBase = p * plane, yBase = p * outPlane;
            for (int r = 0; r < g.Height; r++)
            {
                var (i0, i1) = Covering(r, g.Stride, g.Padding, g.Kernel, oh);
                for (int c = 0; c < g.Width; c++)
                {
                    var (j0, j1) = Covering(c, g.Stride, g.Padding, g.Kernel, ow);
                    float sum = 0f;
                    for (int i = i0; i < i1; i++)
                        for (int j = j0; j < j1; j++) sum += dy[yBase + i * ow + j] / area;
                    dx[xBase + r * g.Width + c] = sum;
                }
            }
        }
    }

    /// <summary>The input rows [from, to) of output row <paramref name="o"/>'s window, clipped to the unpadded input.</summary>
    private static (int From, int To) Window(int o, int stride, int padding, int kernel, int size)
    {
        int top = o * stride - padding;
        return (Math.Max(top, 0), Math.Min(top + kernel, size));
    }

    /// <summary>The output rows [from, to) whose windows contain input row <paramref name="r"/>.</summary>
    private static (int From, int To) Covering(int r, int stride, int padding, int kernel, int outSize)
    {
        // o·stride − padding ≤ r < o·stride − padding + kernel
        int from = Math.Max(0, (r + padding - kernel + stride) / stride);
        if (r + padding - kernel + 1 <= 0) from = 0;
        int to = Math.Min(outSize, (r + padding) / stride + 1);
        return (from, Math.Max(from, to));
    }

    private static int FirstIndexOf(float[] x, int xBase, int width, int r0, int r1, int c0, int c1, float value)
    {
        for (int r = r0; r < r1; r++)
        {
            int row = xBase + r * width;
            for (int c = c0; c < c1; c++)
                if (x[row + c] == value || (float.IsNaN(value) && float.IsNaN(x[row + c]))) return row + c;
        }
        return xBase + r0 * width + c0;
    }
}
