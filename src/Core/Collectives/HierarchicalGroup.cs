using BnDist.Core.Collectives.SharedMemory;

namespace BnDist.Core.Collectives;

/// <summary>
/// BN statistics over several hosts: the ranks of a host sum in its shared memory; the host's
/// leader (its first rank) replaces the host's sum by the global one through <c>leaders</c>, the
/// group of all hosts' leaders (the coordinator, which adds the hosts in host order); the result
/// reaches the host's other ranks through the shared memory.
/// </summary>
/// <param name="host">The host's shared memory; null for a host of one rank, which is its own leader.</param>
/// <param name="leaders">The leaders' group, on the leader only (null on the other ranks of the host).</param>
public sealed class HierarchicalGroup : IProcessGroup
{
    private readonly SharedMemoryGroup? _host;
    private readonly IProcessGroup? _leaders;
    private readonly HostExchange? _exchange;
    private (long Step, CollectiveKind Kind, int Layer) _current;

    public HierarchicalGroup(SharedMemoryGroup? host, IProcessGroup? leaders)
    {
        if ((host is null || host.LocalRank == 0) != (leaders is not null))
            throw new ArgumentException("exactly the host's leader (local rank 0, or the one rank of its host) reaches the other hosts");
        (_host, _leaders) = (host, leaders);
        if (leaders is not null) _exchange = hostSum => leaders.AllReduce(hostSum, _current.Step, _current.Kind, _current.Layer);
    }

    public void AllReduce(Span<double> values, long step, CollectiveKind kind, int layer)
    {
        if (_host is null)
        {
            _leaders!.AllReduce(values, step, kind, layer);
            return;
        }
        _current = (step, kind, layer);
        _host.AllReduce(values, step, kind, layer, hierarchical: true, _exchange);
    }
}
