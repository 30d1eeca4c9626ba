using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace BnDist.Core.Backends.Cpu;

/// <summary>
/// Fully connected layer on the CPU, PyTorch layout: x [N, in], W [out, in], b [out], y [N, out].
/// </summary>
/// <remarks>
/// <para>Each pass is one GEMM parallelized over blocks of its output by <see cref="Sgemm"/>:</para>
/// <list type="bullet">
/// <item>forward <c>y = x·Wᵀ + b</c>: m = N, n = out, k = in, B transposed (W's rows are its columns);
/// y is pre-filled with b and the GEMM runs with beta = 1, which saves a pass over y.</item>
/// <item>backward <c>dW = dyᵀ·x</c>: m = out, n = in, k = N, A transposed;
/// <c>dx = dy·W</c>: m = N, n = in, k = out, no transposes;
/// <c>db = Σ_n dy[n]</c>: a column sum in sample order.</item>
/// </list>
/// All outputs are overwritten, and all results are bit-identical for any pool size (see <see cref="Sgemm"/>).
/// </remarks>
internal static unsafe class CpuLinear
{
    /// <summary>y[N, out] = x[N, in]·Wᵀ + b (b may be null).</summary>
    public static void Forward(CpuThreadPool pool, int n, int inFeatures, int outFeatures,
        float* x, float* w, float* bias, float* y)
    {
        ArgumentNullException.ThrowIfNull(pool);
        float beta = 0f;
        if (bias != null)
        {
            var b = new ReadOnlySpan<float>(bias, outFeatures);
            for (int i = 0; i < n; i++)
                b.CopyTo(new Span<float>(y + (long)i * outFeatures, outFeatures));
            beta = 1f;
        }
        Sgemm.Multiply(pool, false, true, n, outFeatures, inFeatures, 1f, x, inFeatures, w, inFeatures, beta, y, outFeatures);
    }

    /// <summary>dW[out, in] = dyᵀ·x; db[out] = Σ_n dy[n] (if db is not null); dx[N, in] = dy·W (if dx is not null).
    /// All overwritten.</summary>
    public static void Backward(CpuThreadPool pool, int n, int inFeatures, int outFeatures,
        float* x, float* w, float* dy, float* dx, float* dw, float* db)
    {
        ArgumentNullException.ThrowIfNull(pool);
        Sgemm.Multiply(pool, true, false, outFeatures, inFeatures, n, 1f, dy, outFeatures, x, inFeatures, 0f, dw, inFeatures);
        if (db != null)
            ColumnSum(n, outFeatures, dy, db);
        if (dx != null)
            Sgemm.Multiply(pool, false, false, n, inFeatures, outFeatures, 1f, dy, outFeatures, w, inFeatures, 0f, dx, inFeatures);
    }

    /// <summary>sum[j] = Σ_i m[i, j] for a row-major [rows, cols] matrix, rows added in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ColumnSum(int rows, int cols, float* m, float* sum)
    {
        new Span<float>(sum, cols).Clear();
        for (int i = 0; i < rows; i++)
        {
            var total = new Span<float>(sum, cols);
            TensorPrimitives.Add(total, new ReadOnlySpan<float>(m + (long)i * cols, cols), total);
        }
    }
}
