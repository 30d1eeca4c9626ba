using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Tensors;
using BnDist.Core.Tests.Support;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// Every op of a backend under test against <see cref="CpuBackend"/> (the reference) on small
/// shapes: odd sizes that are not multiples of the 64×64 GEMM tile, stride 2, padding, bias,
/// N = 0, max-pool ties and padding, in-place sums, batch norm on data with mean/std = 1e4.
/// Bound to a device by a subclass; skipped where the device is absent. The graph ops of
/// issue 12 are in BackendOpsTests.Graph.cs.
/// </summary>
/// <remarks>
/// Tolerances, float32 unit roundoff u = 2⁻²⁴ (ε = 2u = 2⁻²³ ≈ 1.2e-7):
/// <list type="bullet">
/// <item>Products (conv, linear, their gradients, bias sums): a length-K float32 dot product in
/// any order is within K·u·Σ|a||b| of the exact value (Higham's γ_K), so two implementations
/// summing in different orders differ by at most 2·K·u·Σ|a||b| = K·ε·Σ|a||b|. Σ|a||b| is computed
/// per output by running the reference on |inputs| (all terms ≥ 0, so it rounds harmlessly).</item>
/// <item>Batch-norm sums: both backends accumulate exact float64 terms (x − k is a float32, its
/// square and g·x̂ are exact in float64) in different orders: |Δ| ≤ m·2⁻⁵³·Σ|terms| ≤ 1e-12·Σ|terms|
/// for the m ≤ 10⁴ values here.</item>
/// <item>Elementwise float32 ops in the same order of operations (ReLU, max pool, SGD, the
/// batch-norm elementwise stages): 2 ulps — bit equality on the CPU simulator except for a
/// rare double rounding of the emulated FMA, and room for a GPU compiler that contracts a·b + c
/// into an FMA.</item>
/// <item>Add, Multiply, channel copies, max pooling, the dropout mask and y = x·mask, the dy/S of
/// global average pooling's backward: each output is a copy or one correctly rounded operation
/// (no product feeding a sum that a compiler could contract into an FMA): exactly equal. The
/// dropout draw is integer hashing and a 24-bit integer times 2⁻²⁴, exact on every device, so
/// the masks are equal bit for bit: a single differing element is a wrong mask, not rounding.</item>
/// <item>Average pooling (and global average pooling): a sum of at most K² (S) float32 values,
/// possibly in another order, then a division by K² (S) — the product bound above with |b| = 1
/// and one more rounding: (K² + 1)·ε·Σ|x|/K², with Σ|x|/K² from the reference run on |x|.
/// Its backward sums dy/K² over at most ⌈K/S⌉² ≤ K² windows: the same bound on |dy|.</item>
/// <item>Sigmoid: the CPU rounds MathF.Exp and then the division; the kernel evaluates in float64
/// and rounds once: 4 ulps.</item>
/// <item>Group norm: float64 statistics in another order agree to ~1e-16; rounding the mean and
/// 1/σ to float32 can then differ by an ulp, which moves x̂ by ≤ 2 ulps of max |x̂|: 4 ulps of
/// the largest magnitude of the tensor.</item>
/// <item>Softmax cross-entropy: the loss is a float64 sum of float64 terms: 1e-12 relative.
/// dlogits = scale·(p − onehot) with p computed in float64 either way: 2 ulps of |scale|.</item>
/// </list>
/// </remarks>
public abstract partial class BackendOpsTests(BackendFixture fixture)
{
    private const double Eps32 = 1.0 / (1 << 23);
    private const float MinNormal = 1.17549435e-38f; // 2⁻¹²⁶

    protected IBackend Backend
    {
        get
        {
            Skip.If(fixture.Backend is null, fixture.Absent ?? "device absent");
            return fixture.Backend!;
        }
    }

    private CpuBackend Cpu => fixture.Reference;

    // ---- memory ---------------------------------------------------------------------------

    [SkippableFact]
    public void Allocate_Upload_Download_Fill_Copy_Reshape()
    {
        var b = Backend;
        using var t = b.Allocate(2, 3);
        Assert.Equal(new float[6], b.Read(t));
        float[] values = [1, 2, 3, 4, 5, 6];
        b.Upload(values, t);
        Assert.Equal(values, b.Read(t));
        var view = t.Reshape(3, 2);
        b.Fill(view, 7f);
        Assert.Equal(Enumerable.Repeat(7f, 6), b.Read(t)); // a reshape shares storage
        using var copy = b.Allocate(6);
        b.Upload(values, t);
        b.Copy(t, copy);
        Assert.Equal(values, b.Read(copy));
        using var empty = b.Allocate(0, 3);
        b.Fill(empty, 1f);
        b.Copy(empty, empty.Reshape(0));
        Assert.Empty(b.Read(empty));
        Assert.Throws<ArgumentException>(() => b.Upload(new float[5], t));
    }

