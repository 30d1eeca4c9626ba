using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static BnDist.Core.Backends.Cpu.CpuDispatch;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// The weight gradient of a direct 3×3 convolution (stride 1 or 2) for one sample, from the padded input
/// (<see cref="Pad"/>) and the output gradient with channels in the vector lanes (<see cref="TransposeGradient"/>):
/// dWᵀ[r, co] += Σ_q xp[tap r of q]·dy[co, q], r = (ci, kh, kw), vector lanes over co, registers over r.
/// </summary>
internal static unsafe partial class CpuDirectConv
{
    /// <summary>Whether the weight gradient of <paramref name="g"/> runs here too: <see cref="SupportsForward"/> and a 3×3
    /// kernel. (Sample by sample, the tile set-up made it lose to im2col + GEMM at 7×7 — 39 µs a sample either way;
    /// over groups of samples it wins there too: resnet20's 64-channel backward 94 → 104 GFLOP/s on one core.)</summary>
    public static bool SupportsWeightGradient(in ConvGeometry g) => SupportsForward(g) && g.KernelH == 3;

    /// <summary>dyT[q·ld + co] = dy[co, q] for co &lt; cout, zero for cout ≤ co &lt; ld = <see cref="PaddedChannels"/>(cout):
    /// the output gradient of one sample with channels in the vector lanes (16×16 blocks transposed in registers).</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TransposeGradient(int cout, int total, float* dy, float* dyT)
    {
        int ld = PaddedChannels(cout), cFull = 0, qFull = 0;
        if (IsAvx512)
        {
            cFull = cout / 16 * 16;
            qFull = total / 16 * 16;
            for (int c = 0; c < cFull; c += 16)
                for (int q = 0; q < qFull; q += 16) // 16 channels × 16 positions → 16 positions × 16 channels
                    Transpose16(dy + (long)c * total + q, total, dyT + (long)q * ld + c, ld, 16, 16, null);
        }
        for (int q = 0; q < total; q++)
            for (int c = q < qFull ? cFull : 0; c < ld; c++)
                dyT[(long)q * ld + c] = c < cout ? dy[(long)c * total + q] : 0f;
    }

    /// <summary>
    /// The weight gradient of one sample, for 3×3 kernels: acc[r·ld + co] (+)= Σ_q xp[tap r of q]·dyT[q·ld + co]
    /// with r = (ci, kh, kw), xp the padded input (<see cref="Pad"/>), dyT of <see cref="TransposeGradient"/>,
    /// ld = <see cref="PaddedChannels"/>(Cout); <paramref name="first"/> overwrites acc instead of adding.
    /// </summary>
    /// <remarks>
    /// Patch rows come in triples (ci, kh, kw = 0..2) that read one padded row at displacements 0, 1, 2; a tile is
    /// 9 triples (AVX-512: 27 zmm accumulators, one vector of dyT and 27 embedded-broadcast FMAs per position) or
    /// 4 (AVX2: 12 ymm). Each accumulator continues the chain of the samples before it: per dW element one FMA
    /// chain over the chunk's samples and positions in order, whatever the thread count.
    /// </remarks>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightGradient(in ConvGeometry g, float* xp, float* dyT, float* acc, bool first) =>
        WeightGradient(g, 1, xp, 0, dyT, 0, acc, first);

