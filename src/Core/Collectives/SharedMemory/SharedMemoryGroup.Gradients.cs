namespace BnDist.Core.Collectives.SharedMemory;

/// <summary>The gradient channel of the group: float32 sums in chunks, on barriers of their own.</summary>
public sealed unsafe partial class SharedMemoryGroup
{
    /// <summary>
    /// The gradient channel as an <see cref="IFloatAllReduce"/> (for <see cref="BucketedGradientReducer"/>);
    /// it may run on another thread than the BN statistics: the two have separate barriers.
    /// </summary>
    public void AllReduce(float[] buffer, int length, long step) => AllReduce(new FloatSegments(buffer.AsMemory(0, length)), step);

    /// <summary>As <see cref="AllReduce(FloatSegments, long, bool, IFloatAllReduce?)"/>, on a buffer (tests; the hot path passes segments).</summary>
    public void AllReduce(float[] values, long step, bool hierarchical = false, IFloatAllReduce? leaders = null) =>
        AllReduce(new FloatSegments(values), step, hierarchical, leaders);

    /// <summary>
    /// Replaces <paramref name="values"/> (float32 gradients, the same length on every rank) by their
    /// sum over the group, in chunks of <see cref="ChunkFloats"/>. Per chunk: every rank copies its
    /// chunk from where the values lie into its slot; a barrier; rank r sums the r-th part of the
    /// chunk over all slots, in rank order from rank 0's values — ((g0 + g1) + g2) …, the hub's order —
    /// into the result slot; a barrier; every rank copies the result back where its values lie. Two
    /// barriers make one slot enough: a rank rewrites its slot only after the second, when every part
    /// has been summed, and the result only after the next first one, when everyone has copied it.
    /// </summary>
    public void AllReduce(FloatSegments values, long step) => AllReduce(values, step, hierarchical: false, leaders: null);

    /// <summary>
    /// As <see cref="AllReduce(FloatSegments, long)"/>; with <paramref name="hierarchical"/> (a run on several
    /// hosts), after the host's sum the leader (local rank 0) replaces it by the sum over the hosts
    /// through <paramref name="leaders"/> (the leaders' ring; null on the other ranks), and a third
    /// barrier hands it to the host's other ranks.
    /// </summary>
    public void AllReduce(FloatSegments values, long step, bool hierarchical, IFloatAllReduce? leaders)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (hierarchical && (leaders is not null) != (LocalRank == 0))
            throw new ArgumentException("in a hierarchical sum exactly the leader (local rank 0) reaches the other hosts");
        ThrowIfAborted();
        for (int offset = 0; offset < values.Length; offset += ChunkFloats)
        {
            int length = Math.Min(ChunkFloats, values.Length - offset);
            var slot = FloatSlot(LocalRank);
            *(long*)slot = step;
            *(int*)(slot + 8) = (int)CollectiveKind.Gradients;
            *(int*)(slot + 12) = offset;
            *(int*)(slot + 16) = length;
            values.CopyTo(offset, new Span<float>(slot + SlotHeaderBytes, length));
            Barrier(step, CollectiveKind.Gradients, -1, wait: true);
            for (int r = 0; r < Size; r++)
            {
                var other = FloatSlot(r);
                if (*(long*)other != step || *(int*)(other + 12) != offset || *(int*)(other + 16) != length)
                    Throw($"rank {_ranks[r]} sent {*(int*)(other + 16)} gradient values at {*(int*)(other + 12)} of step {*(long*)other} " +
                          $"while rank {_ranks[LocalRank]} sent {length} at {offset} of step {step}");
            }
            int from = (int)((long)length * LocalRank / Size), to = (int)((long)length * (LocalRank + 1) / Size);
            var sum = new Span<float>(FloatSlot(Size) + SlotHeaderBytes + (long)from * sizeof(float), to - from);
            ReadOnlySpan<float> Part(int r) => new(FloatSlot(r) + SlotHeaderBytes + (long)from * sizeof(float), to - from);
            // (g0 + g1) in one pass, then + g2, …: the hub's order.
            if (Size == 1) Part(0).CopyTo(sum);
            else System.Numerics.Tensors.TensorPrimitives.Add(Part(0), Part(1), sum);
            for (int r = 2; r < Size; r++) System.Numerics.Tensors.TensorPrimitives.Add(sum, Part(r), sum);
            Barrier(step, CollectiveKind.Gradients, -1, wait: true);
            var hostSum = new Span<float>(FloatSlot(Size) + SlotHeaderBytes, length);
            if (hierarchical)
            {
                if (LocalRank == 0)
                {
                    if (_hostScratch.Length < length) _hostScratch = new float[Math.Min(ChunkFloats, values.Length)];
                    hostSum.CopyTo(_hostScratch);
                    try
                    {
                        leaders!.AllReduce(_hostScratch, length, step);
                    }
                    catch (Exception e)
                    {
                        Fail($"the host leader (rank {_ranks[0]}) failed to sum the gradients of step {step} with the other hosts: {e.Message}");
                        throw;
                    }
                    _hostScratch.AsSpan(0, length).CopyTo(hostSum);
                }
                Barrier(step, CollectiveKind.Gradients, -1, wait: true, leaderOnly: LocalRank != 0);
            }
            values.CopyFrom(hostSum, offset);
        }
    }

    private float[] _hostScratch = [];
}
