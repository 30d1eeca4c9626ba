using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Fills, activations and their backward. Like every elementwise kernel here, a grid-stride
/// loop: thread g of the launch handles elements g, g + T, g + 2T, … (T threads in all), so a
/// launch of a few groups per multiprocessor covers any length. Each output element depends
/// on its own inputs only, so results do not depend on the launch shape.
/// </summary>
internal static class ElementwiseKernels
{
    /// <summary>y[i] = value.</summary>
    public static void Fill(int n, ArrayView<float> y, float value)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX) y[i] = value;
    }

    /// <summary>y[i] = max(x[i], 0) (0 for NaN and −0, like the CPU's scalar tail).</summary>
    public static void Relu(int n, ArrayView<float> x, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            float v = x[i];
            y[i] = v > 0f ? v : 0f;
        }
    }

    /// <summary>dx[i] = dy[i] where y[i] &gt; 0, else 0.</summary>
    public static void ReluBackward(int n, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX) dx[i] = y[i] > 0f ? dy[i] : 0f;
    }

    /// <summary>
    /// y = 1/(1 + e^−x), evaluated in float64 as 1/(1 + e^−|x|) or e^−|x|/(1 + e^−|x|) so
    /// neither side overflows, then rounded once to float32 (the CPU rounds after MathF.Exp
    /// and again after the division: the two agree to an ulp or two).
    /// </summary>
    public static void Sigmoid(int n, ArrayView<float> x, ArrayView<float> y)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            double v = x[i];
            double e = KernelMath.Exp(v >= 0 ? -v : v);
            y[i] = (float)(v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
        }
    }

    /// <summary>dx = dy·y·(1 − y), y the sigmoid output, in the CPU's order of operations.</summary>
    public static void SigmoidBackward(int n, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            float v = y[i];
            dx[i] = dy[i] * v * (1f - v);
        }
    }
}