    // ---- dense ----------------------------------------------------------------------------

    public static TheoryData<int, int, int, int, int, int, int, int, int, bool> ConvGeometries() => new()
    {
        // N, Cin, H, W, Cout, KH, KW, stride, pad, bias
        { 2, 3, 7, 6, 5, 3, 3, 1, 1, true },      // "same" 3×3, odd sizes
        { 3, 2, 9, 8, 4, 3, 3, 2, 1, false },     // stride 2, padding
        { 2, 3, 5, 5, 70, 1, 1, 1, 0, true },     // pointwise (no im2col), Cout spans two tiles
        { 1, 2, 6, 9, 3, 1, 3, 1, 1, true },      // non-square kernel
        { 2, 2, 7, 7, 3, 5, 5, 2, 2, true },      // kernel 5, stride 2, pad 2
        { 17, 1, 6, 6, 3, 3, 3, 1, 1, true },     // N = 17: dW split over 9 partitions, the last of one sample
        { 0, 2, 5, 5, 3, 3, 3, 1, 1, true },      // empty shard
    };

    [SkippableTheory]
    [MemberData(nameof(ConvGeometries))]
    public void Conv2d_MatchesCpu(int n, int cin, int h, int w, int cout, int kh, int kw, int stride, int pad, bool hasBias)
    {
        var b = Backend;
        var g = new ConvGeometry(n, cin, h, w, cout, kh, kw, stride, pad);
        int hw = g.OutHeight * g.OutWidth;
        var rng = new Random(g.GetHashCode());
        float[] x = Random(rng, n * cin * h * w), wt = Random(rng, cout * g.PatchSize), bias = Random(rng, cout);
        float[] dy = Random(rng, n * cout * hw);
        var expected = Conv(Cpu, g, x, wt, hasBias ? bias : null, dy);
        var bound = Conv(Cpu, g, Abs(x), Abs(wt), hasBias ? Abs(bias) : null, Abs(dy));
        var got = Conv(b, g, x, wt, hasBias ? bias : null, dy);
        AssertProducts(expected.Y, got.Y, bound.Y, g.PatchSize + 1, "y");
        AssertProducts(expected.Dx, got.Dx, bound.Dx, cout * kh * kw, "dx");
        AssertProducts(expected.Dw, got.Dw, bound.Dw, n * hw, "dw");
        if (hasBias) AssertProducts(expected.Db, got.Db, bound.Db, n * hw, "db");
        if (n == 0) Assert.All(got.Dw, v => Assert.Equal(0f, v));
    }

    [SkippableTheory]
    [InlineData(5, 70, 67, true)]     // neither dimension a multiple of the tile
    [InlineData(3, 130, 10, false)]   // K spans several 16-wide slices
    [InlineData(0, 8, 4, true)]       // empty shard: dW = 0, db = 0
    public void Linear_MatchesCpu(int n, int inF, int outF, bool hasBias)
    {
        var b = Backend;
        var rng = new Random(n * 1000 + inF);
        float[] x = Random(rng, n * inF), w = Random(rng, outF * inF), bias = Random(rng, outF), dy = Random(rng, n * outF);
        var expected = Linear(Cpu, n, inF, outF, x, w, hasBias ? bias : null, dy);
        var bound = Linear(Cpu, n, inF, outF, Abs(x), Abs(w), hasBias ? Abs(bias) : null, Abs(dy));
        var got = Linear(b, n, inF, outF, x, w, hasBias ? bias : null, dy);
        AssertProducts(expected.Y, got.Y, bound.Y, inF + 1, "y");
        AssertProducts(expected.Dx, got.Dx, bound.Dx, outF, "dx");
        AssertProducts(expected.Dw, got.Dw, bound.Dw, n, "dw");
        if (hasBias) AssertProducts(expected.Db, got.Db, bound.Db, n, "db");
    }

    // ---- elementwise and pooling ----------------------------------------------------------

