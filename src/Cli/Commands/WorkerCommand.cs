using BnDist.Worker;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BnDist.Cli.Commands;

/// <summary><c>bndist worker --coordinator URL</c>: join a run and train its shards.</summary>
public static class WorkerCommand
{
    public static int Run(ArgReader args)
    {
        if (args.Help)
        {
            System.Console.WriteLine("usage: bndist worker --coordinator URL [--worker-id ID] [--device D] [--threads N] [--data DIR] [--token-file FILE] [--advertise HOST]\n\n" +
                "  --advertise HOST   where the other workers reach this one for the gradient ring (default: 127.0.0.1 with a\n" +
                "                     coordinator on loopback, else this host's name)");
            return 0;
        }
        var settings = new WorkerSettings
        {
            Coordinator = args.String("coordinator") ?? throw new UsageException("worker: --coordinator URL is required"),
            Device = args.String("device", "auto"),
            Threads = args.Int("threads", 0, min: 0),
            AdvertiseHost = args.String("advertise"),
            Data = args.String("data"),
            Token = Protos.RunToken.Resolve(args.String("token-file")),
        };
        if (args.String("worker-id") is { } id) settings.WorkerId = id;
        args.Finish();
        try { settings.Validate(); }
        catch (ArgumentException e) { throw new UsageException($"worker: {e.Message}"); }
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders().AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("BnDist", LogLevel.Information);
        builder.AddWorkerServices(settings);
        Environment.ExitCode = 0;
        builder.Build().Run();
        return Environment.ExitCode;
    }
}
