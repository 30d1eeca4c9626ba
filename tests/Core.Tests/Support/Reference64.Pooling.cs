namespace BnDist.Core.Tests.Support;

/// <summary>
/// Float64 pooling with padding, written from PyTorch's definitions rather than from the
/// kernels' clipped-window arithmetic: the input is first copied into an explicitly padded
/// plane (zeros for the average, −∞ for the max), then every Kernel×Kernel window taken every
/// Stride positions is reduced (floor mode). The average divides by Kernel², padded zeros
/// included (count_include_pad = True). <see cref="Reference64"/> is not partial, hence a class
/// of its own.
/// </summary>
internal static class Reference64Pooling
{
    public static double[] AvgPool(double[] x, int n, int c, int h, int w, int k, int stride, int pad) =>
        Pool(x, n, c, h, w, k, stride, pad, fill: 0, window => window.Sum() / (k * k));

    public static double[] MaxPool(double[] x, int n, int c, int h, int w, int k, int stride, int pad) =>
        Pool(x, n, c, h, w, k, stride, pad, fill: double.NegativeInfinity, window => window.Max());

    /// <summary>[N, C, H, W] → [N, C]: the mean of each channel's H·W values.</summary>
    public static double[] GlobalAvgPool(double[] x, int n, int c, int spatial)
    {
        var y = new double[n * c];
        for (int p = 0; p < n * c; p++)
        {
            double s = 0;
            for (int j = 0; j < spatial; j++) s += x[p * spatial + j];
            y[p] = s / spatial;
        }
        return y;
    }

    private static double[] Pool(double[] x, int n, int c, int h, int w, int k, int stride, int pad, double fill, Func<List<double>, double> reduce)
    {
        int ph = h + 2 * pad, pw = w + 2 * pad;
        int oh = (ph - k) / stride + 1, ow = (pw - k) / stride + 1;
        var y = new double[n * c * oh * ow];
        var padded = new double[ph * pw];
        var window = new List<double>(k * k);
        for (int p = 0; p < n * c; p++)
        {
            Array.Fill(padded, fill);
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++) padded[(r + pad) * pw + q + pad] = x[(p * h + r) * w + q];
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    window.Clear();
                    for (int a = 0; a < k; a++)
                        for (int b = 0; b < k; b++) window.Add(padded[(i * stride + a) * pw + j * stride + b]);
                    y[(p * oh + i) * ow + j] = reduce(window);
                }
        }
        return y;
    }
}
