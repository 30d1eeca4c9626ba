using BnDist.Core.Training;

namespace BnDist.Coordinator;

/// <summary>
/// What a coordinator needs to run: the math of the run (<see cref="TrainingConfig"/>), the
/// world size, deadlines, checkpoints. Bound from the "Coordinator" configuration section
/// (appsettings.json, BNDIST__COORDINATOR__..., the command line) and validated on start.
/// </summary>
public sealed class CoordinatorSettings
{
    public const string Section = "Coordinator";

    /// <summary>The port to listen on (0: any free port, reported once bound).</summary>
    public int Port { get; set; } = 29500;

    /// <summary>
    /// The address to bind: "127.0.0.1" (default, this machine only), "localhost" (its IPv4 and
    /// IPv6 loopback addresses), "0.0.0.0" or "::" (every interface), any IP address, or a host
    /// name, resolved through DNS (see <see cref="ListenAddress"/>).
    /// </summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>
    /// Where to listen for <see cref="Host"/>: localhost is Localhost = true (Address: IPv4
    /// loopback, for a port chosen by the system); an IP address is itself; any other name is
    /// resolved through DNS (its first IPv4 address, else its first). Throws an
    /// ArgumentException naming --host when the name does not resolve.
    /// </summary>
    public (System.Net.IPAddress Address, bool Localhost) ListenAddress()
    {
        string host = Host.Trim();
        if (host.Length == 0) throw new ArgumentException("--host must not be empty");
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)) return (System.Net.IPAddress.Loopback, true);
        if (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip)) return (ip, false);
        System.Net.IPAddress[] addresses;
        try
        {
            addresses = System.Net.Dns.GetHostAddresses(host);
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new ArgumentException($"--host: cannot resolve '{host}' ({e.Message})");
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"--host: '{host}' is not a host name or address ({e.Message})");
        }
        if (addresses.Length == 0) throw new ArgumentException($"--host: '{host}' resolves to no address");
        return (addresses.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork) ?? addresses[0], false);
    }

    public int Workers { get; set; } = 2;

    public TrainingConfig Training { get; set; } = new();

    public double JoinTimeoutSeconds { get; set; } = 120;

    /// <summary>How long any rank may wait for the others in one operation.</summary>
    public double OperationTimeoutSeconds { get; set; } = 60;

    /// <summary>Directory for checkpoint.safetensors (null: only --save at the end, if given).</summary>
    public string? CheckpointDirectory { get; set; }

    /// <summary>Write a checkpoint every N steps (0: only at the end).</summary>
    public long CheckpointEvery { get; set; }

    /// <summary>The final checkpoint's path (default: checkpoint.safetensors in the directory).</summary>
    public string? Save { get; set; }

    /// <summary>Start from these parameters and buffers.</summary>
    public string? Init { get; set; }

    /// <summary>Continue a run from this checkpoint (step and optimizer state too).</summary>
    public string? Resume { get; set; }

    /// <summary>
    /// Run the gRPC handlers on the socket's I/O thread instead of handing each message to the
    /// thread pool (Kestrel's UnsafePreferInlineScheduling): one thread wake-up less per
    /// message, which is most of a small all-reduce's latency. The handlers never wait on
    /// another message, so nothing can deadlock; what runs inline is the hub's reduction (a
    /// gradient range: milliseconds), the progress events, and a checkpoint write (rank 0's
    /// last upload chunk: it must finish before rank 0's next contribution is read anyway, which
    /// keeps the running statistics it saves those of the checkpoint's step). Meanwhile other
    /// messages on the same I/O thread wait. Environment: BNDIST_INLINE_IO=0 turns it off.
    /// </summary>
    public bool InlineIo { get; set; } = Environment.GetEnvironmentVariable("BNDIST_INLINE_IO") != "0";

    /// <summary>
    /// How gradients are summed: "ring" (default: directly between the workers, the coordinator
    /// carrying none of the bytes: in their shared memory when the BN statistics go there and
    /// every worker is on one host, else a ring all-reduce over TCP) or "hub" (through the
    /// coordinator's Collective streams, summed in rank order).
    /// </summary>
    public string GradientPath { get; set; } = "ring";

    /// <summary>
    /// How BN statistics cross between ranks: "auto" (default: through shared memory between the
    /// ranks of one host, and between hosts through the hosts' leaders and this coordinator),
    /// "shm" (as auto, but every worker must be able to share memory: one that cannot fails the
    /// rendezvous) or "grpc" (every rank through this coordinator, as before hosts were known).
    /// </summary>
    public string StatsTransport { get; set; } = "auto";

    /// <summary>The run token; every call must carry it (null: no authentication).</summary>
    public string? Token { get; set; }

    public CoordinatorSettings Validate()
    {
        if (Workers < 1) throw new ArgumentException($"--workers must be ≥ 1, got {Workers}");
        if (Port is < 0 or > 65535) throw new ArgumentException($"--port must lie in [0, 65535], got {Port}");
        if (!(JoinTimeoutSeconds > 0)) throw new ArgumentException("--join-timeout must be > 0 seconds");
        if (!(OperationTimeoutSeconds > 0)) throw new ArgumentException("--timeout must be > 0 seconds");
        if (CheckpointEvery < 0) throw new ArgumentException("--checkpoint-every must be ≥ 0");
        if (CheckpointEvery > 0 && CheckpointDirectory is null) throw new ArgumentException("--checkpoint-every needs --checkpoint-dir");
        if (Init is not null && Resume is not null) throw new ArgumentException("--init and --resume exclude each other");
        if (GradientPath is not ("ring" or "hub")) throw new ArgumentException($"--gradient-path expects ring or hub, got '{GradientPath}'");
        if (StatsTransport is not ("auto" or "shm" or "grpc"))
            throw new ArgumentException($"--stats-transport expects auto, shm or grpc, got '{StatsTransport}'");
        ListenAddress();
        Training.Validate(knownModel: false); // the workers build the model: the coordinator only needs its layout
        return this;
    }

    public string? FinalCheckpointPath =>
        Save ?? (CheckpointDirectory is null ? null : Path.Combine(CheckpointDirectory, "checkpoint.safetensors"));
}
