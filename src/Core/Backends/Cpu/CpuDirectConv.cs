using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static BnDist.Core.Backends.Cpu.CpuDispatch;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Direct "same" convolution (stride 1, square K = 2·pad + 1) of one sample, for few channels: no column
/// matrix, no packing of the image, no col2im. Used by <see cref="CpuConv"/> for the forward pass and for the
/// input gradient, which is the same correlation of dy with the flipped, transposed kernel.
/// </summary>
/// <remarks>
/// <para>
/// Vector lanes run over output channels, registers over output positions. The sample is first copied into a
/// zero-bordered buffer xp[C][H + 2·pad][W + 2·pad], so every tap of every position reads valid memory and no
/// mask is needed. Then, for a tile of output positions and a block of L output channels (L = 16 on AVX-512,
/// 8 on AVX2), with patch row r = (ci, kh, kw):
/// </para>
/// <code>
/// for r in 0 .. Cin·K·K            acc[j] (+)= broadcast(xp[ci, h_j + kh, w_j + kw]) · Wᵀ[r, co-block]
/// </code>
/// <para>
/// The tile is G groups of 7 consecutive positions of one image row (AVX-512: 4 groups, 28 zmm accumulators;
/// AVX2: 2 groups, 14 ymm), each group addressed from one base pointer, so the 7 broadcasts of a group are
/// constant displacements — on AVX-512 the broadcast is the FMA's embedded memory operand: per r one vector load
/// of Wᵀ and 28 FMAs. Rows whose width is a multiple of 7 (the model's 28, 14, 7) make a tile 28 (14)
/// consecutive flat positions, so the transposed store of the tile is one gather + one store per channel and
/// 16 positions. The image and Wᵀ stay in L1/L2 (a sample is 50 KB at 16×28×28).
/// </para>
/// <para>
/// Each output is one FMA chain over r in increasing order, from zero, then + bias: deterministic, and the
/// same for every tile shape. Other instruction sets (128-bit, scalar) and other geometries use im2col + GEMM.
/// </para>
/// </remarks>
internal static unsafe class CpuDirectConv
{
    /// <summary>Output positions addressed from one base pointer (the row width must be a multiple).</summary>
    internal const int Group = 7;

    /// <summary>Channels per vector on this path.</summary>
    internal static int Lanes { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => IsAvx512 ? 16 : 8; }

    /// <summary>Groups per register tile on this path.</summary>
    private static int Groups { [MethodImpl(MethodImplOptions.AggressiveInlining)] get => IsAvx512 ? 4 : 2; }

    /// <summary>Off with BNDIST_CONV_DIRECT=0 (for benchmarking against im2col + GEMM).</summary>
    internal static readonly bool Enabled = Environment.GetEnvironmentVariable("BNDIST_CONV_DIRECT") != "0";

    /// <summary>Whether the forward pass of <paramref name="g"/> runs here: AVX-512 or AVX2, a square kernel, stride 1 or 2,
    /// an output width that is a multiple of 7.</summary>
    public static bool SupportsForward(in ConvGeometry g) =>
        Enabled && (IsAvx512 || IsAvx2) && (g.Stride == 1 || g.Stride == 2) && g.KernelH == g.KernelW
        && g.OutWidth % Group == 0 && g.OutHeight > 0;

    /// <summary>Whether the input gradient of <paramref name="g"/> runs here too: a "same" convolution (stride 1,
    /// K = 2·pad + 1) whose forward pass does.</summary>
    public static bool Supports(in ConvGeometry g) =>
        SupportsForward(g) && g.Stride == 1 && g.KernelH == 2 * g.Padding + 1;

    /// <summary>Row length of packed weights for <paramref name="channels"/> output channels (whole vectors).</summary>
    public static int PaddedChannels(int channels) => (channels + Lanes - 1) / Lanes * Lanes;

    /// <summary>Floats of the zero-bordered copy of one sample of <paramref name="channels"/> channels.</summary>
    public static long PaddedImageSize(in ConvGeometry g, int channels) =>
        (long)channels * (g.Height + 2 * g.Padding) * (g.Width + 2 * g.Padding);

