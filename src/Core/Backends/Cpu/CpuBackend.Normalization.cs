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

    public void BatchNormNormalize(in ChannelLayout layout, Tensor x, in BatchNormTransform transform, Tensor y)
    {
        OpChecks.Layout(layout, x);
        OpChecks.Layout(layout, y);
        float[] src = D(x), dst = D(y);
        var maps = StageMaps(layout.Channels, transform);
        ForChunks(layout.N * layout.Channels, (layout, src, dst, maps), static (in (ChannelLayout L, float[] X, float[] Y, ChannelMap[] M) a, int r0, int r1) =>
        {
            int c = a.L.Channels, s = a.L.Spatial;
            for (int r = r0; r < r1; r++)
                CpuBatchNormRows.Normalize(a.X.AsSpan(r * s, s), a.Y.AsSpan(r * s, s), a.M[r % c]);
        }, minChunk: RowsPerChunk(layout));
    }

    public void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform, Span<double> sums)
    {
        int c = layout.Channels;
        OpChecks.Layout(layout, dy);
        OpChecks.Layout(layout, x);
        if (sums.Length != 2 * c) throw new ArgumentException("sums must hold 2·C values");
        float[] g = D(dy), src = D(x);
        var maps = StageMaps(c, transform);
        double[] result = StageSums(2 * c);
        ForChunks(c, (layout, g, src, maps, result), static (in (ChannelLayout L, float[] Dy, float[] X, ChannelMap[] M, double[] Sums) a, int c0, int c1) =>
        {
            int n = a.L.N, c = a.L.Channels, s = a.L.Spatial;
            for (int ch = c0; ch < c1; ch++)
            {
                double s1 = 0, s2 = 0;
                for (int i = 0; i < n; i++)
                {
                    int at = (i * c + ch) * s;
                    var (p, q) = CpuBatchNormRows.BackwardSums(a.Dy.AsSpan(at, s), a.X.AsSpan(at, s), a.M[ch]);
                    s1 += p;
                    s2 += q;
                }
                a.Sums[ch] = s1;
                a.Sums[c + ch] = s2;
            }
        }, minChunk: 1);
        result.AsSpan(0, 2 * c).CopyTo(sums);
    }

    public void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor x, in BatchNormTransform transform,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx)
    {
        int c = layout.Channels;
        OpChecks.Layout(layout, dy);
        OpChecks.Layout(layout, x);
        OpChecks.Layout(layout, dx);
        if (meanDy.Length != c || meanDyXhat.Length != c) throw new ArgumentException("the means must hold C values each");
        float[] g = D(dy), src = D(x), d = D(dx);
        var maps = StageMaps(c, transform);
        float[] m1 = Stage(meanDy, 0), m2 = Stage(meanDyXhat, 1);
        ForChunks(layout.N * c, (layout, g, src, d, (maps, m1, m2)),
            static (in (ChannelLayout L, float[] Dy, float[] X, float[] Dx, (ChannelMap[] Maps, float[] M1, float[] M2) C) a, int r0, int r1) =>
            {
                int c = a.L.Channels, s = a.L.Spatial;
                for (int r = r0; r < r1; r++)
                {
                    ref readonly var m = ref a.C.Maps[r % c];
                    float f = m.Gamma * m.InvStd;
                    // dx = f·g − f·m1 − f·m2·x̂
                    CpuBatchNormRows.BackwardInput(a.Dy.AsSpan(r * s, s), a.X.AsSpan(r * s, s), a.Dx.AsSpan(r * s, s), m,
                        f, -f * a.C.M2[r % c], -f * a.C.M1[r % c]);
                }
            }, minChunk: RowsPerChunk(layout));
    }

    public void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, bool relu, Tensor y)
    {
        OpChecks.Layout(layout, x);
        OpChecks.Layout(layout, y);
        float[] src = D(x), dst = D(y);
        float[] a = Stage(scale, 0), b = Stage(shift, 1);
        ForChunks(layout.N * layout.Channels, (layout, src, dst, (a, b, relu)),
            static (in (ChannelLayout L, float[] X, float[] Y, (float[] Scale, float[] Shift, bool Relu) C) p, int r0, int r1) =>
            {
                int c = p.L.Channels, s = p.L.Spatial;
                for (int r = r0; r < r1; r++)
                    CpuBatchNormRows.Affine(p.X.AsSpan(r * s, s), p.Y.AsSpan(r * s, s), p.C.Scale[r % c], p.C.Shift[r % c], p.C.Relu);
            }, minChunk: RowsPerChunk(layout));
    }

    /// <summary>Rows of an elementwise stage per chunk: about 16 Ki values.</summary>
    private static int RowsPerChunk(in ChannelLayout layout) => Math.Max(1, 16384 / Math.Max(1, layout.Spatial));

    /// <summary>(Σ (x − k), Σ (x − k)²) of one row, accumulated in float64 (see <see cref="CpuRowKernels"/>).</summary>
    internal static (double Sum, double SumSquares) ShiftedRowSums(ReadOnlySpan<float> row, float shift) =>
        CpuRowKernels.ShiftedSums(row, shift);

    // Per-channel coefficients arrive as spans (which the parallel bodies cannot capture);
    // they are staged into arrays owned by the backend, grown once, so a step allocates none.
    private readonly float[][] _staged = [[], []];
    private double[] _sums = [];
    private ChannelMap[] _maps = [];

    /// <summary>A batch norm's per-channel map, staged as one array of scalars per channel.</summary>
    private ChannelMap[] StageMaps(int channels, in BatchNormTransform t)
    {
        t.Check(channels);
        if (_maps.Length < channels) _maps = new ChannelMap[channels];
        float[] gamma = D(t.Gamma), beta = D(t.Beta);
        for (int c = 0; c < channels; c++)
            _maps[c] = new ChannelMap(t.Shift[c], t.MeanMinusShift[c], t.InvStd[c], gamma[c], beta[c], t.Relu);
        return _maps;
    }

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
