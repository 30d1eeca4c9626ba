using System.Runtime.InteropServices;
using BnDist.Core.Collectives;
using BnDist.Protos;
using BnDist.Protos.V1;

namespace BnDist.Worker;

/// <summary>
/// The process group whose reductions the coordinator performs, over this worker's stream: every
/// rank's BN statistics in a flat run, the hosts' sums from their leaders in a hierarchical one
/// (then on a sequence of its own: only the leaders take part), and gradients through the hub.
/// Each operation carries its header (run, step, sequence, kind, layer, length) and returns when
/// the sum comes back with the same header.
/// </summary>
/// <param name="ownSequence">Number the operations apart from the stream's main sequence (the leaders' group).</param>
public sealed class CoordinatorGroup(CoordinatorStream stream, bool ownSequence = false) : IProcessGroup, IFloatAllReduce
{
    private long _sequence;

    private long NextSequence() => ownSequence ? _sequence++ : stream.NextSequence();

    public void AllReduce(Span<double> values, long step, CollectiveKind kind, int layer)
    {
        var header = stream.Header(NextSequence(), step, kind, layer, values.Length);
        var contribution = new Contribution { Header = header };
        foreach (double v in values) contribution.Values.Add(v);
        stream.Send(new WorkerMessage { Contribution = contribution });
        var result = stream.Await(header, CoordinatorMessage.BodyOneofCase.Result).Result;
        if (result.Values.Count != values.Length)
            throw new ClusterException($"the coordinator answered {CoordinatorStream.Describe(header)} with {result.Values.Count} values");
        for (int i = 0; i < values.Length; i++) values[i] = result.Values[i];
    }

    /// <summary>The hub path of gradients: this rank's buffer to the coordinator in chunks; the sum back in chunks, range by range.</summary>
    public void AllReduce(float[] buffer, int length, long step)
    {
        var header = stream.Header(NextSequence(), step, CollectiveKind.Gradients, -1, length);
        for (int offset = 0; offset < length; offset += WireLimits.FloatChunk)
        {
            int count = Math.Min(WireLimits.FloatChunk, length - offset);
            // Wrapped, not copied: the write serializes the chunk before it returns.
            stream.Send(new WorkerMessage { Contribution = new Contribution { Header = header, Floats = FloatBytes.Wrap(buffer, offset, count), Offset = offset } });
        }
        for (int received = 0; received < length;)
        {
            var chunk = stream.Await(header, CoordinatorMessage.BodyOneofCase.Result).Result;
            int count = chunk.Floats.Length / sizeof(float);
            if (chunk.Offset != received || count == 0 || received + count > length)
                throw new ClusterException($"the coordinator sent a malformed chunk of {CoordinatorStream.Describe(header)} at value {chunk.Offset}");
            MemoryMarshal.Cast<byte, float>(chunk.Floats.Span).CopyTo(buffer.AsSpan(received, count));
            received += count;
        }
    }
}
