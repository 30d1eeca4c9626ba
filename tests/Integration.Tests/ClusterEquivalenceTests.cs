using BnDist.Coordinator;
using BnDist.Core.Data;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;
using BnDist.Testing;
using Xunit.Abstractions;

namespace BnDist.Integration.Tests;

/// <summary>
/// The promise over real gRPC: a coordinator and K workers in this process compute what one
/// process computes on the concatenated batch — parameters, running statistics and losses.
/// </summary>
public sealed class ClusterEquivalenceTests(ITestOutputHelper output)
{
    private static readonly Dataset Data = Dataset.Load(Dataset.DefaultDirectory(), train: true);

    /// <summary>
    /// On every statistics transport (--stats-transport): "shm", the ranks of this one host summing
    /// in shared memory (what auto picks here); "grpc", every rank through the coordinator; and
    /// "two-hosts", the workers split alternately between two host identities (ranks 0, 2, … and
    /// 1, 3, …: hosts that are not contiguous in rank), shared memory within each and the two
    /// leaders through the coordinator.
    /// </summary>
    [Theory]
    [InlineData(1, 22, "ring", "shm")]
    [InlineData(2, 22, "ring", "shm")]
    [InlineData(3, 22, "ring", "shm")]
    [InlineData(4, 22, "ring", "shm")]
    [InlineData(3, 3, "ring", "shm")]   // one sample per worker
    [InlineData(2, 4, "ring", "shm")]   // two samples per worker
    [InlineData(4, 3, "ring", "shm")]   // a global batch smaller than K: rank 3's shards are empty
    [InlineData(3, 22, "hub", "shm")]   // gradients through the coordinator instead of the ring
    [InlineData(4, 3, "hub", "shm")]
    [InlineData(3, 22, "ring", "grpc")]
    [InlineData(4, 3, "ring", "grpc")]
    [InlineData(4, 22, "ring", "two-hosts")]
    [InlineData(3, 22, "ring", "two-hosts")] // a host of one rank: its own leader
    [InlineData(4, 3, "hub", "two-hosts")]
    public async Task K_workers_equal_one_process_on_the_concatenated_batch_on_every_stats_transport(int k, int batch, string gradientPath,
        string stats)
    {
        var config = new TrainingConfig { Model = "convnet", BatchSize = batch, Steps = 5, Seed = 5, LearningRate = 0.05, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, k, new LocalClusterOptions
        {
            GradientPath = gradientPath,
            StatsTransport = stats == "grpc" ? "grpc" : "shm",
            HostIds = stats == "two-hosts" ? [.. Enumerable.Range(0, k).Select(r => r % 2 == 0 ? "host-a" : "host-b")] : null,
        });
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);
        Assert.Equal(5, result.Coordinator.CommittedSteps);
        Assert.Equal(k == 1 || stats == "grpc" ? StatsMode.Flat : stats == "shm" ? StatsMode.SingleHost : StatsMode.Hierarchical,
            cluster.Run.StatisticsMode);

        var single = ShardedRun.TrainSingle(config, Data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(Data, config));
        foreach (var worker in result.Workers)
            Equivalence.AssertSameRun(single, perturbed, new RunResult(new(worker.State), [.. worker.Losses]), output);

