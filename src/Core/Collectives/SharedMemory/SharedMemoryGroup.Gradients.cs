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
    /// sum over the group, in chunks of <see cref="ChunkFloats"/>. Rank r owns the r-th part of each
    /// chunk. Per chunk: every rank copies the parts of the others from where its values lie into its
    /// slot, with streaming stores (<see cref="StreamingStores"/>); a barrier; rank r sums its part over
    /// all ranks in rank order from rank 0's — ((g0 + g1) + g2) …, the hub's order —, reading its own
    /// values where they lie and the others' from their slots, into the result slot; a barrier; every
    /// rank copies the result back where its values lie. Two barriers make one slot enough: a rank
    /// rewrites its slot only after the second, when every part has been summed, and the result only
    /// after the next first one, when everyone has copied it.
    /// </summary>
    /// <remarks>
    /// Why the own part stays where it is and the rest is streamed: measured at 16 MiB, K = 2
    /// (bench/RESULTS.md, issue 13), copying the whole chunk in with ordinary stores took 2.5–3.0 ms
    /// per sum when the two vCPUs shared an L3 and 5.4–6.3 ms when the hypervisor had put them on
    /// two chiplets, of which 3–4 ms was the copy-in alone: each store to a line of the slot that the
    /// other core had read invalidates its copy across the I/O die.
    /// </remarks>
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
        Span<nint> parts = stackalloc nint[Size]; // where each rank's values of a run lie
        for (int offset = 0; offset < values.Length; offset += ChunkFloats)
        {
            int length = Math.Min(ChunkFloats, values.Length - offset);
            var slot = FloatSlot(LocalRank);
            *(long*)slot = step;
            *(int*)(slot + 8) = (int)CollectiveKind.Gradients;
            *(int*)(slot + 12) = offset;
            *(int*)(slot + 16) = length;
            int from = (int)((long)length * LocalRank / Size), to = (int)((long)length * (LocalRank + 1) / Size);
            var mine = new Span<float>(slot + SlotHeaderBytes, length);
            values.CopyTo(offset, mine[..from], streaming: true);
            values.CopyTo(offset + to, mine[to..], streaming: true);
            Barrier(step, CollectiveKind.Gradients, -1, wait: true);
            for (int r = 0; r < Size; r++)
            {
                var other = FloatSlot(r);
                if (*(long*)other != step || *(int*)(other + 12) != offset || *(int*)(other + 16) != length)
                    Throw($"rank {_ranks[r]} sent {*(int*)(other + 16)} gradient values at {*(int*)(other + 12)} of step {*(long*)other} " +
                          $"while rank {_ranks[LocalRank]} sent {length} at {offset} of step {step}");
            }
            // The own part run by run (it may straddle parameters), each summed over the ranks in
            // order — (g0 + g1) + g2 …, the hub's order — and streamed into the result slot.
            for (int at = from; at < to;)
            {
                var own = values.RunAt(offset + at, to - at);
                fixed (float* ownAt = own)
                {
                    for (int r = 0; r < Size; r++)
                        parts[r] = r == LocalRank ? (nint)ownAt : (nint)(FloatSlot(r) + SlotHeaderBytes + (long)at * sizeof(float));
                    StreamingStores.Sum(parts, new Span<float>(FloatSlot(Size) + SlotHeaderBytes + (long)at * sizeof(float), own.Length));
                }
                at += own.Length;
            }
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
