namespace BnDist.Worker;

/// <summary>
/// How a worker finds its coordinator and what it computes on. Bound from the "Worker"
/// configuration section (appsettings.json, BNDIST__WORKER__..., the command line).
/// The math of the run is not here: the coordinator sends it at join.
/// </summary>
public sealed class WorkerSettings
{
    public const string Section = "Worker";

    /// <summary>The coordinator's address, e.g. http://10.0.0.1:29500.</summary>
    public string Coordinator { get; set; } = "http://127.0.0.1:29500";

    /// <summary>Unique within the run; ranks follow the ordinal order of the ids (default: host name and process id).</summary>
    public string WorkerId { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>auto, cpu, … (see --device).</summary>
    public string Device { get; set; } = "auto";

    /// <summary>CPU threads of the backend (0: all cores).</summary>
    public int Threads { get; set; }

    /// <summary>Directory of the IDX files (null: the embedded subset).</summary>
    public string? Data { get; set; }

    /// <summary>
    /// The host name or address other workers reach this one at for the gradient ring (null:
    /// 127.0.0.1 when the coordinator is on loopback, else this machine's host name).
    /// </summary>
    public string? AdvertiseHost { get; set; }

    /// <summary>The ring endpoint's host: <see cref="AdvertiseHost"/>, or derived from where the coordinator is.</summary>
    public string AdvertisedHost()
    {
        if (!string.IsNullOrWhiteSpace(AdvertiseHost)) return AdvertiseHost.Trim();
        var host = new Uri(Coordinator).Host;
        bool loopback = host == "localhost" || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip));
        return loopback ? "127.0.0.1" : System.Net.Dns.GetHostName();
    }

    /// <summary>
    /// The longest a join may take, the wait for the other workers included (seconds). Longer
    /// than the coordinator's own join timeout (120 s by default), which normally ends a
    /// rendezvous that cannot complete first and says why; this one covers a coordinator that
    /// never answers.
    /// </summary>
    public double JoinTimeoutSeconds { get; set; } = 150;

    /// <summary>
    /// Which machine this worker runs on, as far as sharing memory goes: workers with the same
    /// identity reduce BN statistics through /dev/shm (--stats-transport). Null: this machine's
    /// name and boot id (so two containers with their own /dev/shm differ); "none": never share.
    /// Tests give workers of one process different identities to make several "hosts".
    /// </summary>
    public string? HostId { get; set; }

    /// <summary>The identity sent at join: empty when this worker cannot or will not share memory.</summary>
    public string HostIdentity()
    {
        if (HostId == "none" || !Core.Collectives.SharedMemory.SharedMemoryGroup.IsSupported) return "";
        if (!string.IsNullOrWhiteSpace(HostId)) return HostId.Trim();
        string boot = "";
        try { boot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* the name alone */ }
        return $"{Environment.MachineName}/{boot}";
    }

    /// <summary>
    /// Gradient buckets (KiB): summed while backward goes on, each as soon as its gradients are
    /// ready (PyTorch DDP's bucket_cap_mb). 0: one sum of all gradients after backward.
    /// </summary>
    public int GradientBucketKiB { get; set; } = BnDist.Core.Collectives.BucketedGradientReducer.DefaultBucketBytes >> 10;

    /// <summary>The cores to bind this worker to, e.g. "0-3" (null: none; launch gives each local worker its own).</summary>
    public string? Cpus { get; set; }

    /// <summary>The run token (null: none sent).</summary>
    public string? Token { get; set; }

    public WorkerSettings Validate()
    {
        if (!Uri.TryCreate(Coordinator, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--coordinator: '{Coordinator}' is not an http:// or https:// address");
        if (string.IsNullOrWhiteSpace(WorkerId)) throw new ArgumentException("--worker-id must not be empty");
        if (Threads < 0) throw new ArgumentException("--threads must be ≥ 0");
        if (!(JoinTimeoutSeconds > 0)) throw new ArgumentException($"--join-timeout must be > 0 seconds, got {JoinTimeoutSeconds}");
        if (Cpus is not null) CpuAffinity.Parse(Cpus);
        if (GradientBucketKiB is < 0 or > 1 << 20) throw new ArgumentException($"--bucket-kib must lie in [0, 1048576], got {GradientBucketKiB}");
        return this;
    }
}