    [SkippableFact]
    public void Activations_MatchCpu()
    {
        var b = Backend;
        var rng = new Random(5);
        float[] x = [.. Random(rng, 1000).Select((v, i) => v * (i % 10 == 0 ? 60f : 4f)), 0f, -0f, 88f, -104f];
        float[] dy = Random(rng, x.Length);
        foreach (bool sigmoid in new[] { false, true })
        {
            // Backward is fed the reference's forward output on both sides: 1 − y near y = 1
            // would turn an ulp of y into a large relative difference of dy·y·(1 − y).
            float[] yRef = Forward(Cpu, sigmoid);
            float[] Forward(IBackend be, bool sig)
            {
                using var tx = be.From(x, x.Length);
                using var ty = be.Allocate(x.Length);
                if (sig) be.SigmoidForward(tx, ty);
                else be.ReluForward(tx, ty);
                return be.Read(ty);
            }
            float[] Backward(IBackend be, bool sig)
            {
                using var ty = be.From(yRef, x.Length);
                using var tg = be.From(dy, x.Length);
                using var tdx = be.Allocate(x.Length);
                if (sig) be.SigmoidBackward(ty, tg, tdx);
                else be.ReluBackward(ty, tg, tdx);
                return be.Read(tdx);
            }
            string name = sigmoid ? "sigmoid" : "relu";
            AssertUlps(yRef, Forward(b, sigmoid), sigmoid ? 4 : 2, name);
            AssertUlps(Backward(Cpu, sigmoid), Backward(b, sigmoid), 2, name + " backward");
        }
    }

    [SkippableTheory]
    [InlineData(2, 3, 7, 6, 2, 2, 0, "random")]   // odd height: the last row is in no window
    [InlineData(2, 2, 7, 7, 3, 2, 0, "random")]   // overlapping windows
    [InlineData(3, 2, 8, 8, 2, 2, 0, "ties")]     // ties: each window's gradient goes to its FIRST maximum
    [InlineData(2, 2, 9, 9, 3, 2, 0, "ties")]     // ties in overlapping windows
    [InlineData(2, 2, 8, 8, 3, 2, 1, "negative")] // bn-inception's 3×3 stride 2 pad 1: a padded zero must never win
    [InlineData(2, 2, 7, 7, 3, 1, 1, "ties")]     // padding and ties in overlapping windows
    [InlineData(1, 2, 6, 5, 2, 2, 1, "negative")] // kernel 2 pad 1: border windows of one or two values
    [InlineData(0, 2, 4, 4, 2, 2, 0, "random")]
    public void MaxPool_MatchesCpu_ExactlyIncludingTiesAndPadding(int n, int c, int h, int w, int k, int s, int p, string values)
    {
        var b = Backend;
        var g = new PoolGeometry(n, c, h, w, k, s, p);
        var rng = new Random(h * 31 + k + p);
        float[] x = Random(rng, n * c * h * w);
        if (values == "ties") x = [.. x.Select(v => MathF.Round(v * 1.5f))]; // values in {-2, …, 2}: many ties
        if (values == "negative") x = [.. x.Select(v => -1 - MathF.Abs(v))];  // all < 0: padding counted as 0 would win
        float[] dy = Random(rng, n * c * g.OutHeight * g.OutWidth);
        float[] Run(IBackend be)
        {
            using var tx = be.From(x, n, c, h, w);
            using var ty = be.Allocate(n, c, g.OutHeight, g.OutWidth);
            using var tg = be.From(dy, n, c, g.OutHeight, g.OutWidth);
            using var tdx = be.Allocate(n, c, h, w);
            be.Fill(tdx, 9f); // overwritten
            be.MaxPool2dForward(g, tx, ty);
            be.MaxPool2dBackward(g, tx, ty, tg, tdx);
            return [.. be.Read(ty), .. be.Read(tdx)];
        }
        float[] got = Run(b);
        Assert.Equal(Run(Cpu), got);
        if (values == "negative") Assert.All(got.AsSpan(0, n * c * g.OutHeight * g.OutWidth).ToArray(), v => Assert.True(v <= -1f, $"max {v}"));
    }

    // ---- batch norm -----------------------------------------------------------------------

