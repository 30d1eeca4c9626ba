using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Graph plumbing (residual sums, dropout products, channel copies for concatenation), average
/// pooling and dropout. Elementwise work is split into shape-determined chunks over the pool;
/// every reduction (an average) is a float32 sum in index order, so results are bit-identical
/// from run to run and for any thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    private ulong[] _dropoutKeys = [];

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        float[] pa = D(a), pb = D(b), py = D(y);
        OpChecks.Length(pa.Length, b, nameof(b));
        OpChecks.Length(pa.Length, y, nameof(y));
        ForChunks(pa.Length, (pa, pb, py), static (in (float[] A, float[] B, float[] Y) t, int start, int end) =>
            TensorPrimitives.Add(t.A.AsSpan(start, end - start), t.B.AsSpan(start, end - start), t.Y.AsSpan(start, end - start)));
    }

    public void AddRelu(Tensor a, Tensor b, Tensor y)
    {
        float[] pa = D(a), pb = D(b), py = D(y);
        OpChecks.Length(pa.Length, b, nameof(b));
        OpChecks.Length(pa.Length, y, nameof(y));
        ForChunks(pa.Length, (pa, pb, py), static (in (float[] A, float[] B, float[] Y) t, int start, int end) =>
            CpuElementwise.AddRelu(t.A.AsSpan(start, end - start), t.B.AsSpan(start, end - start), t.Y.AsSpan(start, end - start)));
    }

    public void AddReluBackward(Tensor a, Tensor b, Tensor y, Tensor dx)
    {
        float[] pa = D(a), pb = D(b), py = D(y), pd = D(dx);
        OpChecks.Length(pa.Length, b, nameof(b));
        OpChecks.Length(pa.Length, y, nameof(y));
        OpChecks.Length(pa.Length, dx, nameof(dx));
        ForChunks(pa.Length, (pa, pb, py, pd), static (in (float[] A, float[] B, float[] Y, float[] Dx) t, int start, int end) =>
            CpuRowKernels.AddReluBackward(t.A.AsSpan(start, end - start), t.B.AsSpan(start, end - start), t.Y.AsSpan(start, end - start),
                t.Dx.AsSpan(start, end - start)));
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        float[] pa = D(a), pb = D(b), py = D(y);
        OpChecks.Length(pa.Length, b, nameof(b));
        OpChecks.Length(pa.Length, y, nameof(y));
        ForChunks(pa.Length, (pa, pb, py), static (in (float[] A, float[] B, float[] Y) t, int start, int end) =>
            TensorPrimitives.Multiply(t.A.AsSpan(start, end - start), t.B.AsSpan(start, end - start), t.Y.AsSpan(start, end - start)));
    }

    public void CopyChannels(in ChannelSlice slice, Tensor source, Tensor destination)
    {
        var s = slice;
        OpChecks.Slice(s, source, destination);
        float[] src = D(source), dst = D(destination);
        int run = s.Count * s.Spatial;
        if (run == 0) return;
        ForChunks(s.N, (s, src, dst), static (in (ChannelSlice S, float[] Src, float[] Dst) a, int start, int end) =>
        {
            var s = a.S;
            int run = s.Count * s.Spatial;
            for (int n = start; n < end; n++)
                a.Src.AsSpan((n * s.SrcChannels + s.SrcOffset) * s.Spatial, run).CopyTo(a.Dst.AsSpan((n * s.DstChannels + s.DstOffset) * s.Spatial, run));
        }, minChunk: Math.Max(1, 16384 / run));
    }

    public void AvgPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        OpChecks.Pool(g, x, y);
        float[] src = D(x), dst = D(y);
        ForChunks(g.N * g.Channels, (g, src, dst), static (in (PoolGeometry G, float[] X, float[] Y) a, int start, int end) =>
            CpuPooling.AvgForward(a.G, a.X, a.Y, start, end), minChunk: 1);
    }

    public void AvgPool2dBackward(in PoolGeometry g, Tensor dy, Tensor dx)
    {
        OpChecks.Pool(g, dx, dy);
        float[] g1 = D(dy), g0 = D(dx);
        ForChunks(g.N * g.Channels, (g, g1, g0), static (in (PoolGeometry G, float[] Dy, float[] Dx) a, int start, int end) =>
            CpuPooling.AvgBackward(a.G, a.Dy, a.Dx, start, end), minChunk: 1);
    }

    public void GlobalAvgPoolForward(in ChannelLayout layout, Tensor x, Tensor y)
    {
        int rows = layout.N * layout.Channels, s = layout.Spatial;
        OpChecks.Length(rows * s, x, nameof(x));
        OpChecks.Length(rows, y, nameof(y));
        float[] src = D(x), dst = D(y);
        ForChunks(rows, (s, src, dst), static (in (int S, float[] X, float[] Y) a, int start, int end) =>
        {
            for (int r = start; r < end; r++)
            {
                float sum = 0f;
                foreach (float v in a.X.AsSpan(r * a.S, a.S)) sum += v;
                a.Y[r] = sum / a.S;
            }
        }, minChunk: Math.Max(1, 16384 / Math.Max(1, s)));
    }

    public void GlobalAvgPoolBackward(in ChannelLayout layout, Tensor dy, Tensor dx)
    {
        int rows = layout.N * layout.Channels, s = layout.Spatial;
        OpChecks.Length(rows, dy, nameof(dy));
        OpChecks.Length(rows * s, dx, nameof(dx));
        float[] g1 = D(dy), g0 = D(dx);
        ForChunks(rows, (s, g1, g0), static (in (int S, float[] Dy, float[] Dx) a, int start, int end) =>
        {
            for (int r = start; r < end; r++) a.Dx.AsSpan(r * a.S, a.S).Fill(a.Dy[r] / a.S);
        }, minChunk: Math.Max(1, 16384 / Math.Max(1, s)));
    }

    public void DropoutForward(int n, int sampleSize, ReadOnlySpan<ulong> sampleKeys, float p, Tensor x, Tensor mask, Tensor y)
    {
        OpChecks.Dropout(n, sampleSize, sampleKeys.Length, p, x, mask, y);
        float[] src = D(x), m = D(mask), dst = D(y);
        if (_dropoutKeys.Length < n) _dropoutKeys = new ulong[n];
        sampleKeys.CopyTo(_dropoutKeys);
        ulong[] keys = _dropoutKeys;
        float keep = 1f / (1f - p);
        ForChunks(n, (src, m, dst, keys, sampleSize, p, keep),
            static (in (float[] X, float[] Mask, float[] Y, ulong[] Keys, int Size, float P, float Keep) a, int start, int end) =>
            {
                int size = a.Size;
                for (int i = start; i < end; i++)
                {
                    int at = i * size;
                    for (int e = 0; e < size; e++) a.Mask[at + e] = DropoutMask.Keep(a.Keys[i], e, a.P) ? a.Keep : 0f;
                    TensorPrimitives.Multiply(a.X.AsSpan(at, size), a.Mask.AsSpan(at, size), a.Y.AsSpan(at, size));
                }
            }, minChunk: Math.Max(1, 16384 / Math.Max(1, sampleSize)));
    }

}
