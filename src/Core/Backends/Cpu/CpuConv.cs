using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// 2-d convolution (NCHW, weights [Cout, Cin, KH, KW]) on the CPU as im2col + GEMM, one sample at a time.
/// </summary>
/// <remarks>
/// <para>
/// Per sample n, with col = im2col(x[n]) of shape [Cin·KH·KW, OH·OW] (see <see cref="Im2Col"/>):
/// forward <c>y[n] = W·col (+ b)</c>; backward <c>dW += dy[n]·colᵀ</c>, <c>db += Σ_hw dy[n]</c> and
/// <c>dx[n] = col2im(Wᵀ·dy[n])</c>.
/// </para>
/// <para>
/// Direct paths (<see cref="CpuDirectConv"/>, AVX-512 and AVX2, output width a multiple of 7): the forward pass of
/// stride-1 and stride-2 convolutions, the input gradient of "same" convolutions (the correlation of dy with the
/// flipped, transposed kernel) and of stride-2 3×3 ones (four correlations of dy, one per parity of the input
/// position: <see cref="CpuDirectConv.StridedInputGradient"/>), and the weight gradient of 3×3 ones, all from a
/// zero-bordered copy of the sample — no column matrix. They replace the paths below where they apply (resnet20's 16→16 layers at 28×28 on one core:
/// forward 79 → 101, backward 65 → 98 GFLOP/s; bench/RESULTS.md, issue 12).
/// </para>
/// <para>
/// Fast paths. A 1×1, stride-1, unpadded convolution uses x[n] as col. A "same" convolution (stride 1, square
/// K = 2·pad + 1 — both of the model's) never materializes col in the forward pass: the GEMM packs its B
/// panels straight from the image (<see cref="Im2Col.Patches"/>). W (forward) and Wᵀ (dx) are packed once
/// per call and shared by all samples (<see cref="Sgemm.PackedA"/>). With a small patch (conv1: Cin·K·K = 9)
/// dW comes from the packing-free dot-product kernel <see cref="Sgemm.MultiplyABt"/>.
/// </para>
/// <para>
/// Measured alternative, not kept: dx as the forward convolution of dy with the flipped, transposed kernel
/// through the GEMM (fused packing, no col2im) was no faster than Wᵀ·dy + the gather-style col2im of
/// <see cref="Im2Col"/> for conv2 (m = Cin = 32 reuses each packed panel only four times). The direct kernel
/// computes dx that way without packing, and wins.
/// </para>
/// <para>
/// Parallelism is over samples: the pool runs one body per worker slot, each slot claims work items
/// (samples forward, chunks of samples backward) from a shared counter and runs serial GEMMs with its own
/// column buffer — per-sample GEMMs (64×196×288 for conv2) are too small to split profitably, and whole
/// samples keep each slot's panels and output in its own L2. With fewer samples than threads (N = 1
/// inference) the samples run in turn and the GEMMs themselves are parallelized instead.
/// </para>
/// <para>
/// Determinism: dW and db are summed per chunk — chunk c holds samples [c·N/C, (c+1)·N/C) with
/// C = min(N, <see cref="MaxChunks"/>), a function of N alone — in sample order, and the chunk sums are then
/// added in chunk order. All results are therefore bit-identical for any thread count and any scheduling.
/// </para>
/// </remarks>
internal static unsafe class CpuConv
{
    /// <summary>Upper bound on dW/db partial sums (each a full dW, so this bounds workspace memory).</summary>
    internal const int MaxChunks = 16;

    /// <summary>Up to this Cin·KH·KW the weight gradient uses the packing-free dot-product kernel
    /// (<see cref="Sgemm.MultiplyABt"/>): packing a k×n panel with n this small costs more than the multiply.</summary>
    internal const int SmallPatch = 32;

    /// <summary>y (overwritten) = conv(x, w) + bias (bias may be null).</summary>
    public static void Forward(CpuThreadPool pool, in ConvGeometry g, float* x, float* w, float* bias, float* y, CpuConvWorkspace ws)
    {
        Validate(pool, g, ws);
        var job = ws.Job;
        job.Set(pool, g, ws, backward: false, items: g.N);
        (job.X, job.W, job.Bias, job.Y) = ((nint)x, (nint)w, (nint)bias, (nint)y);
        float* packed; // W, once for all samples
        if (job.DirectForward)
        {
            packed = ws.PackedWeights((long)g.PatchSize * CpuDirectConv.PaddedChannels(g.OutChannels));
            CpuDirectConv.PackForward(g, w, packed);
        }
        else
        {
            packed = ws.PackedWeights(Sgemm.PrePackedSize(g.OutChannels, g.PatchSize));
            Sgemm.PrePackA(false, g.OutChannels, g.PatchSize, w, g.PatchSize, packed);
        }
        job.PackedW = (nint)packed;
        job.Run();
    }

