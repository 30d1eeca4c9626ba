using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BnDist.Coordinator;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Worker;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace BnDist.Cli.Commands;

/// <summary>
/// <c>bndist bench collective</c>: the cost of BnDist's own all-reduce path, measured as a
/// training run uses it — K worker processes, each with its one Collective stream to an
/// in-process coordinator on loopback, the same <see cref="WorkerCollective"/>, hub, running
/// statistics update and token check as <c>launch</c>. The run's model is
/// <c>mlp:C1,C2,…</c>, so batch-norm layer l has exactly C_l channels and its statistics
/// operation carries the 2·C_l + 1 float64 values of a real one.
/// <list type="bullet">
/// <item>BN statistics: per C, a warm-up of at least W operations and S seconds (the tiered
/// JIT recompiles the hot path for seconds; measured here, it took 40% of the CPU of a short
/// run), then N timed operations back to back; rank 0's per-operation latency, p50 / p99 / mean,
/// and the CPU time rank 0's process spent per timed operation (worker_cpu_us: on a machine with
/// fewer cores than processes, the latency is bounded by the CPU all of them spend per operation).</item>
/// <item>Gradients: per size, a float32 buffer summed through the gradient path (the ring, or
/// the coordinator with --gradient-path hub; device download and upload included, as in a
/// step), after a warm-up of at least 2 operations and S seconds; median time of R
/// operations, algbw = bytes/time and busbw = algbw·2(K−1)/K (nccl-tests' convention for a ring all-reduce, used by the peers
/// too; through the coordinator each worker link actually carries S in and S out).</item>
/// </list>
/// Output: JSON lines with the fields of bench/peers (impl "bndist"), to stdout and --out.
/// </summary>
public static class CollectiveBenchCommand
{
    public static Command Create(CancellationToken cancellation)
    {
        var role = Opt.Choice("--role", "driver (default) or worker: a process the driver starts", "driver", "driver", "worker");
        role.Hidden = true;
        var workers = Opt.Int("--workers", "worker processes", 2, min: 1, helpName: "K");
        var channels = Opt.String("--channels", "channel counts of the BN statistics operations, one to eight in [1, 65536]", "64,256,1024", "C1,C2,…");
        var ops = Opt.Int("--ops", "timed BN statistics operations per channel count", 2000, min: 1);
        var warmup = Opt.Int("--warmup", "at least this many untimed operations first", 1000, min: 0, helpName: "W");
        var warmupSeconds = Opt.Double("--warmup-seconds", "and at least this long", 5, "S");
        var sizes = Opt.String("--sizes-mib", "gradient sizes in MiB", "1,4,16,64", "S1,S2,…");
        var reps = Opt.Int("--reps", "timed gradient operations per size", 10, min: 1, helpName: "R");
        var gradientPath = Opt.Choice("--gradient-path", "ring: between the workers; hub: through the coordinator", "ring", "ring", "hub");
        var skipStats = Opt.Flag("--skip-stats", "measure only the gradients");
        var skipGradients = Opt.Flag("--skip-gradients", "measure only the BN statistics");
        var statsTransport = Opt.Choice("--stats-transport",
            "auto: BN statistics through shared memory between the worker processes (impl bndist-shm); grpc: through the coordinator (impl bndist)",
            "auto", "auto", "shm", "grpc");
        var output = Opt.OutputFile("--out", "append the JSON lines to this file too");
        // The driver's arguments to its worker processes.
        var coordinator = Opt.String("--coordinator", "the driver's coordinator", helpName: "URL");
        var tokenFile = Opt.InputFile("--token-file", "the run token");
        var workerId = Opt.String("--worker-id", "this worker's id", helpName: "ID");
        foreach (var o in new Option[] { coordinator, tokenFile, workerId }) o.Hidden = true;
        var command = new Command("collective", "latency and bandwidth of the all-reduce, K worker processes on loopback")
        {
            role, workers, channels, ops, warmup, warmupSeconds, sizes, reps, gradientPath, skipStats, skipGradients, statsTransport, output, coordinator, tokenFile,
            workerId,
        };
        command.SetAction(r =>
        {
            var o = Options.Check(new Options(r.GetValue(role)!, r.GetValue(workers), Ints(r.GetValue(channels)!, "--channels"), r.GetValue(ops),
                r.GetValue(warmup), r.GetValue(warmupSeconds), Doubles(r.GetValue(sizes)!, "--sizes-mib"), r.GetValue(reps), r.GetValue(output),
                r.GetValue(coordinator), r.GetValue(tokenFile), r.GetValue(workerId), r.GetValue(gradientPath)!, r.GetValue(skipStats),
                r.GetValue(skipGradients), r.GetValue(statsTransport)!));
            return o.Role == "worker" ? RunWorker(o, cancellation) : RunDriver(o, cancellation);
        });
        return command;
    }

