using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Max and average pooling over NCHW planes, windows zero-padded by Padding
/// (<see cref="PoolGeometry"/>). Window (i, j) covers rows i·S − P … i·S − P + K − 1 and the
/// like for columns; only the rows and columns inside the plane are visited (padding never wins
/// a max, and adds zeros to an average, which still divides by K²). Like the CPU backend, max
/// backward recomputes each window's first maximum (row-major order) from x and y instead of
/// storing indices. Both backward passes are gathers, one thread per INPUT element, so no atomics.
/// </summary>
internal static class PoolKernels
{
    /// <summary>Per output element (grid-stride): the window's maximum; a NaN wins, as on the CPU.</summary>
    public static void MaxForward(int n, PoolGeometry g, ArrayView<float> x, ArrayView<float> y)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            var win = Window.OfOutput(g, e);
            float best = float.NegativeInfinity;
            for (int ki = win.RowLo; ki < win.RowHi; ki++)
            {
                for (int kj = win.ColLo; kj < win.ColHi; kj++)
                {
                    float v = x[win.Top + ki * g.Width + kj];
                    if (v > best || float.IsNaN(v)) best = v;
                }
            }
            y[e] = best;
        }
    }

    /// <summary>
    /// Per INPUT element (grid-stride): dx[p, h, w] = Σ dy over the windows whose first maximum is
    /// (h, w), the windows visited in row-major order — the order in which the CPU scatters them,
    /// so overlapping windows sum identically.
    /// </summary>
    public static void MaxBackward(int n, PoolGeometry g, ArrayView<float> x, ArrayView<float> y,
        ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            var cover = Covering.OfInput(g, e);
            float sum = 0f;
            for (int i = cover.RowLo; i <= cover.RowHi; i++)
            {
                for (int j = cover.ColLo; j <= cover.ColHi; j++)
                {
                    int at = cover.OutBase + i * g.OutWidth + j;
                    if (FirstIndexOf(x, new Window(g, cover.Plane, i, j), g.Width, y[at]) == e) sum += dy[at];
                }
            }
            dx[e] = sum;
        }
    }

    /// <summary>Per output element (grid-stride): the window's sum, row-major, divided by K².</summary>
    public static void AvgForward(int n, PoolGeometry g, ArrayView<float> x, ArrayView<float> y)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            var win = Window.OfOutput(g, e);
            float sum = 0f;
            for (int ki = win.RowLo; ki < win.RowHi; ki++)
                for (int kj = win.ColLo; kj < win.ColHi; kj++)
                    sum += x[win.Top + ki * g.Width + kj];
            y[e] = sum / (g.Kernel * g.Kernel);
        }
    }

    /// <summary>
    /// Per INPUT element (grid-stride): dx[p, h, w] = Σ dy/K² over the windows containing (h, w),
    /// in row-major order of the windows.
    /// </summary>
    public static void AvgBackward(int n, PoolGeometry g, ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            var cover = Covering.OfInput(g, e);
            float area = g.Kernel * g.Kernel, sum = 0f;
            for (int i = cover.RowLo; i <= cover.RowHi; i++)
                for (int j = cover.ColLo; j <= cover.ColHi; j++)
                    sum += dy[cover.OutBase + i * g.OutWidth + j] / area;
            dx[e] = sum;
        }
    }

    /// <summary>
    /// The tensor index of the first element of <paramref name="win"/> equal to
    /// <paramref name="value"/> (or NaN when it is NaN), padding skipped; the window's first
    /// element inside the plane when none is (as the CPU falls back).
    /// </summary>
    private static int FirstIndexOf(ArrayView<float> x, Window win, int width, float value)
    {
        bool nan = float.IsNaN(value);
        for (int ki = win.RowLo; ki < win.RowHi; ki++)
        {
            int row = win.Top + ki * width;
            for (int kj = win.ColLo; kj < win.ColHi; kj++)
            {
                float v = x[row + kj];
                if (v == value || (nan && float.IsNaN(v))) return row + kj;
            }
        }
        return win.Top + win.RowLo * width + win.ColLo;
    }

    /// <summary>
    /// Window (i, j) of a plane: Top, the tensor index of its top-left corner (in the padding when
    /// P &gt; 0: only Top + ki·W + kj for ki in [RowLo, RowHi), kj in [ColLo, ColHi) is read), and
    /// the rows and columns of the window that lie inside the plane.
    /// </summary>
    private readonly struct Window
    {
        public readonly int Top, RowLo, RowHi, ColLo, ColHi;

        public Window(PoolGeometry g, int plane, int i, int j)
        {
            int h0 = i * g.Stride - g.Padding, w0 = j * g.Stride - g.Padding;
            Top = plane * g.Height * g.Width + h0 * g.Width + w0;
            RowLo = IntrinsicMath.Max(0, -h0);
            RowHi = IntrinsicMath.Min(g.Kernel, g.Height - h0);
            ColLo = IntrinsicMath.Max(0, -w0);
            ColHi = IntrinsicMath.Min(g.Kernel, g.Width - w0);
        }

        /// <summary>The window of output element <paramref name="e"/> ([N, C, OH, OW] row-major).</summary>
        public static Window OfOutput(PoolGeometry g, int e)
        {
            int planeSize = g.OutHeight * g.OutWidth;
            int plane = e / planeSize, rest = e - plane * planeSize;
            int i = rest / g.OutWidth;
            return new Window(g, plane, i, rest - i * g.OutWidth);
        }
    }

    /// <summary>
    /// The windows containing input element e: rows [RowLo, RowHi] and columns [ColLo, ColHi] of
    /// the output plane whose first element is OutBase — along each axis, the i with
    /// i·S − P ≤ h ≤ i·S − P + K − 1, i.e. ceil((h + P − K + 1)/S) ≤ i ≤ (h + P)/S, within [0, OH).
    /// </summary>
    private readonly struct Covering
    {
        public readonly int Plane, OutBase, RowLo, RowHi, ColLo, ColHi;

        private Covering(PoolGeometry g, int plane, int h, int w)
        {
            Plane = plane;
            OutBase = plane * g.OutHeight * g.OutWidth;
            RowLo = First(h, g);
            RowHi = IntrinsicMath.Min(g.OutHeight - 1, (h + g.Padding) / g.Stride);
            ColLo = First(w, g);
            ColHi = IntrinsicMath.Min(g.OutWidth - 1, (w + g.Padding) / g.Stride);
        }

        /// <summary>The windows of input element <paramref name="e"/> ([N, C, H, W] row-major).</summary>
        public static Covering OfInput(PoolGeometry g, int e)
        {
            int planeSize = g.Height * g.Width;
            int plane = e / planeSize, rest = e - plane * planeSize;
            int h = rest / g.Width;
            return new Covering(g, plane, h, rest - h * g.Width);
        }

        /// <summary>ceil((at + P − K + 1)/S) clamped at 0, the division written for a positive
        /// numerator only (C# rounds negative quotients towards 0).</summary>
        private static int First(int at, PoolGeometry g)
        {
            int reach = at + g.Padding - g.Kernel + 1;
            return reach <= 0 ? 0 : (reach + g.Stride - 1) / g.Stride;
        }
    }
}
