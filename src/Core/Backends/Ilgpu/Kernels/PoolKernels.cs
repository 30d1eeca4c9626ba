using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Max pooling over NCHW planes, no padding (<see cref="PoolGeometry"/>). Like the CPU
/// backend, backward recomputes each window's first maximum (row-major order) from x and y
/// instead of storing indices.
/// </summary>
internal static class PoolKernels
{
    /// <summary>Per output element (grid-stride): the window's maximum; a NaN wins, as on the CPU.</summary>
    public static void MaxForward(int n, PoolGeometry g, ArrayView<float> x, ArrayView<float> y)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            int oh = g.OutHeight, ow = g.OutWidth;
            int plane = e / (oh * ow), rest = e - plane * oh * ow;
            int i = rest / ow, j = rest - i * ow;
            int top = plane * g.Height * g.Width + i * g.Stride * g.Width + j * g.Stride;
            float best = float.NegativeInfinity;
            for (int ki = 0; ki < g.Kernel; ki++)
            {
                for (int kj = 0; kj < g.Kernel; kj++)
                {
                    float v = x[top + ki * g.Width + kj];
                    if (v > best || float.IsNaN(v)) best = v;
                }
            }
            y[e] = best;
        }
    }

    /// <summary>
    /// Per INPUT element (grid-stride; a gather, so no atomics): dx[p, h, w] = Σ dy over the
    /// windows whose first maximum is (h, w), the windows visited in row-major order — the
    /// order in which the CPU scatters them, so overlapping windows sum identically.
    /// </summary>
    public static void MaxBackward(int n, PoolGeometry g, ArrayView<float> x, ArrayView<float> y,
        ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            int oh = g.OutHeight, ow = g.OutWidth, hw = g.Height * g.Width;
            int plane = e / hw, rest = e - plane * hw;
            int h = rest / g.Width, w = rest - h * g.Width;
            // Windows i with i·S ≤ h < i·S + K, i.e. i ∈ [ceil((h − K + 1)/S), floor(h/S)] ∩ [0, OH).
            int iLo = h - g.Kernel + 1 <= 0 ? 0 : (h - g.Kernel + g.Stride) / g.Stride;
            int iHi = IntrinsicMath.Min(oh - 1, h / g.Stride);
            int jLo = w - g.Kernel + 1 <= 0 ? 0 : (w - g.Kernel + g.Stride) / g.Stride;
            int jHi = IntrinsicMath.Min(ow - 1, w / g.Stride);
            int xBase = plane * hw, yBase = plane * oh * ow;
            float sum = 0f;
            for (int i = iLo; i <= iHi; i++)
            {
                for (int j = jLo; j <= jHi; j++)
                {
                    float best = y[yBase + i * ow + j];
                    int top = xBase + i * g.Stride * g.Width + j * g.Stride;
                    if (FirstIndexOf(x, top, g.Width, g.Kernel, best) == e)
                        sum += dy[yBase + i * ow + j];
                }
            }
            dx[e] = sum;
        }
    }

    private static int FirstIndexOf(ArrayView<float> x, int top, int width, int kernel, float value)
    {
        bool nan = float.IsNaN(value);
        for (int ki = 0; ki < kernel; ki++)
        {
            int row = top + ki * width;
            for (int kj = 0; kj < kernel; kj++)
            {
                float v = x[row + kj];
                if (v == value || (nan && float.IsNaN(v))) return row + kj;
            }
        }
        return top;
    }
}