    /// <summary>Forward weights: dst[r·ld + co] = w[co, r] (r = (ci, kh, kw)), zero for co ≥ Cout; ld = <see cref="PaddedChannels"/>(Cout).</summary>
    public static void PackForward(in ConvGeometry g, float* w, float* dst)
    {
        int patch = g.PatchSize, ld = PaddedChannels(g.OutChannels);
        for (int r = 0; r < patch; r++)
            for (int co = 0; co < ld; co++)
                dst[(long)r * ld + co] = co < g.OutChannels ? w[(long)co * patch + r] : 0f;
    }

    /// <summary>
    /// Input-gradient weights: the correlation of dy [Cout channels] that gives dx [Cin channels] uses, at patch row
    /// r = (co, kh, kw), dst[r·ld + ci] = w[co, ci, K−1−kh, K−1−kw]; ld = <see cref="PaddedChannels"/>(Cin).
    /// </summary>
    public static void PackInputGradient(in ConvGeometry g, float* w, float* dst)
    {
        int k = g.KernelH, kk = k * k, ld = PaddedChannels(g.InChannels);
        for (int co = 0; co < g.OutChannels; co++)
            for (int t = 0; t < kk; t++)
            {
                float* row = dst + ((long)co * kk + t) * ld;
                int flipped = kk - 1 - t; // (K−1−kh)·K + (K−1−kw)
                for (int ci = 0; ci < ld; ci++)
                    row[ci] = ci < g.InChannels ? w[((long)co * g.InChannels + ci) * kk + flipped] : 0f;
            }
    }

    /// <summary>offsets[r] = ci·Hp·Wp + kh·Wp + kw for r = (ci, kh, kw) &lt; channels·K·K: where tap r of a position lies
    /// in the padded image, relative to the position's window corner.</summary>
    public static void Offsets(in ConvGeometry g, int channels, int* offsets)
    {
        int k = g.KernelH, wp = g.Width + 2 * g.Padding, plane = (g.Height + 2 * g.Padding) * wp;
        for (int r = 0; r < channels * k * k; r++)
            offsets[r] = r / (k * k) * plane + r % (k * k) / k * wp + r % k;
    }

