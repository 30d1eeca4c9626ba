using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// im2col ("unfold") and col2im ("fold") for one sample of an NCHW convolution.
/// </summary>
/// <remarks>
/// <para>
/// The column matrix is [Cin·KH·KW, OH·OW] row-major: row <c>r = (ci·KH + kh)·KW + kw</c> holds, at column
/// <c>oh·OW + ow</c>, the input pixel <c>x[ci, oh·S − P + kh, ow·S − P + kw]</c> (zero where that falls in the
/// padding). With W as [Cout, Cin·KH·KW] the convolution is then the GEMM <c>y = W · col</c>.
/// </para>
/// <para>
/// Three implementations, fastest first (all AVX-512 paths use masked loads: masked-off lanes are neither
/// read nor faulted on, so padding comes out as zeros without branches and without a padded copy of x):
/// </para>
/// <list type="number">
/// <item>"Flat shift" (stride 1, OW = W, e.g. any K×K "same" convolution): row (ci, kh, kw) of col is channel
/// ci read as one flat array at a constant offset (kh − pad)·W + (kw − pad), with the lanes that wrapped around
/// a row edge or left the image masked off. Loops run chunk-outer — 16 flat positions at a time, the mask of
/// every tap computed once per chunk (<see cref="TapMasks"/>) and reused for all channels — so the inner loop
/// is mask → masked load → store. Fold is done as a gather (sum the taps in registers, write x once).
/// <see cref="Patches"/> applies the same idea directly inside the GEMM's B packing.</item>
/// <item>Stride 1 otherwise: per (row, oh) the valid ow form one interval (<see cref="ValidRange"/>), a
/// contiguous slice of an input row, moved 16 lanes at a time.</item>
/// <item>Without AVX-512, stride 1: each (row, oh) is a span copy of the valid slice (fold: a TensorPrimitives add).</item>
/// <item>Other strides: a scalar gather.</item>
/// </list>
/// </remarks>
internal static unsafe class Im2Col
{
    /// <summary>col[Cin·KH·KW, OH·OW] ← patches of one sample <paramref name="x"/>[Cin, H, W] (overwrites col).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unfold(in ConvGeometry g, float* x, float* col)
    {
        if (IsFlatShift(g))
        {
            FlatUnfold(g, x, col);
            return;
        }
        int oh = g.OutHeight, ow = g.OutWidth, s = g.Stride, pad = g.Padding;
        bool vector = s == 1 && Avx512F.IsSupported;
        for (int ci = 0; ci < g.InChannels; ci++)
        for (int kh = 0; kh < g.KernelH; kh++)
        for (int kw = 0; kw < g.KernelW; kw++)
        {
            (int lo, int hi) = ValidRange(ow, g.Width, s, pad, kw);
            for (int y = 0; y < oh; y++, col += ow)
            {
                int ih = y * s - pad + kh;
                if ((uint)ih >= (uint)g.Height)
                {
                    new Span<float>(col, ow).Clear();
                    continue;
                }
                float* src = x + ((long)ci * g.Height + ih) * g.Width - pad + kw; // src[ow·s] ↔ col[ow]
                if (vector)
                {
                    for (int o = 0; o < ow; o += 16)
                    {
                        var lane = Vector512.Create(o) + Iota;
                        var valid = Vector512.GreaterThanOrEqual(lane, Vector512.Create(lo)) & Vector512.LessThan(lane, Vector512.Create(hi));
                        var v = Avx512F.MaskLoad(src + o, valid.AsSingle(), Vector512<float>.Zero);
                        if (o + 16 <= ow)
                            v.Store(col + o);
                        else
                            Avx512F.MaskStore(col + o, Vector512.LessThan(lane, Vector512.Create(ow)).AsSingle(), v);
                    }
                }
                else if (s == 1) // the valid columns are one contiguous slice of the input row
                {
                    new Span<float>(col, lo).Clear();
                    new ReadOnlySpan<float>(src + lo, hi - lo).CopyTo(new Span<float>(col + lo, hi - lo));
                    new Span<float>(col + hi, ow - hi).Clear();
                }
                else
                {
                    for (int o = 0; o < ow; o++)
                        col[o] = o >= lo && o < hi ? src[(long)o * s] : 0f;
                }
            }
        }
    }

