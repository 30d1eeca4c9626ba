using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Batch-norm stages (docs/architecture.md §1) and group norm. Reductions are deterministic: one group
/// reduces one channel (batch norm, bias gradients) or one (sample, group) (group norm);
/// thread t accumulates positions t, t + G, t + 2G, … of it in float64, then the G partial
/// sums are added by a fixed binary tree in shared memory. No atomics, so the result
/// depends only on the data and on G (fixed per accelerator, see <see cref="IlgpuBackend"/>).
/// Elementwise stages reproduce the CPU's fused multiply-adds as (float)((double)a·b + c):
/// the float64 product of two floats is exact, so this rounds once like an FMA (barring a
/// double rounding, which needs the sum to fall exactly on a float32 midpoint).
/// </summary>
internal static class NormKernels
{
    /// <summary>The largest reduction group; shared arrays are sized for it.</summary>
    public const int MaxGroup = 256;

    /// <summary>
    /// Grid: C groups. sums[c] = Σ (x − k_c), sums[C + c] = Σ (x − k_c)² over channel c's N·S
    /// values; x − k_c is rounded to float32 first (as on the CPU), squares and sums in float64.
    /// </summary>
    public static void ChannelShiftedSums(ChannelLayout l, ArrayView<float> x, ArrayView<float> shift, ArrayView<double> sums)
    {
        var s1 = SharedMemory.Allocate<double>(MaxGroup);
        var s2 = SharedMemory.Allocate<double>(MaxGroup);
        int c = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        int count = l.N * l.Spatial;
        float k = shift[c];
        double a = 0, b = 0;
        for (int i = t; i < count; i += g)
        {
            int n = i / l.Spatial, s = i - n * l.Spatial;
            double v = x[(n * l.Channels + c) * l.Spatial + s] - k;
            a += v;
            b += v * v;
        }
        TreeSum(s1, s2, a, b, t, g);
        if (t == 0)
        {
            sums[c] = s1[0];
            sums[l.Channels + c] = s2[0];
        }
    }

    /// <summary>
    /// Grid: C groups, coeffs = [k (C), d (C), invStd (C)]. sums[c] = Σ g, sums[C + c] = Σ g·x̂ over channel c in
    /// float64, x̂ recomputed from x and g = dy masked where the fused ReLU (relu ≠ 0) was off.
    /// </summary>
    public static void BackwardSums(ChannelLayout l, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> coeffs,
        ArrayView<float> gamma, ArrayView<float> beta, int relu, ArrayView<double> sums)
    {
        var s1 = SharedMemory.Allocate<double>(MaxGroup);
        var s2 = SharedMemory.Allocate<double>(MaxGroup);
        int c = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        int count = l.N * l.Spatial;
        float gc = gamma[c], bc = beta[c];
        double a = 0, b = 0;
        for (int i = t; i < count; i += g)
        {
            int n = i / l.Spatial, s = i - n * l.Spatial;
            int at = (n * l.Channels + c) * l.Spatial + s;
            float h = Xhat(l, coeffs, c, x[at]);
            double v = Masked(dy[at], h, gc, bc, relu);
            a += v;
            b += v * h;
        }
        TreeSum(s1, s2, a, b, t, g);
        if (t == 0)
        {
            sums[c] = s1[0];
            sums[l.Channels + c] = s2[0];
        }
    }

