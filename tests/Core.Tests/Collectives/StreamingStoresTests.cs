using BnDist.Core.Collectives;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// The non-temporal copy and sum into shared-memory slots, on whichever instruction set the process runs
/// (make test-cpu-paths runs it with AVX-512, AVX2, SSE and no intrinsics): every length against
/// every destination alignment, so the scalar head, the vector body and the tail all meet.
/// </summary>
public sealed class StreamingStoresTests
{
    [Fact]
    public void Every_length_at_every_destination_alignment_is_copied_exactly_and_nothing_around_it_is_touched()
    {
        var source = Enumerable.Range(0, 200).Select(i => MathF.ScaleB(1 + i * 0.001f, i % 40 - 20)).ToArray();
        for (int shift = 0; shift < 16; shift++)
        {
            for (int sourceShift = 0; sourceShift < 3; sourceShift++)
            {
                for (int n = 0; n <= 150; n++)
                {
                    var destination = new float[n + 40];
                    Array.Fill(destination, float.NaN);
                    StreamingStores.Copy(source.AsSpan(sourceShift, n), destination.AsSpan(shift, n + 20));
                    Assert.True(source.AsSpan(sourceShift, n).SequenceEqual(destination.AsSpan(shift, n)), $"n = {n}, shift {shift}/{sourceShift}");
                    Assert.All(destination[..shift], v => Assert.True(float.IsNaN(v)));
                    Assert.All(destination[(shift + n)..], v => Assert.True(float.IsNaN(v)));
                }
            }
        }
    }

    [Fact]
    public unsafe void Sums_of_one_to_five_parts_have_the_bits_of_adding_part_after_part_at_every_length_and_alignment()
    {
        // Magnitudes 2^-20 … 2^20 apart: the order of the additions shows in the bits.
        var values = Enumerable.Range(0, 5 * 160).Select(i => MathF.ScaleB(MathF.Sin(i * 0.7f), i * 7 % 41 - 20)).ToArray();
        fixed (float* v = values)
        {
            for (int k = 1; k <= 5; k++)
            {
                for (int shift = 0; shift < 16; shift += 3)
                {
                    for (int n = 0; n <= 130; n++)
                    {
                        var parts = new nint[k];
                        for (int r = 0; r < k; r++) parts[r] = (nint)(v + r * 160 + (r + shift) % 7);
                        var expected = new ReadOnlySpan<float>((float*)parts[0], n).ToArray();
                        for (int r = 1; r < k; r++)
                            System.Numerics.Tensors.TensorPrimitives.Add(expected, new ReadOnlySpan<float>((float*)parts[r], n), expected);
                        var destination = new float[n + 20];
                        Array.Fill(destination, float.NaN);
                        StreamingStores.Sum(parts, destination.AsSpan(shift % 5, n));
                        Assert.True(expected.AsSpan().SequenceEqual(destination.AsSpan(shift % 5, n)), $"k = {k}, n = {n}, shift {shift}");
                        Assert.All(destination[..(shift % 5)], x => Assert.True(float.IsNaN(x)));
                        Assert.All(destination[(shift % 5 + n)..], x => Assert.True(float.IsNaN(x)));
                    }
                }
            }
        }
    }

    [Fact]
    public void A_destination_shorter_than_the_source_is_refused()
    {
        Assert.Throws<ArgumentException>(() => StreamingStores.Copy(new float[5], new float[4]));
    }
}