    private static int[] Ints(string text, string name) => [.. Split(text, name, s => int.Parse(s, CultureInfo.InvariantCulture))];

    private static double[] Doubles(string text, string name) => [.. Split(text, name, s => double.Parse(s, CultureInfo.InvariantCulture))];

    private static IEnumerable<T> Split<T>(string text, string name, Func<string, T> parse)
    {
        try
        {
            return [.. text.Split(',', StringSplitOptions.TrimEntries).Select(parse)];
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new UsageException($"{name} expects a comma-separated list of numbers, got '{text}'");
        }
    }

    private sealed record Options(string Role, int Workers, int[] Channels, int Ops, int Warmup, double WarmupSeconds, double[] SizesMiB, int Reps,
        string? Out, string? Coordinator, string? TokenFile, string? WorkerId, string GradientPath, bool SkipStats, bool SkipGradients, string StatsTransport)
    {
        public static Options Check(Options o)
        {
            if (o.Channels.Length is < 1 or > 8 || o.Channels.Any(c => c is < 1 or > 65536))
                throw new UsageException("--channels takes one to eight channel counts in [1, 65536]");
            if (o.SizesMiB.Any(s => !(s >= 1.0 / (1 << 18)) || s > 1024))
                throw new UsageException("--sizes-mib takes sizes in [4 bytes, 1024 MiB] (in MiB)");
            // The mlp's weights (784·C1 + C1·C2 + … + Cn·10 floats) travel in the join message.
            long weights = 0;
            int[] widths = [784, .. o.Channels, 10];
            for (int i = 0; i + 1 < widths.Length; i++) weights += (long)widths[i] * widths[i + 1];
            if (weights * sizeof(float) * 2 > WireLimits.MaxMessageBytes / 2)
                throw new UsageException($"--channels {string.Join(',', o.Channels)} makes an mlp of {weights:N0} weights, too large to send at join");
            return o;
        }

        public IEnumerable<string> WorkerArguments(string coordinator, string tokenFile, int rank) =>
        [
            "bench", "collective", "--role", "worker", "--coordinator", coordinator, "--token-file", tokenFile, "--worker-id", $"bench-{rank:D3}",
            "--workers", Workers.ToString(CultureInfo.InvariantCulture), "--ops", Ops.ToString(CultureInfo.InvariantCulture),
            "--warmup", Warmup.ToString(CultureInfo.InvariantCulture), "--warmup-seconds", WarmupSeconds.ToString(CultureInfo.InvariantCulture),
            "--reps", Reps.ToString(CultureInfo.InvariantCulture),
            "--sizes-mib", string.Join(',', SizesMiB.Select(s => s.ToString(CultureInfo.InvariantCulture))),
            .. Out is null ? Array.Empty<string>() : ["--out", Path.GetFullPath(Out)],
            .. SkipStats ? ["--skip-stats"] : Array.Empty<string>(),
            .. SkipGradients ? ["--skip-gradients"] : Array.Empty<string>(),
        ];
    }

