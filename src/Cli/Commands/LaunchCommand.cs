using System.Diagnostics;
using BnDist.Coordinator;
using BnDist.Core.Backends;
using BnDist.Protos;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace BnDist.Cli.Commands;

/// <summary>
/// <c>bndist launch --workers K [train options]</c>: a local cluster, as torchrun makes one: the
/// coordinator in this process on a free loopback port, K worker processes, a fresh run token
/// shared through a private file. Shows progress, forwards Ctrl-C, returns non-zero if any
/// process failed, and prints where the time of a step went.
/// </summary>
public static class LaunchCommand
{
    public static int Run(ArgReader args, CancellationToken cancellation)
    {
        if (args.Help)
        {
            System.Console.WriteLine("usage: bndist launch --workers K [--threads-per-worker N] [options]\n\n" + ClusterOptions.Help + TrainOptions.Help);
            return 0;
        }
        var train = TrainOptions.Read(args);
        var settings = ClusterOptions.Read(args, "launch", train, defaultPort: 0);
        int threads = args.Int("threads-per-worker", Math.Max(1, Environment.ProcessorCount / settings.Workers), min: 1);
        args.Finish();

        string tokenFile = Path.Combine(Path.GetTempPath(), $"bndist-{Environment.ProcessId}.token");
        settings.Token ??= RunToken.Generate();
        RunToken.WriteFile(tokenFile, settings.Token);
        var app = CoordinatorServices.Build(settings, l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true));
        var run = app.Services.GetRequiredService<RunCoordinator>();
        ClusterProgress.Attach(run, train.Quiet);
        var workers = new List<Process>();
        try
        {
            app.StartAsync(cancellation).GetAwaiter().GetResult();
            string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            System.Console.WriteLine($"bndist launch: run {run.RunId}, coordinator {address}, {settings.Workers} workers × {threads} threads, " +
                                     $"{train.Config.Model}/{train.Config.Norm}, global batch {train.Config.BatchSize}, sync-bn {(train.Config.SyncBatchNorm && settings.Training.SyncBatchNorm ? "on" : "off")}");
            for (int rank = 0; rank < settings.Workers; rank++)
            {
                var info = WorkerProcess();
                foreach (string a in new[] { "worker", "--coordinator", address, "--worker-id", $"local-{rank:D3}", "--token-file", tokenFile,
                             "--threads", threads.ToString(System.Globalization.CultureInfo.InvariantCulture),
                             "--device", BackendFactory.ForLocalRank(train.Device, rank) })
                    info.ArgumentList.Add(a);
                if (train.DataDir is not null)
                {
                    info.ArgumentList.Add("--data");
                    info.ArgumentList.Add(train.DataDir);
                }
                workers.Add(Process.Start(info) ?? throw new InvalidOperationException("could not start a worker process"));
            }
            using var interrupted = cancellation.Register(() =>
            {
                run.Abort("bndist launch was interrupted");
                Kill(workers);
            });
            var outcome = run.Outcome.WaitAsync(cancellation).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null).GetAwaiter().GetResult();
            foreach (var w in workers)
                if (!w.WaitForExit(TimeSpan.FromSeconds(30))) w.Kill(entireProcessTree: true);
            var failed = workers.Select((w, r) => (w, r)).Where(x => x.w.HasExited && x.w.ExitCode != 0).ToList();
            if (outcome is null || cancellation.IsCancellationRequested)
            {
                System.Console.Error.WriteLine("bndist launch: interrupted");
                return Program.InterruptedExitCode;
            }
            ClusterProgress.PrintBreakdown(run);
            if (!outcome.Succeeded || failed.Count > 0)
            {
                System.Console.Error.WriteLine($"bndist launch: failed: {outcome.Error ?? "a worker exited with an error"}" +
                    (failed.Count > 0 ? $" (worker exit codes: {string.Join(", ", failed.Select(f => $"rank {f.r}: {f.w.ExitCode}"))})" : ""));
                return 1;
            }
            System.Console.WriteLine($"done: {outcome.CommittedSteps} steps; {(double.IsNaN(outcome.TestAccuracy) ? "not evaluated" : $"test accuracy {outcome.TestAccuracy:F4}")}" +
                                     (outcome.Checkpoint is null ? "" : $"; saved {outcome.Checkpoint}"));
            return 0;
        }
        finally
        {
            Kill(workers);
            app.StopAsync().GetAwaiter().GetResult();
            File.Delete(tokenFile);
        }
    }

    /// <summary>This same bndist, whether run as its apphost or as "dotnet bndist.dll".</summary>
    internal static ProcessStartInfo WorkerProcess()
    {
        string host = Environment.ProcessPath!;
        var info = new ProcessStartInfo(host) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") info.ArgumentList.Add(typeof(LaunchCommand).Assembly.Location);
        return info;
    }

    private static void Kill(IEnumerable<Process> processes)
    {
        foreach (var p in processes)
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); }
            catch (InvalidOperationException) { /* already gone */ }
        }
    }
}
