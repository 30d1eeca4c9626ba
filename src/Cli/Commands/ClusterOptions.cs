using System.CommandLine;
using BnDist.Coordinator;
using BnDist.Protos;

namespace BnDist.Cli.Commands;

/// <summary>The options of a coordinator's cluster, declared once for coordinator and launch.</summary>
internal sealed class ClusterOptions(int defaultPort)
{
    public Option<int> Workers { get; } = Opt.Int("--workers", "world size: the number of worker processes", 2, min: 1, helpName: "K");
    public Option<string> GradientPath { get; } = Opt.Choice("--gradient-path",
        "ring: gradients summed directly between the workers (in shared memory when all are on one host, else a TCP ring); hub: through the coordinator, in rank order", "ring", "ring", "hub");
    public Option<string> StatsTransport { get; } = Opt.Choice("--stats-transport",
        "auto: BN statistics through shared memory between the workers of one host, and through the coordinator between hosts; " +
        "shm: the same, and every worker must be able to share memory; grpc: every worker through the coordinator", "auto", "auto", "shm", "grpc");
    public Option<double> Timeout { get; } = Opt.Double("--timeout", "seconds any rank may wait for the others in one operation", 60, "S");
    public Option<double> JoinTimeout { get; } = Opt.Double("--join-timeout", "seconds to wait for all workers to join", 120, "S");
    public Option<string> CheckpointDir { get; } = Opt.String("--checkpoint-dir", "write checkpoint.safetensors here", helpName: "DIR");
    public Option<long> CheckpointEvery { get; } = Opt.Long("--checkpoint-every", "write it every N steps (and at the end)", 0, min: 0);
    public Option<string> TokenFile { get; } = Opt.InputFile("--token-file", $"the run token (else the environment variable {RunToken.EnvironmentVariable})");
    public Option<string> Host { get; } = Opt.String("--host",
        "the address to listen on: 127.0.0.1 (this machine only), localhost, a host name, or 0.0.0.0 / :: (every interface)", "127.0.0.1", "HOST");
    public Option<int> Port { get; } = Opt.Int("--port", "the port to listen on (0: any free port)", defaultPort, min: 0, helpName: "P");

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Workers, GradientPath, StatsTransport, Timeout, JoinTimeout, CheckpointDir, CheckpointEvery, TokenFile, Host, Port })
            command.Options.Add(o);
    }

    /// <summary>Sets what the command line gives on <paramref name="settings"/> (bound from configuration before).</summary>
    public CoordinatorSettings Apply(ParseResult r, CoordinatorSettings settings)
    {
        settings.Workers = r.Pick(Workers, settings.Workers);
        settings.GradientPath = r.Pick(GradientPath, settings.GradientPath)!;
        settings.StatsTransport = r.Pick(StatsTransport, settings.StatsTransport)!;
        settings.OperationTimeoutSeconds = r.Pick(Timeout, settings.OperationTimeoutSeconds);
        settings.JoinTimeoutSeconds = r.Pick(JoinTimeout, settings.JoinTimeoutSeconds);
        settings.CheckpointDirectory = r.Pick(CheckpointDir, settings.CheckpointDirectory);
        settings.CheckpointEvery = r.Pick(CheckpointEvery, settings.CheckpointEvery);
        settings.Host = r.Pick(Host, settings.Host)!;
        settings.Port = r.Pick(Port, settings.Port);
        settings.Token = r.Given(TokenFile) ? RunToken.Resolve(r.GetValue(TokenFile)) : settings.Token ?? RunToken.Resolve(null);
        return settings;
    }
}

/// <summary>
/// Where a run starts from and what it writes, declared once for train, coordinator and launch.
/// --init and --resume exclude each other.
/// </summary>
internal sealed class RunFileOptions
{
    public Option<string> Init { get; } = Opt.InputFile("--init", "start from the parameters and buffers of this checkpoint");
    public Option<string> Save { get; } = Opt.OutputFile("--save", "write the final checkpoint here");
    public Option<string> SaveInit { get; } = Opt.OutputFile("--save-init", "write the initial checkpoint here before training");
    public Option<string> Resume { get; } = Opt.InputFile("--resume",
        "continue the run of this checkpoint (its configuration, step and optimizer state) up to the --steps or --epochs given, else its own");
    public Option<bool> OverrideConfig { get; } = Opt.Flag("--override-config",
        "with --resume: the options given change the checkpoint's run (without it, an option that changes the math is an error)");
    public Option<string> MetricsOut { get; } = Opt.OutputFile("--metrics-out",
        "JSON lines: step, epoch, loss, lr, samples_per_s of each step; test_loss, test_accuracy of each evaluation");
    public Option<bool> Quiet { get; } = Opt.Flag("--quiet", "no progress bar");

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Init, Save, SaveInit, Resume, OverrideConfig, MetricsOut, Quiet }) command.Options.Add(o);
        command.Validators.Add(r =>
        {
            if (r.GetResult(Init) is { Implicit: false } && r.GetResult(Resume) is { Implicit: false })
                r.AddError("--init and --resume exclude each other (--resume restores the parameters too)");
        });
    }
}
