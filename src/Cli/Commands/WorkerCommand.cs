using System.CommandLine;
using BnDist.Worker;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Cli.Commands;

/// <summary>
/// <c>bndist worker --coordinator URL</c>: join a run and train its shards. The settings bind
/// from the "Worker" section of appsettings.json and BNDIST__WORKER__… environment variables;
/// the options given on the command line win.
/// </summary>
public static class WorkerCommand
{
    public static Command Create()
    {
        var coordinator = Opt.String("--coordinator", "the coordinator's address, e.g. http://10.0.0.1:29500", helpName: "URL");
        var workerId = Opt.String("--worker-id", "unique within the run; ranks follow the ordinal order of the ids (default: host name and process id)",
            helpName: "ID");
        var device = Opt.String("--device", "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu (default auto)", helpName: "D");
        var threads = Opt.Int("--threads", "CPU threads (default 0: all cores)", null, min: 0);
        var data = Opt.InputDirectory("--data", TrainCommand.DataHelp);
        var tokenFile = Opt.InputFile("--token-file", $"the run token (else the environment variable {Protos.RunToken.EnvironmentVariable})");
        var advertise = Opt.String("--advertise", "where the other workers reach this one for the gradient ring " +
                                                  "(default: 127.0.0.1 with a coordinator on loopback, else this host's name)", helpName: "HOST");
        var hostId = Opt.String("--host-id", "which machine this worker is on: workers with the same id share BN statistics through " +
                                             "/dev/shm (default: this machine's name and boot id; none: never share)", helpName: "ID");
        var buckets = BucketOption();
        var joinTimeout = Opt.Double("--join-timeout", "seconds to wait for the coordinator and the other workers to join (default 150)", null, "S");
        var cpus = Opt.String("--cpus", "bind the worker to these cores, e.g. 0-3 or 0,2 (default: not bound)", helpName: "LIST");
        var command = new Command("worker", "join a coordinator and train")
        {
            coordinator, workerId, device, threads, data, tokenFile, advertise, hostId, buckets, joinTimeout, cpus,
        };
        command.SetAction(r =>
        {
            var settings = SettingsConfiguration.Bind(WorkerSettings.Section, new WorkerSettings());
            settings.Coordinator = r.Pick(coordinator, settings.Coordinator)!;
            settings.WorkerId = r.Pick(workerId, settings.WorkerId)!;
            settings.Device = r.Pick(device, settings.Device)!;
            settings.Threads = r.Pick(threads, settings.Threads);
            settings.Data = r.Pick(data, settings.Data);
            settings.AdvertiseHost = r.Pick(advertise, settings.AdvertiseHost);
            settings.HostId = r.Pick(hostId, settings.HostId);
            settings.GradientBucketKiB = r.Pick(buckets, settings.GradientBucketKiB);
            settings.JoinTimeoutSeconds = r.Pick(joinTimeout, settings.JoinTimeoutSeconds);
            settings.Cpus = r.Pick(cpus, settings.Cpus);
            settings.Token = r.Given(tokenFile) ? Protos.RunToken.Resolve(r.GetValue(tokenFile)) : settings.Token ?? Protos.RunToken.Resolve(null);
            return Run(settings);
        });
        return command;
    }

    /// <summary>--bucket-kib, declared once for worker and launch.</summary>
    internal static Option<int> BucketOption() => Opt.Int("--bucket-kib",
        "gradient buckets summed while backward goes on, each as soon as its gradients are ready (0: one sum after backward)",
        null, min: 0, helpName: "KIB");

    /// <summary>Validates <paramref name="settings"/> (a bad one is a usage error) and runs the worker host.</summary>
    internal static int Run(WorkerSettings settings)
    {
        try { settings.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders().AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("BnDist", LogLevel.Information);
        builder.AddWorkerServices(settings);
        Environment.ExitCode = 0;
        builder.Build().Run();
        return Environment.ExitCode;
    }
}
