using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Panel sources and the packing of op(A) and op(B) blocks into the micro-kernel's panel layout.
/// </summary>
/// <remarks>
/// <para>
/// Ap (mc×kc block): ⌈mc/MR⌉ panels, panel r at <c>Ap + r·MR·kc</c>, element (i, p) at <c>[p·MR + i]</c> —
/// the MR values the kernel broadcasts at step p are adjacent. Rows past mc are zero.
/// </para>
/// <para>
/// Bp (kc×nc block): ⌈nc/NR⌉ panels, panel j at <c>Bp + j·NR·kc</c>, element (p, j) at <c>[p·W + j]</c>
/// where the panel width W is NR for full panels and the last, narrower panel is rounded up to 16 (a whole
/// number of Vector512) and zero-filled, so the kernel never needs masked loads.
/// </para>
/// <para>
/// Two shapes of copy cover all four cases. "Rows": the source already runs along the panel's width
/// (op(A) with transA, op(B) without transB) — a straight vector copy per k step. "Interleave": the source
/// runs along k (op(A) without transA, op(B) with transB) — a transpose, done as 8×8 AVX blocks
/// (unpack, shuffle, permute2f128: 24 shuffles per 64 elements) with a scalar rim.
/// </para>
/// </remarks>
internal static unsafe partial class Sgemm
{
    /// <summary>
    /// Supplies one operand block in packed panel layout: rows [i0, i0+count) of op(A) (A side) or columns
    /// [i0, i0+count) of op(B) (B side), k range [p0, p0+kc). Returns the panels — written into
    /// <c>scratch</c> (room for MC×KC resp. KC×NC floats) or found elsewhere, already packed. Implemented by
    /// structs so the driver is specialized per source and the call costs nothing.
    /// </summary>
    internal interface IPanels
    {
        float* Panels(int i0, int count, int p0, int kc, float* scratch);
    }

    /// <summary>A plain row-major matrix as the A operand.</summary>
    internal readonly struct MatrixA(bool trans, float* a, int lda) : IPanels
    {
        public float* Panels(int i0, int count, int p0, int kc, float* scratch)
        {
            PackA(trans, a, lda, i0, count, p0, kc, scratch);
            return scratch;
        }
    }

    /// <summary>A plain row-major matrix as the B operand.</summary>
    internal readonly struct MatrixB(bool trans, float* b, int ldb) : IPanels
    {
        public float* Panels(int i0, int count, int p0, int kc, float* scratch)
        {
            PackB(trans, b, ldb, p0, kc, i0, count, scratch);
            return scratch;
        }
    }

    /// <summary>
    /// An A operand packed once up front by <see cref="PrePackA"/> (e.g. a layer's weights, shared by every
    /// sample and thread). Layout: the k blocks of <see cref="BlockK"/> one after another, each
    /// ⌈m/MR⌉·MR × kc in MR-row panels, so block (i0, p0) starts at p0·⌈m/MR⌉·MR + i0·kc.
    /// </summary>
    internal readonly struct PackedA(float* panels, int m) : IPanels
    {
        public float* Panels(int i0, int count, int p0, int kc, float* scratch) =>
            panels + (long)p0 * PaddedRows(m) + (long)i0 * kc;
    }

    /// <summary>Floats needed by <see cref="PrePackA"/> for an m×k op(A).</summary>
    internal static long PrePackedSize(int m, int k) => (long)PaddedRows(m) * k;

    /// <summary>Packs all of op(A) (m×k) for use through <see cref="PackedA"/>.</summary>
    internal static void PrePackA(bool transA, int m, int k, float* a, int lda, float* dst)
    {
        int kcMax = BlockK(k);
        for (int pc = 0; pc < k; pc += kcMax)
            PackA(transA, a, lda, 0, m, pc, Math.Min(kcMax, k - pc), dst + (long)pc * PaddedRows(m));
    }

    private static int PaddedRows(int m) => (m + MR - 1) / MR * MR;

