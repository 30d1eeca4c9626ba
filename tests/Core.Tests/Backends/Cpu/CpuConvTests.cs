using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Tests.Backends.Cpu;

public unsafe class CpuConvTests
{
    public static TheoryData<int, int, int, int, int, int, int, int, int, bool> Geometries() => new()
    {
        // N, Cin, H, W, Cout, KH, KW, stride, pad, bias
        { 1, 1, 9, 7, 4, 3, 3, 1, 1, true },      // Cin = 1, N = 1
        { 5, 1, 28, 28, 32, 3, 3, 1, 1, false },  // the model's conv1
        { 5, 32, 14, 14, 64, 3, 3, 1, 1, false }, // the model's conv2
        { 1, 32, 14, 14, 64, 3, 3, 1, 1, true },  // N = 1 < threads: the GEMMs run on the pool
        { 5, 3, 8, 11, 5, 3, 3, 2, 1, false },    // stride 2, non-square input
        { 5, 4, 7, 6, 6, 5, 5, 1, 2, true },      // kernel 5, pad 2
        { 5, 2, 10, 9, 3, 3, 3, 2, 0, true },     // stride 2, pad 0
        { 2, 6, 5, 5, 8, 1, 1, 1, 0, true },      // pointwise (no im2col)
        { 2, 3, 7, 7, 4, 1, 1, 2, 0, false },     // 1×1, stride 2
        { 1, 2, 6, 9, 3, 1, 3, 1, 1, true },      // non-square kernel
        { 5, 3, 5, 8, 2, 3, 5, 2, 2, false },     // non-square kernel, stride 2, pad 2
        { 1, 1, 3, 3, 2, 5, 5, 1, 2, true },      // kernel larger than the image
        // CpuDirectConv (AVX-512/AVX2; width a multiple of 7): the resnet20 layers, partial tiles and channel tails.
        { 3, 16, 28, 28, 16, 3, 3, 1, 1, false }, // resnet20 layer1: 28 tiles of 28 positions, one channel block
        { 3, 64, 7, 7, 64, 3, 3, 1, 1, true },    // resnet20 layer3: 49 = 28 + 21 positions, four channel blocks
        { 2, 5, 3, 14, 20, 3, 3, 1, 1, true },    // 42 positions (partial tile), Cout = 16 + 4, Cin = 5 < 8
        { 2, 20, 5, 7, 3, 5, 5, 1, 2, false },    // kernel 5, Cout = 3, dx has Cin = 20 = 16 + 4 channels
        { 1, 9, 1, 21, 17, 3, 3, 1, 1, true },    // one row of 21: groups alias past the end
        { 3, 5, 10, 14, 20, 3, 3, 1, 1, true },   // direct dW: 15 (ci, kh) triples = 9 + 6, 140 positions, Cout = 16 + 4
        { 3, 16, 28, 28, 32, 3, 3, 2, 1, false }, // direct forward with stride 2 (resnet20's downsampling 3×3)
        { 2, 16, 28, 28, 32, 1, 1, 2, 0, true },  // direct forward, 1×1 stride 2 (the shortcut)
        { 2, 3, 13, 14, 5, 3, 3, 2, 1, true },    // stride 2 onto 7×7, odd input height
        { 40, 3, 10, 14, 8, 3, 3, 1, 1, true },   // N > 16: chunks of 2–3 samples, direct dW over groups of samples
        { 37, 2, 14, 14, 9, 3, 3, 2, 1, false },  // the same with stride 2
        { 2, 20, 14, 14, 5, 3, 3, 2, 1, true },   // strided direct dx: Cin = 20 = 16 + 4 lanes of dx, Cout = 5 (phases of 5 and 10 rows)
        { 2, 3, 14, 28, 6, 3, 3, 2, 1, false },   // strided direct dx, non-square (7 × 14 outputs)
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void ForwardAndBackward_MatchFloat64DirectConvolution(int n, int cin, int h, int w, int cout, int kh, int kw,
        int stride, int pad, bool hasBias)
    {
        var g = new ConvGeometry(n, cin, h, w, cout, kh, kw, stride, pad);
        int oh = g.OutHeight, ow = g.OutWidth;
        var rng = new Random(g.GetHashCode());
        float[] x = SgemmTests.Random(rng, n * cin * h * w), wt = SgemmTests.Random(rng, cout * g.PatchSize);
        float[] bias = SgemmTests.Random(rng, cout), dy = SgemmTests.Random(rng, n * cout * oh * ow);

        var reference = Reference(g, x, wt, hasBias ? bias : null, dy);
        Outputs? firstRun = null;
        using var ws = new CpuConvWorkspace();
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new CpuThreadPool(threads);
            var got = Run(pool, ws, g, x, wt, hasBias ? bias : null, dy);
            int k = g.PatchSize;
            AssertClose(reference.Y, reference.YAbs, got.Y, k + 1, "y");
            AssertClose(reference.Dx, reference.DxAbs, got.Dx, cout * kh * kw, "dx");
            AssertClose(reference.Dw, reference.DwAbs, got.Dw, n * oh * ow, "dw");
            if (hasBias)
                AssertClose(reference.Db, reference.DbAbs, got.Db, n * oh * ow, "db");

            // Same bits for every thread count (fixed chunking of the dW/db reduction).
            firstRun ??= got;
            Assert.Equal(Bits(firstRun.Y), Bits(got.Y));
            Assert.Equal(Bits(firstRun.Dx), Bits(got.Dx));
            Assert.Equal(Bits(firstRun.Dw), Bits(got.Dw));
            Assert.Equal(Bits(firstRun.Db), Bits(got.Db));
        }
    }

