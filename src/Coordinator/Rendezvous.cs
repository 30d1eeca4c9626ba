namespace BnDist.Coordinator;

/// <summary>Who a worker says it is when it joins.</summary>
/// <remarks><see cref="Host"/>: the machine the worker runs on (empty: it cannot share memory with any other worker).</remarks>
public sealed record JoinTicket(string WorkerId, string Device, int ProtocolVersion, int TrainCount, int TestCount, ulong LabelsHash,
    string DataEndpoint = "", string Host = "");

/// <summary>The world once everyone has joined: ranks in the order of the workers' ids.</summary>
public sealed record World(IReadOnlyList<JoinTicket> Members)
{
    public int Size => Members.Count;

    public int RankOf(string workerId) => Members.ToList().FindIndex(m => m.WorkerId == workerId);
}

/// <summary>
/// Gathers the configured number of workers. Each <see cref="JoinAsync"/> waits until the world
/// is complete, then gets it; ranks are assigned in ordinal order of the worker ids, so they do
/// not depend on who connected first. A second worker with an id already present, a worker of
/// another protocol version or with other training data, or a join after the world is complete
/// fails with <see cref="JoinRefusedException"/>; a refusal of a member candidate aborts the
/// rendezvous for everyone waiting (a clear error now rather than a join timeout later).
/// </summary>
public sealed class Rendezvous(int worldSize, int protocolVersion)
{
    private readonly object _gate = new();
    private readonly List<JoinTicket> _joined = [];
    private readonly TaskCompletionSource<World> _world = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int WorldSize => worldSize;

    public Task<World> World => _world.Task;

    public int JoinedCount
    {
        get { lock (_gate) return _joined.Count; }
    }

    public async Task<World> JoinAsync(JoinTicket ticket, TimeSpan timeout, CancellationToken cancellation)
    {
        lock (_gate)
        {
            if (_world.Task.IsCompletedSuccessfully)
                throw new JoinRefusedException(JoinRefusal.AlreadyComplete,
                    $"worker '{ticket.WorkerId}' came too late: the run already has its {worldSize} workers");
            if (_world.Task.IsFaulted) throw _world.Task.Exception!.InnerException!;
            if (_joined.Any(j => j.WorkerId == ticket.WorkerId))
                throw new JoinRefusedException(JoinRefusal.DuplicateId,
                    $"a worker with id '{ticket.WorkerId}' has already joined; every worker needs its own --worker-id");
            string? mismatch = Mismatch(ticket);
            if (mismatch is not null)
            {
                var refusal = new JoinRefusedException(JoinRefusal.ConfigurationDiffers, mismatch);
                _world.TrySetException(refusal);
                throw refusal;
            }
            _joined.Add(ticket);
            if (_joined.Count == worldSize)
                _world.TrySetResult(new World([.. _joined.OrderBy(j => j.WorkerId, StringComparer.Ordinal)]));
        }
        try
        {
            return await _world.Task.WaitAsync(timeout, cancellation);
        }
        catch (TimeoutException)
        {
            var refusal = new JoinRefusedException(JoinRefusal.Timeout,
                $"only {JoinedCount} of {worldSize} workers joined within {timeout.TotalSeconds:0.#} s");
            _world.TrySetException(refusal);
            throw refusal;
        }
    }

    private string? Mismatch(JoinTicket t)
    {
        if (t.ProtocolVersion != protocolVersion)
            return $"worker '{t.WorkerId}' speaks protocol version {t.ProtocolVersion}, the coordinator {protocolVersion}";
        var first = _joined.FirstOrDefault();
        if (first is not null && (first.TrainCount, first.TestCount, first.LabelsHash) != (t.TrainCount, t.TestCount, t.LabelsHash))
            return $"worker '{t.WorkerId}' has other training data ({t.TrainCount} train / {t.TestCount} test samples, labels hash {t.LabelsHash:x16}) " +
                   $"than worker '{first.WorkerId}' ({first.TrainCount} / {first.TestCount}, {first.LabelsHash:x16})";
        return null;
    }
}

public enum JoinRefusal
{
    AlreadyComplete,
    DuplicateId,
    ConfigurationDiffers,
    Timeout,
}

public sealed class JoinRefusedException(JoinRefusal reason, string message) : Exception(message)
{
    public JoinRefusal Reason { get; } = reason;
}