    /// <summary>
    /// <see cref="WeightGradient(in ConvGeometry, float*, float*, float*, bool)"/> over <paramref name="samples"/>
    /// consecutive samples at once (padded inputs <paramref name="xpStride"/> floats apart, dyᵀ
    /// <paramref name="dyTStride"/> apart): each tile's accumulators run through all of them before they are stored,
    /// so the tile's set-up is paid once per group (it matters at 7×7, 49 positions a sample). The same FMA chains,
    /// in the same order, as one call per sample.
    /// </summary>
    public static void WeightGradient(in ConvGeometry g, int samples, float* xp, int xpStride, float* dyT, int dyTStride,
        float* acc, bool first)
    {
        if (g.Stride == 2)
            WeightGradient<Two>(g, samples, xp, xpStride, dyT, dyTStride, acc, first);
        else
            WeightGradient<One>(g, samples, xp, xpStride, dyT, dyTStride, acc, first);
    }

    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightGradient<TS>(in ConvGeometry g, int samples, float* xp, int xpStride, float* dyT, int dyTStride,
        float* acc, bool first) where TS : struct, ICount
    {
        int h = g.OutHeight, w = g.OutWidth, wp = g.Width + 2 * g.Padding, plane = (g.Height + 2 * g.Padding) * wp;
        int ld = PaddedChannels(g.OutChannels);
        // AVX-512 tiles of 9 triples, or of 8 where that divides the triples evenly (16 channels: 48 = 6·8, not 5·9 + 3).
        int triples = 3 * g.InChannels, lanes = Lanes;
        bool eight = IsAvx512 && triples % 9 != 0 && triples % 8 == 0;
        int perTile = IsAvx512 ? (eight ? 8 : 9) : 4;
        float* tile = stackalloc float[27 * 16];
        float** bases = stackalloc float*[9];
        for (int s0 = 0; s0 < triples; s0 += perTile)
        {
            int count = Math.Min(perTile, triples - s0);
            for (int k = 0; k < perTile; k++) // triples past the end alias the first; their sums are dropped
            {
                int t = k < count ? s0 + k : s0;
                bases[k] = xp + (long)(t / 3) * plane + t % 3 * wp;
            }
            for (int cb = 0; cb < ld; cb += lanes)
            {
                for (int i = 0; i < 3 * perTile; i++)
                    CopyLanes(first ? null : acc + (long)(3 * s0 + Math.Min(i, 3 * count - 1)) * ld + cb, tile + i * lanes);
                if (IsAvx512 && eight)
                    WeightKernel512<Eight, TS>(tile, dyT + cb, ld, bases, h, w, wp, samples, xpStride, dyTStride);
                else if (IsAvx512)
                    WeightKernel512<Nine, TS>(tile, dyT + cb, ld, bases, h, w, wp, samples, xpStride, dyTStride);
                else
                    WeightKernel256<TS>(tile, dyT + cb, ld, bases, h, w, wp, samples, xpStride, dyTStride);
                for (int i = 0; i < 3 * count; i++)
                    CopyLanes(tile + i * lanes, acc + (long)(3 * s0 + i) * ld + cb);
            }
        }
    }