    [Fact]
    public void Backward_WithoutDx_LeavesItAlone_AndWorkspaceShrinksNothing()
    {
        var big = new ConvGeometry(3, 4, 9, 9, 6, 3, 3, 1, 1);
        var small = new ConvGeometry(2, 1, 5, 5, 2, 3, 3, 1, 0);
        using var ws = new CpuConvWorkspace();
        using var pool = new CpuThreadPool(2);
        foreach (var g in new[] { big, small, big })
        {
            var rng = new Random(1);
            float[] x = SgemmTests.Random(rng, g.N * g.InChannels * g.Height * g.Width);
            float[] wt = SgemmTests.Random(rng, g.OutChannels * g.PatchSize);
            float[] dy = SgemmTests.Random(rng, g.N * g.OutChannels * g.OutHeight * g.OutWidth);
            var reference = Reference(g, x, wt, null, dy);
            float[] dw = new float[wt.Length];
            Array.Fill(dw, float.NaN);
            fixed (float* px = x, pw = wt, pdy = dy, pdw = dw)
                CpuConv.Backward(pool, g, px, pw, pdy, null, pdw, null, ws);
            AssertClose(reference.Dw, reference.DwAbs, dw, g.N * g.OutHeight * g.OutWidth, "dw");
        }
    }

    private sealed record Outputs(float[] Y, float[] Dx, float[] Dw, float[] Db);

    private static Outputs Run(CpuThreadPool pool, CpuConvWorkspace ws, ConvGeometry g, float[] x, float[] w, float[]? bias, float[] dy)
    {
        // Outputs start as NaN: every one of them must be overwritten.
        float[] y = Nan(dy.Length), dx = Nan(x.Length), dw = Nan(w.Length), db = Nan(g.OutChannels);
        fixed (float* px = x, pw = w, pb = bias, pdy = dy, py = y, pdx = dx, pdw = dw, pdb = db)
        {
            CpuConv.Forward(pool, g, px, pw, pb, py, ws);
            CpuConv.Backward(pool, g, px, pw, pdy, pdx, pdw, bias is null ? null : pdb, ws);
        }
        return new Outputs(y, dx, dw, db);
    }

    private sealed record ReferenceOutputs(double[] Y, double[] YAbs, double[] Dx, double[] DxAbs, double[] Dw, double[] DwAbs,
        double[] Db, double[] DbAbs);

    /// <summary>Direct convolution in float64, with Σ|terms| per output for the error bound.</summary>
    private static ReferenceOutputs Reference(ConvGeometry g, float[] x, float[] w, float[]? bias, float[] dy)
    {
        int oh = g.OutHeight, ow = g.OutWidth;
        var r = new ReferenceOutputs(new double[dy.Length], new double[dy.Length], new double[x.Length], new double[x.Length],
            new double[w.Length], new double[w.Length], new double[g.OutChannels], new double[g.OutChannels]);
        for (int n = 0; n < g.N; n++)
        for (int co = 0; co < g.OutChannels; co++)
        for (int y0 = 0; y0 < oh; y0++)
        for (int x0 = 0; x0 < ow; x0++)
        {
            int yi = ((n * g.OutChannels + co) * oh + y0) * ow + x0;
            double sum = bias?[co] ?? 0, abs = Math.Abs(bias?[co] ?? 0), d = dy[yi];
            r.Db[co] += d;
            r.DbAbs[co] += Math.Abs(d);
            for (int ci = 0; ci < g.InChannels; ci++)
            for (int kh = 0; kh < g.KernelH; kh++)
            for (int kw = 0; kw < g.KernelW; kw++)
            {
                int ih = y0 * g.Stride - g.Padding + kh, iw = x0 * g.Stride - g.Padding + kw;
                if (ih < 0 || ih >= g.Height || iw < 0 || iw >= g.Width)
                    continue;
                int xi = ((n * g.InChannels + ci) * g.Height + ih) * g.Width + iw;
                int wi = ((co * g.InChannels + ci) * g.KernelH + kh) * g.KernelW + kw;
                sum += (double)w[wi] * x[xi];
                abs += Math.Abs((double)w[wi] * x[xi]);
                r.Dw[wi] += d * x[xi];
                r.DwAbs[wi] += Math.Abs(d * x[xi]);
                r.Dx[xi] += d * w[wi];
                r.DxAbs[xi] += Math.Abs(d * w[wi]);
            }
            r.Y[yi] = sum;
            r.YAbs[yi] = abs;
        }
        return r;
    }

    private static void AssertClose(double[] expected, double[] absSum, float[] got, int terms, string what)
    {
        Assert.Equal(expected.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
        {
            double tol = SgemmTests.Tolerance(terms, absSum[i]);
            Assert.True(Math.Abs(got[i] - expected[i]) <= tol, $"{what}[{i}] = {got[i]}, expected {expected[i]} ± {tol}");
        }
    }

    private static float[] Nan(int count)
    {
        var a = new float[count];
        Array.Fill(a, float.NaN);
        return a;
    }

    private static int[] Bits(float[] values) => Array.ConvertAll(values, BitConverter.SingleToInt32Bits);
}