    /// <summary>x[Cin, H, W] += col2im(col): every column entry is added back onto the input pixel it was
    /// copied from (padding entries are dropped). Accumulates — clear x first for an overwrite.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void FoldAccumulate(in ConvGeometry g, float* col, float* x)
    {
        if (IsFlatShift(g))
        {
            FlatFold(g, col, x);
            return;
        }
        int oh = g.OutHeight, ow = g.OutWidth, s = g.Stride, pad = g.Padding;
        bool vector = s == 1 && Avx512F.IsSupported;
        for (int ci = 0; ci < g.InChannels; ci++)
        for (int kh = 0; kh < g.KernelH; kh++)
        for (int kw = 0; kw < g.KernelW; kw++)
        {
            (int lo, int hi) = ValidRange(ow, g.Width, s, pad, kw);
            if (lo >= hi)
            {
                col += (long)oh * ow;
                continue;
            }
            for (int y = 0; y < oh; y++, col += ow)
            {
                int ih = y * s - pad + kh;
                if ((uint)ih >= (uint)g.Height)
                    continue;
                float* dst = x + ((long)ci * g.Height + ih) * g.Width - pad + kw;
                if (vector)
                {
                    for (int o = lo; o < hi; o += 16)
                    {
                        var lane = Vector512.Create(o) + Iota;
                        var valid = Vector512.LessThan(lane, Vector512.Create(hi)).AsSingle();
                        var sum = Avx512F.MaskLoad(dst + o, valid, Vector512<float>.Zero)
                                + Avx512F.MaskLoad(col + o, valid, Vector512<float>.Zero);
                        Avx512F.MaskStore(dst + o, valid, sum);
                    }
                }
                else if (s == 1)
                {
                    var row = new Span<float>(dst + lo, hi - lo);
                    TensorPrimitives.Add(row, new ReadOnlySpan<float>(col + lo, hi - lo), row);
                }
                else
                {
                    for (int o = lo; o < hi; o++)
                        dst[(long)o * s] += col[o];
                }
            }
        }
    }

    /// <summary>Stride 1 with OW = W (KW = 2·pad + 1): a column row is its input channel read as one flat
    /// array shifted by a constant (kh − pad)·W + (kw − pad), minus the lanes that wrapped around a row edge
    /// or fell off the top or bottom.</summary>
    private static bool IsFlatShift(in ConvGeometry g) => g.Stride == 1 && g.OutWidth == g.Width && Avx512F.IsSupported;

    /// <summary>
    /// Unfold for <see cref="IsFlatShift"/> geometries. Chunk-outer: for each 16 flat output positions the
    /// validity mask of every tap is computed once (<see cref="TapMasks"/>) and then reused for all Cin
    /// channels, so the inner loop is mask load → masked load → store.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FlatUnfold(in ConvGeometry g, float* x, float* col)
    {
        int w = g.Width, total = g.OutHeight * w, hw = g.Height * w, taps = g.KernelH * g.KernelW;
        var masks = stackalloc Vector512<float>[taps];
        int* shifts = stackalloc int[taps];
        for (int t = 0; t < taps; t++)
            shifts[t] = (t / g.KernelW - g.Padding) * w + t % g.KernelW - g.Padding;
        var lanes = new Lanes(w);
        for (int q0 = 0; q0 < total; q0 += 16, lanes.Advance())
        {
            TapMasks(g, lanes, total, masks);
            bool tail = q0 + 16 > total;
            var inside = Vector512.LessThan(lanes.Q, Vector512.Create(total)).AsSingle();
            float* dst = col + q0;
            for (int ci = 0; ci < g.InChannels; ci++)
            {
                float* src = x + (long)ci * hw + q0;
                for (int t = 0; t < taps; t++, dst += total)
                {
                    var v = Avx512F.MaskLoad(src + shifts[t], masks[t], Vector512<float>.Zero);
                    if (tail)
                        Avx512F.MaskStore(dst, inside, v);
                    else
                        v.Store(dst);
                }
            }
        }
    }

