namespace BnDist.Core.Tests.Support;

/// <summary>Central finite differences in float64, and the comparison the layer tests share.</summary>
internal static class GradientCheck
{
    /// <summary>∂f/∂xᵢ ≈ (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h for every i; error O(h²·f''') ≈ 1e-8 here.</summary>
    public static double[] Numeric(Func<double[], double> f, double[] x, double h = 1e-4)
    {
        var g = new double[x.Length];
        var probe = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            probe[i] = x[i] + h;
            double up = f(probe);
            probe[i] = x[i] - h;
            double down = f(probe);
            probe[i] = x[i];
            g[i] = (up - down) / (2 * h);
        }
        return g;
    }

    /// <summary>L = Σ r·y: its gradient with respect to y is r, the dy fed to backward.</summary>
    public static double Dot(double[] a, float[] r)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * r[i];
        return s;
    }

    /// <summary>
    /// Asserts |analytic − numeric| ≤ tol·(max|numeric| + 1e-3) elementwise: the float32
    /// kernels carry ~1e-6 relative rounding per accumulation, far below the default 2e-3.
    /// </summary>
    public static void AssertClose(double[] numeric, float[] analytic, string what, double tol = 2e-3)
    {
        Assert.Equal(numeric.Length, analytic.Length);
        double scale = numeric.Select(Math.Abs).DefaultIfEmpty(0).Max() + 1e-3;
        for (int i = 0; i < numeric.Length; i++)
        {
            double err = Math.Abs(numeric[i] - analytic[i]);
            Assert.True(err <= tol * scale, $"{what}[{i}]: analytic {analytic[i]}, finite difference {numeric[i]} (|err| {err:E2} > {tol * scale:E2})");
        }
    }

    public static float[] Random(int n, int seed, double scale = 1.0, double offset = 0.0)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(_ => (float)(offset + scale * (2 * rng.NextDouble() - 1)))];
    }

    public static double[] D(float[] a) => [.. a.Select(v => (double)v)];
}
