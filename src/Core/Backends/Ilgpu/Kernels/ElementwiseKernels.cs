using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// One thread per element: fills, activations and their backward. Each output element
/// depends on its own inputs only, so the results do not depend on the launch shape.
/// </summary>
internal static class ElementwiseKernels
{
    /// <summary>y[i] = value.</summary>
    public static void Fill(Index1D i, ArrayView<float> y, float value) => y[i] = value;

    /// <summary>y[i] = max(x[i], 0) (0 for NaN and −0, like the CPU's scalar tail).</summary>
    public static void Relu(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[i];
        y[i] = v > 0f ? v : 0f;
    }

    /// <summary>dx[i] = dy[i] where y[i] &gt; 0, else 0.</summary>
    public static void ReluBackward(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[i] = y[i] > 0f ? dy[i] : 0f;

    /// <summary>
    /// y = 1/(1 + e^−x), evaluated in float64 as 1/(1 + e^−|x|) or e^−|x|/(1 + e^−|x|) so
    /// neither side overflows, then rounded once to float32 (the CPU rounds after MathF.Exp
    /// and again after the division: the two agree to an ulp or two).
    /// </summary>
    public static void Sigmoid(Index1D i, ArrayView<float> x, ArrayView<float> y)
    {
        double v = x[i];
        double e = KernelMath.Exp(v >= 0 ? -v : v);
        y[i] = (float)(v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
    }

    /// <summary>dx = dy·y·(1 − y), y the sigmoid output, in the CPU's order of operations.</summary>
    public static void SigmoidBackward(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        float v = y[i];
        dx[i] = dy[i] * v * (1f - v);
    }
}
