using BnDist.Coordinator;
using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Training;
using BnDist.Worker;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace BnDist.Testing;

/// <summary>Knobs of an in-process cluster; the defaults suit a unit test.</summary>
public sealed record LocalClusterOptions
{
    /// <summary>Threads of each worker's CPU backend.</summary>
    public int ThreadsPerWorker { get; init; } = 1;

    /// <summary>The device of each rank (default: "cpu" for all).</summary>
    public IReadOnlyList<string>? Devices { get; init; }

    /// <summary>The run token (null: a fresh random one).</summary>
    public string? Token { get; init; }

    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan JoinTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public string? CheckpointDirectory { get; init; }

    public long CheckpointEvery { get; init; }

    /// <summary>A directory of IDX files (null: the embedded subset).</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Start from the parameters and buffers of this checkpoint (as --init).</summary>
    public string? Init { get; init; }

    /// <summary>Continue the run of this checkpoint: parameters, buffers, momentum and step (as --resume).</summary>
    public string? Resume { get; init; }

    /// <summary>
    /// Your own network, built by every worker from the run's config; it must use the collective
    /// it is given for its batch norms, and number them in forward order. The coordinator never
    /// builds it: the workers describe it (names, shapes, batch norms) when the run starts.
    /// </summary>
    public Func<TrainingConfig, IBackend, ICollective, Network>? ModelBuilder { get; init; }

    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>
    /// Ranks the test joins itself (a client of its own, e.g. to send what a broken worker
    /// would): the world is the in-process workers plus these, and <see cref="LocalCluster.StartAsync"/>
    /// returns without waiting for the world to be complete.
    /// </summary>
    public int ExternalWorkers { get; init; }

    /// <summary>"ring" (default: gradients summed between the workers: shared memory on one host, else TCP) or "hub" (through the coordinator).</summary>
    public string GradientPath { get; init; } = "ring";

    /// <summary>
    /// How BN statistics cross (--stats-transport): auto, shm or grpc. Null: auto, or grpc when the
    /// test joins ranks of its own (<see cref="ExternalWorkers"/> speak the flat protocol).
    /// </summary>
    public string? StatsTransport { get; init; }

    /// <summary>
    /// Each in-process worker's host identity (null: all on this machine). Workers with different
    /// identities act as different hosts: shared memory within, the coordinator between.
    /// </summary>
    public IReadOnlyList<string>? HostIds { get; init; }

    /// <summary>Called with the run before any worker starts: subscribe to its progress events here to see every one.</summary>
    public Action<RunCoordinator>? Observe { get; init; }

    /// <summary>Keep the coordinator's host serving after the run has ended (a coordinator process stops), until the cluster is disposed.</summary>
    public bool KeepServingAfterRun { get; init; }
}

/// <summary>What every process of a finished run ended with.</summary>
public sealed record ClusterResult(RunOutcome Coordinator, IReadOnlyList<WorkerOutcome> Workers);

