using System.CommandLine;
using System.Diagnostics;
using BnDist.Coordinator;
using BnDist.Core.Backends;
using BnDist.Worker;
using BnDist.Core.Backends.Ilgpu;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Training;
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
    public static Command Create(CancellationToken cancellation)
    {
        var setup = new ClusterSetup("launch", defaultPort: 0, knownModel: true);
        var device = Opt.String("--device", "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu; cuda and opencl give the local ranks the GPUs round-robin",
            "auto", "D");
        var data = Opt.InputDirectory("--data", "the workers' data: " + TrainCommand.DataHelp);
        var threads = Opt.Int("--threads-per-worker", "CPU threads of each worker (default: the cores divided by --workers)", null, min: 1);
        var buckets = WorkerCommand.BucketOption();
        var bind = Opt.Choice("--bind-cores", "on: each CPU worker on cores of its own, when the workers' threads fit the cores; off: " +
                                              "the scheduler moves them", "on", "on", "off");
        var command = new Command("launch", "a local cluster: coordinator + K worker processes");
        setup.AddTo(command);
        foreach (var o in new Option[] { device, data, threads, buckets, bind }) command.Options.Add(o);
        command.SetAction(r => Run(r, setup, r.GetValue(device)!, r.GetValue(data), r.Given(threads) ? r.GetValue(threads) : null,
            r.Given(buckets) ? r.GetValue(buckets) : null, r.GetValue(bind) == "on", cancellation));
        return command;
    }

    private static int Run(ParseResult parse, ClusterSetup setup, string device, string? dataDir, int? threadsOption, int? bucketKiB,
        bool bindCores, CancellationToken cancellation)
    {
        var settings = setup.Settings(parse, new CoordinatorSettings { Port = 0 });
        int threads = threadsOption ?? Math.Max(1, Environment.ProcessorCount / settings.Workers);
        var config = settings.Training;
        // What the workers would find only after joining: say it now, before any process starts.
        var trainSet = Opt.LoadData(dataDir, config.Normalize).Train;
        int trainCount = trainSet.Count;
        using (var cpu = new CpuBackend(1))
        {
            var shapes = ModelFactory.Create(config.Model, cpu, SingleProcessCollective.Instance, config.Seed, config.Normalization,
                trainSet.SampleShape, trainSet.Classes);
            if (trainSet.MismatchWith(config.Model, shapes.SampleShape, shapes.Classes) is { } mismatch) throw new UsageException(mismatch);
            long startStep = settings.Resume is null ? 0 : Checkpoint.ReadInfo(settings.Resume).Step;
            if (config.BatchesPerEpoch(trainCount) == 0)
                throw new UsageException($"--batch-size: the training set has {trainCount} samples, no whole batch of {config.BatchSize} " +
                                         "(--keep-last-batch trains on the short one)");
            if (Trainer.BatchNormProblem(config, shapes, trainCount, settings.Workers, startStep) is { } problem) throw new UsageException(problem);
        }

        string tokenFile = Path.Combine(Path.GetTempPath(), $"bndist-{Environment.ProcessId}.token");
        settings.Token ??= RunToken.Generate();
        RunToken.WriteFile(tokenFile, settings.Token);
        var app = CoordinatorServices.Build(settings, l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true));
        var run = app.Services.GetRequiredService<RunCoordinator>();
        if (parse.GetValue(setup.Files.SaveInit) is { } saveInit) ClusterSetup.SaveInitialState(saveInit, run);
        ClusterProgress.Attach(run, parse.GetValue(setup.Files.Quiet));
        using var metrics = parse.GetValue(setup.Files.MetricsOut) is { } metricsOut ? ClusterSetup.WriteMetrics(metricsOut, run) : null;
        var workers = new List<Process>();
        try
        {
            app.StartAsync(cancellation).GetAwaiter().GetResult();
            string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            System.Console.WriteLine($"bndist launch: run {run.RunId}, coordinator {address}, {settings.Workers} workers × {threads} threads, " +
                                     $"{config.Model}/{config.Norm}, global batch {config.BatchSize}, sync-bn {(config.SyncBatchNorm ? "on" : "off")}");
            // Each CPU worker on cores of its own when they fit (a worker that keeps its core keeps its caches).
            var allowed = CpuAffinity.Allowed();
            string d = device.Trim().ToLowerInvariant();
            bool cpuWorkers = d == "cpu" || (d == "auto" && IlgpuDevices.Count("cuda") + IlgpuDevices.Count("opencl") == 0);
            var cores = bindCores && cpuWorkers && settings.Workers * threads <= allowed.Count ? allowed : null;
            for (int rank = 0; rank < settings.Workers; rank++)
            {
                var info = WorkerProcess();
                foreach (string a in new[] { "worker", "--coordinator", address, "--worker-id", $"local-{rank:D3}", "--token-file", tokenFile,
                             "--threads", threads.ToString(System.Globalization.CultureInfo.InvariantCulture),
                             "--device", BackendFactory.ForLocalRank(device, rank) })
                    info.ArgumentList.Add(a);
                if (dataDir is not null)
                {
                    info.ArgumentList.Add("--data");
                    info.ArgumentList.Add(Path.GetFullPath(dataDir));
                }
                if (cores is not null)
                {
                    info.ArgumentList.Add("--cpus");
                    info.ArgumentList.Add(string.Join(',', cores.Skip(rank * threads).Take(threads)));
                }
                // The runtime sizes its spinning waits by the processor count it sees; a CPU worker owns
                // `threads` cores, and told so it stops spinning for the cores of the others (measured:
                // two workers on two cores, 0.68 → ~1.0 of one process's throughput; bench/RESULTS.md, issue 13).
                if (cpuWorkers) info.Environment["DOTNET_PROCESSOR_COUNT"] = threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (bucketKiB is { } kib)
                {
                    info.ArgumentList.Add("--bucket-kib");
                    info.ArgumentList.Add(kib.ToString(System.Globalization.CultureInfo.InvariantCulture));
                }
                workers.Add(Process.Start(info) ?? throw new InvalidOperationException("could not start a worker process"));
            }
            using var interrupted = cancellation.Register(() =>
            {
                run.Abort("bndist launch was interrupted");
                Kill(workers);
            });
            var outcome = run.Outcome.WaitAsync(cancellation).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null).GetAwaiter().GetResult();
            // Workers end on their own once the run has (a finished run: at once; a failed one:
            // as soon as the abort reaches them). One that has not within the grace (stopped,
            // cut off) is killed: a failed run must not keep launch waiting.
            var exitBy = DateTime.UtcNow + TimeSpan.FromSeconds(outcome is { Succeeded: true } ? 30 : 3);
            foreach (var w in workers)
                if (!w.WaitForExit(TimeSpan.FromTicks(Math.Max(0, (exitBy - DateTime.UtcNow).Ticks)))) w.Kill(entireProcessTree: true);
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