    /// <summary>Packs op(A)[ic..ic+mc, pc..pc+kc] into MR-row panels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(bool transA, float* a, int lda, int ic, int mc, int pc, int kc, float* ap)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int rows = Math.Min(MR, mc - ir);
            float* dst = ap + ir * kc;
            if (transA) // A is k×m: the MR values of one k step are contiguous in a row of A
                CopyRows(a + (long)pc * lda + ic + ir, lda, kc, rows, dst, MR);
            else        // A is m×k: each of the MR rows runs along k
                Interleave(a + (long)(ic + ir) * lda + pc, lda, rows, kc, dst, MR);
        }
    }

    /// <summary>Packs op(B)[pc..pc+kc, jc..jc+nc] into NR-column panels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(bool transB, float* b, int ldb, int pc, int kc, int jc, int nc, float* bp)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int cols = Math.Min(NR, nc - jr);
            int width = PanelWidth(cols);
            float* dst = bp + jr * kc;
            if (transB) // B is n×k: each of the panel's columns runs along k
                Interleave(b + (long)(jc + jr) * ldb + pc, ldb, cols, kc, dst, width);
            else        // B is k×n: one k step of the panel is contiguous
                CopyRows(b + (long)pc * ldb + jc + jr, ldb, kc, cols, dst, width);
        }
    }

    /// <summary>Width of a packed B panel holding <paramref name="cols"/> columns: NR, or a multiple of 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int PanelWidth(int cols) => cols == NR ? NR : (cols + 15) & ~15;

    /// <summary>dst[p·width + j] = src[p·stride + j] for p &lt; kc, j &lt; count; zero for count ≤ j &lt; width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyRows(float* src, int stride, int kc, int count, float* dst, int width)
    {
        if (count == 48 && width == 48 && Vector512.IsHardwareAccelerated)
        {
            for (int p = 0; p < kc; p++, src += stride, dst += 48)
            {
                Vector512.Load(src).Store(dst);
                Vector512.Load(src + 16).Store(dst + 16);
                Vector512.Load(src + 32).Store(dst + 32);
            }
            return;
        }
        if (count == 16 && width == 16 && Vector256.IsHardwareAccelerated)
        {
            for (int p = 0; p < kc; p++, src += stride, dst += 16)
            {
                Vector256.Load(src).Store(dst);
                Vector256.Load(src + 8).Store(dst + 8);
            }
            return;
        }
        if (count == 8 && width == 8 && Vector256.IsHardwareAccelerated)
        {
            for (int p = 0; p < kc; p++, src += stride, dst += 8)
                Vector256.Load(src).Store(dst);
            return;
        }
        if (count == 6 && width == 6 && Vector128.IsHardwareAccelerated)
        {
            for (int p = 0; p < kc; p++, src += stride, dst += 6)
            {
                Vector128.Load(src).Store(dst);
                dst[4] = src[4];
                dst[5] = src[5];
            }
            return;
        }
        for (int p = 0; p < kc; p++, src += stride, dst += width)
        {
            int j = 0;
            for (; j < count; j++)
                dst[j] = src[j];
            for (; j < width; j++)
                dst[j] = 0f;
        }
    }

    /// <summary>dst[p·width + r] = src[r·stride + p] for r &lt; count, p &lt; kc; zero for count ≤ r &lt; width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Interleave(float* src, int stride, int count, int kc, float* dst, int width)
    {
        int r0 = 0;
        if (Avx.IsSupported)
        {
            for (; r0 + 8 <= count; r0 += 8)
            {
                float* s = src + (long)r0 * stride;
                int p = 0;
                for (; p + 8 <= kc; p += 8)
                    Transpose8x8(s + p, stride, dst + p * width + r0, width);
                for (; p < kc; p++)
                    for (int r = 0; r < 8; r++)
                        dst[p * width + r0 + r] = s[(long)r * stride + p];
            }
        }
        if (Sse.IsSupported) // 4-row groups as 4×4 transposes (the 6-row A panels of the AVX2 path: 4 + 2)
        {
            for (; r0 + 4 <= count; r0 += 4)
            {
                float* s = src + (long)r0 * stride;
                int p = 0;
                for (; p + 4 <= kc; p += 4)
                    Transpose4x4(s + p, stride, dst + p * width + r0, width);
                for (; p < kc; p++)
                    for (int r = 0; r < 4; r++)
                        dst[p * width + r0 + r] = s[(long)r * stride + p];
            }
        }
        for (int r = r0; r < count; r++)
        {
            float* s = src + (long)r * stride;
            for (int p = 0; p < kc; p++)
                dst[p * width + r] = s[p];
        }
        for (int r = count; r < width; r++)
            for (int p = 0; p < kc; p++)
                dst[p * width + r] = 0f;
    }

    /// <summary>Transposes the 4×4 block at <paramref name="src"/> (rows <paramref name="srcStride"/> apart) into
    /// <paramref name="dst"/> (rows <paramref name="dstStride"/> apart, 16-byte stores need no alignment).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(float* src, int srcStride, float* dst, int dstStride)
    {
        var r0 = Sse.LoadVector128(src);
        var r1 = Sse.LoadVector128(src + srcStride);
        var r2 = Sse.LoadVector128(src + 2L * srcStride);
        var r3 = Sse.LoadVector128(src + 3L * srcStride);
        var t0 = Sse.UnpackLow(r0, r1);   // a0 b0 a1 b1
        var t1 = Sse.UnpackLow(r2, r3);   // c0 d0 c1 d1
        var t2 = Sse.UnpackHigh(r0, r1);  // a2 b2 a3 b3
        var t3 = Sse.UnpackHigh(r2, r3);  // c2 d2 c3 d3
        Sse.Store(dst, Sse.MoveLowToHigh(t0, t1));
        Sse.Store(dst + dstStride, Sse.MoveHighToLow(t1, t0));
        Sse.Store(dst + 2 * dstStride, Sse.MoveLowToHigh(t2, t3));
        Sse.Store(dst + 3 * dstStride, Sse.MoveHighToLow(t3, t2));
    }

    /// <summary>Transposes the 8×8 block at <paramref name="src"/> (rows <paramref name="srcStride"/> apart)
    /// into <paramref name="dst"/> (rows <paramref name="dstStride"/> apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, int srcStride, float* dst, int dstStride)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + 2L * srcStride);
        var r3 = Avx.LoadVector256(src + 3L * srcStride);
        var r4 = Avx.LoadVector256(src + 4L * srcStride);
        var r5 = Avx.LoadVector256(src + 5L * srcStride);
        var r6 = Avx.LoadVector256(src + 6L * srcStride);
        var r7 = Avx.LoadVector256(src + 7L * srcStride);

        // Pairs of rows interleaved element-wise, then pairs of pairs, then the 128-bit halves swapped.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);

        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);

        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(s3, s7, 0x31));
    }
}