    /// <summary>The coordinator here, K worker processes of this same bndist.</summary>
    private static int RunDriver(Options o, CancellationToken cancellation)
    {
        var settings = new CoordinatorSettings
        {
            Port = 0,
            Workers = o.Workers,
            Training = new TrainingConfig
            {
                Model = "mlp:" + string.Join(',', o.Channels.Select(c => c.ToString(CultureInfo.InvariantCulture))),
                BatchSize = o.Workers, Steps = 1, Evaluate = false,
            },
            Token = RunToken.Generate(),
            GradientPath = o.GradientPath,
            StatsTransport = o.StatsTransport,
        }.Validate();
        string tokenFile = Path.Combine(Path.GetTempPath(), $"bndist-bench-{Environment.ProcessId}.token");
        RunToken.WriteFile(tokenFile, settings.Token!);
        var app = CoordinatorServices.Build(settings, l => l.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(c => c.SingleLine = true));
        var run = app.Services.GetRequiredService<RunCoordinator>();
        var workers = new List<Process>();
        try
        {
            app.StartAsync(cancellation).GetAwaiter().GetResult();
            string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            System.Console.Error.WriteLine($"bench collective: {o.Workers} worker processes on {address}; BN statistics of C = " +
                $"{string.Join(", ", o.Channels)} ({o.Warmup} warm-up + {o.Ops} operations); gradients of {string.Join(", ", o.SizesMiB)} MiB ({o.Reps} each)");
            for (int rank = 0; rank < o.Workers; rank++)
            {
                var info = LaunchCommand.WorkerProcess();
                foreach (string arg in o.WorkerArguments(address, tokenFile, rank)) info.ArgumentList.Add(arg);
                workers.Add(Process.Start(info) ?? throw new InvalidOperationException("could not start a worker process"));
            }
            var outcome = run.Outcome.WaitAsync(cancellation).GetAwaiter().GetResult();
            foreach (var w in workers)
            {
                if (w.WaitForExit(TimeSpan.FromSeconds(30))) continue;
                w.Kill(entireProcessTree: true);
                w.WaitForExit();
            }
            var failed = workers.Select((w, r) => (w, r)).Where(x => x.w.ExitCode != 0).ToList();
            if (!outcome.Succeeded || failed.Count > 0)
            {
                System.Console.Error.WriteLine($"bench collective: failed: {outcome.Error ?? "a worker exited with an error"}");
                return 1;
            }
            return 0;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            System.Console.Error.WriteLine("bench collective: interrupted");
            return Program.InterruptedExitCode;
        }
        finally
        {
            foreach (var w in workers)
                if (!w.HasExited) w.Kill(entireProcessTree: true);
            app.StopAsync().GetAwaiter().GetResult();
            File.Delete(tokenFile);
        }
    }

