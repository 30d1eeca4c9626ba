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
        OpChecks.Length(source.Length, destination, nameof(source));
        source.CopyTo(D(destination));
    }

    public void Download(Tensor source, Span<float> destination)
    {
        OpChecks.Length(destination.Length, source, nameof(destination));
        D(source).AsSpan().CopyTo(destination);
    }

    public bool TryGetHostMemory(Tensor tensor, out Memory<float> memory)
    {
        memory = D(tensor);
        return true;
    }

    public void Fill(Tensor tensor, float value) => D(tensor).AsSpan().Fill(value);

    public void Copy(Tensor source, Tensor destination)
    {
        OpChecks.Length(source.Length, destination, nameof(source));
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
        OpChecks.Length(src.Length, y, nameof(y));
        ForChunks(src.Length, (src, dst), static (in (float[] X, float[] Y) a, int start, int end) =>
            CpuElementwise.Relu(a.X.AsSpan(start, end - start), a.Y.AsSpan(start, end - start)));
    }

    public void ReluBackward(Tensor y, Tensor dy, Tensor dx)
    {
        float[] yy = D(y), g = D(dy), d = D(dx);
        ForChunks(yy.Length, (yy, g, d), static (in (float[] Y, float[] Dy, float[] Dx) a, int start, int end) =>
            CpuElementwise.ReluBackward(a.Y.AsSpan(start, end - start), a.Dy.AsSpan(start, end - start), a.Dx.AsSpan(start, end - start)));
    }

    public void SigmoidForward(Tensor x, Tensor y)
    {
        float[] src = D(x), dst = D(y);
        ForChunks(src.Length, (src, dst), static (in (float[] X, float[] Y) a, int start, int end) =>
            CpuElementwise.Sigmoid(a.X.AsSpan(start, end - start), a.Y.AsSpan(start, end - start)));
    }

    public void SigmoidBackward(Tensor y, Tensor dy, Tensor dx)
    {
        float[] yy = D(y), g = D(dy), d = D(dx);
        ForChunks(yy.Length, (yy, g, d), static (in (float[] Y, float[] Dy, float[] Dx) a, int start, int end) =>
            CpuElementwise.SigmoidBackward(a.Y.AsSpan(start, end - start), a.Dy.AsSpan(start, end - start), a.Dx.AsSpan(start, end - start)));
    }

    public void MaxPool2dForward(in PoolGeometry g, Tensor x, Tensor y)
    {
        OpChecks.Pool(g, x, y);
        float[] src = D(x), dst = D(y);
        ForChunks(g.N * g.Channels, (g, src, dst), static (in (PoolGeometry G, float[] X, float[] Y) a, int start, int end) =>
            CpuPooling.MaxForward(a.G, a.X, a.Y, start, end), minChunk: 1);
    }

    public void MaxPool2dBackward(in PoolGeometry g, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        OpChecks.Pool(g, x, y);
        OpChecks.Pool(g, dx, dy);
        float[] src = D(x), dst = D(y), g1 = D(dy), g0 = D(dx);
        ForChunks(g.N * g.Channels, (g, src, dst, g1, g0), static (in (PoolGeometry G, float[] X, float[] Y, float[] Dy, float[] Dx) a, int start, int end) =>
            CpuPooling.MaxBackward(a.G, a.X, a.Y, a.Dy, a.Dx, start, end), minChunk: 1);
    }

    public void Dispose()
    {
        _pool.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Runs body over [0, count) split into contiguous chunks of at least minChunk items, a
    /// few per thread. The split depends only on count and the thread count. The body gets
    /// its arguments by reference: with a static lambda a call allocates nothing
    /// (<see cref="ChunkRunner{TArgs}"/>).
    /// </summary>
    private void ForChunks<TArgs>(int count, in TArgs args, ChunkBody<TArgs> body, int minChunk = 16384)
    {
        if (count == 0) return;
        int chunks = Math.Clamp(count / Math.Max(1, minChunk), 1, Threads * 4);
        if (chunks == 1 || Threads == 1)
        {
            body(in args, 0, count);
            return;
        }
        ChunkRunner<TArgs>.OfThisThread.Run(_pool, args, body, count, chunks);
    }

    /// <summary>A parallel body over [start, end) with its arguments passed by reference.</summary>
    private delegate void ChunkBody<TArgs>(in TArgs args, int start, int end);

    /// <summary>
    /// The pool's body for one <see cref="ForChunks{TArgs}"/> call: the arguments sit in fields and
    /// the delegate is made once per calling thread and argument type, so a call allocates nothing.
    /// Calls do not nest (bodies never call ForChunks), so one runner per thread suffices.
    /// </summary>
    private sealed class ChunkRunner<TArgs>
    {
        [ThreadStatic] private static ChunkRunner<TArgs>? t_runner;
        private readonly Action<int> _chunk;
        private TArgs _args = default!;
        private ChunkBody<TArgs>? _body;
        private int _count, _chunks;

        private ChunkRunner() => _chunk = RunChunk;

        public static ChunkRunner<TArgs> OfThisThread => t_runner ??= new ChunkRunner<TArgs>();

        public void Run(CpuThreadPool pool, in TArgs args, ChunkBody<TArgs> body, int count, int chunks)
        {
            (_args, _body, _count, _chunks) = (args, body, count, chunks);
            try
            {
                pool.For(chunks, _chunk);
            }
            finally
            {
                (_args, _body) = (default!, null);
            }
        }

        private void RunChunk(int i) => _body!(in _args, (int)((long)_count * i / _chunks), (int)((long)_count * (i + 1) / _chunks));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float[] D(Tensor t) =>
        t as CpuTensor is { } c ? c.Data : throw new ArgumentException($"tensor {t} does not belong to the CPU backend");

    private static float[]? DOrNull(Tensor? t) => t is null ? null : D(t);

}
