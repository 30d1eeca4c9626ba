namespace BnDist.Core.Collectives;

/// <summary>
/// A group of ranks that only reduces, as c10d's ProcessGroup: float64 vectors (BN statistics and
/// BN gradient sums). Implemented once per transport — the host's shared memory
/// (<see cref="SharedMemory.SharedMemoryGroup"/>), the coordinator's gRPC stream (the worker's
/// CoordinatorGroup) — and composed (<see cref="HierarchicalGroup"/>). It knows nothing of steps'
/// commits, learning rates or checkpoints: those travel on the worker's control channel.
/// </summary>
public interface IProcessGroup
{
    /// <summary>
    /// Replaces <paramref name="values"/> by their sum over the group's ranks. Every rank calls with
    /// the same step, kind, layer and length, in the same order; a mismatch fails every rank.
    /// </summary>
    void AllReduce(Span<double> values, long step, CollectiveKind kind, int layer);
}

/// <summary>
/// The float32 side of a process group: sums buffers over the ranks, the data plane under gradient
/// buckets (shared memory, the TCP ring, the coordinator). One call at a time, from one thread,
/// in the same order on every rank.
/// </summary>
public interface IFloatAllReduce
{
    void AllReduce(float[] buffer, int length, long step);

    /// <summary>
    /// Replaces <paramref name="values"/> by their sum over the group, where they lie. A transport that
    /// needs one contiguous buffer gets it here (the values' own array when they are one, else a copy
    /// in and out); shared memory reads and writes the segments directly.
    /// </summary>
    void AllReduce(FloatSegments values, long step)
    {
        var buffer = values.ContiguousBuffer(out bool isTheValues);
        if (!isTheValues) values.CopyTo(0, buffer.AsSpan(0, values.Length));
        AllReduce(buffer, values.Length, step);
        if (!isTheValues) values.CopyFrom(buffer.AsSpan(0, values.Length), 0);
    }
}
