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
        int c = layout.Channels;
        OpChecks.Layout(layout, x);
        if (shift.Length != c || sums.Length != 2 * c) throw new ArgumentException("shift must hold C values and sums 2·C");
        float[] data = D(x);
        float[] k = Stage(shift, 0);
        double[] result = StageSums(2 * c);
        ForChunks(c, (layout, data, k, result), static (in (ChannelLayout L, float[] X, float[] K, double[] Sums) a, int c0, int c1) =>
        {
            int n = a.L.N, c = a.L.Channels, s = a.L.Spatial;
            for (int ch = c0; ch < c1; ch++)
            {
                double s1 = 0, s2 = 0;
                for (int i = 0; i < n; i++)
                {
                    var (p, q) = ShiftedRowSums(a.X.AsSpan((i * c + ch) * s, s), a.K[ch]);
                    s1 += p;
                    s2 += q;
                }
                a.Sums[ch] = s1;
                a.Sums[c + ch] = s2;
            }
        }, minChunk: 1);
        result.AsSpan(0, 2 * c).CopyTo(sums);
    }

    public void BatchNormNormalize(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, ReadOnlySpan<float> meanMinusShift,
        ReadOnlySpan<float> invStd, Tensor gamma, Tensor beta, Tensor xhat, Tensor y)
    {
        int c = layout.Channels, s = layout.Spatial;
        OpChecks.Layout(layout, x);
        float[] src = D(x), xh = D(xhat), dst = D(y), ga = D(gamma), be = D(beta);
        float[] k = Stage(shift, 0), d = Stage(meanMinusShift, 1), inv = Stage(invStd, 2);
        ForChunks(layout.N * c, (layout, src, xh, dst, (k, d, inv, ga, be)),
            static (in (ChannelLayout L, float[] X, float[] Xhat, float[] Y, (float[] K, float[] D, float[] Inv, float[] Gamma, float[] Beta) C) a, int r0, int r1) =>
            {
                int c = a.L.Channels, s = a.L.Spatial;
                for (int r = r0; r < r1; r++)
                {
                    int ch = r % c;
                    CpuRowKernels.Normalize(a.X.AsSpan(r * s, s), a.Xhat.AsSpan(r * s, s), a.Y.AsSpan(r * s, s),
                        a.C.K[ch], a.C.D[ch], a.C.Inv[ch], a.C.Gamma[ch], a.C.Beta[ch]);
                }
            }, minChunk: Math.Max(1, 16384 / s));
    }

    public void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor xhat, Span<double> sums)
    {
        int c = layout.Channels;
        OpChecks.Layout(layout, dy);
        if (sums.Length != 2 * c) throw new ArgumentException("sums must hold 2·C values");
        float[] g = D(dy), xh = D(xhat);
        double[] result = StageSums(2 * c);
        ForChunks(c, (layout, g, xh, result), static (in (ChannelLayout L, float[] Dy, float[] Xhat, double[] Sums) a, int c0, int c1) =>
        {
            int n = a.L.N, c = a.L.Channels, s = a.L.Spatial;
            for (int ch = c0; ch < c1; ch++)
            {
                double s1 = 0, s2 = 0;
                for (int i = 0; i < n; i++)
                {
                    var (p, q) = CpuRowKernels.DotSums(a.Dy.AsSpan((i * c + ch) * s, s), a.Xhat.AsSpan((i * c + ch) * s, s));
                    s1 += p;
                    s2 += q;
                }
                a.Sums[ch] = s1;
                a.Sums[c + ch] = s2;
            }
        }, minChunk: 1);
        result.AsSpan(0, 2 * c).CopyTo(sums);
    }

    public void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor xhat, Tensor gamma, ReadOnlySpan<float> invStd,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx)
    {
        int c = layout.Channels, s = layout.Spatial;
        OpChecks.Layout(layout, dy);
        float[] g = D(dy), xh = D(xhat), ga = D(gamma), d = D(dx);
        float[] inv = Stage(invStd, 0), m1 = Stage(meanDy, 1), m2 = Stage(meanDyXhat, 2);
        ForChunks(layout.N * c, (layout, g, xh, d, (ga, inv, m1, m2)),
            static (in (ChannelLayout L, float[] Dy, float[] Xhat, float[] Dx, (float[] Gamma, float[] Inv, float[] M1, float[] M2) C) a, int r0, int r1) =>
            {
                int c = a.L.Channels, s = a.L.Spatial;
                for (int r = r0; r < r1; r++)
                {
                    int ch = r % c;
                    float f = a.C.Gamma[ch] * a.C.Inv[ch];
                    // dx = f·g − f·m1 − f·m2·x̂
                    CpuRowKernels.Affine2(a.Dy.AsSpan(r * s, s), a.Xhat.AsSpan(r * s, s), a.Dx.AsSpan(r * s, s), f, -f * a.C.M2[ch], -f * a.C.M1[ch]);
                }
            }, minChunk: Math.Max(1, 16384 / s));
    }

    public void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, Tensor y)
    {
        int c = layout.Channels, s = layout.Spatial;
        OpChecks.Layout(layout, x);
        float[] src = D(x), dst = D(y);
        float[] a = Stage(scale, 0), b = Stage(shift, 1);
        ForChunks(layout.N * c, (layout, src, dst, a, b), static (in (ChannelLayout L, float[] X, float[] Y, float[] Scale, float[] Shift) p, int r0, int r1) =>
        {
            int c = p.L.Channels, s = p.L.Spatial;
            for (int r = r0; r < r1; r++)
            {
                int ch = r % c;
                CpuRowKernels.Affine(p.X.AsSpan(r * s, s), p.Y.AsSpan(r * s, s), p.Scale[ch], p.Shift[ch]);
            }
        }, minChunk: Math.Max(1, 16384 / s));
    }

    /// <summary>(Σ (x − k), Σ (x − k)²) of one row, accumulated in float64 (see <see cref="CpuRowKernels"/>).</summary>
    internal static (double Sum, double SumSquares) ShiftedRowSums(ReadOnlySpan<float> row, float shift) =>
        CpuRowKernels.ShiftedSums(row, shift);

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

}
