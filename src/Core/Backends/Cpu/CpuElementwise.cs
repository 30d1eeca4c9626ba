using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace BnDist.Core.Backends.Cpu;

/// <summary>Vectorized elementwise activations over contiguous spans (one chunk of a tensor).</summary>
internal static class CpuElementwise
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Relu(ReadOnlySpan<float> x, Span<float> y)
    {
        int i = 0;
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ys = ref MemoryMarshal.GetReference(y);
        for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            Vector512.Max(Vector512.LoadUnsafe(ref xs, (nuint)i), Vector512<float>.Zero).StoreUnsafe(ref ys, (nuint)i);
        for (; i < x.Length; i++) y[i] = x[i] > 0f ? x[i] : 0f;
    }

    /// <summary>dx = dy where y &gt; 0 (y is the ReLU output), else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        ref float ys = ref MemoryMarshal.GetReference(y);
        ref float gs = ref MemoryMarshal.GetReference(dy);
        ref float ds = ref MemoryMarshal.GetReference(dx);
        for (; i <= y.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var mask = Vector512.GreaterThan(Vector512.LoadUnsafe(ref ys, (nuint)i), Vector512<float>.Zero);
            Vector512.BitwiseAnd(mask, Vector512.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        }
        for (; i < y.Length; i++) dx[i] = y[i] > 0f ? dy[i] : 0f;
    }

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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SigmoidBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        int i = 0;
        ref float ys = ref MemoryMarshal.GetReference(y);
        ref float gs = ref MemoryMarshal.GetReference(dy);
        ref float ds = ref MemoryMarshal.GetReference(dx);
        for (; i <= y.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var v = Vector512.LoadUnsafe(ref ys, (nuint)i);
            (Vector512.LoadUnsafe(ref gs, (nuint)i) * v * (Vector512<float>.One - v)).StoreUnsafe(ref ds, (nuint)i);
        }
        for (; i < y.Length; i++) dx[i] = dy[i] * y[i] * (1f - y[i]);
    }
}
