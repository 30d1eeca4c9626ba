using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BnDist.Core.Collectives;

/// <summary>
/// A copy or a sum with non-temporal ("streaming") stores: the values go to memory without taking the
/// destination's cache lines into this core's cache, and without first fetching them.
/// </summary>
/// <remarks>
/// <para>
/// For a destination that another core reads next and this one rewrites soon after: the gradient
/// slots of a shared-memory group. An ordinary store to a line the reader still holds must first
/// invalidate the reader's copy; when the two cores sit on different chiplets (a vCPU placement a
/// hypervisor may choose and change at any time) each invalidation crosses the I/O die, and the
/// copy into a 1 MiB slot took 3–4 ms per 16 MiB where the same copy between cores sharing an L3
/// took 0.9 (bench/RESULTS.md, issue 13). A streaming store does not wait for the line.
/// </para>
/// <para>
/// x86 only (AVX-512, AVX or SSE stores, whichever the process runs), with scalar stores for the
/// unaligned head and the tail; elsewhere ordinary stores through <see cref="TensorPrimitives"/>.
/// Ends with a store fence: streaming stores are weakly ordered, and whoever is told that the
/// values are there must see them.
/// </para>
/// </remarks>
public static unsafe class StreamingStores
{
    /// <summary>Copies <paramref name="source"/> into the start of <paramref name="destination"/>.</summary>
    public static void Copy(ReadOnlySpan<float> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"{source.Length} values do not fit in {destination.Length}", nameof(destination));
        fixed (float* s = source)
        {
            nint part = (nint)s;
            Sum(new ReadOnlySpan<nint>(&part, 1), destination[..source.Length]);
        }
    }

    /// <summary>
    /// Writes into <paramref name="destination"/> the sum of the float arrays at <paramref name="parts"/>
    /// (each as long as the destination), added in order — ((p0 + p1) + p2) … per element, the bits of
    /// <see cref="TensorPrimitives.Add(ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float})"/>
    /// applied part after part —, through streaming stores; one part is a copy.
    /// </summary>
    public static void Sum(ReadOnlySpan<nint> parts, Span<float> destination)
    {
        if (parts.IsEmpty) throw new ArgumentException("no part to sum", nameof(parts));
        int k = parts.Length, n = destination.Length, i = 0;
        if (!(Sse.IsSupported && Vector128.IsHardwareAccelerated))
        {
            // No streaming store here (ARM64, or intrinsics switched off): the library's vector loops.
            new ReadOnlySpan<float>((float*)parts[0], n).CopyTo(destination);
            for (int r = 1; r < k; r++) TensorPrimitives.Add(destination, new ReadOnlySpan<float>((float*)parts[r], n), destination);
            return;
        }
        fixed (float* d = destination)
        {
            if (Avx512F.IsSupported && Vector512.IsHardwareAccelerated)
            {
                for (; i < n && ((nint)(d + i) & 63) != 0; i++) d[i] = ScalarSum(parts, i);
                for (; i + 16 <= n; i += 16)
                {
                    var sum = Vector512.Load((float*)parts[0] + i);
                    for (int r = 1; r < k; r++) sum += Vector512.Load((float*)parts[r] + i);
                    Avx512F.StoreAlignedNonTemporal(d + i, sum);
                }
            }
            else if (Avx.IsSupported && Vector256.IsHardwareAccelerated)
            {
                for (; i < n && ((nint)(d + i) & 31) != 0; i++) d[i] = ScalarSum(parts, i);
                for (; i + 8 <= n; i += 8)
                {
                    var sum = Vector256.Load((float*)parts[0] + i);
                    for (int r = 1; r < k; r++) sum += Vector256.Load((float*)parts[r] + i);
                    Avx.StoreAlignedNonTemporal(d + i, sum);
                }
            }
            else
            {
                for (; i < n && ((nint)(d + i) & 15) != 0; i++) d[i] = ScalarSum(parts, i);
                for (; i + 4 <= n; i += 4)
                {
                    var sum = Vector128.Load((float*)parts[0] + i);
                    for (int r = 1; r < k; r++) sum += Vector128.Load((float*)parts[r] + i);
                    Sse.StoreAlignedNonTemporal(d + i, sum);
                }
            }
            for (; i < n; i++) d[i] = ScalarSum(parts, i); // the tail
            Sse.StoreFence();
        }
    }

    /// <summary>Element <paramref name="i"/> of the sum, in the same order as the vector lanes.</summary>
    private static float ScalarSum(ReadOnlySpan<nint> parts, int i)
    {
        float sum = ((float*)parts[0])[i];
        for (int r = 1; r < parts.Length; r++) sum += ((float*)parts[r])[i];
        return sum;
    }
}
