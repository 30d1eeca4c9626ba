using BnDist.Core.Backends.Ilgpu.Kernels;
using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// Convolutions and linear layers as tiled GEMMs (<see cref="GemmKernels"/>), operands
/// addressed in place through strides (no transposed copies).
/// </summary>
/// <remarks>
/// <para>Convolution, per chunk of samples whose im2col columns fit <see cref="ColumnBudget"/>:
/// col = im2col(x) [n][Cin·KH·KW][OH·OW]; forward y[n] = W·col[n] (+ b), one batched launch;
/// dx: dcol[n] = Wᵀ·dy[n], then col2im as a gather. A 1×1, stride-1, unpadded convolution uses
/// x itself as col (and writes dx directly).</para>
/// <para>Weight gradient, dW = Σ_n dy[n]·col[n]ᵀ: the sum over samples lies inside the GEMM's
/// reduction (k runs over positions, ko over samples). To keep a big GPU busy (dW has few
/// tiles, the reduction is long) the samples are split into up to <see cref="MaxPartitions"/>
/// contiguous partitions computed as separate products, then added in partition order
/// (<see cref="GemmKernels.SumPartials"/>): deterministic, and the partition count depends
/// only on N. Bias gradients are per-channel float64 sums (<see cref="NormKernels"/>).</para>
/// </remarks>
public sealed partial class IlgpuBackend
{
    /// <summary>The most floats of im2col columns held at once (64 MiB).</summary>
    internal const long ColumnBudget = 1L << 24;

    /// <summary>The most split-K partitions of a convolution's weight gradient.</summary>
    internal const int MaxPartitions = 16;

    public void Conv2dForward(in ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        Validate(g);
        ArrayView<float> vx = V(x), vw = V(w), vb = VOrEmpty(bias), vy = V(y);
        int hw = g.OutHeight * g.OutWidth, patch = g.PatchSize, image = g.InChannels * g.Height * g.Width;
        bool pointwise = IsPointwise(g);
        int chunk = ChunkSize(g, pointwise);
        for (int first = 0; first < g.N; first += chunk)
        {
            int count = Math.Min(chunk, g.N - first);
            ArrayView<float> col;
            if (pointwise)
            {
                col = vx.SubView((long)first * image, (long)count * image);
            }
            else
            {
                col = Grow(ref _columns, (long)count * patch * hw);
                _im2col(Strided((int)col.Length), (int)col.Length, g, first, vx, col);
            }
            // y[n] (Cout × hw) = W (Cout × patch) · col[n] (patch × hw) + b
            var s = Shape(g.OutChannels, hw, patch, batches: count);
            (s.ARow, s.ACol) = (patch, 1);
            (s.BRow, s.BCol, s.BBatch) = (hw, 1, patch * hw);
            (s.CRow, s.CCol, s.CBatch) = (hw, 1, g.OutChannels * hw);
            s.BiasMode = bias is null ? 0 : 1;
            Gemm(s, vw, col, vy.SubView((long)first * g.OutChannels * hw, (long)count * g.OutChannels * hw), vb, count);
        }
    }

    public void Conv2dBackward(in ConvGeometry g, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db)
    {
        Validate(g);
        ArrayView<float> vx = V(x), vw = V(w), vdy = V(dy), vdw = V(dw);
        int hw = g.OutHeight * g.OutWidth, patch = g.PatchSize, cout = g.OutChannels, image = g.InChannels * g.Height * g.Width;
        if (db is not null)
            ChannelSums(new ChannelLayout(g.N, cout, hw), vdy, V(db));
        if (g.N == 0)
        {
            vdw.MemSetToZero();
            return;
        }
        bool pointwise = IsPointwise(g);
        int chunk = ChunkSize(g, pointwise);
        for (int first = 0; first < g.N; first += chunk)
        {
            int count = Math.Min(chunk, g.N - first);
            var dyChunk = vdy.SubView((long)first * cout * hw, (long)count * cout * hw);
            ArrayView<float> col = pointwise
                ? vx.SubView((long)first * image, (long)count * image)
                : Grow(ref _columns, (long)count * patch * hw);
            if (!pointwise) _im2col(Strided((int)col.Length), (int)col.Length, g, first, vx, col);

            // dW (Cout × patch) += Σ_n dy[n] (Cout × hw) · col[n]ᵀ (hw × patch), split over samples.
            int partitions = Math.Min(count, MaxPartitions), per = (count + partitions - 1) / partitions;
            partitions = (count + per - 1) / per;
            var s = Shape(cout, patch, hw, batches: partitions);
            (s.KOuter, s.KOuterTotal) = (per, count);
            (s.ARow, s.ACol, s.AOuter, s.ABatch) = (hw, 1, cout * hw, per * cout * hw);
            (s.BRow, s.BCol, s.BOuter, s.BBatch) = (1, hw, patch * hw, per * patch * hw);
            int dwLength = cout * patch;
            (s.CRow, s.CCol, s.CBatch) = (patch, 1, dwLength);
            if (partitions == 1)
            {
                s.Accumulate = first == 0 ? 0 : 1;
                Gemm(s, dyChunk, col, vdw, ArrayView<float>.Empty, 1);
            }
            else
            {
                var partials = Grow(ref _partials, (long)partitions * dwLength);
                Gemm(s, dyChunk, col, partials, ArrayView<float>.Empty, partitions);
                _sumPartials(Strided(dwLength), dwLength, dwLength, partitions, first == 0 ? 0 : 1, partials, vdw);
            }

            if (dx is null) continue;
            // dcol[n] (patch × hw) = Wᵀ (patch × Cout) · dy[n] (Cout × hw); dx[n] = col2im(dcol[n]).
            var vdx = V(dx);
            var d = Shape(patch, hw, cout, batches: count);
            (d.ARow, d.ACol) = (1, patch);
            (d.BRow, d.BCol, d.BBatch) = (hw, 1, cout * hw);
            (d.CRow, d.CCol, d.CBatch) = (hw, 1, patch * hw);
            if (pointwise)
            {
                Gemm(d, vw, dyChunk, vdx.SubView((long)first * image, (long)count * image), ArrayView<float>.Empty, count);
                continue;
            }
            Gemm(d, vw, dyChunk, col, ArrayView<float>.Empty, count); // col has been used: reuse it
            _col2im(Strided(count * image), count * image, g, first, col, vdx);
        }
    }