    /// <summary>One vector of channels from src (zeros if null) to dst.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyLanes(float* src, float* dst)
    {
        if (IsAvx512)
            (src == null ? Vector512<float>.Zero : Vector512.Load(src)).Store(dst);
        else
            (src == null ? Vector256<float>.Zero : Vector256.Load(src)).Store(dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightKernel512<TT, TS>(float* tile, float* dyT, int ld, float** bases, int h, int w, int wp,
        int samples, int xpStride, int dyTStride)
        where TT : struct, ICount where TS : struct, ICount
    {
        int s = TS.Count;
        float* b0 = bases[0], b1 = bases[1], b2 = bases[2], b3 = bases[3], b4 = bases[4], b5 = bases[5], b6 = bases[6], b7 = bases[7];
        float* b8 = TT.Count > 8 ? bases[8] : b0;
        var a00 = Vector512.Load(tile); var a01 = Vector512.Load(tile + 16); var a02 = Vector512.Load(tile + 32);
        var a10 = Vector512.Load(tile + 48); var a11 = Vector512.Load(tile + 64); var a12 = Vector512.Load(tile + 80);
        var a20 = Vector512.Load(tile + 96); var a21 = Vector512.Load(tile + 112); var a22 = Vector512.Load(tile + 128);
        var a30 = Vector512.Load(tile + 144); var a31 = Vector512.Load(tile + 160); var a32 = Vector512.Load(tile + 176);
        var a40 = Vector512.Load(tile + 192); var a41 = Vector512.Load(tile + 208); var a42 = Vector512.Load(tile + 224);
        var a50 = Vector512.Load(tile + 240); var a51 = Vector512.Load(tile + 256); var a52 = Vector512.Load(tile + 272);
        var a60 = Vector512.Load(tile + 288); var a61 = Vector512.Load(tile + 304); var a62 = Vector512.Load(tile + 320);
        var a70 = Vector512.Load(tile + 336); var a71 = Vector512.Load(tile + 352); var a72 = Vector512.Load(tile + 368);
        Vector512<float> a80 = default, a81 = default, a82 = default;
        if (TT.Count > 8) { a80 = Vector512.Load(tile + 384); a81 = Vector512.Load(tile + 400); a82 = Vector512.Load(tile + 416); }
        for (int n = 0; n < samples; n++)
        for (int y = 0; y < h; y++)
        {
            float* d = dyT + (long)n * dyTStride + (long)y * w * ld;
            for (int o = n * xpStride + y * s * wp, end = o + s * w; o < end; o += s, d += ld)
            {
                var dv = Vector512.Load(d);
                a00 = Avx512F.FusedMultiplyAdd(Vector512.Create(b0[o]), dv, a00);
                a01 = Avx512F.FusedMultiplyAdd(Vector512.Create(b0[o + 1]), dv, a01);
                a02 = Avx512F.FusedMultiplyAdd(Vector512.Create(b0[o + 2]), dv, a02);
                a10 = Avx512F.FusedMultiplyAdd(Vector512.Create(b1[o]), dv, a10);
                a11 = Avx512F.FusedMultiplyAdd(Vector512.Create(b1[o + 1]), dv, a11);
                a12 = Avx512F.FusedMultiplyAdd(Vector512.Create(b1[o + 2]), dv, a12);
                a20 = Avx512F.FusedMultiplyAdd(Vector512.Create(b2[o]), dv, a20);
                a21 = Avx512F.FusedMultiplyAdd(Vector512.Create(b2[o + 1]), dv, a21);
                a22 = Avx512F.FusedMultiplyAdd(Vector512.Create(b2[o + 2]), dv, a22);
                a30 = Avx512F.FusedMultiplyAdd(Vector512.Create(b3[o]), dv, a30);
                a31 = Avx512F.FusedMultiplyAdd(Vector512.Create(b3[o + 1]), dv, a31);
                a32 = Avx512F.FusedMultiplyAdd(Vector512.Create(b3[o + 2]), dv, a32);
                a40 = Avx512F.FusedMultiplyAdd(Vector512.Create(b4[o]), dv, a40);
                a41 = Avx512F.FusedMultiplyAdd(Vector512.Create(b4[o + 1]), dv, a41);
                a42 = Avx512F.FusedMultiplyAdd(Vector512.Create(b4[o + 2]), dv, a42);
                a50 = Avx512F.FusedMultiplyAdd(Vector512.Create(b5[o]), dv, a50);
                a51 = Avx512F.FusedMultiplyAdd(Vector512.Create(b5[o + 1]), dv, a51);
                a52 = Avx512F.FusedMultiplyAdd(Vector512.Create(b5[o + 2]), dv, a52);
                a60 = Avx512F.FusedMultiplyAdd(Vector512.Create(b6[o]), dv, a60);
                a61 = Avx512F.FusedMultiplyAdd(Vector512.Create(b6[o + 1]), dv, a61);
                a62 = Avx512F.FusedMultiplyAdd(Vector512.Create(b6[o + 2]), dv, a62);
                a70 = Avx512F.FusedMultiplyAdd(Vector512.Create(b7[o]), dv, a70);
                a71 = Avx512F.FusedMultiplyAdd(Vector512.Create(b7[o + 1]), dv, a71);
                a72 = Avx512F.FusedMultiplyAdd(Vector512.Create(b7[o + 2]), dv, a72);
                if (TT.Count > 8) a80 = Avx512F.FusedMultiplyAdd(Vector512.Create(b8[o]), dv, a80);
                if (TT.Count > 8) a81 = Avx512F.FusedMultiplyAdd(Vector512.Create(b8[o + 1]), dv, a81);
                if (TT.Count > 8) a82 = Avx512F.FusedMultiplyAdd(Vector512.Create(b8[o + 2]), dv, a82);
            }
        }
        a00.Store(tile); a01.Store(tile + 16); a02.Store(tile + 32);
        a10.Store(tile + 48); a11.Store(tile + 64); a12.Store(tile + 80);
        a20.Store(tile + 96); a21.Store(tile + 112); a22.Store(tile + 128);
        a30.Store(tile + 144); a31.Store(tile + 160); a32.Store(tile + 176);
        a40.Store(tile + 192); a41.Store(tile + 208); a42.Store(tile + 224);
        a50.Store(tile + 240); a51.Store(tile + 256); a52.Store(tile + 272);
        a60.Store(tile + 288); a61.Store(tile + 304); a62.Store(tile + 320);
        a70.Store(tile + 336); a71.Store(tile + 352); a72.Store(tile + 368);
        if (TT.Count > 8) { a80.Store(tile + 384); a81.Store(tile + 400); a82.Store(tile + 416); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightKernel256<TS>(float* tile, float* dyT, int ld, float** bases, int h, int w, int wp,
        int samples, int xpStride, int dyTStride)
        where TS : struct, ICount
    {
        int s = TS.Count;
        float* b0 = bases[0], b1 = bases[1], b2 = bases[2], b3 = bases[3];
        var a00 = Vector256.Load(tile); var a01 = Vector256.Load(tile + 8); var a02 = Vector256.Load(tile + 16);
        var a10 = Vector256.Load(tile + 24); var a11 = Vector256.Load(tile + 32); var a12 = Vector256.Load(tile + 40);
        var a20 = Vector256.Load(tile + 48); var a21 = Vector256.Load(tile + 56); var a22 = Vector256.Load(tile + 64);
        var a30 = Vector256.Load(tile + 72); var a31 = Vector256.Load(tile + 80); var a32 = Vector256.Load(tile + 88);
        for (int n = 0; n < samples; n++)
        for (int y = 0; y < h; y++)
        {
            float* d = dyT + (long)n * dyTStride + (long)y * w * ld;
            for (int o = n * xpStride + y * s * wp, end = o + s * w; o < end; o += s, d += ld)
            {
                var dv = Avx.LoadVector256(d);
                a00 = Fma.MultiplyAdd(Vector256.Create(b0[o]), dv, a00);
                a01 = Fma.MultiplyAdd(Vector256.Create(b0[o + 1]), dv, a01);
                a02 = Fma.MultiplyAdd(Vector256.Create(b0[o + 2]), dv, a02);
                a10 = Fma.MultiplyAdd(Vector256.Create(b1[o]), dv, a10);
                a11 = Fma.MultiplyAdd(Vector256.Create(b1[o + 1]), dv, a11);
                a12 = Fma.MultiplyAdd(Vector256.Create(b1[o + 2]), dv, a12);
                a20 = Fma.MultiplyAdd(Vector256.Create(b2[o]), dv, a20);
                a21 = Fma.MultiplyAdd(Vector256.Create(b2[o + 1]), dv, a21);
                a22 = Fma.MultiplyAdd(Vector256.Create(b2[o + 2]), dv, a22);
                a30 = Fma.MultiplyAdd(Vector256.Create(b3[o]), dv, a30);
                a31 = Fma.MultiplyAdd(Vector256.Create(b3[o + 1]), dv, a31);
                a32 = Fma.MultiplyAdd(Vector256.Create(b3[o + 2]), dv, a32);
            }
        }
        a00.Store(tile); a01.Store(tile + 8); a02.Store(tile + 16);
        a10.Store(tile + 24); a11.Store(tile + 32); a12.Store(tile + 40);
        a20.Store(tile + 48); a21.Store(tile + 56); a22.Store(tile + 64);
        a30.Store(tile + 72); a31.Store(tile + 80); a32.Store(tile + 88);
    }
}