    [SkippableTheory]
    [InlineData(4, 3, 25, 0.0, false)]
    [InlineData(4, 3, 25, 0.0, true)]        // with the fused ReLU
    [InlineData(6, 5, 1, 0.0, false)]        // BatchNorm1d layout (S = 1)
    [InlineData(6, 5, 1, 0.0, true)]
    [InlineData(3, 4, 49, 1e4, false)]       // mean/std = 1e4
    [InlineData(3, 4, 49, 1e4, true)]
    [InlineData(0, 3, 4, 0.0, true)]         // empty shard: zero sums
    public void BatchNormStages_MatchCpu(int n, int c, int s, double offset, bool relu)
    {
        var b = Backend;
        var layout = new ChannelLayout(n, c, s);
        var rng = new Random(n + 10 * c + s);
        int len = n * c * s;
        float[] x = [.. Random(rng, len).Select(v => (float)(offset + v))];
        float[] gamma = Random(rng, c), beta = Random(rng, c), dy = Random(rng, len);
        float[] shift = [.. Enumerable.Range(0, c).Select(i => (float)(offset * 0.999 + 0.1 * i))];
        float[] meanMinusShift = Random(rng, c), invStd = [.. Random(rng, c).Select(v => 1.5f + v)];
        float[] meanDy = Random(rng, c), meanDyXhat = Random(rng, c);

        (double[] Sums, double[] BackSums, float[] Out) Run(IBackend be)
        {
            using var tx = be.From(x, n, c, s);
            using var tg = be.From(gamma, c);
            using var tb = be.From(beta, c);
            using var y = be.Allocate(n, c, s);
            using var tdy = be.From(dy, n, c, s);
            using var dx = be.Allocate(n, c, s);
            using var affine = be.Allocate(n, c, s);
            var sums = new double[2 * c];
            var back = new double[2 * c];
            be.ChannelShiftedSums(layout, tx, shift, sums);
            var transform = new BatchNormTransform(shift, meanMinusShift, invStd, tg, tb, relu);
            be.BatchNormNormalize(layout, tx, transform, y);
            be.BatchNormBackwardSums(layout, tdy, tx, transform, back);
            be.BatchNormBackwardInput(layout, tdy, tx, transform, meanDy, meanDyXhat, dx);
            be.ChannelAffine(layout, tx, invStd, meanDy, relu, affine);
            return (sums, back, [.. be.Read(y), .. be.Read(dx), .. be.Read(affine)]);
        }
        var expected = Run(Cpu);
        var got = Run(b);
        // Σ|terms| per channel bounds the float64 reordering error (see the class remarks).
        for (int ch = 0; ch < c; ch++)
        {
            double abs1 = 0, abs2 = 0, absG = 0, absGx = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    double v = x[at] - shift[ch];
                    abs1 += Math.Abs(v);
                    abs2 += v * v;
                    absG += Math.Abs(dy[at]);
                }
            absGx = absG * 10; // |x̂| ≤ (|x − k| + |d|)·invStd ≤ 10 for these inputs
            AssertNear(expected.Sums[ch], got.Sums[ch], 1e-12 * abs1, $"Σ(x−k)[{ch}]");
            AssertNear(expected.Sums[c + ch], got.Sums[c + ch], 1e-12 * abs2, $"Σ(x−k)²[{ch}]");
            AssertNear(expected.BackSums[ch], got.BackSums[ch], 1e-12 * absG, $"Σg[{ch}]");
            AssertNear(expected.BackSums[c + ch], got.BackSums[c + ch], 1e-12 * absGx, $"Σg·x̂[{ch}]");
        }
        AssertUlps(expected.Out, got.Out, 2, "elementwise stages");
    }

    /// <summary>
    /// docs/architecture.md §1: with mean/std = 1e4, Σx² − (Σx)²/m in float32 would lose every digit of the
    /// variance; the shifted float64 sums keep it. The variance from the backend's sums must equal
    /// the float64 two-pass variance of the same float32 data to 1e-9 relative.
    /// </summary>
    [SkippableFact]
    public void ShiftedSums_KeepTheVariance_WhenMeanIs1e4TimesStd()
    {
        var b = Backend;
        const int n = 8, c = 2, s = 36;
        var rng = new Random(42);
        float[] x = [.. Enumerable.Range(0, n * c * s).Select(_ => (float)(1e4 + 2 * rng.NextDouble() - 1))];
        float[] shift = [9999.5f, 10000.25f]; // a running mean near, not at, the batch mean
        var sums = new double[2 * c];
        using var tx = b.From(x, n, c, s);
        b.ChannelShiftedSums(new ChannelLayout(n, c, s), tx, shift, sums);
        for (int ch = 0; ch < c; ch++)
        {
            var values = Enumerable.Range(0, n).SelectMany(i => x.Skip((i * c + ch) * s).Take(s)).Select(v => (double)v).ToArray();
            double mean = values.Average(), variance = values.Select(v => (v - mean) * (v - mean)).Average();
            double m = values.Length, m1 = sums[ch] / m, fromSums = sums[c + ch] / m - m1 * m1;
            Assert.True(Math.Abs(fromSums - variance) <= 1e-9 * variance, $"channel {ch}: variance {fromSums} from the sums, {variance} two-pass");
            Assert.InRange(variance, 0.2, 0.5); // uniform on [−1, 1]: 1/3, up to float32 quantization of 1e4 + u
        }
    }

    // ---- group norm -----------------------------------------------------------------------

    [SkippableTheory]
    [InlineData(3, 6, 10, 3)]
    [InlineData(2, 4, 1, 4)]   // one channel per group, S = 1
    [InlineData(0, 4, 5, 2)]
    public void GroupNorm_MatchesCpu(int n, int c, int s, int groups)
    {
        var b = Backend;
        var layout = new ChannelLayout(n, c, s);
        var rng = new Random(n * 7 + c);
        int len = n * c * s;
        float[] x = [.. Random(rng, len).Select(v => 3 + 2 * v)], gamma = Random(rng, c), beta = Random(rng, c), dy = Random(rng, len);
        float[] Run(IBackend be)
        {
            using var tx = be.From(x, n, c, s);
            using var tg = be.From(gamma, c);
            using var tb = be.From(beta, c);
            using var xhat = be.Allocate(n, c, s);
            using var inv = be.Allocate(n * groups);
            using var y = be.Allocate(n, c, s);
            using var tdy = be.From(dy, n, c, s);
            using var dx = be.Allocate(n, c, s);
            using var dg = be.Allocate(c);
            using var db = be.Allocate(c);
            be.Fill(dg, 5f); // overwritten, also for N = 0
            be.GroupNormForward(layout, groups, 1e-5f, tx, tg, tb, xhat, inv, y);
            be.GroupNormBackward(layout, groups, tdy, xhat, tg, inv, dx, dg, db);
            return [.. be.Read(xhat), .. be.Read(inv), .. be.Read(y), .. be.Read(dx), .. be.Read(dg), .. be.Read(db)];
        }
        var expected = Run(Cpu);
        var got = Run(b);
        double scale = expected.Select(Math.Abs).DefaultIfEmpty(0f).Max();
        for (int i = 0; i < expected.Length; i++)
            AssertNear(expected[i], got[i], 4 * Eps32 * scale, $"group norm [{i}]");
    }

    // ---- loss and optimizer ---------------------------------------------------------------

    [SkippableTheory]
    [InlineData(7, 10, true)]
    [InlineData(3, 4, false)]
    [InlineData(0, 10, true)]
    public void SoftmaxCrossEntropy_MatchesCpu(int n, int classes, bool gradient)
    {
        var b = Backend;
        var rng = new Random(n + classes);
        float[] z = [.. Random(rng, n * classes).Select(v => 8 * v)];
        int[] labels = [.. Enumerable.Range(0, n).Select(i => (i * 3) % classes)];
        const float scale = 1f / 32;
        (double Loss, int Correct, float[] D) Run(IBackend be)
        {
            using var tz = be.From(z, n, classes);
            using var dz = be.Allocate(n, classes);
            var (loss, correct) = be.SoftmaxCrossEntropy(n, classes, tz, labels, scale, gradient ? dz : null);
            return (loss, correct, be.Read(dz));
        }
        var expected = Run(Cpu);
        var got = Run(b);
        AssertNear(expected.Loss, got.Loss, 1e-12 * Math.Max(1, Math.Abs(expected.Loss)), "loss sum");
        Assert.Equal(expected.Correct, got.Correct);
        for (int i = 0; i < expected.D.Length; i++) AssertNear(expected.D[i], got.D[i], 2 * Eps32 * scale, $"dlogits[{i}]");
        Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            using var tz = b.Allocate(1, classes);
            b.SoftmaxCrossEntropy(1, classes, tz, [classes], 1f, null);
        });
    }

    [SkippableTheory]
    [InlineData(0.9f, 5e-4f)]
    [InlineData(0f, 0f)]
    public void SgdUpdate_MatchesCpu(float momentum, float weightDecay)
    {
        var b = Backend;
        var rng = new Random(3);
        float[] w = Random(rng, 333), g = Random(rng, 333), v = Random(rng, 333);
        float[] Run(IBackend be)
        {
            using var tw = be.From(w, w.Length);
            using var tg = be.From(g, g.Length);
            using var tv = be.From(v, v.Length);
            be.SgdUpdate(tw, tg, tv, 0.05f, momentum, weightDecay);
            be.SgdUpdate(tw, tg, tv, 0.05f, momentum, weightDecay);
            return [.. be.Read(tw), .. be.Read(tv)];
        }
        AssertUlps(Run(Cpu), Run(b), 2, "sgd");
    }

    // ---- helpers --------------------------------------------------------------------------

    internal sealed record Grads(float[] Y, float[] Dx, float[] Dw, float[] Db);

    internal static Grads Conv(IBackend be, ConvGeometry g, float[] x, float[] w, float[]? bias, float[] dy)
    {
        int oh = g.OutHeight, ow = g.OutWidth;
        using var tx = be.From(x, g.N, g.InChannels, g.Height, g.Width);
        using var tw = be.From(w, g.OutChannels, g.InChannels, g.KernelH, g.KernelW);
        using var tb = bias is null ? null : be.From(bias, g.OutChannels);
        using var ty = be.Allocate(g.N, g.OutChannels, oh, ow);
        using var tdy = be.From(dy, g.N, g.OutChannels, oh, ow);
        using var tdx = be.Allocate(g.N, g.InChannels, g.Height, g.Width);
        using var tdw = be.Allocate(g.OutChannels, g.InChannels, g.KernelH, g.KernelW);
        using var tdb = be.Allocate(g.OutChannels);
        be.Fill(tdw, 3f); // outputs are overwritten
        be.Fill(tdb, 3f);
        be.Conv2dForward(g, tx, tw, tb, ty);
        be.Conv2dBackward(g, tx, tw, tdy, tdx, tdw, bias is null ? null : tdb);
        return new Grads(be.Read(ty), be.Read(tdx), be.Read(tdw), be.Read(tdb));
    }

    internal static Grads Linear(IBackend be, int n, int inF, int outF, float[] x, float[] w, float[]? bias, float[] dy)
    {
        using var tx = be.From(x, n, inF);
        using var tw = be.From(w, outF, inF);
        using var tb = bias is null ? null : be.From(bias, outF);
        using var ty = be.Allocate(n, outF);
        using var tdy = be.From(dy, n, outF);
        using var tdx = be.Allocate(n, inF);
        using var tdw = be.Allocate(outF, inF);
        using var tdb = be.Allocate(outF);
        be.Fill(tdw, 3f);
        be.Fill(tdb, 3f);
        be.LinearForward(n, inF, outF, tx, tw, tb, ty);
        be.LinearBackward(n, inF, outF, tx, tw, tdy, tdx, tdw, bias is null ? null : tdb);
        return new Grads(be.Read(ty), be.Read(tdx), be.Read(tdw), be.Read(tdb));
    }

    /// <summary>|got − expected| ≤ K·ε·Σ|a||b| per element (see the class remarks), plus 1e-30.</summary>
    internal static void AssertProducts(float[] expected, float[] got, float[] absBound, int k, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < expected.Length; i++)
            AssertNear(expected[i], got[i], Math.Max(k, 1) * Eps32 * absBound[i] + 1e-30, $"{what}[{i}]");
    }

    /// <summary>|got − expected| ≤ ulps · ulp(max(|expected|, 2⁻¹²⁶)).</summary>
    private static void AssertUlps(float[] expected, float[] got, int ulps, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i];
            float a = Math.Max(Math.Abs(e), MinNormal);
            double ulp = MathF.BitIncrement(a) - a;
            AssertNear(e, got[i], ulps * ulp, $"{what}[{i}]");
        }
    }

    private static void AssertNear(double expected, double got, double tolerance, string what) =>
        Assert.True(Math.Abs(got - expected) <= tolerance || expected.Equals(got),
            $"{what}: {got:R}, expected {expected:R} (|diff| {Math.Abs(got - expected):E2} > {tolerance:E2})");

    internal static float[] Random(Random rng, int n) => [.. Enumerable.Range(0, n).Select(_ => (float)(2 * rng.NextDouble() - 1))];

    internal static float[] Abs(float[] a) => [.. a.Select(Math.Abs)];
}

/// <summary>The ops on ILGPU's CPU simulator.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class IlgpuCpuOpsTests(IlgpuCpuFixture fixture) : BackendOpsTests(fixture);

/// <summary>The same ops on the first CUDA device; skipped without one.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class IlgpuCudaOpsTests(IlgpuCudaFixture fixture) : BackendOpsTests(fixture);