        // The coordinator's running statistics are the workers' (bit for bit: same code, same sums).
        var running = cluster.Run.RunningStatistics();
        Assert.Equal(6, running.Count); // bn1, bn2 and bn3: running_mean and running_var each
        foreach (var (name, values) in running)
            Assert.Equal(result.Workers[0].State[name], values);
    }

    /// <summary>
    /// Shared memory sums in the coordinator's order: BN statistics in rank order from zero, and
    /// gradients in rank order from rank 0's values. So the same K ranks end bit-identical
    /// (parameters, buffers, losses) whether everything goes through the coordinator
    /// (--stats-transport grpc, --gradient-path hub) or through the host's shared memory.
    /// </summary>
    [Fact]
    public async Task Shared_memory_sums_are_bit_identical_to_the_coordinators()
    {
        var config = new TrainingConfig { Model = "convnet", BatchSize = 22, Steps = 4, Seed = 9, LearningRate = 0.05, Evaluate = false };
        var runs = new List<ClusterResult>();
        foreach (var (stats, gradients) in new[] { ("grpc", "hub"), ("shm", "ring") })
        {
            await using var cluster = await LocalCluster.StartAsync(config, 3, new LocalClusterOptions { StatsTransport = stats, GradientPath = gradients });
            runs.Add(await cluster.WaitAsync());
            Assert.True(runs[^1].Coordinator.Succeeded, runs[^1].Coordinator.Error);
        }
        for (int r = 0; r < 3; r++)
        {
            Assert.Equal(runs[0].Workers[r].Losses, runs[1].Workers[r].Losses);
            foreach (var (name, values) in runs[0].Workers[r].State) Assert.Equal(values, runs[1].Workers[r].State[name]);
        }
    }

    /// <summary>
    /// The graphs of issue 12 over real gRPC and the TCP ring: residual sums (resnet20) and
    /// Inception concatenations (bn-inception), uneven shards 4 + 3 + 3, against one process. One
    /// step each, as when the oracle perturbed pixels: on these 10 real images that flipped ReLU
    /// kinks from step 2 on (resnet20's noise 5.5e-4 after one step, 2.9e-2 after two);
    /// InProcessGroupTests holds resnet20 to three steps.
    /// </summary>
    [Theory]
    [InlineData("resnet20", 1)]
    [InlineData("bn-inception", 1)]
    public async Task Three_workers_over_grpc_equal_one_process_on_residual_and_inception_networks(string model, int steps)
    {
        var config = new TrainingConfig { Model = model, BatchSize = 10, Steps = steps, Seed = 8, LearningRate = 0.05, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 3);
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);
        Assert.Equal(steps, result.Coordinator.CommittedSteps);

        var single = ShardedRun.TrainSingle(config, Data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(Data, config));
        foreach (var worker in result.Workers)
            Equivalence.AssertSameRun(single, perturbed, new RunResult(new(worker.State), [.. worker.Losses]), output);
        var running = cluster.Run.RunningStatistics();
        foreach (var (name, values) in running)
            Assert.Equal(result.Workers[0].State[name], values);
    }

    /// <summary>
    /// Mixed devices in one cluster: the ILGPU kernels on one rank, the CPU backend on the
    /// other, synchronized through the same collectives, equal one CPU process on the whole
    /// batch (same self-calibrated tolerance: the backends differ only in summation order).
    /// On CUDA where a device is present; ILGPU's CPU simulator always.
    /// </summary>
    [SkippableTheory]
    [InlineData("ilgpu-cpu")]
    [InlineData("cuda")]
    public async Task A_cpu_worker_and_an_ilgpu_worker_equal_one_process(string device)
    {
        if (device == "cuda")
            Skip.If(Core.Backends.Ilgpu.IlgpuDevices.Count("cuda") == 0, "no CUDA device here: the mixed cpu + cuda cluster is not run");
        var config = new TrainingConfig { Model = "convnet", BatchSize = 10, Steps = 3, Seed = 3, LearningRate = 0.05, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 2, new LocalClusterOptions { Devices = ["cpu", device] });
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);

        var single = ShardedRun.TrainSingle(config, Data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(Data, config));
        foreach (var worker in result.Workers)
            Equivalence.AssertSameRun(single, perturbed, new RunResult(new(worker.State), [.. worker.Losses]), output);
    }

    [Fact]
    public async Task One_worker_over_grpc_is_bit_identical_to_one_process()
    {
        var config = new TrainingConfig { Model = "convnet", BatchSize = 16, Steps = 3, Seed = 2, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 1);
        var worker = (await cluster.WaitAsync()).Workers[0];
        var single = ShardedRun.TrainSingle(config, Data);
        Assert.Equal(single.Losses, worker.Losses);
        foreach (var (name, values) in single.State) Assert.Equal(values, worker.State[name]);
    }

    [Fact]
    public async Task Local_batch_norm_differs_from_synchronized_batch_norm()
    {
        var config = new TrainingConfig { Model = "convnet", BatchSize = 8, Steps = 3, Seed = 5, SyncBatchNorm = false, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 2);
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);
        var single = ShardedRun.TrainSingle(config with { SyncBatchNorm = true }, Data);
        var (distance, where) = Equivalence.Distance(single, new RunResult(new(result.Workers[0].State), [.. result.Workers[0].Losses]));
        output.WriteLine($"DDP-style local BN differs from the global batch by {distance:E2} ({where})");
        Assert.True(distance > 1e-2, "local batch norm should not reproduce the global statistics");
    }
}