    /// <summary>Copies x[C][H][W] into the interior of xp[C][H + 2·pad][W + 2·pad] (the border is left as it is: zero it once).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Pad(in ConvGeometry g, int channels, float* x, float* xp)
    {
        int h = g.Height, w = g.Width, pad = g.Padding, wp = w + 2 * pad;
        float* dst = xp + (long)pad * wp + pad;
        for (int c = 0; c < channels; c++, dst += 2L * pad * wp)
            for (int y = 0; y < h; y++, x += w, dst += wp)
                CopyRow(x, dst, w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* src, float* dst, int n)
    {
        int i = 0;
        if (IsAvx512)
        {
            for (; i + 16 <= n; i += 16)
                Vector512.Load(src + i).Store(dst + i);
            if (i < n)
            {
                var m = Vector512.LessThan(Vector512.Create(i) + Iota, Vector512.Create(n)).AsSingle();
                Avx512F.MaskStore(dst + i, m, Avx512F.MaskLoad(src + i, m, Vector512<float>.Zero));
            }
            return;
        }
        for (; i + 8 <= n; i += 8)
            Vector256.Load(src + i).Store(dst + i);
        for (; i < n; i++)
            dst[i] = src[i];
    }

    /// <summary>
    /// y[co, q] (overwritten) = Σ_r wt[r, co]·xp[tap r of position q] (+ bias[co]) for one sample: xp is the padded
    /// input of <paramref name="cin"/> channels (<see cref="Pad"/>), wt the packed weights (row length
    /// <see cref="PaddedChannels"/>(cout)), offsets of <see cref="Offsets"/>.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Correlate(in ConvGeometry g, int cin, int cout, float* xp, float* wt, int* offsets, float* bias, float* y)
    {
        if (g.Stride == 2)
            Correlate<Two>(g, cin, cout, xp, wt, offsets, bias, y);
        else
            Correlate<One>(g, cin, cout, xp, wt, offsets, bias, y);
    }

    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Correlate<TS>(in ConvGeometry g, int cin, int cout, float* xp, float* wt, int* offsets, float* bias, float* y)
        where TS : struct, ICount
    {
        int ow = g.OutWidth, wp = g.Width + 2 * g.Padding, total = g.OutHeight * ow;
        int rows = cin * g.KernelH * g.KernelW, ld = PaddedChannels(cout), lanes = Lanes, tileSize = Groups * Group;
        float* tile = stackalloc float[32 * 16];
        for (int q0 = 0; q0 < total; q0 += tileSize)
        {
            int count = Math.Min(tileSize, total - q0);
            // A group past the end of the image aliases group 0 (valid memory); its results are not stored.
            float* b0 = Corner<TS>(xp, q0, ow, wp);
            float* b1 = q0 + Group < total ? Corner<TS>(xp, q0 + Group, ow, wp) : b0;
            for (int cb = 0; cb < cout; cb += lanes)
            {
                if (IsAvx512)
                {
                    float* b2 = q0 + 2 * Group < total ? Corner<TS>(xp, q0 + 2 * Group, ow, wp) : b0;
                    float* b3 = q0 + 3 * Group < total ? Corner<TS>(xp, q0 + 3 * Group, ow, wp) : b0;
                    if (count == 3 * Group) // e.g. the last tile of a 7×7 image: 49 = 28 + 21
                        Kernel512<Three, TS>(rows, wt + cb, ld, offsets, b0, b1, b2, b3, tile);
                    else
                        Kernel512<Four, TS>(rows, wt + cb, ld, offsets, b0, b1, b2, b3, tile);
                    Store512(tile, y, total, q0, count, cb, Math.Min(16, cout - cb), bias);
                }
                else
                {
                    Kernel256<TS>(rows, wt + cb, ld, offsets, b0, b1, tile);
                    StoreScalar(tile, 8, y, total, q0, count, cb, Math.Min(8, cout - cb), bias);
                }
            }
        }
    }

    /// <summary>A JIT-time constant of a kernel (stride, groups or triples per tile): unused accumulators fold away.</summary>
    internal interface ICount { static abstract int Count { get; } }
    internal struct One : ICount { public static int Count => 1; }
    internal struct Two : ICount { public static int Count => 2; }
    internal struct Three : ICount { public static int Count => 3; }
    internal struct Four : ICount { public static int Count => 4; }
    internal struct Eight : ICount { public static int Count => 8; }
    internal struct Nine : ICount { public static int Count => 9; }

    /// <summary>Whether the weight gradient of <paramref name="g"/> runs here too: <see cref="SupportsForward"/>, a 3×3 kernel and
    /// at least <see cref="MinWeightGradientPositions"/> positions.</summary>
    public static bool SupportsWeightGradient(in ConvGeometry g) =>
        SupportsForward(g) && g.KernelH == 3 && (g.Stride == 2 || g.OutHeight * g.OutWidth >= MinWeightGradientPositions);

    /// <summary>Below this many positions per sample (stride 1) a weight-gradient tile does too little work for its
    /// set-up (rows of 7 positions, 49 per tile): on resnet20's 64-channel 7×7 layers it takes 39 µs a sample on one
    /// core, im2col + GEMM 39 as well (AVX-512); at 14×14 and 28×28 this kernel wins (backward 95 vs 84 and 88 vs 68
    /// GFLOP/s). With stride 2 the im2col is a scalar gather, and this kernel wins at 7×7 too (32→64: 54 → 59 GFLOP/s).</summary>
    internal const int MinWeightGradientPositions = 100;

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
            var columns = stackalloc Vector512<float>[16];
            for (int c = 0; c < cFull; c += 16)
                for (int q = 0; q < qFull; q += 16)
                {
                    Transpose16(dy + (long)c * total + q, total, columns);
                    for (int j = 0; j < 16; j++)
                        columns[j].Store(dyT + (long)(q + j) * ld + c);
                }
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
    public static void WeightGradient(in ConvGeometry g, float* xp, float* dyT, float* acc, bool first)
    {
        if (g.Stride == 2)
            WeightGradient<Two>(g, xp, dyT, acc, first);
        else
            WeightGradient<One>(g, xp, dyT, acc, first);
    }

    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightGradient<TS>(in ConvGeometry g, float* xp, float* dyT, float* acc, bool first) where TS : struct, ICount
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
                    WeightKernel512<Eight, TS>(tile, dyT + cb, ld, bases, h, w, wp);
                else if (IsAvx512)
                    WeightKernel512<Nine, TS>(tile, dyT + cb, ld, bases, h, w, wp);
                else
                    WeightKernel256<TS>(tile, dyT + cb, ld, bases, h, w, wp);
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
    private static void WeightKernel512<TT, TS>(float* tile, float* dyT, int ld, float** bases, int h, int w, int wp)
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
        for (int y = 0; y < h; y++)
        {
            float* d = dyT + (long)y * w * ld;
            for (int o = y * s * wp, end = o + s * w; o < end; o += s, d += ld)
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
    private static void WeightKernel256<TS>(float* tile, float* dyT, int ld, float** bases, int h, int w, int wp)
        where TS : struct, ICount
    {
        int s = TS.Count;
        float* b0 = bases[0], b1 = bases[1], b2 = bases[2], b3 = bases[3];
        var a00 = Vector256.Load(tile); var a01 = Vector256.Load(tile + 8); var a02 = Vector256.Load(tile + 16);
        var a10 = Vector256.Load(tile + 24); var a11 = Vector256.Load(tile + 32); var a12 = Vector256.Load(tile + 40);
        var a20 = Vector256.Load(tile + 48); var a21 = Vector256.Load(tile + 56); var a22 = Vector256.Load(tile + 64);
        var a30 = Vector256.Load(tile + 72); var a31 = Vector256.Load(tile + 80); var a32 = Vector256.Load(tile + 88);
        for (int y = 0; y < h; y++)
        {
            float* d = dyT + (long)y * w * ld;
            for (int o = y * s * wp, end = o + s * w; o < end; o += s, d += ld)
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

    /// <summary>The padded-image address of the window corner of flat output position q (output width ow, stride TS).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Corner<TS>(float* xp, int q, int ow, int wp) where TS : struct, ICount =>
        xp + (long)(q / ow) * TS.Count * wp + q % ow * TS.Count;

    /// <summary>28 positions (TG = 4 groups × 7; or 21) × 16 channels: tile[j·16 + c] = Σ_r wt[r·ld + c]·b_{j/7}[offsets[r] + (j%7)·stride].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512<TG, TS>(int rows, float* wt, int ld, int* offsets, float* b0, float* b1, float* b2, float* b3, float* tile)
        where TG : struct, ICount where TS : struct, ICount
    {
        int s = TS.Count;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default, a26 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default, a36 = default;
        for (int r = 0; r < rows; r++, wt += ld)
        {
            var wv = Vector512.Load(wt);
            int o = offsets[r];
            float* p = b0 + o;
            a00 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[0]), wv, a00);
            a01 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[1 * s]), wv, a01);
            a02 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[2 * s]), wv, a02);
            a03 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[3 * s]), wv, a03);
            a04 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[4 * s]), wv, a04);
            a05 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[5 * s]), wv, a05);
            a06 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[6 * s]), wv, a06);
            p = b1 + o;
            a10 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[0]), wv, a10);
            a11 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[1 * s]), wv, a11);
            a12 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[2 * s]), wv, a12);
            a13 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[3 * s]), wv, a13);
            a14 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[4 * s]), wv, a14);
            a15 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[5 * s]), wv, a15);
            a16 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[6 * s]), wv, a16);
            p = b2 + o;
            a20 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[0]), wv, a20);
            a21 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[1 * s]), wv, a21);
            a22 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[2 * s]), wv, a22);
            a23 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[3 * s]), wv, a23);
            a24 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[4 * s]), wv, a24);
            a25 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[5 * s]), wv, a25);
            a26 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[6 * s]), wv, a26);
            p = b3 + o; // (unused when TG = 3)
            if (TG.Count > 3) a30 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[0]), wv, a30);
            if (TG.Count > 3) a31 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[1 * s]), wv, a31);
            if (TG.Count > 3) a32 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[2 * s]), wv, a32);
            if (TG.Count > 3) a33 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[3 * s]), wv, a33);
            if (TG.Count > 3) a34 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[4 * s]), wv, a34);
            if (TG.Count > 3) a35 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[5 * s]), wv, a35);
            if (TG.Count > 3) a36 = Avx512F.FusedMultiplyAdd(Vector512.Create(p[6 * s]), wv, a36);
        }
        a00.Store(tile); a01.Store(tile + 16); a02.Store(tile + 32); a03.Store(tile + 48); a04.Store(tile + 64); a05.Store(tile + 80); a06.Store(tile + 96);
        tile += 112;
        a10.Store(tile); a11.Store(tile + 16); a12.Store(tile + 32); a13.Store(tile + 48); a14.Store(tile + 64); a15.Store(tile + 80); a16.Store(tile + 96);
        tile += 112;
        a20.Store(tile); a21.Store(tile + 16); a22.Store(tile + 32); a23.Store(tile + 48); a24.Store(tile + 64); a25.Store(tile + 80); a26.Store(tile + 96);
        tile += 112;
        if (TG.Count > 3)
        {
            a30.Store(tile); a31.Store(tile + 16); a32.Store(tile + 32); a33.Store(tile + 48); a34.Store(tile + 64); a35.Store(tile + 80); a36.Store(tile + 96);
        }
    }

    /// <summary>14 positions (2 groups × 7) × 8 channels in 14 ymm accumulators (+ the weights and a broadcast: 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256<TS>(int rows, float* wt, int ld, int* offsets, float* b0, float* b1, float* tile)
        where TS : struct, ICount
    {
        int s = TS.Count;
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default, a06 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default, a16 = default;
        for (int r = 0; r < rows; r++, wt += ld)
        {
            var wv = Avx.LoadVector256(wt);
            int o = offsets[r];
            float* p = b0 + o;
            a00 = Fma.MultiplyAdd(Vector256.Create(p[0]), wv, a00);
            a01 = Fma.MultiplyAdd(Vector256.Create(p[1 * s]), wv, a01);
            a02 = Fma.MultiplyAdd(Vector256.Create(p[2 * s]), wv, a02);
            a03 = Fma.MultiplyAdd(Vector256.Create(p[3 * s]), wv, a03);
            a04 = Fma.MultiplyAdd(Vector256.Create(p[4 * s]), wv, a04);
            a05 = Fma.MultiplyAdd(Vector256.Create(p[5 * s]), wv, a05);
            a06 = Fma.MultiplyAdd(Vector256.Create(p[6 * s]), wv, a06);
            p = b1 + o;
            a10 = Fma.MultiplyAdd(Vector256.Create(p[0]), wv, a10);
            a11 = Fma.MultiplyAdd(Vector256.Create(p[1 * s]), wv, a11);
            a12 = Fma.MultiplyAdd(Vector256.Create(p[2 * s]), wv, a12);
            a13 = Fma.MultiplyAdd(Vector256.Create(p[3 * s]), wv, a13);
            a14 = Fma.MultiplyAdd(Vector256.Create(p[4 * s]), wv, a14);
            a15 = Fma.MultiplyAdd(Vector256.Create(p[5 * s]), wv, a15);
            a16 = Fma.MultiplyAdd(Vector256.Create(p[6 * s]), wv, a16);
        }
        a00.Store(tile); a01.Store(tile + 8); a02.Store(tile + 16); a03.Store(tile + 24); a04.Store(tile + 32); a05.Store(tile + 40); a06.Store(tile + 48);
        tile += 56;
        a10.Store(tile); a11.Store(tile + 8); a12.Store(tile + 16); a13.Store(tile + 24); a14.Store(tile + 32); a15.Store(tile + 40); a16.Store(tile + 48);
    }

    /// <summary>y[cb + c, q0 + j] = tile[j·16 + c] (+ bias) for j &lt; count, c &lt; channels: the tile's rows taken 16
    /// at a time and transposed in registers (<see cref="Transpose16"/>). The tile holds 32 rows, so reading whole
    /// blocks of 16 stays inside it.</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Store512(float* tile, float* y, int total, int q0, int count, int cb, int channels, float* bias)
    {
        var columns = stackalloc Vector512<float>[16];
        for (int j0 = 0; j0 < count; j0 += 16)
        {
            Transpose16(tile + j0 * 16, 16, columns);
            int n = Math.Min(16, count - j0);
            var mask = Vector512.LessThan(Iota, Vector512.Create(n)).AsSingle();
            for (int c = 0; c < channels; c++)
            {
                var v = columns[c];
                if (bias != null)
                    v += Vector512.Create(bias[cb + c]);
                float* dst = y + (long)(cb + c) * total + q0 + j0;
                if (n == 16)
                    v.Store(dst);
                else
                    Avx512F.MaskStore(dst, mask, v);
            }
        }
    }

    /// <summary>columns[c][j] = rows[j·stride + c] for a 16×16 block: unpack pairs of rows, then pairs of pairs, then
    /// the 128-bit lanes (64 shuffles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose16(float* rows, int stride, Vector512<float>* columns)
    {
        // u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j.
        var u = stackalloc Vector512<float>[16];
        for (int i = 0; i < 4; i++)
        {
            float* r = rows + 4L * i * stride;
            var r0 = Vector512.Load(r);
            var r1 = Vector512.Load(r + stride);
            var r2 = Vector512.Load(r + 2L * stride);
            var r3 = Vector512.Load(r + 3L * stride);
            var t0 = Avx512F.UnpackLow(r0, r1).AsDouble();
            var t1 = Avx512F.UnpackHigh(r0, r1).AsDouble();
            var t2 = Avx512F.UnpackLow(r2, r3).AsDouble();
            var t3 = Avx512F.UnpackHigh(r2, r3).AsDouble();
            u[4 * i] = Avx512F.UnpackLow(t0, t2).AsSingle();
            u[4 * i + 1] = Avx512F.UnpackHigh(t0, t2).AsSingle();
            u[4 * i + 2] = Avx512F.UnpackLow(t1, t3).AsSingle();
            u[4 * i + 3] = Avx512F.UnpackHigh(t1, t3).AsSingle();
        }
        for (int j = 0; j < 4; j++)
        {
            var x0 = Avx512F.Shuffle4x128(u[j], u[4 + j], 0x44);
            var x1 = Avx512F.Shuffle4x128(u[j], u[4 + j], 0xEE);
            var y0 = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0x44);
            var y1 = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0xEE);
            columns[j] = Avx512F.Shuffle4x128(x0, y0, 0x88);
            columns[4 + j] = Avx512F.Shuffle4x128(x0, y0, 0xDD);
            columns[8 + j] = Avx512F.Shuffle4x128(x1, y1, 0x88);
            columns[12 + j] = Avx512F.Shuffle4x128(x1, y1, 0xDD);
        }
    }

    /// <summary>y[cb + c, q0 + j] = tile[j·lanes + c] (+ bias) for j &lt; count, c &lt; channels.</summary>
    private static void StoreScalar(float* tile, int lanes, float* y, int total, int q0, int count, int cb, int channels, float* bias)
    {
        for (int c = 0; c < channels; c++)
        {
            float* dst = y + (long)(cb + c) * total + q0;
            float b = bias == null ? 0f : bias[cb + c];
            for (int j = 0; j < count; j++)
                dst[j] = bias == null ? tile[j * lanes + c] : tile[j * lanes + c] + b;
        }
    }

    private static Vector512<int> Iota => Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
