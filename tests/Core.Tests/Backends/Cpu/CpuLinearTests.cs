using BnDist.Core.Backends.Cpu;

namespace BnDist.Core.Tests.Backends.Cpu;

public unsafe class CpuLinearTests
{
    [Theory]
    [InlineData(1, 1, 1, true)]
    [InlineData(5, 17, 3, false)]
    [InlineData(128, 200, 33, true)] // large enough for the pooled GEMM to split
    public void ForwardAndBackward_MatchFloat64Reference(int n, int fin, int fout, bool hasBias)
    {
        var rng = new Random(n * 7 + fin * 3 + fout);
        float[] x = SgemmTests.Random(rng, n * fin), w = SgemmTests.Random(rng, fout * fin);
        float[] b = SgemmTests.Random(rng, fout), dy = SgemmTests.Random(rng, n * fout);
        foreach (int threads in new[] { 1, 2 })
        {
            using var pool = new CpuThreadPool(threads);
            float[] y = Nan(n * fout), dx = Nan(n * fin), dw = Nan(fout * fin), db = Nan(fout);
            fixed (float* px = x, pw = w, pb = b, pdy = dy, py = y, pdx = dx, pdw = dw, pdb = db)
            {
                CpuLinear.Forward(pool, n, fin, fout, px, pw, hasBias ? pb : null, py);
                CpuLinear.Backward(pool, n, fin, fout, px, pw, pdy, pdx, pdw, hasBias ? pdb : null);
            }

            for (int i = 0; i < n; i++)
                for (int o = 0; o < fout; o++)
                    Check(y[i * fout + o], fin, p => (double)x[i * fin + p] * w[o * fin + p], hasBias ? b[o] : 0, "y");
            for (int o = 0; o < fout; o++)
                for (int p = 0; p < fin; p++)
                    Check(dw[o * fin + p], n, i => (double)dy[i * fout + o] * x[i * fin + p], 0, "dw");
            for (int i = 0; i < n; i++)
                for (int p = 0; p < fin; p++)
                    Check(dx[i * fin + p], fout, o => (double)dy[i * fout + o] * w[o * fin + p], 0, "dx");
            if (hasBias)
                for (int o = 0; o < fout; o++)
                    Check(db[o], n, i => dy[i * fout + o], 0, "db");
            else
                Assert.All(db, v => Assert.True(float.IsNaN(v))); // db == null: not touched
        }
    }

    [Fact]
    public void Backward_WithoutDx_LeavesDxAlone()
    {
        using var pool = new CpuThreadPool(2);
        float[] x = [1f, 2f], w = [3f, 4f], dy = [0.5f], dw = Nan(2);
        fixed (float* px = x, pw = w, pdy = dy, pdw = dw)
            CpuLinear.Backward(pool, 1, 2, 1, px, pw, pdy, null, pdw, null);
        Assert.Equal([0.5f, 1f], dw);
    }

    private static void Check(float got, int terms, Func<int, double> term, double constant, string what)
    {
        double sum = constant, abs = Math.Abs(constant);
        for (int p = 0; p < terms; p++)
        {
            sum += term(p);
            abs += Math.Abs(term(p));
        }
        double tol = SgemmTests.Tolerance(terms + 1, abs);
        Assert.True(Math.Abs(got - sum) <= tol, $"{what} = {got}, expected {sum} ± {tol}");
    }

    private static float[] Nan(int count)
    {
        var a = new float[count];
        Array.Fill(a, float.NaN);
        return a;
    }
}
