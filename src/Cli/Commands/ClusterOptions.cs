using BnDist.Coordinator;

namespace BnDist.Cli.Commands;

/// <summary>The options shared by coordinator and launch: the run, plus the cluster's knobs.</summary>
internal static class ClusterOptions
{
    public const string Help = """
          --workers K                  world size (default 2)
          --sync-bn on|off             off: each worker normalizes with its own shard (plain DDP)
          --gradient-path ring|hub     ring (default): gradients summed directly between the workers over TCP;
                                       hub: through the coordinator, in rank order
          --timeout S                  seconds any rank may wait for the others in one operation (default 60)
          --join-timeout S             seconds to wait for all workers to join (default 120)
          --checkpoint-dir DIR         write checkpoint.safetensors here
          --checkpoint-every N         every N steps (and at the end)
          --token-file FILE            the run token (else BNDIST_TOKEN)
        """;

    public static CoordinatorSettings Read(ArgReader a, string command, TrainOptions train, int defaultPort)
    {
        string sync = a.String("sync-bn", "on");
        if (sync is not ("on" or "off")) throw new UsageException($"{command}: --sync-bn expects on or off, got '{sync}'");
        var settings = new CoordinatorSettings
        {
            Port = a.Int("port", defaultPort, min: 0),
            Host = a.String("host", "127.0.0.1"),
            Workers = a.Int("workers", 2, min: 1),
            Training = train.Config with { SyncBatchNorm = sync == "on" },
            OperationTimeoutSeconds = a.Double("timeout", 60),
            GradientPath = a.String("gradient-path", "ring")!,
            JoinTimeoutSeconds = a.Double("join-timeout", 120),
            CheckpointDirectory = a.String("checkpoint-dir"),
            CheckpointEvery = a.Long("checkpoint-every", 0, min: 0),
            Save = train.Save,
            Init = train.Init,
            Resume = train.Resume,
            Token = Protos.RunToken.Resolve(a.String("token-file")),
        };
        try
        {
            return settings.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"{command}: {e.Message}");
        }
    }
}
