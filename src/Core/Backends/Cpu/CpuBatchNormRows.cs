using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static BnDist.Core.Backends.Cpu.CpuDispatch;
using static BnDist.Core.Backends.Cpu.CpuRowKernels;

namespace BnDist.Core.Backends.Cpu;

/// <summary>One channel's batch-norm map (<see cref="BatchNormTransform"/>) as scalars.</summary>
internal readonly record struct ChannelMap(float Shift, float MeanMinusShift, float InvStd, float Gamma, float Beta, bool Relu);

/// <summary>
/// The elementwise batch-norm stages over one row (the S values of one sample and channel), for AVX-512, AVX2,
/// 128-bit vectors and scalar (<see cref="CpuDispatch"/>), with the ReLU that may follow fused in. The backward
/// stages recompute x̂ = ((x − k) − d)·inv from x instead of reading a stored x̂, and the ReLU's mask from
/// γ·x̂ + β &gt; 0, each with the operations the forward used, so they see the forward's bits: a stored x̂ (and a
/// separate ReLU) would give the same results for one more tensor written and read per layer.
/// </summary>
/// <remarks>
/// The float64 sums keep <see cref="CpuRowKernels"/>' one summation order (blocks of 16, lane j of 8 taking
/// v[j] and v[8 + j], <see cref="CpuRowKernels.Reduce8"/>, then the tail in turn), so every path gives the same
/// statistics. A masked g is +0, as the separate ReLU's backward wrote it.
/// </remarks>
internal static class CpuBatchNormRows
{
    /// <summary>y = γ·x̂ + β, then max(y, 0) when the map has the ReLU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Normalize(ReadOnlySpan<float> x, Span<float> y, in ChannelMap m)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        bool relu = m.Relu;
        if (IsAvx512)
        {
            Vector512<float> vk = Vector512.Create(m.Shift), vd = Vector512.Create(m.MeanMinusShift), vi = Vector512.Create(m.InvStd),
                vg = Vector512.Create(m.Gamma), vb = Vector512.Create(m.Beta);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.FusedMultiplyAdd(vg, (Vector512.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi, vb);
                if (relu) v = Vector512.Max(v, Vector512<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        else if (IsAvx2)
        {
            Vector256<float> vk = Vector256.Create(m.Shift), vd = Vector256.Create(m.MeanMinusShift), vi = Vector256.Create(m.InvStd),
                vg = Vector256.Create(m.Gamma), vb = Vector256.Create(m.Beta);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.FusedMultiplyAdd(vg, (Vector256.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi, vb);
                if (relu) v = Vector256.Max(v, Vector256<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        else if (IsVector128)
        {
            Vector128<float> vk = Vector128.Create(m.Shift), vd = Vector128.Create(m.MeanMinusShift), vi = Vector128.Create(m.InvStd),
                vg = Vector128.Create(m.Gamma), vb = Vector128.Create(m.Beta);
            for (; i + 4 <= n; i += 4)
            {
                var v = Vector128.MultiplyAddEstimate(vg, (Vector128.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi, vb);
                if (relu) v = Vector128.Max(v, Vector128<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float v = MulAdd(m.Gamma, Xhat(Unsafe.Add(ref xr, i), m), m.Beta);
            Unsafe.Add(ref yr, i) = relu ? MathF.Max(v, 0f) : v;
        }
    }

    /// <summary>(Σ g, Σ g·x̂) of one row in float64, x̂ recomputed from x, g = dy masked by the ReLU if fused.</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe (double Sum, double SumProducts) BackwardSums(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, in ChannelMap m)
    {
        double* l1 = stackalloc double[8], l2 = stackalloc double[8];
        ref float gr = ref MemoryMarshal.GetReference(dy);
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = dy.Length, i = 0;
        bool relu = m.Relu;
        if (IsAvx512)
        {
            Vector512<float> vk = Vector512.Create(m.Shift), vd = Vector512.Create(m.MeanMinusShift), vi = Vector512.Create(m.InvStd),
                vg = Vector512.Create(m.Gamma), vb = Vector512.Create(m.Beta);
            Vector512<double> a1 = default, a2 = default;
            for (; i + 16 <= n; i += 16)
            {
                var h = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
                var g = Vector512.LoadUnsafe(ref gr, (nuint)i);
                if (relu) g &= Vector512.GreaterThan(Vector512.FusedMultiplyAdd(vg, h, vb), Vector512<float>.Zero);
                var (g0, g1) = Vector512.Widen(g);
                var (x0, x1) = Vector512.Widen(h);
                a1 += g0 + g1;
                a2 = Vector512.FusedMultiplyAdd(g0, x0, Vector512.FusedMultiplyAdd(g1, x1, a2));
            }
            a1.Store(l1);
            a2.Store(l2);
        }
        else if (IsAvx2)
        {
            Vector256<float> vk = Vector256.Create(m.Shift), vd = Vector256.Create(m.MeanMinusShift), vi = Vector256.Create(m.InvStd),
                vg = Vector256.Create(m.Gamma), vb = Vector256.Create(m.Beta);
            Vector256<double> a1 = default, b1 = default, a2 = default, b2 = default;
            for (; i + 16 <= n; i += 16)
            {
                var h = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
                var k = (Vector256.LoadUnsafe(ref xr, (nuint)i + 8) - vk - vd) * vi;
                var g = Vector256.LoadUnsafe(ref gr, (nuint)i);
                var f = Vector256.LoadUnsafe(ref gr, (nuint)i + 8);
                if (relu)
                {
                    g &= Vector256.GreaterThan(Vector256.FusedMultiplyAdd(vg, h, vb), Vector256<float>.Zero);
                    f &= Vector256.GreaterThan(Vector256.FusedMultiplyAdd(vg, k, vb), Vector256<float>.Zero);
                }
                var (g0, g1) = Vector256.Widen(g);
                var (g2, g3) = Vector256.Widen(f);
                var (x0, x1) = Vector256.Widen(h);
                var (x2, x3) = Vector256.Widen(k);
                a1 += g0 + g2;
                b1 += g1 + g3;
                a2 = Vector256.FusedMultiplyAdd(g0, x0, Vector256.FusedMultiplyAdd(g2, x2, a2));
                b2 = Vector256.FusedMultiplyAdd(g1, x1, Vector256.FusedMultiplyAdd(g3, x3, b2));
            }
            a1.Store(l1); b1.Store(l1 + 4);
            a2.Store(l2); b2.Store(l2 + 4);
        }
        else if (IsVector128)
        {
            Vector128<float> vk = Vector128.Create(m.Shift), vd = Vector128.Create(m.MeanMinusShift), vi = Vector128.Create(m.InvStd),
                vg = Vector128.Create(m.Gamma), vb = Vector128.Create(m.Beta);
            Vector128<double> a1 = default, b1 = default, c1 = default, d1 = default;
            Vector128<double> a2 = default, b2 = default, c2 = default, d2 = default;
            for (; i + 16 <= n; i += 16)
            {
                // v[0..3] and v[8..11] go to lanes 0–3, v[4..7] and v[12..15] to lanes 4–7
                var (g0, g1, x0, x1) = Quarter128(ref gr, ref xr, i, vk, vd, vi, vg, vb, relu);
                var (g2, g3, x2, x3) = Quarter128(ref gr, ref xr, i + 4, vk, vd, vi, vg, vb, relu);
                var (g4, g5, x4, x5) = Quarter128(ref gr, ref xr, i + 8, vk, vd, vi, vg, vb, relu);
                var (g6, g7, x6, x7) = Quarter128(ref gr, ref xr, i + 12, vk, vd, vi, vg, vb, relu);
                a1 += g0 + g4; b1 += g1 + g5; c1 += g2 + g6; d1 += g3 + g7;
                a2 = Vector128.MultiplyAddEstimate(g0, x0, Vector128.MultiplyAddEstimate(g4, x4, a2));
                b2 = Vector128.MultiplyAddEstimate(g1, x1, Vector128.MultiplyAddEstimate(g5, x5, b2));
                c2 = Vector128.MultiplyAddEstimate(g2, x2, Vector128.MultiplyAddEstimate(g6, x6, c2));
                d2 = Vector128.MultiplyAddEstimate(g3, x3, Vector128.MultiplyAddEstimate(g7, x7, d2));
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
                    float h0 = Xhat(Unsafe.Add(ref xr, i + j), m), h1 = Xhat(Unsafe.Add(ref xr, i + 8 + j), m);
                    double g0 = Gradient(Unsafe.Add(ref gr, i + j), h0, m), g1 = Gradient(Unsafe.Add(ref gr, i + 8 + j), h1, m);
                    l1[j] += g0 + g1;
                    l2[j] = g0 * h0 + (g1 * h1 + l2[j]);
                }
            }
        }
        double s1 = Reduce8(l1), s2 = Reduce8(l2);
        for (; i < n; i++)
        {
            float h = Xhat(Unsafe.Add(ref xr, i), m);
            double gv = Gradient(Unsafe.Add(ref gr, i), h, m);
            s1 += gv;
            s2 += gv * h;
        }
        return (s1, s2);
    }

    /// <summary>dx = a·g + (b·x̂ + c), x̂ and g as in <see cref="BackwardSums"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BackwardInput(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, in ChannelMap m, float a, float b, float c)
    {
        ref float gr = ref MemoryMarshal.GetReference(dy);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float dr = ref MemoryMarshal.GetReference(dx);
        int n = dy.Length, i = 0;
        bool relu = m.Relu;
        if (IsAvx512)
        {
            Vector512<float> vk = Vector512.Create(m.Shift), vd = Vector512.Create(m.MeanMinusShift), vi = Vector512.Create(m.InvStd),
                vg = Vector512.Create(m.Gamma), vb = Vector512.Create(m.Beta), va = Vector512.Create(a), vb2 = Vector512.Create(b), vc = Vector512.Create(c);
            for (; i + 16 <= n; i += 16)
            {
                var h = (Vector512.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
                var g = Vector512.LoadUnsafe(ref gr, (nuint)i);
                if (relu) g &= Vector512.GreaterThan(Vector512.FusedMultiplyAdd(vg, h, vb), Vector512<float>.Zero);
                Vector512.FusedMultiplyAdd(va, g, Vector512.FusedMultiplyAdd(vb2, h, vc)).StoreUnsafe(ref dr, (nuint)i);
            }
        }
        else if (IsAvx2)
        {
            Vector256<float> vk = Vector256.Create(m.Shift), vd = Vector256.Create(m.MeanMinusShift), vi = Vector256.Create(m.InvStd),
                vg = Vector256.Create(m.Gamma), vb = Vector256.Create(m.Beta), va = Vector256.Create(a), vb2 = Vector256.Create(b), vc = Vector256.Create(c);
            for (; i + 8 <= n; i += 8)
            {
                var h = (Vector256.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
                var g = Vector256.LoadUnsafe(ref gr, (nuint)i);
                if (relu) g &= Vector256.GreaterThan(Vector256.FusedMultiplyAdd(vg, h, vb), Vector256<float>.Zero);
                Vector256.FusedMultiplyAdd(va, g, Vector256.FusedMultiplyAdd(vb2, h, vc)).StoreUnsafe(ref dr, (nuint)i);
            }
        }
        else if (IsVector128)
        {
            Vector128<float> vk = Vector128.Create(m.Shift), vd = Vector128.Create(m.MeanMinusShift), vi = Vector128.Create(m.InvStd),
                vg = Vector128.Create(m.Gamma), vb = Vector128.Create(m.Beta), va = Vector128.Create(a), vb2 = Vector128.Create(b), vc = Vector128.Create(c);
            for (; i + 4 <= n; i += 4)
            {
                var h = (Vector128.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
                var g = Vector128.LoadUnsafe(ref gr, (nuint)i);
                if (relu) g &= Vector128.GreaterThan(Vector128.MultiplyAddEstimate(vg, h, vb), Vector128<float>.Zero);
                Vector128.MultiplyAddEstimate(va, g, Vector128.MultiplyAddEstimate(vb2, h, vc)).StoreUnsafe(ref dr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float h = Xhat(Unsafe.Add(ref xr, i), m);
            Unsafe.Add(ref dr, i) = MulAdd(a, Gradient(Unsafe.Add(ref gr, i), h, m), MulAdd(b, h, c));
        }
    }

    /// <summary>Inference: y = a·x + b, then max(y, 0) when <paramref name="relu"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Affine(ReadOnlySpan<float> x, Span<float> y, float a, float b, bool relu)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        if (IsAvx512)
        {
            Vector512<float> va = Vector512.Create(a), vb = Vector512.Create(b);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.FusedMultiplyAdd(va, Vector512.LoadUnsafe(ref xr, (nuint)i), vb);
                if (relu) v = Vector512.Max(v, Vector512<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        else if (IsAvx2)
        {
            Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b);
            for (; i + 8 <= n; i += 8)
            {
                var v = Vector256.FusedMultiplyAdd(va, Vector256.LoadUnsafe(ref xr, (nuint)i), vb);
                if (relu) v = Vector256.Max(v, Vector256<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        else if (IsVector128)
        {
            Vector128<float> va = Vector128.Create(a), vb = Vector128.Create(b);
            for (; i + 4 <= n; i += 4)
            {
                var v = Vector128.MultiplyAddEstimate(va, Vector128.LoadUnsafe(ref xr, (nuint)i), vb);
                if (relu) v = Vector128.Max(v, Vector128<float>.Zero);
                v.StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float v = MulAdd(a, Unsafe.Add(ref xr, i), b);
            Unsafe.Add(ref yr, i) = relu ? MathF.Max(v, 0f) : v;
        }
    }

    /// <summary>x̂ = ((x − k) − d)·inv in float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Xhat(float x, in ChannelMap m) => (x - m.Shift - m.MeanMinusShift) * m.InvStd;

    /// <summary>dy, or +0 where the fused ReLU's input γ·x̂ + β was not positive.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Gradient(float dy, float xhat, in ChannelMap m) => !m.Relu || MulAdd(m.Gamma, xhat, m.Beta) > 0f ? dy : 0f;

    /// <summary>Four values of a 128-bit block: g (masked) and x̂, each widened to two float64 halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<double> G0, Vector128<double> G1, Vector128<double> X0, Vector128<double> X1) Quarter128(ref float gr, ref float xr, int i,
        Vector128<float> vk, Vector128<float> vd, Vector128<float> vi, Vector128<float> vg, Vector128<float> vb, bool relu)
    {
        var h = (Vector128.LoadUnsafe(ref xr, (nuint)i) - vk - vd) * vi;
        var g = Vector128.LoadUnsafe(ref gr, (nuint)i);
        if (relu) g &= Vector128.GreaterThan(Vector128.MultiplyAddEstimate(vg, h, vb), Vector128<float>.Zero);
        var (g0, g1) = Vector128.Widen(g);
        var (x0, x1) = Vector128.Widen(h);
        return (g0, g1, x0, x1);
    }
}
