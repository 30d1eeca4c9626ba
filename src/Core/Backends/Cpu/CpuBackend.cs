using System.Runtime.CompilerServices;
using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// The fast CPU backend: im2col + a packed, register-tiled SGEMM for convolutions and
/// linear layers (<see cref="CpuConv"/>, <see cref="CpuLinear"/>), vectorized elementwise
/// kernels, all parallel over a fixed pool of <c>threads</c> threads. Work is split into
/// chunks whose boundaries depend only on the shapes, and every reduction is combined in
/// a fixed order, so results are bit-identical from run to run.
/// The batch-norm and group-norm kernels are in CpuBackend.Normalization.cs, the loss and
/// optimizer in CpuBackend.Training.cs.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    private readonly CpuThreadPool _pool;
    private readonly CpuConvWorkspace _convWorkspace = new();

    public CpuBackend(int threads = 0)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 0 (0 = all cores)");
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        _pool = new CpuThreadPool(Threads);
    }

    public string Name => "cpu";

    public int Threads { get; }

    public Tensor Allocate(params int[] shape) => new CpuTensor((int[])shape.Clone());

    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        CheckLength(source.Length, destination, nameof(source));
        source.CopyTo(D(destination));
    }

    public void Download(Tensor source, Span<float> destination)
    {
        CheckLength(destination.Length, source, nameof(destination));
        D(source).AsSpan().CopyTo(destination);
    }

    public void Fill(Tensor tensor, float value) => D(tensor).AsSpan().Fill(value);

    public void Copy(Tensor source, Tensor destination)
    {
        CheckLength(source.Length, destination, nameof(source));
        D(source).AsSpan().CopyTo(D(destination));
    }

    public void Conv2dForward(in ConvGeometry g, Tensor x, Tensor w, Tensor? bias, Tensor y)
    {
        fixed (float* px = D(x), pw = D(w), pb = DOrNull(bias), py = D(y))
            CpuConv.Forward(_pool, g, px, pw, bias is null ? null : pb, py, _convWorkspace);
    }

    public void Conv2dBackward(in ConvGeometry g, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db)
    {
        fixed (float* px = D(x), pw = D(w), pdy = D(dy), pdx = DOrNull(dx), pdw = D(dw), pdb = DOrNull(db))
            CpuConv.Backward(_pool, g, px, pw, pdy, dx is null ? null : pdx, pdw, db is null ? null : pdb, _convWorkspace);
    }

    public void LinearForward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        fixed (float* px = D(x), pw = D(w), pb = DOrNull(b), py = D(y))
            CpuLinear.Forward(_pool, n, inFeatures, outFeatures, px, pw, b is null ? null : pb, py);
    }

    public void LinearBackward(int n, int inFeatures, int outFeatures, Tensor x, Tensor w, Tensor dy, Tensor? dx, Tensor dw, Tensor? db)
    {
        fixed (float* px = D(x), pw = D(w), pdy = D(dy), pdx = DOrNull(dx), pdw = D(dw), pdb = DOrNull(db))
            CpuLinear.Backward(_pool, n, inFeatures, outFeatures, px, pw, pdy, dx is null ? null : pdx, pdw, db is null ? null : pdb);
    }

    public void ReluForward(Tensor x, Tensor y)
    {
        float[] src = D(x), dst = D(y);
        CheckLength(src.Length, y, nameof(y));
        ForChunks(src.Length, (start, end) => CpuElementwise.Relu(src.AsSpan(start, end - start), dst.AsSpan(start, end - start)));
    }

    public void ReluBackward(Tensor y, Tensor dy, Tensor dx)
    {
        float[] yy = D(y), g = D(dy), d = D(dx);
        ForChunks(yy.Length, (start, end) =>
            CpuElementwise.ReluBackward(yy.AsSpan(start, end - start), g.AsSpan(start, end - start), d.AsSpan(start, end - start)));
    }

    public void SigmoidForward(Tensor x, Tensor y)
    {
        float[] src = D(x), dst = D(y);
        ForChunks(src.Length, (start, end) => CpuElementwise.Sigmoid(src.AsSpan(start, end - start), dst.AsSpan(start, end - start)));
    }

    public void SigmoidBackward(Tensor y, Tensor dy, Tensor dx)
    {
        float[] yy = D(y), g = D(dy), d = D(dx);
        ForChunks(yy.Length, (start, end) =>
            CpuElementwise.SigmoidBackward(yy.AsSpan(start, end - start), g.AsSpan(start, end - start), d.AsSpan(start, end - start)));
    }

    public void MaxPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        CheckPool(g, x, y);
        float[] src = D(x), dst = D(y);
        PoolGeometry geo = g;
        ForChunks(g.N * g.Channels, (start, end) => CpuPooling.MaxForward(geo, src, dst, start, end), minChunk: 1);
    }

    public void MaxPool2dBackward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        CheckPool(g, x, y);
        CheckPool(g, dx, dy);
        float[] src = D(x), dst = D(y), g1 = D(dy), g0 = D(dx);
        PoolGeometry geo = g;
        ForChunks(g.N * g.Channels, (start, end) => CpuPooling.MaxBackward(geo, src, dst, g1, g0, start, end), minChunk: 1);
    }

    public void Dispose()
    {
        _pool.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Runs body over [0, count) split into contiguous chunks of at least minChunk items, a
    /// few per thread. The split depends only on count and the thread count.
    /// </summary>
    private void ForChunks(int count, Action<int, int> body, int minChunk = 16384)
    {
        if (count == 0) return;
        int chunks = Math.Clamp(count / Math.Max(1, minChunk), 1, Threads * 4);
        if (chunks == 1 || Threads == 1)
        {
            body(0, count);
            return;
        }
        _pool.For(chunks, i => body((int)((long)count * i / chunks), (int)((long)count * (i + 1) / chunks)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] D(Tensor t) =>
        t as CpuTensor is { } c ? c.Data : throw new ArgumentException($"tensor {t} does not belong to the CPU backend");

    private static float[]? DOrNull(Tensor? t) => t is null ? null : D(t);

    private static void CheckLength(int length, Tensor t, string what)
    {
        if (length != t.Length)
            throw new ArgumentException($"{what}: {length} elements for a tensor of shape {t} ({t.Length} elements)");
    }
}
