using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Batch-norm kernels in the stages of docs/architecture.md §1 (local sums → [collective in the layer] →
/// elementwise normalize; backward sums → [collective] → backward elementwise), and group
/// norm. Per-channel reductions run one task per channel, each summing its N rows of S
/// values in float64 in a fixed order, so the sums do not depend on the thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void ChannelShiftedSums(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, Span<double> sums)
    {
        int n = layout.N, c = layout.Channels, s = layout.Spatial;
        CheckLayout(layout, x);
        if (shift.Length != c || sums.Length != 2 * c) throw new ArgumentException("shift must hold C values and sums 2·C");
        float[] data = D(x);
        float[] k = Stage(shift, 0);
        double[] result = StageSums(2 * c);
        ForChunks(c, (c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double s1 = 0, s2 = 0;
                for (int i = 0; i < n; i++)
                {
                    var (a, b) = ShiftedRowSums(data.AsSpan((i * c + ch) * s, s), k[ch]);
                    s1 += a;
                    s2 += b;
                }
                result[ch] = s1;
                result[c + ch] = s2;
            }
        }, minChunk: 1);
        result.AsSpan(0, 2 * c).CopyTo(sums);
    }

    public void BatchNormNormalize(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, ReadOnlySpan<float> meanMinusShift,
        ReadOnlySpan<float> invStd, Tensor gamma, Tensor beta, Tensor xhat, Tensor y)
    {
        int c = layout.Channels, s = layout.Spatial;
        CheckLayout(layout, x);
        float[] src = D(x), xh = D(xhat), dst = D(y), ga = D(gamma), be = D(beta);
        float[] k = Stage(shift, 0), d = Stage(meanMinusShift, 1), inv = Stage(invStd, 2);
        ForChunks(layout.N * c, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int ch = r % c;
                NormalizeRow(src.AsSpan(r * s, s), xh.AsSpan(r * s, s), dst.AsSpan(r * s, s), k[ch], d[ch], inv[ch], ga[ch], be[ch]);
            }
        }, minChunk: Math.Max(1, 16384 / s));
    }

    public void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor xhat, Span<double> sums)
    {
        int n = layout.N, c = layout.Channels, s = layout.Spatial;
        CheckLayout(layout, dy);
        if (sums.Length != 2 * c) throw new ArgumentException("sums must hold 2·C values");
        float[] g = D(dy), xh = D(xhat);
        double[] result = StageSums(2 * c);
        ForChunks(c, (c0, c1) =>
        {
            for (int ch = c0; ch < c1; ch++)
            {
                double s1 = 0, s2 = 0;
                for (int i = 0; i < n; i++)
                {
                    var (a, b) = DotRowSums(g.AsSpan((i * c + ch) * s, s), xh.AsSpan((i * c + ch) * s, s));
                    s1 += a;
                    s2 += b;
                }
                result[ch] = s1;
                result[c + ch] = s2;
            }
        }, minChunk: 1);
        result.AsSpan(0, 2 * c).CopyTo(sums);
    }

    public void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor xhat, Tensor gamma, ReadOnlySpan<float> invStd,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx)
    {
        int c = layout.Channels, s = layout.Spatial;
        CheckLayout(layout, dy);
        float[] g = D(dy), xh = D(xhat), ga = D(gamma), d = D(dx);
        float[] inv = Stage(invStd, 0), m1 = Stage(meanDy, 1), m2 = Stage(meanDyXhat, 2);
        ForChunks(layout.N * c, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int ch = r % c;
                float a = ga[ch] * inv[ch];
                // dx = a·g − a·m1 − a·m2·x̂
                AffineRow2(g.AsSpan(r * s, s), xh.AsSpan(r * s, s), d.AsSpan(r * s, s), a, -a * m2[ch], -a * m1[ch]);
            }
        }, minChunk: Math.Max(1, 16384 / s));
    }

    public void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, Tensor y)
    {
        int c = layout.Channels, s = layout.Spatial;
        CheckLayout(layout, x);
        float[] src = D(x), dst = D(y);
        float[] a = Stage(scale, 0), b = Stage(shift, 1);
        ForChunks(layout.N * c, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                int ch = r % c;
                AffineRow(src.AsSpan(r * s, s), dst.AsSpan(r * s, s), a[ch], b[ch]);
            }
        }, minChunk: Math.Max(1, 16384 / s));
    }

    /// <summary>(Σ (x − k), Σ (x − k)²) of one row, accumulated in float64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (double Sum, double SumSquares) ShiftedRowSums(ReadOnlySpan<float> row, float shift)
    {
        var acc1 = Vector512<double>.Zero;
        var acc2 = Vector512<double>.Zero;
        var k = Vector512.Create(shift);
        ref float r = ref MemoryMarshal.GetReference(row);
        int i = 0;
        for (; i <= row.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref r, (nuint)i) - k);
            acc1 += lo + hi;
            acc2 = Vector512.FusedMultiplyAdd(lo, lo, Vector512.FusedMultiplyAdd(hi, hi, acc2));
        }
        double s1 = Vector512.Sum(acc1), s2 = Vector512.Sum(acc2);
        for (; i < row.Length; i++)
        {
            double v = row[i] - shift;
            s1 += v;
            s2 += v * v;
        }
        return (s1, s2);
    }

    /// <summary>(Σ g, Σ g·x̂) of one row, accumulated in float64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (double, double) DotRowSums(ReadOnlySpan<float> g, ReadOnlySpan<float> xhat)
    {
        var acc1 = Vector512<double>.Zero;
        var acc2 = Vector512<double>.Zero;
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float xr = ref MemoryMarshal.GetReference(xhat);
        int i = 0;
        for (; i <= g.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var (g0, g1) = Vector512.Widen(Vector512.LoadUnsafe(ref gr, (nuint)i));
            var (x0, x1) = Vector512.Widen(Vector512.LoadUnsafe(ref xr, (nuint)i));
            acc1 += g0 + g1;
            acc2 = Vector512.FusedMultiplyAdd(g0, x0, Vector512.FusedMultiplyAdd(g1, x1, acc2));
        }
        double s1 = Vector512.Sum(acc1), s2 = Vector512.Sum(acc2);
        for (; i < g.Length; i++)
        {
            s1 += g[i];
            s2 += (double)g[i] * xhat[i];
        }
        return (s1, s2);
    }

    /// <summary>x̂ = ((x − k) − d)·inv, y = γ·x̂ + β.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NormalizeRow(ReadOnlySpan<float> x, Span<float> xhat, Span<float> y, float k, float d, float inv, float gamma, float beta)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float hr = ref MemoryMarshal.GetReference(xhat);
        ref float yr = ref MemoryMarshal.GetReference(y);
        var vk = Vector512.Create(k);
        var vd = Vector512.Create(d);
        var vi = Vector512.Create(inv);
        var vg = Vector512.Create(gamma);
        var vb = Vector512.Create(beta);
        int i = 0;
        for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var h = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
            h.StoreUnsafe(ref hr, (nuint)i);
            Vector512.FusedMultiplyAdd(vg, h, vb).StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < x.Length; i++)
        {
            float h = (x[i] - k - d) * inv;
            xhat[i] = h;
            y[i] = MathF.FusedMultiplyAdd(gamma, h, beta);
        }
    }

    /// <summary>y = a·x + b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AffineRow(ReadOnlySpan<float> x, Span<float> y, float a, float b)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        var va = Vector512.Create(a);
        var vb = Vector512.Create(b);
        int i = 0;
        for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            Vector512.FusedMultiplyAdd(va, Vector512.LoadUnsafe(ref xr, (nuint)i), vb).StoreUnsafe(ref yr, (nuint)i);
        for (; i < x.Length; i++) y[i] = MathF.FusedMultiplyAdd(a, x[i], b);
    }

    /// <summary>z = a·x + b·y + c.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AffineRow2(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> z, float a, float b, float c)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        ref float zr = ref MemoryMarshal.GetReference(z);
        var va = Vector512.Create(a);
        var vb = Vector512.Create(b);
        var vc = Vector512.Create(c);
        int i = 0;
        for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var t = Vector512.FusedMultiplyAdd(vb, Vector512.LoadUnsafe(ref yr, (nuint)i), vc);
            Vector512.FusedMultiplyAdd(va, Vector512.LoadUnsafe(ref xr, (nuint)i), t).StoreUnsafe(ref zr, (nuint)i);
        }
        for (; i < x.Length; i++) z[i] = MathF.FusedMultiplyAdd(a, x[i], MathF.FusedMultiplyAdd(b, y[i], c));
    }

    // Per-channel coefficients arrive as spans (which the parallel bodies cannot capture);
    // they are staged into arrays owned by the backend, grown once, so a step allocates none.
    private readonly float[][] _staged = [[], [], []];
    private double[] _sums = [];

    private float[] Stage(ReadOnlySpan<float> values, int slot)
    {
        if (_staged[slot].Length < values.Length) _staged[slot] = new float[values.Length];
        values.CopyTo(_staged[slot]);
        return _staged[slot];
    }

    private double[] StageSums(int length)
    {
        if (_sums.Length < length) _sums = new double[length];
        return _sums;
    }

    private static void CheckLayout(in ChannelLayout layout, Tensor t)
    {
        if (layout.Length != t.Length)
            throw new ArgumentException($"layout [{layout.N}, {layout.Channels}, {layout.Spatial}] does not match tensor {t}");
    }
}
