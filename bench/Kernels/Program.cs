using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Runtime.InteropServices;
using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;

// Median-of-N GFLOP/s for the CPU kernels on the model's shapes. Run in Release:
//   dotnet run -c Release --project bench/Kernels [-- reps-multiplier [section]]
// section: sgemm, conv or linear runs only that part (between two calibrations). Another instruction-set
// path: DOTNET_EnableAVX512=0 (AVX2), DOTNET_EnableAVX2=0 (128-bit), DOTNET_EnableHWIntrinsic=0 (scalar).
// Every figure is 2·(multiply-adds) / median wall time of one call, after warm-up calls.
double scale = args.Length > 0 ? double.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 1;
string section = args.Length > 1 ? args[1] : "";
if (BestOf)
    Console.WriteLine("BNDIST_BENCH_BEST=1: every figure from the fastest repetition, not the median (for a machine shared with other jobs)");
bool Section(string name) => section.Length == 0 || section == name;
Console.WriteLine($"{Environment.ProcessorCount} logical CPUs, kernels: {CpuDispatch.Describe()}");
using var pool1 = new CpuThreadPool(1);
using var pool2 = new CpuThreadPool(2);
CpuThreadPool[] pools = [pool1, pool2];

// Calibration: what the FMA units deliver right now on 1 and on 2 threads. On a shared VM the two vCPUs are
// not always two physical cores' worth of compute; read the 2-thread figures below against this line.
ReportPeak("FMA peak (register-only loop)");
Report("pool.For(2, empty) round trip", Median(() => pool2.For(2, static _ => { }), Reps(2000)) * 1e6, "µs");

foreach (int s in Section("sgemm") ? new[] { 256, 512, 1024 } : [])
{
    var (a, b, c) = (Rand(s * s), Rand(s * s), Rand(s * s));
    foreach (var pool in pools)
    {
        double t = Median(() => Gemm(pool, s, s, s, a, b, c), Reps(s >= 1024 ? 9 : 41));
        Report($"sgemm {s}³, {pool.Threads} thread(s)", 2.0 * s * s * s / t / 1e9, "GFLOP/s");
    }
}

// The model's per-sample GEMMs for conv2 (serial: the conv runs one sample per thread).
foreach (var (ta, tb, m, n, k, what) in !Section("sgemm") ? [] : new[] { (false, false, 64, 196, 288, "conv2 fwd  W·col"), (false, true, 64, 288, 196, "conv2 dW   dy·colᵀ"), (true, false, 288, 196, 64, "conv2 dcol Wᵀ·dy") })
{
    var (a, b, c) = (Rand(m * k), Rand(k * n), Rand(m * n));
    double t = Median(() => SerialGemm(ta, tb, m, n, k, a, b, c), Reps(301));
    Report($"sgemm {m}×{n}×{k} tA={ta} tB={tb} ({what}), serial", 2.0 * m * n * k / t / 1e9, "GFLOP/s");
}

using var ws = new CpuConvWorkspace();
var conv1 = new ConvGeometry(128, 1, 28, 28, 32, 3, 3, 1, 1);
var conv2 = new ConvGeometry(128, 32, 14, 14, 64, 3, 3, 1, 1);
foreach (var (g, name, withDx) in !Section("conv") ? [] : new[] { (conv1, "conv1 1→32 28×28", false), (conv2, "conv2 32→64 14×14", true) })
{
    var x = Rand((long)g.N * g.InChannels * g.Height * g.Width);
    var w = Rand((long)g.OutChannels * g.PatchSize);
    var y = Rand((long)g.N * g.OutChannels * g.OutHeight * g.OutWidth);
    var dy = Rand((long)g.N * g.OutChannels * g.OutHeight * g.OutWidth);
    var dx = Rand((long)g.N * g.InChannels * g.Height * g.Width);
    var dw = Rand((long)g.OutChannels * g.PatchSize);
    foreach (var pool in pools)
    {
        double tf = Median(() => Conv(pool, g, x, w, y, ws, fwd: true, dx: null, dy, dw), Reps(15));
        double tb = Median(() => Conv(pool, g, x, w, y, ws, fwd: false, withDx ? dx : null, dy, dw), Reps(15));
        Report($"{name} N=128 fwd, {pool.Threads} thread(s)", g.ForwardFlops / tf / 1e9, $"GFLOP/s  ({tf * 1e3:F2} ms)");
        Report($"{name} N=128 bwd{(withDx ? "" : " (no dx)")}, {pool.Threads} thread(s)", (withDx ? 2 : 1) * g.ForwardFlops / tb / 1e9, $"GFLOP/s  ({tb * 1e3:F2} ms)");
    }
}