    private static int RunWorker(Options o, CancellationToken cancellation)
    {
        var settings = new WorkerSettings
        {
            Coordinator = o.Coordinator ?? throw new UsageException("--role worker needs --coordinator"),
            WorkerId = o.WorkerId ?? $"bench-{Environment.ProcessId}",
            Device = "cpu", Threads = 1,
            Token = RunToken.Resolve(o.TokenFile),
        }.Validate();
        var train = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        var test = Dataset.Load(Dataset.DefaultDirectory(), train: false);
        using var backend = new CpuBackend(1);
        var connection = ClusterConnection.OpenAsync(settings, train, test, backend, NullLogger.Instance, cancellation).GetAwaiter().GetResult();
        try
        {
            List<string> lines;
            try
            {
                lines = Measure(o, connection, backend);
            }
            catch (ClusterException e)
            {
                System.Console.Error.WriteLine($"bench collective: rank {connection.Membership.Rank}: {e.Message}");
                return 1;
            }
            if (connection.Membership.Rank == 0)
            {
                foreach (string line in lines) System.Console.WriteLine(line);
                if (o.Out is not null) File.AppendAllLines(o.Out, lines);
            }
            connection.Collective.CompleteAsync().GetAwaiter().GetResult();
            return 0;
        }
        finally
        {
            connection.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private static List<string> Measure(Options o, ClusterConnection connection, CpuBackend backend)
    {
        var collective = connection.Collective;
        int world = connection.Membership.WorldSize, rank = connection.Membership.Rank;
        if (!ModelFactory.TryMlpWidths(connection.Config.Model, out int[] channels))
            throw new InvalidOperationException($"the coordinator runs {connection.Config.Model}, not a benchmark mlp");
        // The model rendezvous every run has: the coordinator learns the batch-norm layers whose statistics it keeps.
        var config = connection.Config;
        var network = ModelFactory.Create(config.Model, backend, collective, config.Seed, config.Normalization);
        connection.PrepareAsync(network, new Core.Optim.Sgd(backend, network.Parameters, (float)config.Momentum, (float)config.WeightDecay), backend,
            CancellationToken.None).GetAwaiter().GetResult();
        var lines = new List<string>();
        collective.BeginStep(0);

        for (int layer = 0; layer < (o.SkipStats ? 0 : channels.Length); layer++)
        {
            int c = channels[layer], n = 2 * c + 1;
            // A plausible contribution (RunningStatistics' layout): this rank's count, shifted sums, squared sums.
            var template = new double[n];
            template[0] = 8;
            for (int i = 0; i < c; i++)
            {
                template[1 + i] = 0.01 * (i % 7 - 3) + rank;
                template[1 + c + i] = 8 + 0.1 * (i % 5);
            }
            var values = new double[n];
            // Warm-up: rank 0 decides when it is over (W operations and S seconds) and says so
            // in the count it contributes, so every rank leaves the warm-up at the same operation.
            long warmupStart = Stopwatch.GetTimestamp();
            int warmupOps = 0;
            while (true)
            {
                template.CopyTo(values, 0);
                bool done = rank == 0 && warmupOps >= o.Warmup && Stopwatch.GetElapsedTime(warmupStart).TotalSeconds >= o.WarmupSeconds;
                if (done) values[0] += 0.5; // a flag in the count's fraction; the count itself stays whole
                collective.AllReduceSum(values, CollectiveKind.BatchNormStats, layer);
                warmupOps++;
                if (values[0] != Math.Floor(values[0])) break;
            }
            var latencies = new double[o.Ops];
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            for (int i = 0; i < o.Ops; i++)
            {
                template.CopyTo(values, 0);
                long t0 = Stopwatch.GetTimestamp();
                collective.AllReduceSum(values, CollectiveKind.BatchNormStats, layer);
                latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            }
            double cpuPerOp = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMicroseconds / o.Ops;
            if (values[0] != 8.0 * world) throw new InvalidOperationException($"the all-reduced count is {values[0]}, not {8 * world}");
            Array.Sort(latencies);
            lines.Add(JsonSerializer.Serialize(new
            {
                impl = collective.SharedMemoryStatistics ? "bndist-shm" : "bndist", kind = "bn-stats", workers = world, channels = c, values = n, ops = o.Ops, warmup = warmupOps,
                warmup_s = Stopwatch.GetElapsedTime(warmupStart).TotalSeconds - latencies.Sum() / 1e6,
                p50_us = Percentile(latencies, 0.50), p99_us = Percentile(latencies, 0.99), mean_us = latencies.Average(),
                worker_cpu_us = cpuPerOp,
            }));
        }

        foreach (double mib in o.SkipGradients ? [] : o.SizesMiB)
        {
            int count = (int)(mib * (1 << 20) / sizeof(float));
            var grad = backend.Allocate(count);
            backend.Fill(grad, 1f);
            var parameters = new[] { new Parameter("bench", backend.Allocate(count), grad) };
            var check = new float[count];
            // Warm-up, as for the statistics: at least 2 operations and S seconds. Measured at
            // 16 MiB, K = 4: the median of 10 operations after only 2 untimed ones was 77–98 ms,
            // against 52–56 ms over 150. Rank 0 ends the warm-up by contributing 2s instead of 1s,
            // which every rank sees in the sum.
            long warmupStart = Stopwatch.GetTimestamp();
            int warmupOps = 0;
            while (true)
            {
                bool done = rank == 0 && warmupOps >= 2 && Stopwatch.GetElapsedTime(warmupStart).TotalSeconds >= o.WarmupSeconds;
                backend.Fill(grad, done ? 2f : 1f);
                collective.SumGradients(parameters);
                warmupOps++;
                backend.Download(grad, check);
                if (check[0] != world) break;
            }
            var times = new double[o.Reps];
            for (int i = 0; i < o.Reps; i++)
            {
                backend.Fill(grad, 1f);
                long t0 = Stopwatch.GetTimestamp();
                collective.SumGradients(parameters);
                times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            backend.Download(grad, check);
            if (check.Any(v => v != world)) throw new InvalidOperationException($"the all-reduced gradient is not {world} everywhere");
            Array.Sort(times);
            double median = times[o.Reps / 2], bytes = count * (double)sizeof(float), algbw = bytes / median / 1e9;
            lines.Add(JsonSerializer.Serialize(new
            {
                impl = connection.Membership.SharedMemoryGradients ? "bndist-shm" : connection.Membership.GradientRing ? "bndist" : "bndist-hub",
                kind = "gradients", workers = world, mib, bytes = (long)bytes, reps = o.Reps, warmup = warmupOps, median_ms = median * 1e3,
                algbw_gbs = algbw, busbw_gbs = algbw * 2 * (world - 1) / world,
            }));
        }

        // The run's one step: its commit ends the run.
        var metrics = new double[3];
        collective.AllReduceSum(metrics, CollectiveKind.Metrics, -1);
        return lines;
    }

    private static double Percentile(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
}
