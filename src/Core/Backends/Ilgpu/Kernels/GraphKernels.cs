using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// The plumbing of a network graph — residual sums, products, channel concatenation and its
/// split — global average pooling and dropout. Grid-stride loops like
/// <see cref="ElementwiseKernels"/>: each output element is computed by one thread from its own
/// inputs, so results do not depend on the launch shape.
/// </summary>
internal static class GraphKernels
{
    /// <summary>y[i] = a[i] + b[i]. y may be a or b: each thread reads its element before writing it.</summary>
    public static void Add(int n, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX) y[i] = a[i] + b[i];
    }

    /// <summary>y[i] = max(a[i] + b[i], 0) (0 for NaN, as <see cref="ElementwiseKernels.Relu"/>); y may be a or b.</summary>
    public static void AddRelu(int n, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            float v = a[i] + b[i];
            y[i] = v > 0f ? v : 0f;
        }
    }

    /// <summary>dx[i] = a[i] + b[i] where y[i] &gt; 0, else 0; dx may be a or b.</summary>
    public static void AddReluBackward(int n, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, ArrayView<float> dx)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
            dx[i] = y[i] > 0f ? a[i] + b[i] : 0f;
    }

    /// <summary>y[i] = a[i]·b[i]; y may be a or b.</summary>
    public static void Multiply(int n, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX) y[i] = a[i] * b[i];
    }

    /// <summary>
    /// Per copied element e of the N·Count·S (<see cref="ChannelSlice"/>):
    /// dst[n, DstOffset + c, s] = src[n, SrcOffset + c, s]. Consecutive threads copy consecutive
    /// positions of a channel, which are contiguous on both sides.
    /// </summary>
    public static void CopyChannels(int n, ChannelSlice slice, ArrayView<float> src, ArrayView<float> dst)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            int perSample = slice.Count * slice.Spatial;
            int sample = e / perSample, rest = e - sample * perSample;
            int c = rest / slice.Spatial, s = rest - c * slice.Spatial;
            dst[(sample * slice.DstChannels + slice.DstOffset + c) * slice.Spatial + s] =
                src[(sample * slice.SrcChannels + slice.SrcOffset + c) * slice.Spatial + s];
        }
    }

    /// <summary>
    /// Per (sample, channel) row r of <paramref name="rows"/>: y[r] = (Σ x[r, ·]) / S, the S values
    /// summed in float32 in order, as the CPU sums them. One thread per row: S is a final feature
    /// map (7×7 in the built-in models), too short to share among a group.
    /// </summary>
    public static void GlobalAvgForward(int rows, int spatial, ArrayView<float> x, ArrayView<float> y)
    {
        for (int r = Grid.IdxX * Group.DimX + Group.IdxX; r < rows; r += Grid.DimX * Group.DimX)
        {
            int start = r * spatial;
            float sum = 0f;
            for (int s = 0; s < spatial; s++) sum += x[start + s];
            y[r] = sum / spatial;
        }
    }

    /// <summary>Per input element e of <paramref name="n"/>: dx[e] = dy[e / S] / S.</summary>
    public static void GlobalAvgBackward(int n, int spatial, ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX) dx[e] = dy[e / spatial] / spatial;
    }

    /// <summary>
    /// Inverted dropout over [N, sampleSize], per element e: kept when
    /// <see cref="DropoutMask.Keep"/>(keys[e / sampleSize], e mod sampleSize, p) — the CPU's draw,
    /// bit for bit (integer hashing, and a 24-bit integer times 2⁻²⁴, which is exact) —
    /// mask = scale (1/(1 − p), rounded on the host as the CPU rounds it) where kept, else 0;
    /// y = x·mask.
    /// </summary>
    public static void Dropout(int n, int sampleSize, float p, float scale, ArrayView<ulong> keys,
        ArrayView<float> x, ArrayView<float> mask, ArrayView<float> y)
    {
        for (int e = Grid.IdxX * Group.DimX + Group.IdxX; e < n; e += Grid.DimX * Group.DimX)
        {
            int sample = e / sampleSize;
            float m = DropoutMask.Keep(keys[sample], e - sample * sampleSize, p) ? scale : 0f;
            mask[e] = m;
            y[e] = x[e] * m;
        }
    }
}