    public void LinearForward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        if (n == 0) return;
        // y (N × out) = x (N × in) · Wᵀ (in × out) + b
        var s = Shape(n, outFeatures, inFeatures, batches: 1);
        (s.ARow, s.ACol) = (inFeatures, 1);
        (s.BRow, s.BCol) = (1, inFeatures);
        (s.CRow, s.CCol) = (outFeatures, 1);
        s.BiasMode = b is null ? 0 : 2;
        Gemm(s, V(x), V(w), V(y), VOrEmpty(b), 1);
    }

    public void LinearBackward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db)
    {
        // dW (out × in) = dyᵀ (out × N) · x (N × in); K = N = 0 gives zeros.
        var s = Shape(outFeatures, inFeatures, n, batches: 1);
        (s.ARow, s.ACol) = (1, outFeatures);
        (s.BRow, s.BCol) = (inFeatures, 1);
        (s.CRow, s.CCol) = (inFeatures, 1);
        Gemm(s, V(dy), V(x), V(dw), ArrayView<float>.Empty, 1);
        if (db is not null)
            ChannelSums(new ChannelLayout(n, outFeatures, 1), V(dy), V(db));
        if (dx is null || n == 0) return;
        // dx (N × in) = dy (N × out) · W (out × in)
        var d = Shape(n, inFeatures, outFeatures, batches: 1);
        (d.ARow, d.ACol) = (outFeatures, 1);
        (d.BRow, d.BCol) = (inFeatures, 1);
        (d.CRow, d.CCol) = (inFeatures, 1);
        Gemm(d, V(dy), V(w), V(dx), ArrayView<float>.Empty, 1);
    }

    /// <summary>A product shape with no outer reduction blocks, strides to be filled in.</summary>
    private static GemmShape Shape(int m, int n, int k, int batches) =>
        new() { M = m, N = n, K = k, KOuter = 1, KOuterTotal = batches };

    /// <summary>Launches <paramref name="batches"/> products of shape <paramref name="s"/>: one group per tile of C.</summary>
    private void Gemm(GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias, int batches)
    {
        if (s.M == 0 || s.N == 0 || batches == 0) return;
        s.Side = _gemmSide;
        s.SliceK = GemmKernels.SharedFloats / (4 * _gemmSide);
        int tile = 4 * _gemmSide;
        var grid = new Index3D((s.N + tile - 1) / tile, (s.M + tile - 1) / tile, batches);
        _gemm(new KernelConfig(grid, new Index3D(_gemmSide * _gemmSide, 1, 1)), s, a, b, c, bias);
    }

    /// <summary>sum[c] = Σ over n, s of g[n, c, s], float64 accumulation (bias gradients).</summary>
    private void ChannelSums(ChannelLayout layout, ArrayView<float> g, ArrayView<float> sum)
    {
        if (layout.Channels == 0) return;
        _sumsToFloat(ReduceConfig(layout.Channels), layout, g, ArrayView<float>.Empty, sum, ArrayView<float>.Empty, 0);
    }

    private static bool IsPointwise(in ConvGeometry g) =>
        g.KernelH == 1 && g.KernelW == 1 && g.Stride == 1 && g.Padding == 0;

    /// <summary>Samples per chunk: as many as <see cref="ColumnBudget"/> holds (at least one).</summary>
    private static int ChunkSize(in ConvGeometry g, bool pointwise)
    {
        if (pointwise || g.N == 0) return Math.Max(g.N, 1);
        long perSample = (long)g.PatchSize * g.OutHeight * g.OutWidth;
        return (int)Math.Clamp(ColumnBudget / perSample, 1, g.N);
    }

    private static void Validate(in ConvGeometry g)
    {
        if (g.N < 0 || g.InChannels <= 0 || g.OutChannels <= 0 || g.KernelH <= 0 || g.KernelW <= 0 || g.Stride <= 0
            || g.Padding < 0 || g.OutHeight <= 0 || g.OutWidth <= 0)
            throw new ArgumentException($"Invalid convolution geometry {g}.", nameof(g));
    }
}
