using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Where the operands of one (batched) matrix product live: element strides, so that
/// transposes, the samples of a batch and per-sample blocks are all just addressing.
/// C(i, j) = Σ_k A(i, k)·B(k, j) for a batch of products, with
/// A(i, k) = a[b·ABatch + ko·AOuter + i·ARow + k·ACol] and likewise B, C, where the reduction
/// index runs over KOuter blocks of K (ko) — the samples, when a weight gradient sums
/// dy[n]·col[n]ᵀ over the batch inside one product.
/// </summary>
internal struct GemmShape
{
    public int M, N, K, KOuter;

    /// <summary>Reduction blocks in all: product b runs ko over [0, min(KOuter, KOuterTotal − b·KOuter)),
    /// which lets a split-K launch give its last product fewer samples.</summary>
    public int KOuterTotal;
    public int ARow, ACol, AOuter, ABatch;
    public int BRow, BCol, BOuter, BBatch;
    public int CRow, CCol, CBatch;

    /// <summary>Threads per tile side (16 on a GPU, 4 on the CPU simulator); the tile is 4·Side square.</summary>
    public int Side;

    /// <summary>The K slice staged per barrier pair: <see cref="GemmKernels.SharedFloats"/>/(4·Side), a multiple of 16.</summary>
    public int SliceK;

    /// <summary>0: none; 1: C(i, j) += bias[i] (conv, per output channel); 2: += bias[j] (linear).</summary>
    public int BiasMode;

    /// <summary>1: C = A·B + C (accumulate into the previous contents); 0: overwrite.</summary>
    public int Accumulate;
}

/// <summary>
/// Tiled SGEMM: a group of side² threads computes a (4·side)×(4·side) tile of C, stepping
/// through K in slices staged in shared memory (As[slice][tile], Bs[slice][tile], 1024 floats
/// each: slices of 16 for 64-wide tiles); each thread
/// keeps a 4×4 register block at rows ty + side·r and columns tx + side·s, so neighbouring
/// threads read neighbouring shared-memory words and write neighbouring columns of C. On a GPU
/// side = 16: 256 threads, 64×64 tiles. ILGPU's CPU simulator runs every thread of a group as
/// an OS thread meeting at barriers, so it runs the same code with side = 4 (16 threads, 16×16
/// tiles). Loads and stores are guarded, so any M, N, K works (past the edges the tiles hold
/// zeros). Every C(i, j) is one thread's float32 sum over k in increasing order (ko outer):
/// deterministic, no atomics. Epilogue: acc (+ bias) (+ previous C), the CPU's order.
/// </summary>
internal static class GemmKernels
{
    /// <summary>The largest tile (side = 16), the unrolled step of a K slice, and the floats of each shared array.</summary>
    public const int MaxTile = 64, TileK = 16, SharedFloats = 1024;

    /// <summary>Grid: (⌈N/tile⌉, ⌈M/tile⌉, batch) groups of (side², 1, 1), tile = 4·side, side = s.Side.</summary>
    public static void Gemm(GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias)
    {
        var As = SharedMemory.Allocate<float>(SharedFloats);
        var Bs = SharedMemory.Allocate<float>(SharedFloats);
        int side = s.Side, tile = 4 * side, threads = side * side, slice = s.SliceK;
        int t = Group.IdxX, tx = t % side, ty = t / side;
        int row0 = Grid.IdxY * tile, col0 = Grid.IdxX * tile, batch = Grid.IdxZ;
        int aBase = batch * s.ABatch, bBase = batch * s.BBatch;
        bool aAlongK = s.ACol == 1;   // A contiguous along k: threads walk k first (coalesced)
        bool bAlongJ = s.BCol == 1;   // B contiguous along j: threads walk j first

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        int kOuter = IntrinsicMath.Min(s.KOuter, s.KOuterTotal - batch * s.KOuter);
        for (int ko = 0; ko < kOuter; ko++)
        {
            int aOuter = aBase + ko * s.AOuter, bOuter = bBase + ko * s.BOuter;
            for (int k0 = 0; k0 < s.K; k0 += slice)
            {
                // Stage A[row0.., k0..] and B[k0.., col0..]: slice·tile values each.
                for (int e = t; e < slice * tile; e += threads)
                {
                    int ii, kk;
                    if (aAlongK) { kk = e % slice; ii = e / slice; }
                    else { ii = e % tile; kk = e / tile; }
                    int gi = row0 + ii, gk = k0 + kk;
                    As[kk * tile + ii] = gi < s.M && gk < s.K ? a[aOuter + gi * s.ARow + gk * s.ACol] : 0f;

                    int jj;
                    if (bAlongJ) { jj = e % tile; kk = e / tile; }
                    else { kk = e % slice; jj = e / slice; }
                    int gj = col0 + jj;
                    gk = k0 + kk;
                    Bs[kk * tile + jj] = gj < s.N && gk < s.K ? b[bOuter + gk * s.BRow + gj * s.BCol] : 0f;
                }
                Group.Barrier();

                for (int k1 = 0; k1 < slice; k1 += TileK)
                for (int kk = k1; kk < k1 + TileK; kk++)
                {
                    int ar = kk * tile + ty, br = kk * tile + tx;
                    float a0 = As[ar], a1 = As[ar + side], a2 = As[ar + 2 * side], a3 = As[ar + 3 * side];
                    float b0 = Bs[br], b1 = Bs[br + side], b2 = Bs[br + 2 * side], b3 = Bs[br + 3 * side];
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                }
                Group.Barrier();
            }
        }

        int cBase = batch * s.CBatch, i0 = row0 + ty, j0 = col0 + tx;
        Store(s, c, bias, cBase, i0, j0, c00, c01, c02, c03);
        Store(s, c, bias, cBase, i0 + side, j0, c10, c11, c12, c13);
        Store(s, c, bias, cBase, i0 + 2 * side, j0, c20, c21, c22, c23);
        Store(s, c, bias, cBase, i0 + 3 * side, j0, c30, c31, c32, c33);
    }

    /// <summary>
    /// Per element (grid-stride) of a [partitions, length] block of split-K partial products:
    /// sum = p₀ + p₁ + … in partition order, then c = sum (or c + sum when accumulating).
    /// </summary>
    public static void SumPartials(int n, int length, int partitions, int accumulate, ArrayView<float> partials, ArrayView<float> c)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            float sum = partials[i];
            for (int p = 1; p < partitions; p++) sum += partials[p * length + i];
            c[i] = accumulate != 0 ? c[i] + sum : sum;
        }
    }

    /// <summary>One register row: C(i, j0 + Side·s) for s = 0..3, guarded.</summary>
    private static void Store(GemmShape s, ArrayView<float> c, ArrayView<float> bias, int cBase, int i, int j0,
        float v0, float v1, float v2, float v3)
    {
        if (i >= s.M) return;
        Store(s, c, bias, cBase, i, j0, v0);
        Store(s, c, bias, cBase, i, j0 + s.Side, v1);
        Store(s, c, bias, cBase, i, j0 + 2 * s.Side, v2);
        Store(s, c, bias, cBase, i, j0 + 3 * s.Side, v3);
    }

    private static void Store(GemmShape s, ArrayView<float> c, ArrayView<float> bias, int cBase, int i, int j, float v)
    {
        if (j >= s.N) return;
        if (s.BiasMode == 1) v += bias[i];
        else if (s.BiasMode == 2) v += bias[j];
        int at = cBase + i * s.CRow + j * s.CCol;
        if (s.Accumulate != 0) v += c[at];
        c[at] = v;
    }
}