    /// <summary>dw (overwritten) = Σ_n dy[n]·col(x[n])ᵀ; db (overwritten, if not null) = Σ over n, h, w of dy;
    /// dx (overwritten, if not null) = col2im(Wᵀ·dy[n]).</summary>
    public static void Backward(CpuThreadPool pool, in ConvGeometry g, float* x, float* w, float* dy,
        float* dx, float* dw, float* db, CpuConvWorkspace ws)
    {
        Validate(pool, g, ws);
        int chunks = Math.Min(g.N, MaxChunks);
        if (chunks == 0) // empty batch: the sums are zero
        {
            new Span<float>(dw, g.OutChannels * g.PatchSize).Clear();
            if (db != null)
                new Span<float>(db, g.OutChannels).Clear();
            return;
        }
        var job = ws.Job;
        job.Set(pool, g, ws, backward: true, items: chunks);
        // Direct weight gradient: every chunk sums dWᵀ [patch × padded Cout] in its partial buffer.
        long dwFloats = job.DirectWeights
            ? (long)g.PatchSize * CpuDirectConv.PaddedChannels(g.OutChannels)
            : (long)g.OutChannels * g.PatchSize;
        ws.EnsurePartials(chunks, dwFloats, g.OutChannels);
        (job.X, job.W, job.Dy, job.Dx, job.Dw, job.Db) = ((nint)x, (nint)w, (nint)dy, (nint)dx, (nint)dw, (nint)db);
        if (dx != null && job.Direct)
        {
            // The input gradient as a correlation of dy with the flipped, transposed kernel (CpuDirectConv).
            float* packed = ws.PackedWeights((long)g.OutChannels * g.KernelH * g.KernelW * CpuDirectConv.PaddedChannels(g.InChannels));
            CpuDirectConv.PackInputGradient(g, w, packed);
            job.PackedW = (nint)packed;
        }
        else if (dx != null && job.StridedDirect)
        {
            // The input gradient of the stride-2 3×3 convolutions as four correlations of dy (CpuDirectConv.StridedInputGradient).
            float* packed = ws.PackedWeights((long)g.OutChannels * g.KernelH * g.KernelW * CpuDirectConv.PaddedChannels(g.InChannels));
            job.PhaseOffsets = ws.PhaseOffsets(g.OutChannels * g.KernelH * g.KernelW);
            CpuDirectConv.PackStridedInputGradient(g, w, packed, job.PhaseOffsets);
            job.PackedW = (nint)packed;
        }
        else if (dx != null && !job.Pointwise)
        {
            // op(A) = Wᵀ [Cin·KH·KW, Cout] of the per-sample dcol GEMM, packed once for all samples.
            float* packed = ws.PackedWeights(Sgemm.PrePackedSize(g.PatchSize, g.OutChannels));
            Sgemm.PrePackA(true, g.PatchSize, g.OutChannels, w, g.PatchSize, packed);
            job.PackedW = (nint)packed;
        }
        job.Run();

        if (job.DirectWeights)
            SumTransposed(g, ws, chunks, dw);
        else // chunk 0 summed straight into dw; add the others in chunk order
            for (int c = 1; c < chunks; c++)
                Add(dw, ws.DwPartial(c), dwFloats);
        if (db != null)
        {
            new Span<float>(db, g.OutChannels).Clear();
            for (int c = 0; c < chunks; c++)
                Add(db, ws.DbPartial(c), g.OutChannels);
        }
    }

    /// <summary>dw[co, r] = Σ_c partial_c[r, co] over the chunks in order (the partials are dWᵀ with padded rows): the
    /// partials are added into partial 0 in chunk order (vectorized), then transposed into dw.</summary>
    private static void SumTransposed(in ConvGeometry g, CpuConvWorkspace ws, int chunks, float* dw)
    {
        int patch = g.PatchSize, ld = CpuDirectConv.PaddedChannels(g.OutChannels);
        float* sum = ws.DwPartial(0);
        for (int c = 1; c < chunks; c++)
            Add(sum, ws.DwPartial(c), (long)patch * ld);
        for (int r = 0; r < patch; r++)
            for (int co = 0; co < g.OutChannels; co++)
                dw[(long)co * patch + r] = sum[(long)r * ld + co];
    }

