using System.Runtime.InteropServices;

namespace BnDist.Core.Collectives;

/// <summary>
/// Float32 values in host memory, laid end to end as segments: the gradients of a bucket where
/// they lie (the CPU backend's tensors), or one host buffer. A transport that reads and writes
/// through <see cref="CopyTo"/> and <see cref="CopyFrom"/> sums them in place, without a gather into
/// one buffer and a scatter back (two passes over memory per sum).
/// </summary>
public sealed class FloatSegments
{
    private readonly Memory<float>[] _segments;
    // _starts[i]: where segment i begins in the whole; _starts[^1] = Length.
    private readonly int[] _starts;
    private float[]? _contiguous;

    public FloatSegments(params Memory<float>[] segments)
    {
        _segments = segments;
        _starts = new int[segments.Length + 1];
        long at = 0;
        for (int i = 0; i < segments.Length; i++)
        {
            _starts[i] = (int)at;
            at += segments[i].Length;
            if (at > Array.MaxLength) throw new ArgumentException($"{at} values or more are too many for one sum", nameof(segments));
        }
        _starts[^1] = (int)at;
    }

    /// <summary>The number of values, all segments together.</summary>
    public int Length => _starts[^1];

    /// <summary>
    /// Copies the values [<paramref name="offset"/>, offset + destination.Length) into <paramref name="destination"/>;
    /// with <paramref name="streaming"/>, through non-temporal stores (<see cref="StreamingStores"/>: for a
    /// destination that another core reads next).
    /// </summary>
    public void CopyTo(int offset, Span<float> destination, bool streaming = false)
    {
        CheckRange(offset, destination.Length);
        for (int s = SegmentAt(offset), done = 0; done < destination.Length; s++)
        {
            int from = offset + done - _starts[s], n = Math.Min(_segments[s].Length - from, destination.Length - done);
            if (streaming) StreamingStores.Copy(_segments[s].Span.Slice(from, n), destination.Slice(done, n));
            else _segments[s].Span.Slice(from, n).CopyTo(destination.Slice(done, n));
            done += n;
        }
    }

    /// <summary>
    /// The values from <paramref name="offset"/> on as far as they lie in one segment, at most
    /// <paramref name="maxCount"/> of them: a transport reads or writes a range in place run by run.
    /// Empty only when <paramref name="maxCount"/> is 0.
    /// </summary>
    public Span<float> RunAt(int offset, int maxCount)
    {
        CheckRange(offset, maxCount);
        if (maxCount == 0) return [];
        int s = SegmentAt(offset);
        while (offset - _starts[s] >= _segments[s].Length) s++; // step over empty segments
        int from = offset - _starts[s];
        return _segments[s].Span.Slice(from, Math.Min(_segments[s].Length - from, maxCount));
    }

    /// <summary>Overwrites the values [<paramref name="offset"/>, offset + source.Length) with <paramref name="source"/>.</summary>
    public void CopyFrom(ReadOnlySpan<float> source, int offset)
    {
        CheckRange(offset, source.Length);
        for (int s = SegmentAt(offset), done = 0; done < source.Length; s++)
        {
            int from = offset + done - _starts[s], n = Math.Min(_segments[s].Length - from, source.Length - done);
            source.Slice(done, n).CopyTo(_segments[s].Span.Slice(from, n));
            done += n;
        }
    }

    /// <summary>
    /// The values as one array from index 0, for a transport that needs contiguous memory: the
    /// segment itself when there is one array-backed segment from its start, else a buffer of this
    /// object's (filled by the caller with <see cref="CopyTo"/>, reused from call to call).
    /// </summary>
    public float[] ContiguousBuffer(out bool isTheValues)
    {
        if (_segments.Length == 1 && MemoryMarshal.TryGetArray<float>(_segments[0], out var array) && array.Offset == 0)
        {
            isTheValues = true;
            return array.Array!;
        }
        isTheValues = false;
        return _contiguous ??= new float[Length];
    }

    /// <summary>The segment holding value <paramref name="offset"/>, or an empty one just before it (the copy loops step over those).</summary>
    private int SegmentAt(int offset)
    {
        int i = Array.BinarySearch(_starts, 0, _segments.Length, offset);
        return i >= 0 ? i : ~i - 1;
    }

    private void CheckRange(int offset, int count)
    {
        if (offset < 0 || count < 0 || offset > Length - count)
            throw new ArgumentOutOfRangeException(nameof(offset), $"values [{offset}, {(long)offset + count}) of {Length}");
    }
}