    /// <summary>
    /// Fold for <see cref="IsFlatShift"/> geometries, as a gather: each 16 input positions of a channel sum
    /// their (up to) KH·KW contributions from the column rows in registers, in tap order, and update x once —
    /// instead of a read-modify-write of x per tap.
    /// </summary>
    [SkipLocalsInit]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FlatFold(in ConvGeometry g, float* col, float* x)
    {
        int w = g.Width, total = g.OutHeight * w, hw = g.Height * w, taps = g.KernelH * g.KernelW;
        var masks = stackalloc Vector512<float>[taps];
        int* shifts = stackalloc int[taps];
        for (int t = 0; t < taps; t++)
            shifts[t] = (t / g.KernelW - g.Padding) * w + t % g.KernelW - g.Padding;
        var lanes = new Lanes(w);
        for (int q0 = 0; q0 < hw; q0 += 16, lanes.Advance())
        {
            // Input position q receives col[tap][q − shift] when that output position read from q, i.e. when
            // q − shift is a valid position of the tap: the unfold masks, moved by the shift.
            for (int t = 0; t < taps; t++)
            {
                int kh = t / g.KernelW, kw = t % g.KernelW;
                var fromCol = Vector512.GreaterThanOrEqual(lanes.Ow, Vector512.Create(kw - g.Padding))
                            & Vector512.LessThan(lanes.Ow, Vector512.Create(w + kw - g.Padding))
                            & Vector512.GreaterThanOrEqual(lanes.Q, Vector512.Create((kh - g.Padding) * w))
                            & Vector512.LessThan(lanes.Q, Vector512.Create(Math.Min(hw, total + (kh - g.Padding) * w)));
                masks[t] = fromCol.AsSingle();
            }
            var inside = Vector512.LessThan(lanes.Q, Vector512.Create(hw)).AsSingle();
            float* src = col + q0;
            for (int ci = 0; ci < g.InChannels; ci++)
            {
                var sum = Vector512<float>.Zero;
                for (int t = 0; t < taps; t++, src += total)
                    sum += Avx512F.MaskLoad(src - shifts[t], masks[t], Vector512<float>.Zero);
                float* dst = x + (long)ci * hw + q0;
                Avx512F.MaskStore(dst, inside, Avx512F.MaskLoad(dst, inside, Vector512<float>.Zero) + sum);
            }
        }
    }

    /// <summary>
    /// masks[kh·KW + kw] = lanes q0..q0+15 whose input pixel for that tap lies inside the image (and q &lt; end):
    /// ow + kw − pad ∈ [0, W) and q ∈ [(pad − kh)·W, (H + pad − kh)·W).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TapMasks(in ConvGeometry g, in Lanes lanes, int end, Vector512<float>* masks) =>
        TapMasks(g.Height, g.Width, g.KernelH, g.KernelW, g.Padding, lanes, end, masks);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TapMasks(int height, int w, int kernelH, int kernelW, int pad, in Lanes lanes, int end, Vector512<float>* masks)
    {
        for (int kh = 0; kh < kernelH; kh++)
        {
            var rows = Vector512.GreaterThanOrEqual(lanes.Q, Vector512.Create((pad - kh) * w))
                     & Vector512.LessThan(lanes.Q, Vector512.Create(Math.Min(end, (height + pad - kh) * w)));
            for (int kw = 0; kw < kernelW; kw++)
            {
                var cols = Vector512.GreaterThanOrEqual(lanes.Ow, Vector512.Create(pad - kw))
                         & Vector512.LessThan(lanes.Ow, Vector512.Create(w + pad - kw));
                masks[kh * kernelW + kw] = (rows & cols).AsSingle();
            }
        }
    }

    /// <summary>Flat positions q = q0 + lane and their column ow = q mod W, stepped 16 at a time.</summary>
    private struct Lanes
    {
        private readonly Vector512<int> _width, _step;
        public Vector512<int> Q, Ow;

        public Lanes(int width) : this(width, 0) { }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Lanes(int width, int q0)
        {
            _width = Vector512.Create(width);
            _step = Vector512.Create(16 % width);
            Q = Vector512.Create(q0) + Iota;
            Ow = Vector512.Create(q0 % width) + Iota;
            for (int i = 0; i < 16 / width + 1; i++)
                Ow -= Vector512.GreaterThanOrEqual(Ow, _width) & _width;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance()
        {
            Q += Vector512.Create(16);
            Ow += _step;
            Ow -= Vector512.GreaterThanOrEqual(Ow, _width) & _width;
        }
    }