    private static void Validate(CpuThreadPool pool, in ConvGeometry g, CpuConvWorkspace ws)
    {
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(ws);
        if (g.N < 0 || g.InChannels <= 0 || g.OutChannels <= 0 || g.KernelH <= 0 || g.KernelW <= 0 || g.Stride <= 0
            || g.Padding < 0 || g.OutHeight <= 0 || g.OutWidth <= 0)
            throw new ArgumentException($"Invalid convolution geometry {g}.", nameof(g));
    }

    /// <summary>One convolution call's arguments plus the per-slot loop; cached in the workspace.</summary>
    internal sealed class Job
    {
        public readonly Action<int> Body;
        public nint X, W, Bias, Y, Dy, Dx, Dw, Db, PackedW;
        private ConvGeometry _g;
        private CpuThreadPool? _pool;
        private CpuThreadPool? _gemmPool;
        private CpuConvWorkspace? _ws;
        private bool _backward;
        private int _items, _next;
        private int* _offsets;
        private int _group, _paddedSize, _dyTSize;

        /// <summary>Bytes of padded inputs and dyᵀ a slot keeps for one group of the direct weight gradient (in L2).</summary>
        private const long GroupBytes = 512 * 1024;

        public Job() => Body = RunSlot;

        /// <summary>The forward pass packs its B panels straight from x (see <see cref="Im2Col.Patches"/>).</summary>
        public bool Same { get; private set; }

        /// <summary>1×1, stride 1, no padding: col(x[n]) is x[n] itself.</summary>
        public bool Pointwise { get; private set; }

        /// <summary>The forward pass by <see cref="CpuDirectConv"/> (no column matrix).</summary>
        public bool DirectForward { get; private set; }

        /// <summary>The input gradient by <see cref="CpuDirectConv"/> too ("same" convolutions).</summary>
        public bool Direct { get; private set; }

        /// <summary>The weight gradient by <see cref="CpuDirectConv.WeightGradient"/> (stride 1 or 2).</summary>
        public bool DirectWeights { get; private set; }

        /// <summary>The input gradient by <see cref="CpuDirectConv.StridedInputGradient"/> (stride 2).</summary>
        public bool StridedDirect { get; private set; }

        /// <summary>The tap offsets of the strided input gradient's phases (<see cref="CpuDirectConv.PackStridedInputGradient"/>).</summary>
        public int* PhaseOffsets;

        /// <summary>Whether this call pads samples (<see cref="CpuDirectConv.Pad"/>) into the slots' padded buffers.</summary>
        private bool UsesPadded => _backward ? Direct || DirectWeights || StridedDirect : DirectForward;

        public void Set(CpuThreadPool pool, in ConvGeometry g, CpuConvWorkspace ws, bool backward, int items)
        {
            (_g, _pool, _ws, _backward, _items, _next) = (g, pool, ws, backward, items, 0);
            Pointwise = g.KernelH == 1 && g.KernelW == 1 && g.Stride == 1 && g.Padding == 0;
            Same = !Pointwise && Im2Col.Patches.Supports(g);
            DirectForward = !Pointwise && CpuDirectConv.SupportsForward(g);
            Direct = DirectForward && CpuDirectConv.Supports(g);
            DirectWeights = DirectForward && CpuDirectConv.SupportsWeightGradient(g);
            StridedDirect = backward && CpuDirectConv.SupportsStridedInputGradient(g);
            PhaseOffsets = null;
            (X, W, Bias, Y, Dy, Dx, Dw, Db, PackedW) = (0, 0, 0, 0, 0, 0, 0, 0, 0);
        }

