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
internal static unsafe partial class CpuDirectConv
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
        int wp = g.Width + 2 * g.Padding, rows = cin * g.KernelH * g.KernelW;
        if (g.Stride == 2)
            Correlate<Two>(g.OutHeight, g.OutWidth, wp, rows, cout, xp, wt, offsets, bias, y);
        else
            Correlate<One>(g.OutHeight, g.OutWidth, wp, rows, cout, xp, wt, offsets, bias, y);
    }

    /// <summary>y[co, q] = Σ_r wt[r, co]·xp[offsets[r] + corner of q] over <paramref name="rows"/> taps, for oh × ow positions
    /// of stride TS in a padded image of row length <paramref name="wp"/>.</summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Correlate<TS>(int oh, int ow, int wp, int rows, int cout, float* xp, float* wt, int* offsets, float* bias, float* y)
        where TS : struct, ICount
    {
        int total = oh * ow;
        int ld = PaddedChannels(cout), lanes = Lanes, tileSize = Groups * Group;
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Store512(float* tile, float* y, int total, int q0, int count, int cb, int channels, float* bias)
    {
        for (int j0 = 0; j0 < count; j0 += 16)
            Transpose16(tile + j0 * 16, 16, y + (long)cb * total + q0 + j0, total, Math.Min(16, count - j0), channels,
                bias == null ? null : bias + cb);
    }

    /// <summary>
    /// dst[c·dstStride + j] = rows[j·stride + c] (+ bias[c]) for a 16×16 block, columns c &lt; <paramref name="columns"/>,
    /// lanes j &lt; <paramref name="lanes"/> (the others are not written): unpack pairs of rows, then pairs of pairs, then
    /// the 128-bit lanes — 64 shuffles, all in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose16(float* rows, int stride, float* dst, int dstStride, int lanes, int columns, float* bias)
    {
        // u{4i + j}, 128-bit lane L: rows 4i..4i+3 of column 4L + j.
        Quad(rows, stride, out var u0, out var u1, out var u2, out var u3);
        Quad(rows + 4L * stride, stride, out var u4, out var u5, out var u6, out var u7);
        Quad(rows + 8L * stride, stride, out var u8, out var u9, out var u10, out var u11);
        Quad(rows + 12L * stride, stride, out var u12, out var u13, out var u14, out var u15);
        var mask = Vector512.LessThan(Iota, Vector512.Create(lanes)).AsSingle();
        Columns(u0, u4, u8, u12, 0, dst, dstStride, lanes, columns, bias, mask);
        Columns(u1, u5, u9, u13, 1, dst, dstStride, lanes, columns, bias, mask);
        Columns(u2, u6, u10, u14, 2, dst, dstStride, lanes, columns, bias, mask);
        Columns(u3, u7, u11, u15, 3, dst, dstStride, lanes, columns, bias, mask);
    }

    /// <summary>Four rows unpacked so that lane L of u{j} holds their elements 4L + j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(float* r, int stride, out Vector512<float> u0, out Vector512<float> u1, out Vector512<float> u2, out Vector512<float> u3)
    {
        var r0 = Vector512.Load(r);
        var r1 = Vector512.Load(r + stride);
        var r2 = Vector512.Load(r + 2L * stride);
        var r3 = Vector512.Load(r + 3L * stride);
        var t0 = Avx512F.UnpackLow(r0, r1).AsDouble();
        var t1 = Avx512F.UnpackHigh(r0, r1).AsDouble();
        var t2 = Avx512F.UnpackLow(r2, r3).AsDouble();
        var t3 = Avx512F.UnpackHigh(r2, r3).AsDouble();
        u0 = Avx512F.UnpackLow(t0, t2).AsSingle();
        u1 = Avx512F.UnpackHigh(t0, t2).AsSingle();
        u2 = Avx512F.UnpackLow(t1, t3).AsSingle();
        u3 = Avx512F.UnpackHigh(t1, t3).AsSingle();
    }

    /// <summary>Columns j, 4 + j, 8 + j, 12 + j from the four quads' u{j} (rows 0–3, 4–7, 8–11, 12–15), stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d, int j,
        float* dst, int dstStride, int lanes, int columns, float* bias, Vector512<float> mask)
    {
        var x0 = Avx512F.Shuffle4x128(a, b, 0x44);
        var x1 = Avx512F.Shuffle4x128(a, b, 0xEE);
        var y0 = Avx512F.Shuffle4x128(c, d, 0x44);
        var y1 = Avx512F.Shuffle4x128(c, d, 0xEE);
        Put(Avx512F.Shuffle4x128(x0, y0, 0x88), j, dst, dstStride, lanes, columns, bias, mask);
        Put(Avx512F.Shuffle4x128(x0, y0, 0xDD), 4 + j, dst, dstStride, lanes, columns, bias, mask);
        Put(Avx512F.Shuffle4x128(x1, y1, 0x88), 8 + j, dst, dstStride, lanes, columns, bias, mask);
        Put(Avx512F.Shuffle4x128(x1, y1, 0xDD), 12 + j, dst, dstStride, lanes, columns, bias, mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(Vector512<float> v, int c, float* dst, int dstStride, int lanes, int columns, float* bias, Vector512<float> mask)
    {
        if (c >= columns)
            return;
        if (bias != null)
            v += Vector512.Create(bias[c]);
        float* at = dst + (long)c * dstStride;
        if (lanes == 16)
            v.Store(at);
        else
            Avx512F.MaskStore(at, mask, v);
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
