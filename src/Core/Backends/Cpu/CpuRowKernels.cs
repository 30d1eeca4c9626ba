using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static BnDist.Core.Backends.Cpu.CpuDispatch;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// The hand-written row kernels that <c>TensorPrimitives</c> does not cover: the float64 channel sums of
/// batch norm, the ReLU and sigmoid backward, a float32 sum, each for AVX-512, AVX2, 128-bit vectors and
/// scalar (<see cref="CpuDispatch"/>). The elementwise batch-norm stages are in <see cref="CpuBatchNormRows"/>.
/// </summary>
/// <remarks>
/// <para>
/// Float64 sums, one summation order on every path. A row is cut into blocks of 16 floats; each block's
/// values v[0..15] (float32, already shifted where asked) are widened to float64 and go to 8 lanes, lane j
/// taking v[j] and v[8 + j] — the lanes of one Vector512&lt;double&gt;, two Vector256 or four Vector128, or eight
/// scalars. The lanes are then combined in the fixed order of <see cref="Reduce8"/> and the last &lt;16 values
/// added in turn. The squares and products are products of two floats, exact in float64, so a fused and an
/// unfused multiply-add give the same bits: the statistics are bit-identical whichever path computes them.
/// </para>
/// <para>
/// Float32 stages use a fused multiply-add where the hardware has one (every AVX2, AVX-512 and ARM64
/// machine) and a multiply then an add where it has not (x86 before FMA3, or the runtime's switches), in the
/// vector body and the scalar tail alike.
/// </para>
/// </remarks>
internal static class CpuRowKernels
{
    /// <summary>(Σ (x − k), Σ (x − k)²) of one row, accumulated in float64 (x − k is rounded to float32 first).</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe (double Sum, double SumSquares) ShiftedSums(ReadOnlySpan<float> row, float shift)
    {
        double* l1 = stackalloc double[8], l2 = stackalloc double[8];
        ref float r = ref MemoryMarshal.GetReference(row);
        int n = row.Length, i = 0;
        if (IsAvx512)
        {
            var k = Vector512.Create(shift);
            Vector512<double> a1 = default, a2 = default;
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref r, (nuint)i) - k);
                a1 += lo + hi;
                a2 = Vector512.FusedMultiplyAdd(lo, lo, Vector512.FusedMultiplyAdd(hi, hi, a2));
            }
            a1.Store(l1);
            a2.Store(l2);
        }
        else if (IsAvx2)
        {
            var k = Vector256.Create(shift);
            Vector256<double> a1 = default, b1 = default, a2 = default, b2 = default;
            for (; i + 16 <= n; i += 16)
            {
                var (v0, v1) = Vector256.Widen(Vector256.LoadUnsafe(ref r, (nuint)i) - k);      // lanes 0–3, 4–7
                var (v2, v3) = Vector256.Widen(Vector256.LoadUnsafe(ref r, (nuint)i + 8) - k);  // lanes 0–3, 4–7
                a1 += v0 + v2;
                b1 += v1 + v3;
                a2 = Vector256.FusedMultiplyAdd(v0, v0, Vector256.FusedMultiplyAdd(v2, v2, a2));
                b2 = Vector256.FusedMultiplyAdd(v1, v1, Vector256.FusedMultiplyAdd(v3, v3, b2));
            }
            a1.Store(l1); b1.Store(l1 + 4);
            a2.Store(l2); b2.Store(l2 + 4);
        }
        else if (IsVector128)
        {
            var k = Vector128.Create(shift);
            Vector128<double> a1 = default, b1 = default, c1 = default, d1 = default;
            Vector128<double> a2 = default, b2 = default, c2 = default, d2 = default;
            for (; i + 16 <= n; i += 16)
            {
                var (v0, v1) = Vector128.Widen(Vector128.LoadUnsafe(ref r, (nuint)i) - k);       // lanes 0–1, 2–3
                var (v2, v3) = Vector128.Widen(Vector128.LoadUnsafe(ref r, (nuint)i + 4) - k);   // lanes 4–5, 6–7
                var (v4, v5) = Vector128.Widen(Vector128.LoadUnsafe(ref r, (nuint)i + 8) - k);   // lanes 0–1, 2–3
                var (v6, v7) = Vector128.Widen(Vector128.LoadUnsafe(ref r, (nuint)i + 12) - k);  // lanes 4–5, 6–7
                a1 += v0 + v4; b1 += v1 + v5; c1 += v2 + v6; d1 += v3 + v7;
                a2 = Vector128.MultiplyAddEstimate(v0, v0, Vector128.MultiplyAddEstimate(v4, v4, a2));
                b2 = Vector128.MultiplyAddEstimate(v1, v1, Vector128.MultiplyAddEstimate(v5, v5, b2));
                c2 = Vector128.MultiplyAddEstimate(v2, v2, Vector128.MultiplyAddEstimate(v6, v6, c2));
                d2 = Vector128.MultiplyAddEstimate(v3, v3, Vector128.MultiplyAddEstimate(v7, v7, d2));
            }
            a1.Store(l1); b1.Store(l1 + 2); c1.Store(l1 + 4); d1.Store(l1 + 6);
            a2.Store(l2); b2.Store(l2 + 2); c2.Store(l2 + 4); d2.Store(l2 + 6);
        }
        else
        {
            for (int j = 0; j < 8; j++)
                l1[j] = l2[j] = 0;
            for (; i + 16 <= n; i += 16)
            {
                for (int j = 0; j < 8; j++)
                {
                    double lo = Unsafe.Add(ref r, i + j) - shift, hi = Unsafe.Add(ref r, i + 8 + j) - shift;
                    l1[j] += lo + hi;
                    l2[j] = lo * lo + (hi * hi + l2[j]);
                }
            }
        }
        double s1 = Reduce8(l1), s2 = Reduce8(l2);
        for (; i < n; i++)
        {
            double v = Unsafe.Add(ref r, i) - shift;
            s1 += v;
            s2 += v * v;
        }
        return (s1, s2);
    }

    /// <summary>The 8 lanes combined pairwise: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe double Reduce8(double* l) => ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));

    /// <summary>y = max(a + b, 0) (NaN stays NaN); y may be a or b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddRelu(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> y)
    {
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float br = ref MemoryMarshal.GetReference(b);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = a.Length, i = 0;
        if (IsAvx512)
            for (; i + 16 <= n; i += 16)
                Vector512.Max(Vector512.LoadUnsafe(ref ar, (nuint)i) + Vector512.LoadUnsafe(ref br, (nuint)i), Vector512<float>.Zero).StoreUnsafe(ref yr, (nuint)i);
        else if (IsAvx2)
            for (; i + 8 <= n; i += 8)
                Vector256.Max(Vector256.LoadUnsafe(ref ar, (nuint)i) + Vector256.LoadUnsafe(ref br, (nuint)i), Vector256<float>.Zero).StoreUnsafe(ref yr, (nuint)i);
        else if (IsVector128)
            for (; i + 4 <= n; i += 4)
                Vector128.Max(Vector128.LoadUnsafe(ref ar, (nuint)i) + Vector128.LoadUnsafe(ref br, (nuint)i), Vector128<float>.Zero).StoreUnsafe(ref yr, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref yr, i) = MathF.Max(Unsafe.Add(ref ar, i) + Unsafe.Add(ref br, i), 0f);
    }

    /// <summary>dx = a + b where y &gt; 0, else 0: the bits of a sum then <see cref="ReluBackward"/>; dx may be a or b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddReluBackward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> y, Span<float> dx)
    {
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float br = ref MemoryMarshal.GetReference(b);
        ref float ys = ref MemoryMarshal.GetReference(y);
        ref float ds = ref MemoryMarshal.GetReference(dx);
        int n = a.Length, i = 0;
        if (IsAvx512)
            for (; i + 16 <= n; i += 16)
                (Vector512.GreaterThan(Vector512.LoadUnsafe(ref ys, (nuint)i), Vector512<float>.Zero)
                    & (Vector512.LoadUnsafe(ref ar, (nuint)i) + Vector512.LoadUnsafe(ref br, (nuint)i))).StoreUnsafe(ref ds, (nuint)i);
        else if (IsAvx2)
            for (; i + 8 <= n; i += 8)
                (Vector256.GreaterThan(Vector256.LoadUnsafe(ref ys, (nuint)i), Vector256<float>.Zero)
                    & (Vector256.LoadUnsafe(ref ar, (nuint)i) + Vector256.LoadUnsafe(ref br, (nuint)i))).StoreUnsafe(ref ds, (nuint)i);
        else if (IsVector128)
            for (; i + 4 <= n; i += 4)
                (Vector128.GreaterThan(Vector128.LoadUnsafe(ref ys, (nuint)i), Vector128<float>.Zero)
                    & (Vector128.LoadUnsafe(ref ar, (nuint)i) + Vector128.LoadUnsafe(ref br, (nuint)i))).StoreUnsafe(ref ds, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref ds, i) = Unsafe.Add(ref ys, i) > 0f ? Unsafe.Add(ref ar, i) + Unsafe.Add(ref br, i) : 0f;
    }

    /// <summary>dx = dy where y &gt; 0 (y is the ReLU output), else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        ref float ys = ref MemoryMarshal.GetReference(y);
        ref float gs = ref MemoryMarshal.GetReference(dy);
        ref float ds = ref MemoryMarshal.GetReference(dx);
        int n = y.Length, i = 0;
        if (IsAvx512)
            for (; i + 16 <= n; i += 16)
                (Vector512.GreaterThan(Vector512.LoadUnsafe(ref ys, (nuint)i), Vector512<float>.Zero) & Vector512.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        else if (IsAvx2)
            for (; i + 8 <= n; i += 8)
                (Vector256.GreaterThan(Vector256.LoadUnsafe(ref ys, (nuint)i), Vector256<float>.Zero) & Vector256.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        else if (IsVector128)
            for (; i + 4 <= n; i += 4)
                (Vector128.GreaterThan(Vector128.LoadUnsafe(ref ys, (nuint)i), Vector128<float>.Zero) & Vector128.LoadUnsafe(ref gs, (nuint)i)).StoreUnsafe(ref ds, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref ds, i) = Unsafe.Add(ref ys, i) > 0f ? Unsafe.Add(ref gs, i) : 0f;
    }

    /// <summary>dx = dy·y·(1 − y), y the sigmoid output.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SigmoidBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        ref float ys = ref MemoryMarshal.GetReference(y);
        ref float gs = ref MemoryMarshal.GetReference(dy);
        ref float ds = ref MemoryMarshal.GetReference(dx);
        int n = y.Length, i = 0;
        if (IsAvx512)
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref ys, (nuint)i);
                (Vector512.LoadUnsafe(ref gs, (nuint)i) * v * (Vector512<float>.One - v)).StoreUnsafe(ref ds, (nuint)i);
            }
        else if (IsAvx2)
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref ys, (nuint)i);
                (Vector256.LoadUnsafe(ref gs, (nuint)i) * v * (Vector256<float>.One - v)).StoreUnsafe(ref ds, (nuint)i);
            }
        else if (IsVector128)
            for (; i + 4 <= n; i += 4)
            {
                var v = Vector128.LoadUnsafe(ref ys, (nuint)i);
                (Vector128.LoadUnsafe(ref gs, (nuint)i) * v * (Vector128<float>.One - v)).StoreUnsafe(ref ds, (nuint)i);
            }
        for (; i < n; i++)
        {
            float v = Unsafe.Add(ref ys, i);
            Unsafe.Add(ref ds, i) = Unsafe.Add(ref gs, i) * v * (1f - v);
        }
    }

    /// <summary>Σ p[i] in float32, in one order on every path: 16 lanes (lane j takes p[16b + j]), combined
    /// pairwise (<see cref="Reduce16"/>), then the tail in turn.</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe float Sum(float* p, int count)
    {
        float* l = stackalloc float[16];
        int i = 0;
        if (IsAvx512)
        {
            var a = Vector512<float>.Zero;
            for (; i + 16 <= count; i += 16)
                a += Vector512.Load(p + i);
            a.Store(l);
        }
        else if (IsAvx2)
        {
            Vector256<float> a = default, b = default;
            for (; i + 16 <= count; i += 16)
            {
                a += Vector256.Load(p + i);
                b += Vector256.Load(p + i + 8);
            }
            a.Store(l); b.Store(l + 8);
        }
        else if (IsVector128)
        {
            Vector128<float> a = default, b = default, c = default, d = default;
            for (; i + 16 <= count; i += 16)
            {
                a += Vector128.Load(p + i);
                b += Vector128.Load(p + i + 4);
                c += Vector128.Load(p + i + 8);
                d += Vector128.Load(p + i + 12);
            }
            a.Store(l); b.Store(l + 4); c.Store(l + 8); d.Store(l + 12);
        }
        else
        {
            for (int j = 0; j < 16; j++)
                l[j] = 0f;
            for (; i + 16 <= count; i += 16)
                for (int j = 0; j < 16; j++)
                    l[j] += p[i + j];
        }
        float s = Reduce16(l);
        for (; i < count; i++)
            s += p[i];
        return s;
    }

    /// <summary>16 float lanes combined pairwise, halves first: l[j] + l[j + 8], then + [j + 4], + [j + 2], + [j + 1].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe float Reduce16(float* l)
    {
        for (int w = 8; w >= 1; w /= 2)
            for (int j = 0; j < w; j++)
                l[j] += l[j + w];
        return l[0];
    }

    /// <summary>a·b + c, fused where the hardware fuses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float MulAdd(float a, float b, float c) => HasFma ? MathF.FusedMultiplyAdd(a, b, c) : a * b + c;
}
