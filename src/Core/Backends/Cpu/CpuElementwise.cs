using System.Numerics.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>Vectorized elementwise activations over contiguous spans (one chunk of a tensor), on every instruction
/// set: TensorPrimitives where it has the operation, <see cref="CpuRowKernels"/> where not.</summary>
internal static class CpuElementwise
{
    /// <summary>y = max(x, 0) (NaN stays NaN, as in PyTorch).</summary>
    public static void Relu(ReadOnlySpan<float> x, Span<float> y) => TensorPrimitives.Max(x, 0f, y);

    /// <summary>y = max(a + b, 0): the bits of <c>TensorPrimitives.Add</c> then <see cref="Relu"/>, in one pass.</summary>
    public static void AddRelu(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y) => CpuRowKernels.AddRelu(a, b, y);

    /// <summary>dx = dy where y &gt; 0 (y is the ReLU output), else 0.</summary>
    public static void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx) =>
        CpuRowKernels.ReluBackward(y, dy, dx);

    /// <summary>y = 1/(1 + e^−x), computed as e^x/(1 + e^x) for x &lt; 0 so neither side overflows.</summary>
    public static void Sigmoid(ReadOnlySpan<float> x, Span<float> y)
    {
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            if (v >= 0f)
            {
                y[i] = 1f / (1f + MathF.Exp(-v));
            }
            else
            {
                float e = MathF.Exp(v);
                y[i] = e / (1f + e);
            }
        }
    }

    /// <summary>dx = dy·y·(1 − y), y the sigmoid output.</summary>
    public static void SigmoidBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx) =>
        CpuRowKernels.SigmoidBackward(y, dy, dx);
}