// resnet20's 3×3 "same" convolutions (issue 12): whole calls at batch 128, and the per-sample pieces of the backward
// pass on one thread (im2col, the dW and dcol GEMMs, col2im).
foreach (var (c, hw) in !Section("resnet") ? [] : new[] { (16, 28), (32, 14), (64, 7) })
{
    var g = new ConvGeometry(128, c, hw, hw, c, 3, 3, 1, 1);
    var x = Rand((long)g.N * c * hw * hw);
    var w = Rand((long)c * g.PatchSize);
    var y = Rand((long)g.N * c * hw * hw);
    var dy = Rand((long)g.N * c * hw * hw);
    var dx = Rand((long)g.N * c * hw * hw);
    var dw = Rand((long)c * g.PatchSize);
    var col = Rand((long)g.PatchSize * hw * hw);
    string name = $"resnet {c}→{c} {hw}×{hw}";
    foreach (var pool in pools)
    {
        double tf = Median(() => Conv(pool, g, x, w, y, ws, fwd: true, dx: null, dy, dw), Reps(15));
        double tb = Median(() => Conv(pool, g, x, w, y, ws, fwd: false, dx, dy, dw), Reps(15));
        Report($"{name} N=128 fwd, {pool.Threads} thread(s)", g.ForwardFlops / tf / 1e9, $"GFLOP/s  ({tf * 1e3:F2} ms)");
        Report($"{name} N=128 bwd, {pool.Threads} thread(s)", 2 * g.ForwardFlops / tb / 1e9, $"GFLOP/s  ({tb * 1e3:F2} ms)");
    }
    int q = hw * hw, patch = g.PatchSize;
    var one = g with { N = 1 };
    double tu = Median(() => Unfold(one, x, col), Reps(301));
    double tdw = Median(() => SerialGemm(false, true, c, patch, q, dy, col, dw), Reps(301));
    double tdc = Median(() => SerialGemm(true, false, patch, q, c, w, dy, col), Reps(301));
    double tfo = Median(() => Fold(one, col, dx), Reps(301));
    Report($"{name} per sample: unfold / dW / dcol / fold", tu * 1e6, $"/ {tdw * 1e6:F1} / {tdc * 1e6:F1} / {tfo * 1e6:F1} µs");
    if (CpuDirectConv.Supports(g))
    {
        var padded = Rand(CpuDirectConv.PaddedImageSize(g, c));
        var packed = Rand((long)patch * CpuDirectConv.PaddedChannels(c));
        var offsets = Rand(patch);
        Direct(g, x, w, padded, packed, offsets, y, col, dy, dw, 0);
        double tp = Median(() => Direct(g, x, w, padded, packed, offsets, y, col, dy, dw, 1), Reps(301));
        double tc = Median(() => Direct(g, x, w, padded, packed, offsets, y, col, dy, dw, 2), Reps(301));
        double tt = Median(() => Direct(g, x, w, padded, packed, offsets, y, col, dy, dw, 3), Reps(301));
        double tw = Median(() => Direct(g, x, w, padded, packed, offsets, y, col, dy, dw, 4), Reps(301));
        Report($"{name} per sample, direct: pad / correlate / dyᵀ / dW", tp * 1e6, $"/ {tc * 1e6:F1} / {tt * 1e6:F1} / {tw * 1e6:F1} µs");
    }
}

