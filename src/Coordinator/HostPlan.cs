namespace BnDist.Coordinator;

/// <summary>How a run's BN statistics travel.</summary>
public enum StatsMode
{
    /// <summary>Every rank through the coordinator's Collective streams (--stats-transport grpc, or no two ranks share a host).</summary>
    Flat,

    /// <summary>All ranks on one host sum through shared memory; rank 0 sends each step's statistics with its commit.</summary>
    SingleHost,

    /// <summary>Shared memory within each host; the hosts' leaders through the coordinator, which adds the hosts in host order.</summary>
    Hierarchical,
}

/// <summary>One rank's host group, as its join reply gives it.</summary>
/// <param name="Segment">The shared-memory file's name (empty for a host of one rank: nothing to share).</param>
/// <param name="Ranks">The host's global ranks, ascending; the first is the leader.</param>
/// <param name="Gradients">
/// Gradients go directly between the workers (--gradient-path ring): the host's ranks sum them in the
/// segment, and with several hosts the leaders sum the hosts' sums around a ring of their own.
/// </param>
/// <param name="Leaders">The leader of each host, by host.</param>
public sealed record HostGroup(string Segment, IReadOnlyList<int> Ranks, int Host, int Hosts, bool Gradients = false, IReadOnlyList<int>? Leaders = null);

/// <summary>
/// The hosts of a run, from the host identities the workers gave at join: ranks with the same
/// identity form a host; a worker without one (it cannot share memory) is a host of its own.
/// Hosts are numbered in the order of their first rank, which is their leader.
/// </summary>
public sealed class HostPlan
{
    private readonly int[] _hostOf;
    private readonly string _runId;

    private HostPlan(StatsMode mode, IReadOnlyList<int[]> hosts, int worldSize, string runId)
    {
        (Mode, Hosts, _runId) = (mode, hosts, runId);
        Leaders = [.. hosts.Select(h => h[0])];
        _hostOf = new int[worldSize];
        for (int h = 0; h < hosts.Count; h++)
            foreach (int r in hosts[h]) _hostOf[r] = h;
    }

    public StatsMode Mode { get; }

    /// <summary>The global ranks of each host, ascending; hosts in the order of their first rank.</summary>
    public IReadOnlyList<int[]> Hosts { get; }

    /// <summary>The leader (first rank) of each host.</summary>
    public IReadOnlyList<int> Leaders { get; }

    public int HostOf(int rank) => _hostOf[rank];

    public bool IsLeader(int rank) => Hosts[_hostOf[rank]][0] == rank;

    /// <summary>What <paramref name="rank"/>'s join reply carries: null in flat mode. <paramref name="directGradients"/>: --gradient-path ring.</summary>
    public HostGroup? GroupOf(int rank, bool directGradients)
    {
        if (Mode == StatsMode.Flat) return null;
        int host = _hostOf[rank];
        var ranks = Hosts[host];
        return new HostGroup(ranks.Length > 1 ? $"bndist-{_runId}-{host}" : "", ranks, host, Hosts.Count, Gradients: directGradients, Leaders);
    }

    /// <summary>
    /// The plan for <paramref name="world"/> under --stats-transport <paramref name="transport"/>; the
    /// reason the run cannot start (shm asked of a worker that cannot share memory), or null.
    /// </summary>
    public static HostPlan For(World world, string transport, string runId, out string? refusal)
    {
        refusal = null;
        var members = world.Members;
        if (transport == "shm" && members.FirstOrDefault(m => string.IsNullOrEmpty(m.Host)) is { } alone)
            refusal = $"--stats-transport shm: worker '{alone.WorkerId}' cannot share memory (its machine has no /dev/shm or futex); " +
                      "use --stats-transport auto or grpc";
        var hosts = new List<int[]>();
        var byHost = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        var order = new List<List<int>>();
        for (int r = 0; r < members.Count; r++)
        {
            string host = members[r].Host;
            if (string.IsNullOrEmpty(host))
            {
                order.Add([r]);
                continue;
            }
            if (!byHost.TryGetValue(host, out var ranks))
            {
                byHost[host] = ranks = [];
                order.Add(ranks);
            }
            ranks.Add(r);
        }
        hosts.AddRange(order.Select(h => h.ToArray())); // ranks ascend, so hosts come in the order of their first rank
        var mode = transport == "grpc" || members.Count < 2 || hosts.All(h => h.Length == 1) ? StatsMode.Flat
            : hosts.Count == 1 ? StatsMode.SingleHost
            : StatsMode.Hierarchical;
        return new HostPlan(mode, hosts, members.Count, runId);
    }

    public string Describe() => Mode switch
    {
        StatsMode.Flat => "BN statistics through the coordinator",
        StatsMode.SingleHost => $"BN statistics through shared memory ({Hosts[0].Length} ranks on one host)",
        _ => $"BN statistics through shared memory within {Hosts.Count} hosts ({string.Join(" | ", Hosts.Select(h => string.Join(",", h)))}) " +
             "and between the hosts' leaders through the coordinator",
    };
}
