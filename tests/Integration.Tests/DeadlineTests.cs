using System.Diagnostics;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using BnDist.Testing;
using BnDist.Worker;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;

namespace BnDist.Integration.Tests;

/// <summary>Every wait has a deadline: a join, a write the coordinator never takes, a rank that joined but never opened its stream.</summary>
public sealed class DeadlineTests
{
    [Fact]
    public async Task A_join_whose_world_never_completes_fails_at_the_workers_join_timeout_naming_it()
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 1, Evaluate = false };
        // The coordinator waits a minute for a second worker that never comes.
        await using var cluster = await LocalCluster.StartAsync(config, 0,
            new LocalClusterOptions { ExternalWorkers = 2, JoinTimeout = TimeSpan.FromSeconds(60) });
        var lonely = new WorkerRunner(new WorkerSettings
        {
            Coordinator = cluster.Address, WorkerId = "lonely", Token = cluster.Token, Threads = 1, JoinTimeoutSeconds = 2,
        }, NullLogger.Instance);

        var started = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ClusterException>(() => lonely.RunAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"could not join {cluster.Address} within 2 s", e.Message);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(20), $"the join ended after {started.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public async Task A_run_whose_ranks_join_but_never_open_their_streams_fails_at_the_operation_timeout_naming_them()
    {
        var config = new TrainingConfig { Model = "mlp-paper", BatchSize = 8, Steps = 3, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 0,
            new LocalClusterOptions { ExternalWorkers = 2, OperationTimeout = TimeSpan.FromSeconds(2) });
        using var channel = GrpcChannel.ForAddress(cluster.Address);
        var client = new Cluster.ClusterClient(channel);
        var headers = new Metadata { { RunToken.Header, RunToken.Scheme + cluster.Token } };
        var train = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        var test = Dataset.Load(Dataset.DefaultDirectory(), train: false);
        // Two workers join, and die (or hang) before they open their streams: nothing is ever pending.
        var joins = new[] { "ghost-a", "ghost-b" }.Select(id => client.JoinAsync(new JoinRequest
        {
            WorkerId = id,
            Device = "test client",
            ProtocolVersion = WireLimits.ProtocolVersion,
            Dataset = new DatasetFingerprint { TrainCount = train.Count, TestCount = test.Count, TrainLabelsHash = ClusterConnection.LabelsHash(train) },
        }, headers).ResponseAsync).ToList();
        await Task.WhenAll(joins).WaitAsync(TimeSpan.FromSeconds(30));
        var joined = Stopwatch.StartNew();

        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(outcome.Succeeded);
        Assert.Contains("rank 0 (ghost-a), rank 1 (ghost-b) joined but did not open their collective stream within 2 s", outcome.Error);
        Assert.True(joined.Elapsed < TimeSpan.FromSeconds(2 + 5), $"the run failed {joined.Elapsed.TotalSeconds:F1} s after the world formed");
    }

    [Fact]
    public async Task A_write_the_coordinator_never_takes_fails_after_the_deadline_naming_the_coordinator()
    {
        // A coordinator that accepts the stream and never reads it: HTTP/2 flow control stops the writes.
        await using var deaf = await FakeCoordinator.StartAsync(new DeafCoordinator());
        using var channel = GrpcChannel.ForAddress(deaf.Address);
        using var cpu = new CpuBackend(1);
        var collective = new WorkerCollective(new Cluster.ClusterClient(channel), new Metadata(), "run", 0, 2, TimeSpan.FromSeconds(1), cpu,
            CancellationToken.None, deaf.Address);
        const int n = 8 << 20; // 32 MiB of gradients through the coordinator: far more than its windows and the socket buffers
        var gradients = new Parameter("w", cpu.Allocate(n), cpu.Allocate(n));

        var started = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<ClusterException>(() => Task.Run(() => collective.SumGradients([gradients])).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains($"the coordinator at {deaf.Address} took nothing sent to it for 3 s", e.Message);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(1 + 5), $"the write failed after {started.Elapsed.TotalSeconds:F1} s");
        await collective.DisposeAsync();
    }

    private sealed class DeafCoordinator : Cluster.ClusterBase
    {
        public override Task Collective(IAsyncStreamReader<WorkerMessage> requests, IServerStreamWriter<CoordinatorMessage> responses,
            ServerCallContext context) => Task.Delay(Timeout.Infinite, context.CancellationToken);
    }
}