// resnet20's downsampling convolutions (stride 2): forward and backward at batch 128 on 2 threads.
foreach (var g in !Section("resnet") ? [] : new[] { new ConvGeometry(128, 16, 28, 28, 32, 3, 3, 2, 1), new ConvGeometry(128, 32, 14, 14, 64, 3, 3, 2, 1),
    new ConvGeometry(128, 16, 28, 28, 32, 1, 1, 2, 0), new ConvGeometry(128, 32, 14, 14, 64, 1, 1, 2, 0) })
{
    var x = Rand((long)g.N * g.InChannels * g.Height * g.Width);
    var w = Rand((long)g.OutChannels * g.PatchSize);
    var y = Rand((long)g.N * g.OutChannels * g.OutHeight * g.OutWidth);
    var dy = Rand((long)g.N * g.OutChannels * g.OutHeight * g.OutWidth);
    var dx = Rand((long)g.N * g.InChannels * g.Height * g.Width);
    var dw = Rand((long)g.OutChannels * g.PatchSize);
    double tf = Median(() => Conv(pool2, g, x, w, y, ws, fwd: true, dx: null, dy, dw), Reps(15));
    double tb = Median(() => Conv(pool2, g, x, w, y, ws, fwd: false, dx, dy, dw), Reps(15));
    Report($"resnet {g.InChannels}→{g.OutChannels} {g.KernelH}×{g.KernelW}/2 {g.Height}×{g.Width} fwd, 2 threads", g.ForwardFlops / tf / 1e9, $"GFLOP/s  ({tf * 1e3:F2} ms)");
    Report($"resnet {g.InChannels}→{g.OutChannels} {g.KernelH}×{g.KernelW}/2 {g.Height}×{g.Width} bwd, 2 threads", 2 * g.ForwardFlops / tb / 1e9, $"GFLOP/s  ({tb * 1e3:F2} ms)");
}

if (Section("linear"))
{
    const int n = 128, fin = 3136, fout = 128;
    var (x, w, bias, y) = (Rand(n * fin), Rand(fout * fin), Rand(fout), Rand(n * fout));
    var (dx, dw, db) = (Rand(n * fin), Rand(fout * fin), Rand(fout));
    foreach (var pool in pools)
    {
        double tf = Median(() => Linear(pool, n, fin, fout, x, w, bias, y, null, null, null, fwd: true), Reps(41));
        double tb = Median(() => Linear(pool, n, fin, fout, x, w, bias, y, dx, dw, db, fwd: false), Reps(41));
        Report($"linear 128×3136→128 fwd, {pool.Threads} thread(s)", 2.0 * n * fin * fout / tf / 1e9, $"GFLOP/s  ({tf * 1e3:F2} ms)");
        Report($"linear 128×3136→128 bwd, {pool.Threads} thread(s)", 4.0 * n * fin * fout / tb / 1e9, $"GFLOP/s  ({tb * 1e3:F2} ms)");
    }
}

ReportPeak("FMA peak again (end of run)");

void ReportPeak(string what)
{
    long iters = CpuDispatch.Current == CpuIsa.Scalar ? 4_000_000 : 1_000_000; // ≈1–2 ms: short enough to fit between preemptions
    double flops = iters * Peak.FlopsPerIteration;
    double t1 = Median(() => Peak.Run(iters), 21);
    double t2 = Median(() => pool2.For(2, _ => Peak.Run(iters)), 21);
    Console.WriteLine($"{what,-58} {flops / t1 / 1e9,8:F1} GFLOP/s on 1 thread, {2 * flops / t2 / 1e9:F1} on 2");
}

int Reps(int n) => Math.Max(3, (int)(n * scale)) | 1;

static void Report(string what, double value, string unit) => Console.WriteLine($"{what,-58} {value,8:F1} {unit}");

static unsafe void Gemm(CpuThreadPool pool, int m, int n, int k, Buf a, Buf b, Buf c) =>
    Sgemm.Multiply(pool, false, false, m, n, k, 1f, a.P, k, b.P, n, 0f, c.P, n);

static unsafe void SerialGemm(bool ta, bool tb, int m, int n, int k, Buf a, Buf b, Buf c) =>
    Sgemm.Multiply(ta, tb, m, n, k, 1f, a.P, ta ? m : k, b.P, tb ? k : n, 0f, c.P, n);