    /// <summary>
    /// Grid: C groups. Float32 per-channel sums for parameter gradients: sum[c] = Σ g and, when
    /// dotOut is not empty, dot[c] = Σ g·x̂ (group norm's dγ); accumulated in float64 and rounded
    /// once. Bias gradients of conv ([N, Cout, OH·OW]) and linear ([N, out, 1]) layers use it too.
    /// </summary>
    public static void ChannelSumsToFloat(ChannelLayout l, ArrayView<float> dy, ArrayView<float> xhat,
        ArrayView<float> sum, ArrayView<float> dot, int withDot)
    {
        var s1 = SharedMemory.Allocate<double>(MaxGroup);
        var s2 = SharedMemory.Allocate<double>(MaxGroup);
        int c = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        int count = l.N * l.Spatial;
        double a = 0, b = 0;
        for (int i = t; i < count; i += g)
        {
            int n = i / l.Spatial, s = i - n * l.Spatial;
            int at = (n * l.Channels + c) * l.Spatial + s;
            double v = dy[at];
            a += v;
            if (withDot != 0) b += v * xhat[at];
        }
        TreeSum(s1, s2, a, b, t, g);
        if (t == 0)
        {
            sum[c] = (float)s1[0];
            if (withDot != 0) dot[c] = (float)s2[0];
        }
    }