    /// <summary>The output columns [lo, hi) whose input column <c>ow·stride − pad + kw</c> lies inside [0, width).</summary>
    internal static (int Lo, int Hi) ValidRange(int outWidth, int width, int stride, int pad, int kw)
    {
        int first = pad - kw;                       // need ow·stride ≥ pad − kw
        int lo = first <= 0 ? 0 : (first + stride - 1) / stride;
        int last = width - 1 + pad - kw;            // need ow·stride ≤ width − 1 + pad − kw
        int hi = last < 0 ? 0 : Math.Min(outWidth, last / stride + 1);
        return (Math.Min(lo, hi), hi);
    }

    /// <summary>
    /// im2col fused into GEMM packing for "same" convolutions (stride 1, square kernel K = 2·pad + 1, so the
    /// output grid equals the input grid): the B operand col[Cin·K·K, H·W] of one sample, delivered straight
    /// as packed NR-wide panels from the image. Avoids writing and re-reading the column matrix.
    /// </summary>
    /// <remarks>
    /// Panel row p is patch row r = (ci, kh, kw); its up to 48 lanes are the flat output positions q of the
    /// panel, read from <c>x[ci] + q + (kh − pad)·W + (kw − pad)</c> with one masked load per 16 lanes. The masks
    /// depend only on the tap and the panel's columns, so each panel first computes them for every tap
    /// (<see cref="TapMasks"/>, also cutting the zero padding past the panel's last column) and the k loop is
    /// then mask → masked load → aligned store, three times per row.
    /// </remarks>
    internal readonly struct Patches : Sgemm.IPanels
    {
        private readonly float* _x;
        private readonly int _height, _width, _kernel, _pad;

        /// <summary>The patches of <paramref name="x"/> [channels, height, width] for a K×K "same" kernel.</summary>
        public Patches(float* x, int height, int width, int kernel, int pad)
        {
            _x = x;
            (_height, _width, _kernel, _pad) = (height, width, kernel, pad);
        }

        /// <summary>Whether <paramref name="g"/> qualifies (and the machine has the masked loads).</summary>
        public static bool Supports(in ConvGeometry g) =>
            Avx512F.IsSupported && g.Stride == 1 && g.KernelH == g.KernelW && g.KernelH == 2 * g.Padding + 1;

        [SkipLocalsInit]
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public float* Panels(int j0, int count, int p0, int kc, float* scratch)
        {
            int w = _width, hw = _height * w, taps = _kernel * _kernel;
            var masks = stackalloc Vector512<float>[3 * taps]; // [chunk of the panel][tap]
            int* shifts = stackalloc int[taps];
            for (int t = 0; t < taps; t++)
                shifts[t] = (t / _kernel - _pad) * w + t % _kernel - _pad;
            for (int jr = 0; jr < count; jr += Sgemm.NR)
            {
                int cols = Math.Min(Sgemm.NR, count - jr), width = Sgemm.PanelWidth(cols), q0 = j0 + jr;
                for (int v = 0; v < width / 16; v++)
                    TapMasks(_height, w, _kernel, _kernel, _pad, new Lanes(w, q0 + 16 * v), q0 + cols, masks + v * taps);

                float* dst = scratch + jr * kc;
                int ci = p0 / taps, t = p0 % taps;
                float* src = _x + (long)ci * hw + q0;
                for (int p = 0; p < kc; p++, dst += width)
                {
                    float* s = src + shifts[t];
                    Avx512F.MaskLoad(s, masks[t], Vector512<float>.Zero).Store(dst);
                    if (width > 16)
                        Avx512F.MaskLoad(s + 16, masks[taps + t], Vector512<float>.Zero).Store(dst + 16);
                    if (width > 32)
                        Avx512F.MaskLoad(s + 32, masks[2 * taps + t], Vector512<float>.Zero).Store(dst + 32);
                    if (++t == taps)
                    {
                        t = 0;
                        src += hw;
                    }
                }
            }
            return scratch;
        }
    }

    private static Vector512<int> Iota => Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