        public void Run()
        {
            int slots = Math.Min(_pool!.Threads, _items);
            _gemmPool = slots < _pool.Threads ? _pool : null; // too few items: parallelize inside the GEMMs
            bool needsColumns = !Pointwise && (_backward || !(Same || DirectForward));
            long hw = (long)_g.OutHeight * _g.OutWidth;
            // Direct weight gradient: dyᵀ of a group of samples first, then (strided dx) the dcol of one sample.
            _group = 1;
            _paddedSize = (int)CpuDirectConv.PaddedImageSize(_g, Math.Max(_g.InChannels, _g.OutChannels));
            _dyTSize = (int)hw * CpuDirectConv.PaddedChannels(_g.OutChannels);
            if (_backward && DirectWeights)
                _group = (int)Math.Clamp(GroupBytes / (4L * (_paddedSize + _dyTSize)), 1, 8);
            long columns = !needsColumns ? 0
                : !_backward || !DirectWeights ? _g.PatchSize * hw
                : (long)_group * _dyTSize + (Direct ? 0 : _g.PatchSize * hw);
            if (StridedDirect) // the four phases of dx (past the group's dyᵀ), ≤ PatchSize·hw for K = 3
                columns = Math.Max(columns, (_backward && DirectWeights ? (long)_group * _dyTSize : 0) + 4L * _g.InChannels * hw);
            _ws!.EnsureColumns(Math.Max(slots, 1), columns);
            if (UsesPadded)
            {
                int channels = Math.Max(_g.InChannels, _g.OutChannels);
                _ws.EnsurePadded(Math.Max(slots, 1), (long)(_backward && DirectWeights ? _group + 1 : 1) * _paddedSize);
                _offsets = _ws.Offsets(channels * _g.KernelH * _g.KernelW);
                CpuDirectConv.Offsets(_g, channels, _offsets);
            }
            try
            {
                if (slots <= 1)
                    RunSlot(0);
                else
                    _pool.For(slots, Body);
            }
            finally
            {
                (_pool, _gemmPool, _ws) = (null, null, null);
                _offsets = null;
                PhaseOffsets = null;
            }
        }