static unsafe void Conv(CpuThreadPool pool, ConvGeometry g, Buf x, Buf w, Buf y, CpuConvWorkspace ws, bool fwd, Buf? dx, Buf dy, Buf dw)
{
    if (fwd)
        CpuConv.Forward(pool, g, x.P, w.P, null, y.P, ws);
    else
        CpuConv.Backward(pool, g, x.P, w.P, dy.P, dx is null ? null : dx.P, dw.P, null, ws);
}

static unsafe void Direct(ConvGeometry g, Buf x, Buf w, Buf padded, Buf packed, Buf offsets, Buf y, Buf dyT, Buf dy, Buf acc, int part)
{
    int c = g.InChannels;
    switch (part)
    {
        case 0:
            new Span<float>(padded.P, (int)CpuDirectConv.PaddedImageSize(g, c)).Clear();
            CpuDirectConv.PackForward(g, w.P, packed.P);
            CpuDirectConv.Offsets(g, c, (int*)offsets.P);
            break;
        case 1: CpuDirectConv.Pad(g, c, x.P, padded.P); break;
        case 2: CpuDirectConv.Correlate(g, c, g.OutChannels, padded.P, packed.P, (int*)offsets.P, null, y.P); break;
        case 3: CpuDirectConv.TransposeGradient(g.OutChannels, g.Height * g.Width, dy.P, dyT.P); break;
        default: if (CpuDirectConv.SupportsWeightGradient(g)) CpuDirectConv.WeightGradient(g, padded.P, dyT.P, acc.P, true); break;
    }
}

static unsafe void Unfold(ConvGeometry g, Buf x, Buf col) => Im2Col.Unfold(g, x.P, col.P);

static unsafe void Fold(ConvGeometry g, Buf col, Buf x) => Im2Col.FoldAccumulate(g, col.P, x.P);

static unsafe void Linear(CpuThreadPool pool, int n, int fin, int fout, Buf x, Buf w, Buf b, Buf y, Buf? dx, Buf? dw, Buf? db, bool fwd)
{
    if (fwd)
        CpuLinear.Forward(pool, n, fin, fout, x.P, w.P, b.P, y.P);
    else
        CpuLinear.Backward(pool, n, fin, fout, x.P, w.P, y.P, dx!.P, dw!.P, db!.P);
}

static double Median(Action run, int reps)
{
    for (int i = 0; i < 3; i++)
        run();
    var times = new double[reps];
    for (int i = 0; i < reps; i++)
    {
        long t0 = Stopwatch.GetTimestamp();
        run();
        times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
    }
    Array.Sort(times);
    return BestOf ? times[0] : times[reps / 2];
}

static Buf Rand(long count)
{
    var buf = new Buf(count);
    var rng = new Random(42);
    unsafe
    {
        for (long i = 0; i < count; i++)
            buf.P[i] = rng.NextSingle() - 0.5f;
    }
    return buf;
}

/// <summary>A 64-byte aligned native float array (freed at process exit).</summary>
internal sealed unsafe class Buf(long count)
{
    public readonly float* P = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
}

