using BnDist.Core.Collectives;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// The non-temporal copy into shared-memory slots, on whichever instruction set the process runs
/// (make test-cpu-paths runs it with AVX-512, AVX2, SSE and no intrinsics): every length against
/// every destination alignment, so the scalar head, the vector body and the tail all meet.
/// </summary>
public sealed class StreamingCopyTests
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
                    StreamingCopy.Copy(source.AsSpan(sourceShift, n), destination.AsSpan(shift, n + 20));
                    Assert.True(source.AsSpan(sourceShift, n).SequenceEqual(destination.AsSpan(shift, n)), $"n = {n}, shift {shift}/{sourceShift}");
                    Assert.All(destination[..shift], v => Assert.True(float.IsNaN(v)));
                    Assert.All(destination[(shift + n)..], v => Assert.True(float.IsNaN(v)));
                }
            }
        }
    }

    [Fact]
    public void A_destination_shorter_than_the_source_is_refused()
    {
        Assert.Throws<ArgumentException>(() => StreamingCopy.Copy(new float[5], new float[4]));
    }
}
