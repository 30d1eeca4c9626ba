namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Max pooling over planes [start, end) of an NCHW tensor (a plane is one channel of one
/// sample). Backward recomputes each window's first maximum from x and y instead of storing
/// indices, which keeps the forward output the only state and the result deterministic.
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
                for (int j = 0; j < ow; j++)
                {
                    int top = xBase + i * g.Stride * g.Width + j * g.Stride;
                    float best = float.NegativeInfinity;
                    for (int ki = 0; ki < g.Kernel; ki++)
                    {
                        int row = top + ki * g.Width;
                        for (int kj = 0; kj < g.Kernel; kj++)
                        {
                            float v = x[row + kj];
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
                for (int j = 0; j < ow; j++)
                {
                    int top = xBase + i * g.Stride * g.Width + j * g.Stride;
                    float best = y[yBase + i * ow + j];
                    int at = FirstIndexOf(x, top, g.Width, g.Kernel, best);
                    dx[at] += dy[yBase + i * ow + j];
                }
            }
        }
    }

    private static int FirstIndexOf(float[] x, int top, int width, int kernel, float value)
    {
        for (int ki = 0; ki < kernel; ki++)
        {
            int row = top + ki * width;
            for (int kj = 0; kj < kernel; kj++)
                if (x[row + kj] == value || (float.IsNaN(value) && float.IsNaN(x[row + kj]))) return row + kj;
        }
        return top;
    }
}