    /// <summary>
    /// Per element (grid-stride), coefficients packed as coeffs = [k (C), d (C), invStd (C)]:
    /// x̂ = ((x − k) − d)·invStd, y = fma(γ, x̂, β), then max(y, 0) when relu ≠ 0 (0 for NaN, as <see cref="ElementwiseKernels.Relu"/>).
    /// </summary>
    public static void Normalize(int n, ChannelLayout l, ArrayView<float> x, ArrayView<float> coeffs,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, int relu)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            int c = (i / l.Spatial) % l.Channels;
            float v = Fma(gamma[c], Xhat(l, coeffs, c, x[i]), beta[c]);
            y[i] = relu == 0 || v > 0f ? v : 0f;
        }
    }

    /// <summary>
    /// Per element (grid-stride), coeffs = [k (C), d (C), invStd (C), meanDy (C), meanDyXhat (C)], x̂ and g as in
    /// <see cref="BackwardSums"/>: dx = a·g − a·meanDy − a·meanDyXhat·x̂ with a = γ·invStd, as fma(a, g, fma(−a·m₂, x̂, −a·m₁)).
    /// </summary>
    public static void BackwardInput(int n, ChannelLayout l, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> coeffs,
        ArrayView<float> gamma, ArrayView<float> beta, int relu, ArrayView<float> dx)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            int c = (i / l.Spatial) % l.Channels;
            float h = Xhat(l, coeffs, c, x[i]);
            float a = gamma[c] * coeffs[2 * l.Channels + c];
            float t = Fma(-a * coeffs[4 * l.Channels + c], h, -a * coeffs[3 * l.Channels + c]);
            dx[i] = Fma(a, Masked(dy[i], h, gamma[c], beta[c], relu), t);
        }
    }

    /// <summary>Per element (grid-stride), coeffs = [scale (C), shift (C)]: y = fma(a_c, x, b_c), then max(y, 0) when relu ≠ 0.</summary>
    public static void ChannelAffine(int n, ChannelLayout l, ArrayView<float> x, ArrayView<float> coeffs, int relu, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            int c = (i / l.Spatial) % l.Channels;
            float v = Fma(coeffs[c], x[i], coeffs[l.Channels + c]);
            y[i] = relu == 0 || v > 0f ? v : 0f;
        }
    }

    /// <summary>
    /// Grid: N·G groups, one per (sample, group) — its (C/G)·S values are contiguous. Two passes in
    /// float64 (the mean, then the centred squares), as on the CPU; then x̂ = (x − μ)·invStd and
    /// y = γ_c·x̂ + β_c in float32; invStd[n·G + g] = 1/√(σ² + eps).
    /// </summary>
    public static void GroupNormForward(ChannelLayout l, int groups, float eps, ArrayView<float> x,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> xhat, ArrayView<float> invStd, ArrayView<float> y)
    {
        var s1 = SharedMemory.Allocate<double>(MaxGroup);
        var s2 = SharedMemory.Allocate<double>(MaxGroup);
        int r = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        int perGroup = l.Channels / groups, count = perGroup * l.Spatial, first = r * count;
        double sum = 0;
        for (int i = t; i < count; i += g) sum += x[first + i];
        TreeSum(s1, s2, sum, 0, t, g);
        double mean = s1[0] / count;
        Group.Barrier(); // every thread has read the mean before the next tree reuses s1
        double m2 = 0;
        for (int i = t; i < count; i += g)
        {
            double d = x[first + i] - mean;
            m2 += d * d;
        }
        TreeSum(s1, s2, m2, 0, t, g);
        float istd = (float)(1.0 / Math.Sqrt(s1[0] / count + eps));
        if (t == 0) invStd[r] = istd;
        float fmean = (float)mean;
        int firstChannel = (r % groups) * perGroup;
        for (int i = t; i < count; i += g)
        {
            int ch = firstChannel + i / l.Spatial;
            float h = (x[first + i] - fmean) * istd;
            xhat[first + i] = h;
            y[first + i] = gamma[ch] * h + beta[ch];
        }
    }

    /// <summary>
    /// Grid: N·G groups. dx = invStd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = γ_c·g (rounded to float32, as on
    /// the CPU), the means over the (sample, group) taken in float64.
    /// </summary>
    public static void GroupNormBackwardInput(ChannelLayout l, int groups, ArrayView<float> dy, ArrayView<float> xhat,
        ArrayView<float> gamma, ArrayView<float> invStd, ArrayView<float> dx)
    {
        var s1 = SharedMemory.Allocate<double>(MaxGroup);
        var s2 = SharedMemory.Allocate<double>(MaxGroup);
        int r = Grid.IdxX, t = Group.IdxX, g = Group.DimX;
        int perGroup = l.Channels / groups, count = perGroup * l.Spatial, first = r * count;
        int firstChannel = (r % groups) * perGroup;
        double a = 0, b = 0;
        for (int i = t; i < count; i += g)
        {
            double gh = gamma[firstChannel + i / l.Spatial] * dy[first + i];
            a += gh;
            b += gh * xhat[first + i];
        }
        TreeSum(s1, s2, a, b, t, g);
        float mean1 = (float)(s1[0] / count), mean2 = (float)(s2[0] / count), istd = invStd[r];
        for (int i = t; i < count; i += g)
        {
            float gc = gamma[firstChannel + i / l.Spatial];
            dx[first + i] = istd * (gc * dy[first + i] - mean1 - xhat[first + i] * mean2);
        }
    }

    /// <summary>
    /// s1[0] = Σ_t a_t, s2[0] = Σ_t b_t over the group (G a power of two): pairs (t, t + half)
    /// added for half = G/2, G/4, …, 1 — a fixed tree. Ends with a barrier, so every thread may read
    /// s1[0] and s2[0].
    /// </summary>
    private static void TreeSum(ArrayView<double> s1, ArrayView<double> s2, double a, double b, int t, int g)
    {
        s1[t] = a;
        s2[t] = b;
        Group.Barrier();
        for (int half = g / 2; half > 0; half /= 2)
        {
            if (t < half)
            {
                s1[t] += s1[t + half];
                s2[t] += s2[t + half];
            }
            Group.Barrier();
        }
    }

    /// <summary>x̂ = ((x − k_c) − d_c)·invStd_c, coeffs beginning [k (C), d (C), invStd (C)].</summary>
    private static float Xhat(ChannelLayout l, ArrayView<float> coeffs, int c, float x) =>
        (x - coeffs[c] - coeffs[l.Channels + c]) * coeffs[2 * l.Channels + c];

    /// <summary>g, or 0 where a fused ReLU's input fma(γ, x̂, β) (as the forward computed it) was not positive.</summary>
    private static float Masked(float g, float xhat, float gamma, float beta, int relu) =>
        relu == 0 || Fma(gamma, xhat, beta) > 0f ? g : 0f;

    /// <summary>a·b + c rounded once (see the class remarks).</summary>
    private static float Fma(float a, float b, float c) => (float)((double)a * b + c);
}