        private void RunSlot(int slot)
        {
            float* col = _ws!.Column(slot);
            float* padded = null;
            bool groups = _backward && DirectWeights;
            if (UsesPadded) // the border stays zero: each sample overwrites only the interior
            {
                padded = _ws.Padded(slot);
                new Span<float>(padded, (groups ? _group + 1 : 1) * _paddedSize).Clear();
            }
            int item;
            while ((item = Interlocked.Increment(ref _next) - 1) < _items)
            {
                if (!_backward)
                {
                    ForwardSample(item, col, padded);
                    continue;
                }
                int n0 = (int)((long)item * _g.N / _items), n1 = (int)((long)(item + 1) * _g.N / _items);
                if (!groups)
                {
                    for (int n = n0; n < n1; n++)
                        BackwardSample(n, item, first: n == n0, col, padded);
                    continue;
                }
                // dWᵀ of up to _group samples at once (CpuDirectConv.WeightGradient), then db and dx sample by sample
                // with the buffers past the group's.
                for (int g0 = n0; g0 < n1; g0 += _group)
                {
                    int count = Math.Min(_group, n1 - g0);
                    for (int j = 0; j < count; j++)
                    {
                        CpuDirectConv.Pad(_g, _g.InChannels, Sample(X, g0 + j, _g.InChannels * _g.Height * _g.Width), padded + j * _paddedSize);
                        CpuDirectConv.TransposeGradient(_g.OutChannels, _g.OutHeight * _g.OutWidth,
                            Sample(Dy, g0 + j, _g.OutChannels * _g.OutHeight * _g.OutWidth), col + j * _dyTSize);
                    }
                    CpuDirectConv.WeightGradient(_g, count, padded, _paddedSize, col, _dyTSize, _ws.DwPartial(item), first: g0 == n0);
                    for (int n = g0; n < g0 + count; n++)
                        BackwardSample(n, item, first: n == n0, col + _group * _dyTSize, padded + _group * _paddedSize);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ForwardSample(int n, float* col, float* padded)
        {
            int patch = _g.PatchSize, hw = _g.OutHeight * _g.OutWidth, cout = _g.OutChannels;
            float* x = (float*)X + (long)n * _g.InChannels * _g.Height * _g.Width;
            float* y = (float*)Y + (long)n * cout * hw;
            if (DirectForward)
            {
                CpuDirectConv.Pad(_g, _g.InChannels, x, padded);
                CpuDirectConv.Correlate(_g, _g.InChannels, cout, padded, (float*)PackedW, _offsets, (float*)Bias, y);
                return;
            }
            float beta = 0f;
            if (Bias != 0)
            {
                for (int co = 0; co < cout; co++)
                    new Span<float>(y + (long)co * hw, hw).Fill(((float*)Bias)[co]);
                beta = 1f; // C = bias + W·col, one rounding like a separate add
            }
            var weights = new Sgemm.PackedA((float*)PackedW, cout);
            if (Same)
            {
                Gemm(cout, hw, patch, weights, new Im2Col.Patches(x, _g.Height, _g.Width, _g.KernelH, _g.Padding), beta, y);
                return;
            }
            if (Pointwise)
                col = x;
            else
                Im2Col.Unfold(_g, x, col);
            Gemm(cout, hw, patch, weights, new Sgemm.MatrixB(false, col, hw), beta, y);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void BackwardSample(int n, int chunk, bool first, float* col, float* padded)
        {
            int patch = _g.PatchSize, hw = _g.OutHeight * _g.OutWidth, cout = _g.OutChannels;
            long xSize = (long)_g.InChannels * _g.Height * _g.Width;
            float* x = (float*)X + n * xSize;
            float* dy = (float*)Dy + (long)n * cout * hw;
            if (!DirectWeights) // (the direct weight gradient runs per group of samples, in RunSlot)
            {
                float* dw = chunk == 0 ? (float*)Dw : _ws!.DwPartial(chunk);
                float* cols = Pointwise ? x : col;
                if (!Pointwise)
                    Im2Col.Unfold(_g, x, col);
                if (patch <= SmallPatch) // dWᵀ[patch×cout] = col·dyᵀ, both read along hw: no packing
                    Sgemm.MultiplyABt(patch, cout, hw, cols, hw, dy, hw, first ? 0f : 1f, dw, 1, patch);
                else
                    Gemm(cout, patch, hw, new Sgemm.MatrixA(false, dy, hw), new Sgemm.MatrixB(true, cols, hw), first ? 0f : 1f, dw);
            }

            if (Db != 0)
            {
                float* db = _ws!.DbPartial(chunk);
                for (int co = 0; co < cout; co++)
                {
                    float s = Sum(dy + (long)co * hw, hw);
                    db[co] = first ? s : db[co] + s;
                }
            }

            if (Dx == 0)
                return;
            float* dx = (float*)Dx + n * xSize;
            if (Direct)
            {
                CpuDirectConv.Pad(_g, cout, dy, padded);
                CpuDirectConv.Correlate(_g, cout, _g.InChannels, padded, (float*)PackedW, _offsets, null, dx);
                return;
            }
            if (StridedDirect) // col (past the group's dyᵀ, if any) holds the four phases' 4·Cin·OH·OW
            {
                CpuDirectConv.StridedInputGradient(_g, dy, padded, (float*)PackedW, PhaseOffsets, col, dx);
                return;
            }
            if (Pointwise)
            {
                Gemm(patch, hw, cout, new Sgemm.MatrixA(true, (float*)W, patch), new Sgemm.MatrixB(false, dy, hw), 0f, dx);
                return;
            }
            Gemm(patch, hw, cout, new Sgemm.PackedA((float*)PackedW, patch), new Sgemm.MatrixB(false, dy, hw), 0f, col); // col is free again
            new Span<float>(dx, (int)xSize).Clear();
            Im2Col.FoldAccumulate(_g, col, dx);
        }

        /// <summary>C[m×n] (row stride n) = A·B + beta·C, serial or over the pool (see <see cref="Run"/>).</summary>
        private void Gemm<TA, TB>(int m, int n, int k, in TA a, in TB b, float beta, float* c)
            where TA : struct, Sgemm.IPanels where TB : struct, Sgemm.IPanels
        {
            if (_gemmPool is { } pool)
                Sgemm.Run(pool, m, n, k, 1f, a, b, beta, c, n);
            else
                Sgemm.Run(m, n, k, 1f, a, b, beta, c, n);
        }
    }

    /// <summary>Sample n of a batch of <paramref name="size"/>-float samples.</summary>
    private static float* Sample(nint batch, int n, int size) => (float*)batch + (long)n * size;

    /// <summary>dst[i] += src[i].</summary>
    internal static void Add(float* dst, float* src, long count)
    {
        for (long i = 0; i < count; i += int.MaxValue)
        {
            int n = (int)Math.Min(int.MaxValue, count - i);
            TensorPrimitives.Add(new ReadOnlySpan<float>(dst + i, n), new ReadOnlySpan<float>(src + i, n), new Span<float>(dst + i, n));
        }
    }

    /// <summary>Σ p[i] in a fixed order, the same on every instruction set (<see cref="CpuRowKernels.Sum"/>).</summary>
    internal static float Sum(float* p, int count) => CpuRowKernels.Sum(p, count);
}