/// <summary>
/// Twelve independent FMA chains of the widest vectors the kernels use on this machine (CpuDispatch.Current):
/// the FMA throughput of that instruction set, free of memory effects. Zen 3 (AVX2): 2 pipes × 8 floats × 2 FLOP
/// = 32 FLOP/cycle; Zen 4 (AVX-512, double-pumped): 2 × 16 × 2 / 2 = 32 as well.
/// </summary>
internal static class Peak
{
    /// <summary>FLOP per iteration of <see cref="Run"/>: 12 chains × lanes × 2.</summary>
    public static double FlopsPerIteration => 12 * 2.0 * CpuDispatch.Current switch
    {
        CpuIsa.Avx512 => 16,
        CpuIsa.Avx2 => 8,
        CpuIsa.Vector128 => 4,
        _ => 1,
    };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Run(long iters) => CpuDispatch.Current switch
    {
        CpuIsa.Avx512 => Run512(iters),
        CpuIsa.Avx2 => Run256(iters),
        CpuIsa.Vector128 => Run128(iters),
        _ => RunScalar(iters),
    };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Run512(long iters)
    {
        var a = Vector512.Create(1.0001f);
        var b = Vector512.Create(0.9999f);
        Vector512<float> c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a, c11 = b;
        for (long i = 0; i < iters; i++)
        {
            c0 = Avx512F.FusedMultiplyAdd(c0, b, a); c1 = Avx512F.FusedMultiplyAdd(c1, b, a); c2 = Avx512F.FusedMultiplyAdd(c2, b, a);
            c3 = Avx512F.FusedMultiplyAdd(c3, b, a); c4 = Avx512F.FusedMultiplyAdd(c4, b, a); c5 = Avx512F.FusedMultiplyAdd(c5, b, a);
            c6 = Avx512F.FusedMultiplyAdd(c6, b, a); c7 = Avx512F.FusedMultiplyAdd(c7, b, a); c8 = Avx512F.FusedMultiplyAdd(c8, b, a);
            c9 = Avx512F.FusedMultiplyAdd(c9, b, a); c10 = Avx512F.FusedMultiplyAdd(c10, b, a); c11 = Avx512F.FusedMultiplyAdd(c11, b, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Run256(long iters)
    {
        var a = Vector256.Create(1.0001f);
        var b = Vector256.Create(0.9999f);
        Vector256<float> c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a, c11 = b;
        for (long i = 0; i < iters; i++)
        {
            c0 = Fma.MultiplyAdd(c0, b, a); c1 = Fma.MultiplyAdd(c1, b, a); c2 = Fma.MultiplyAdd(c2, b, a);
            c3 = Fma.MultiplyAdd(c3, b, a); c4 = Fma.MultiplyAdd(c4, b, a); c5 = Fma.MultiplyAdd(c5, b, a);
            c6 = Fma.MultiplyAdd(c6, b, a); c7 = Fma.MultiplyAdd(c7, b, a); c8 = Fma.MultiplyAdd(c8, b, a);
            c9 = Fma.MultiplyAdd(c9, b, a); c10 = Fma.MultiplyAdd(c10, b, a); c11 = Fma.MultiplyAdd(c11, b, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Run128(long iters)
    {
        var a = Vector128.Create(1.0001f);
        var b = Vector128.Create(0.9999f);
        Vector128<float> c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a, c11 = b;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector128.MultiplyAddEstimate(c0, b, a); c1 = Vector128.MultiplyAddEstimate(c1, b, a); c2 = Vector128.MultiplyAddEstimate(c2, b, a);
            c3 = Vector128.MultiplyAddEstimate(c3, b, a); c4 = Vector128.MultiplyAddEstimate(c4, b, a); c5 = Vector128.MultiplyAddEstimate(c5, b, a);
            c6 = Vector128.MultiplyAddEstimate(c6, b, a); c7 = Vector128.MultiplyAddEstimate(c7, b, a); c8 = Vector128.MultiplyAddEstimate(c8, b, a);
            c9 = Vector128.MultiplyAddEstimate(c9, b, a); c10 = Vector128.MultiplyAddEstimate(c10, b, a); c11 = Vector128.MultiplyAddEstimate(c11, b, a);
        }
        return Vector128.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float RunScalar(long iters)
    {
        float a = 1.0001f, b = 0.9999f;
        float c0 = a, c1 = b, c2 = a, c3 = b, c4 = a, c5 = b, c6 = a, c7 = b, c8 = a, c9 = b, c10 = a, c11 = b;
        for (long i = 0; i < iters; i++)
        {
            c0 = c0 * b + a; c1 = c1 * b + a; c2 = c2 * b + a; c3 = c3 * b + a; c4 = c4 * b + a; c5 = c5 * b + a;
            c6 = c6 * b + a; c7 = c7 * b + a; c8 = c8 * b + a; c9 = c9 * b + a; c10 = c10 * b + a; c11 = c11 * b + a;
        }
        return c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
    }
}

/// <summary>BNDIST_BENCH_BEST=1: report the fastest repetition — what the kernel does when it has the core to itself.</summary>
partial class Program
{
    internal static readonly bool BestOf = Environment.GetEnvironmentVariable("BNDIST_BENCH_BEST") == "1";
}
