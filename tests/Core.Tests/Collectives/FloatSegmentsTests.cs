using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// Values laid end to end in segments (a bucket's gradients where they lie), the gradients seen
/// through them on a host backend (in place) and a device one (gathered and scattered), and the
/// contiguous path of transports that need one buffer.
/// </summary>
public sealed class FloatSegmentsTests
{
    // Empty segments at the start, in the middle and at the end; lengths that straddle any offset.
    private static readonly int[] Lengths = [0, 3, 0, 0, 17, 1, 64, 0, 5, 0];

    private static (float[][] Arrays, FloatSegments Segments) Make()
    {
        float next = 1;
        var arrays = Lengths.Select(n => Enumerable.Range(0, n).Select(_ => next++).ToArray()).ToArray();
        return (arrays, new FloatSegments([.. arrays.Select(a => (Memory<float>)a)]));
    }

    [Fact]
    public void Every_range_reads_and_writes_the_values_end_to_end_across_segments()
    {
        int total = Lengths.Sum();
        for (int offset = 0; offset <= total; offset++)
        {
            for (int count = 0; offset + count <= total; count++)
            {
                var (arrays, segments) = Make();
                Assert.Equal(total, segments.Length);
                var read = new float[count];
                segments.CopyTo(offset, read);
                Assert.Equal(Enumerable.Range(offset + 1, count).Select(v => (float)v), read);

                segments.CopyFrom(Enumerable.Range(0, count).Select(v => -1f - v).ToArray(), offset);
                var whole = arrays.SelectMany(a => a).ToArray();
                for (int i = 0; i < total; i++)
                    Assert.Equal(i >= offset && i < offset + count ? -1f - (i - offset) : i + 1f, whole[i]);
            }
        }
    }

    [Fact]
    public void Streamed_copies_read_the_same_values_as_ordinary_ones()
    {
        int total = Lengths.Sum();
        for (int offset = 0; offset <= total; offset++)
        {
            var (_, segments) = Make();
            var read = new float[total - offset];
            segments.CopyTo(offset, read, streaming: true);
            Assert.Equal(Enumerable.Range(offset + 1, total - offset).Select(v => (float)v), read);
        }
    }

    [Fact]
    public void A_run_is_the_longest_stretch_from_an_offset_within_one_segment_and_the_runs_cover_every_range()
    {
        int total = Lengths.Sum();
        var (arrays, segments) = Make();
        for (int offset = 0; offset <= total; offset++)
        {
            for (int count = 0; offset + count <= total; count++)
            {
                var seen = new List<float>();
                for (int at = offset; at < offset + count;)
                {
                    var run = segments.RunAt(at, offset + count - at);
                    Assert.False(run.IsEmpty, $"an empty run at {at} of [{offset}, {offset + count})");
                    // The values themselves (a transport sums in place through it), as far as their segment goes.
                    var (array, start) = Owner(arrays, run);
                    Assert.True(at + run.Length == offset + count || start + run.Length == array.Length, $"the run at {at} stops short");
                    seen.AddRange(run.ToArray());
                    at += run.Length;
                }
                Assert.Equal(Enumerable.Range(offset + 1, count).Select(v => (float)v), seen);
            }
            Assert.True(segments.RunAt(offset, 0).IsEmpty);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => segments.RunAt(total, 1));

        static (float[] Array, int Start) Owner(float[][] arrays, Span<float> run)
        {
            foreach (var array in arrays)
                for (int i = 0; i < array.Length; i++)
                    if (System.Runtime.CompilerServices.Unsafe.AreSame(ref array[i], ref run[0]) && i + run.Length <= array.Length)
                        return (array, i);
            throw new Xunit.Sdk.XunitException("the run is not a stretch of one of the segments");
        }
    }

    [Theory]
    [InlineData(-1, 1)]
    [InlineData(0, 91)]
    [InlineData(90, 1)]
    [InlineData(91, 0)]
    public void A_range_outside_the_values_is_refused(int offset, int count)
    {
        var (_, segments) = Make();
        Assert.Throws<ArgumentOutOfRangeException>(() => segments.CopyTo(offset, new float[count]));
        Assert.Throws<ArgumentOutOfRangeException>(() => segments.CopyFrom(new float[count], offset));
    }

    [Fact]
    public void One_array_from_its_start_is_its_own_contiguous_buffer_and_anything_else_gets_one_reused()
    {
        var array = new float[10];
        Assert.Same(array, new FloatSegments(array.AsMemory(0, 7)).ContiguousBuffer(out bool isTheValues));
        Assert.True(isTheValues);

        var offsetSlice = new FloatSegments(array.AsMemory(2, 5));
        var buffer = offsetSlice.ContiguousBuffer(out isTheValues);
        Assert.False(isTheValues);
        Assert.NotSame(array, buffer);
        Assert.Same(buffer, offsetSlice.ContiguousBuffer(out _));
        Assert.True(buffer.Length >= 5);
    }

    [Fact]
    public void A_transport_with_one_buffer_sums_segments_through_a_copy_in_and_out()
    {
        var (arrays, segments) = Make();
        var expected = arrays.SelectMany(a => a).Select(v => v * 10).ToArray();
        ((IFloatAllReduce)new TimesTen()).AllReduce(segments, step: 3);
        Assert.Equal(expected, arrays.SelectMany(a => a));
    }

    private sealed class TimesTen : IFloatAllReduce
    {
        public void AllReduce(float[] buffer, int length, long step)
        {
            for (int i = 0; i < length; i++) buffer[i] *= 10;
        }
    }

    public static TheoryData<string> Backends => new() { "cpu", "ilgpu-cpu" };

    [Theory]
    [MemberData(nameof(Backends))]
    public void Gradients_are_summed_in_place_on_the_host_and_through_a_host_copy_on_a_device(string device)
    {
        using var backend = BackendFactory.Create(device, 1);
        var shapes = new[] { new[] { 3, 2 }, new[] { 0 }, new[] { 5 } };
        var parameters = shapes.Select((s, i) =>
        {
            var grad = backend.Allocate(s);
            backend.Upload(Enumerable.Range(0, grad.Length).Select(v => 100f * i + v).ToArray(), grad);
            return new Parameter($"p{i}", backend.Allocate(s), grad);
        }).ToList();
        var flat = new FlatGradients(backend, parameters);
        Assert.Equal(device == "cpu", flat.InPlace);
        Assert.Equal(11, flat.Values.Length);

        flat.Gather();
        var seen = new float[11];
        flat.Values.CopyTo(0, seen);
        Assert.Equal([0, 1, 2, 3, 4, 5, 200, 201, 202, 203, 204], seen);

        flat.Values.CopyFrom(Enumerable.Range(0, 11).Select(v => -v - 1f).ToArray(), 0);
        flat.Scatter();
        var grads = parameters.Select(p =>
        {
            var values = new float[p.Grad.Length];
            backend.Download(p.Grad, values);
            return values;
        }).SelectMany(v => v);
        Assert.Equal(Enumerable.Range(0, 11).Select(v => -v - 1f), grads);
    }
}