/// <summary>
/// A coordinator and K workers inside the calling process, talking real gRPC over loopback
/// (Kestrel on 127.0.0.1, a free port): the distributed trainer in a unit test.
/// <code>
/// await using var cluster = await LocalCluster.StartAsync(new TrainingConfig { Steps = 5, BatchSize = 22 }, workers: 3);
/// var result = await cluster.WaitAsync();
/// Assert.True(result.Coordinator.Succeeded);
/// </code>
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    private readonly WebApplication _host;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task<WorkerOutcome>> _workers = [];

    private LocalCluster(WebApplication host, string address, RunCoordinator run)
    {
        _host = host;
        Address = address;
        Run = run;
    }

    /// <summary>The coordinator's address, e.g. http://127.0.0.1:40123.</summary>
    public string Address { get; }

    /// <summary>The coordinator's run: its running statistics, checkpoints, progress events.</summary>
    public RunCoordinator Run { get; }

    /// <summary>The run token every call must carry.</summary>
    public string Token => Run.Settings.Token!;

    /// <summary>
    /// Starts the coordinator and <paramref name="workers"/> workers and returns once all have
    /// joined (rank assignment done, training under way).
    /// </summary>
    public static async Task<LocalCluster> StartAsync(TrainingConfig config, int workers, LocalClusterOptions? options = null)
    {
        options ??= new LocalClusterOptions();
        var logs = options.LoggerFactory ?? NullLoggerFactory.Instance;
        var settings = new CoordinatorSettings
        {
            Port = 0,
            Workers = workers + options.ExternalWorkers,
            Training = config,
            Token = options.Token ?? Protos.RunToken.Generate(),
            OperationTimeoutSeconds = options.OperationTimeout.TotalSeconds,
            JoinTimeoutSeconds = options.JoinTimeout.TotalSeconds,
            CheckpointDirectory = options.CheckpointDirectory,
            CheckpointEvery = options.CheckpointEvery,
            GradientPath = options.GradientPath,
            StatsTransport = options.StatsTransport ?? (options.ExternalWorkers > 0 ? "grpc" : "auto"),
            Init = options.Init,
            Resume = options.Resume,
        };
        var host = CoordinatorServices.Build(settings, logging =>
        {
            logging.ClearProviders();
            logging.Services.AddSingleton(logs);
        }, stopWhenRunEnds: !options.KeepServingAfterRun);
        await host.StartAsync();
        string address = host.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var cluster = new LocalCluster(host, address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal), host.Services.GetRequiredService<RunCoordinator>());
        var joined = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cluster.Run.WorldComplete += _ => joined.TrySetResult();
        options.Observe?.Invoke(cluster.Run);
        for (int rank = 0; rank < workers; rank++)
        {
            var ws = new WorkerSettings
            {
                Coordinator = cluster.Address,
                WorkerId = $"worker-{rank:D3}",
                Device = options.Devices?[rank] ?? "cpu",
                Threads = options.ThreadsPerWorker,
                Data = options.DataDirectory,
                Token = settings.Token,
                HostId = options.HostIds?[rank],
            };
            var runner = new WorkerRunner(ws, logs.CreateLogger($"worker-{rank}")) { ModelBuilder = options.ModelBuilder };
            cluster._workers.Add(Task.Run(() => runner.RunAsync(cluster._stop.Token)));
        }
        if (options.ExternalWorkers > 0) return cluster;
        var first = await Task.WhenAny(joined.Task, cluster.Run.Outcome, Task.WhenAll(cluster._workers));
        if (first != joined.Task && !joined.Task.IsCompleted)
        {
            await cluster.DisposeAsync();
            throw new InvalidOperationException($"the cluster did not start: {(await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(1))).Error}");
        }
        return cluster;
    }

    /// <summary>Waits for the run to end; worker failures are reported in the coordinator's outcome and rethrown here.</summary>
    public async Task<ClusterResult> WaitAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromMinutes(5);
        var outcome = await Run.Outcome.WaitAsync(limit);
        var workers = new List<WorkerOutcome>();
        foreach (var w in _workers) workers.Add(await w.WaitAsync(limit));
        return new ClusterResult(outcome, [.. workers.OrderBy(w => w.Rank)]);
    }

    /// <summary>Waits for every worker to end, whatever the result: each one's exception or outcome.</summary>
    public async Task<IReadOnlyList<Exception?>> WorkerErrorsAsync(TimeSpan timeout)
    {
        try { await Task.WhenAll(_workers).WaitAsync(timeout); } catch (Exception) { /* inspected below */ }
        return [.. _workers.Select(w => w.IsFaulted ? w.Exception!.InnerException : w.IsCompleted ? null : new TimeoutException("still running"))];
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        try { await Task.WhenAll(_workers).WaitAsync(TimeSpan.FromSeconds(10)); } catch (Exception) { /* reported by WaitAsync */ }
        using (var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await _host.StopAsync(stopping.Token);
        await _host.DisposeAsync();
        _stop.Dispose();
    }
}
