namespace BnDist.Core.Tests.Support;

/// <summary>
/// Direct float64 implementations of every layer's forward pass, written as plain loops from
/// the definitions: the independent oracle the float32 kernels and their gradients are held to.
/// </summary>
internal static class Reference64
{
    public static double[] Conv2d(double[] x, double[] w, double[]? b, int n, int cin, int h, int wd, int cout, int k, int stride, int pad)
    {
        int oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
        var y = new double[n * cout * oh * ow];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < cout; o++)
                for (int r = 0; r < oh; r++)
                    for (int c = 0; c < ow; c++)
                    {
                        double s = b?[o] ?? 0;
                        for (int ci = 0; ci < cin; ci++)
                            for (int ki = 0; ki < k; ki++)
                                for (int kj = 0; kj < k; kj++)
                                {
                                    int yy = r * stride - pad + ki, xx = c * stride - pad + kj;
                                    if (yy < 0 || yy >= h || xx < 0 || xx >= wd) continue;
                                    s += w[((o * cin + ci) * k + ki) * k + kj] * x[((i * cin + ci) * h + yy) * wd + xx];
                                }
                        y[((i * cout + o) * oh + r) * ow + c] = s;
                    }
        return y;
    }

    public static double[] Linear(double[] x, double[] w, double[]? b, int n, int inF, int outF)
    {
        var y = new double[n * outF];
        for (int i = 0; i < n; i++)
            for (int o = 0; o < outF; o++)
            {
                double s = b?[o] ?? 0;
                for (int j = 0; j < inF; j++) s += x[i * inF + j] * w[o * inF + j];
                y[i * outF + o] = s;
            }
        return y;
    }

    public static double[] MaxPool(double[] x, int n, int c, int h, int w, int k)
    {
        int oh = h / k, ow = w / k;
        var y = new double[n * c * oh * ow];
        for (int p = 0; p < n * c; p++)
            for (int r = 0; r < oh; r++)
                for (int q = 0; q < ow; q++)
                {
                    double m = double.NegativeInfinity;
                    for (int a = 0; a < k; a++)
                        for (int b = 0; b < k; b++) m = Math.Max(m, x[p * h * w + (r * k + a) * w + q * k + b]);
                    y[p * oh * ow + r * ow + q] = m;
                }
        return y;
    }

    /// <summary>Training-mode batch norm with two-pass statistics over N and S; returns y, mean, biased var.</summary>
    public static (double[] Y, double[] Mean, double[] Var) BatchNorm(double[] x, double[] gamma, double[] beta, int n, int c, int s, double eps = 1e-5)
    {
        var mean = new double[c];
        var variance = new double[c];
        var y = new double[x.Length];
        for (int ch = 0; ch < c; ch++)
        {
            double sum = 0;
            for (int i = 0; i < n; i++) for (int j = 0; j < s; j++) sum += x[(i * c + ch) * s + j];
            double mu = sum / (n * s), m2 = 0;
            for (int i = 0; i < n; i++) for (int j = 0; j < s; j++) m2 += Math.Pow(x[(i * c + ch) * s + j] - mu, 2);
            double v = m2 / (n * s);
            mean[ch] = mu;
            variance[ch] = v;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < s; j++)
                {
                    int at = (i * c + ch) * s + j;
                    y[at] = gamma[ch] * (x[at] - mu) / Math.Sqrt(v + eps) + beta[ch];
                }
        }
        return (y, mean, variance);
    }

    public static double[] GroupNorm(double[] x, double[] gamma, double[] beta, int n, int c, int s, int groups, double eps = 1e-5)
    {
        var y = new double[x.Length];
        int per = c / groups * s;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++)
            {
                int first = (i * groups + g) * per;
                double mu = 0;
                for (int j = 0; j < per; j++) mu += x[first + j];
                mu /= per;
                double v = 0;
                for (int j = 0; j < per; j++) v += Math.Pow(x[first + j] - mu, 2);
                v /= per;
                for (int j = 0; j < per; j++)
                {
                    int ch = g * (c / groups) + j / s;
                    y[first + j] = gamma[ch] * (x[first + j] - mu) / Math.Sqrt(v + eps) + beta[ch];
                }
            }
        return y;
    }

    /// <summary>Mean softmax cross-entropy over the batch.</summary>
    public static double CrossEntropy(double[] z, int[] labels, int n, int k)
    {
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < k; j++) max = Math.Max(max, z[i * k + j]);
            double sum = 0;
            for (int j = 0; j < k; j++) sum += Math.Exp(z[i * k + j] - max);
            total += Math.Log(sum) + max - z[i * k + labels[i]];
        }
        return total / n;
    }
}
