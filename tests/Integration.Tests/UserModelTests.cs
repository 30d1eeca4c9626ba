using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tests.Data;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;
using BnDist.Protos;
using BnDist.Protos.V1;
using BnDist.Testing;
using BnDist.Worker;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using BatchNormSpec = BnDist.Core.Models.BatchNormSpec;
using ModelLayout = BnDist.Core.Models.ModelLayout;
using TensorSpec = BnDist.Core.Models.TensorSpec;

namespace BnDist.Integration.Tests;

/// <summary>
/// A network that <see cref="ModelFactory"/> does not know, trained on a cluster: the
/// coordinator never builds the model. It learns the layout from the workers, keeps the
/// running averages of the batch norms they describe (each with its own momentum), and writes
/// checkpoints of whatever state they have.
/// </summary>
public sealed class UserModelTests(ITestOutputHelper output)
{
    private static readonly Dataset Data = Dataset.Load(Dataset.DefaultDirectory(), train: true);

    /// <summary>
    /// A user's network with nested names and two batch norms of different averaging: conv →
    /// BN2d (momentum 0.3) → ReLU → maxpool → flatten → linear → BN1d (cumulative) → ReLU → linear.
    /// </summary>
    internal static Network TinyNet(TrainingConfig config, IBackend b, ICollective collective)
    {
        var conv = new Conv2d(b, "stem.conv", 1, 6, 3, padding: 1, bias: false);
        var fc1 = new Linear(b, "head.fc1", 6 * 14 * 14, 16, bias: false);
        var fc2 = new Linear(b, "head.fc2", 16, 10);
        conv.ResetParameters(config.Seed);
        fc1.ResetParameters(config.Seed + 1);
        fc2.ResetParameters(config.Seed + 2);
        return new Network("tiny-user-net", "bn", [1, 28, 28], 10,
        [
            conv, new BatchNorm(b, "stem.bn", 6, collective, 0, momentum: 0.3), new Relu(b), new MaxPool2d(b, 2), new Flatten(b),
            fc1, new BatchNorm(b, "head.bn", 16, collective, 1, momentum: null), new Relu(b), fc2,
        ]);
    }

    [Fact]
    public async Task A_model_the_factory_does_not_know_trains_on_three_workers_as_one_process_and_checkpoints()
    {
        Assert.False(ModelFactory.IsKnown("tiny-user-net"));
        using var dir = new TempDirectory();
        var config = new TrainingConfig { Model = "tiny-user-net", BatchSize = 22, Steps = 4, Seed = 7, LearningRate = 0.05, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 3, new LocalClusterOptions
        {
            ModelBuilder = TinyNet,
            CheckpointDirectory = dir.Path,
        });
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);
        Assert.Equal(4, result.Coordinator.CommittedSteps);

        // K workers (shards 8, 7, 7) equal one process on the concatenated batch.
        var single = ShardedRun.TrainSingle(config, Data, TinyNet);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(Data, config), TinyNet);
        foreach (var worker in result.Workers)
            Equivalence.AssertSameRun(single, perturbed, new RunResult(new(worker.State), [.. worker.Losses]), output);

        // The coordinator's running averages are the workers', bit for bit: it used each layer's
        // own momentum (0.3 and cumulative), not the run's --bn-momentum.
        var running = cluster.Run.RunningStatistics();
        Assert.Equal(["head.bn.running_mean", "head.bn.running_var", "stem.bn.running_mean", "stem.bn.running_var"], running.Keys.Order());
        foreach (var (name, values) in running) Assert.Equal(result.Workers[0].State[name], values);

        // The checkpoint holds the user's model under its own names and loads back into it.
        string path = Assert.IsType<string>(result.Coordinator.Checkpoint);
        using var backend = new CpuBackend(1);
        var restored = TinyNet(config, backend, SingleProcessCollective.Instance);
        var info = Checkpoint.Load(path, backend, restored, new Sgd(backend, restored.Parameters, 0.9f, 0f));
        Assert.Equal(("tiny-user-net", 4L), (info.Model, info.Step));
        foreach (var p in restored.Parameters) Assert.Equal(result.Workers[0].State[p.Name], backend.Read(p.Value));
        foreach (var b in restored.Buffers) Assert.Equal(result.Workers[0].State[b.Name], b.Floats ?? [b.Longs![0]]);
    }

    [Fact]
    public async Task A_rank_that_builds_another_model_ends_the_run_naming_it_and_the_difference()
    {
        var config = new TrainingConfig { Model = "mlp:12", BatchSize = 8, Steps = 3, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 1,
            new LocalClusterOptions { ExternalWorkers = 1, OperationTimeout = TimeSpan.FromSeconds(10) });
        using var rank1 = await ExternalRank.JoinAsync(cluster);
        var (client, headers, join) = (rank1.Client, rank1.Headers, rank1.Join);
        using var stream = client.Collective(headers);
        await stream.RequestStream.WriteAsync(new WorkerMessage { Hello = new StreamHello { RunId = join.RunId, Rank = join.Rank } });

        using var backend = new CpuBackend(1);
        var other = ModelFactory.Create("mlp:13", backend, SingleProcessCollective.Instance, 0, new NormalizationOptions());
        var layout = ClusterConnection.LayoutMessage(ModelLayout.Of(other));
        layout.Architecture = "mlp:12"; // the same name, other shapes: caught by the shapes
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.PrepareAsync(new PrepareRequest { RunId = join.RunId, Rank = join.Rank, Model = layout }, headers));
        Assert.Equal(StatusCode.Aborted, refused.StatusCode);

        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.False(outcome.Succeeded);
        Assert.Contains("rank 1 (worker-999) builds another model than rank 0 (worker-000): tensor #0 is fc1.weight: F32 [13,784] instead of fc1.weight: F32 [12,784]",
            outcome.Error);
        Assert.Contains("builds another model", refused.Status.Detail);
        var errors = await cluster.WorkerErrorsAsync(TimeSpan.FromSeconds(20));
        Assert.Contains("rank 1 (worker-999) builds another model", Assert.IsType<ClusterException>(errors[0]).Message);
    }

    [Fact]
    public async Task A_rank_describing_an_unusable_model_ends_the_run_at_once_naming_it_and_the_problem()
    {
        var config = new TrainingConfig { Model = "mlp:12", BatchSize = 8, Steps = 3, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 1,
            new LocalClusterOptions { ExternalWorkers = 1, OperationTimeout = TimeSpan.FromSeconds(10) });
        using var rank1 = await ExternalRank.JoinAsync(cluster);
        using var backend = new CpuBackend(1);
        var layout = ClusterConnection.LayoutMessage(ModelLayout.Of(ModelFactory.Create("mlp:12", backend, SingleProcessCollective.Instance, 0, new NormalizationOptions())));
        layout.Tensors.Remove(layout.Tensors.Single(t => t.Name == "bn1.running_var")); // a batch norm without its variance
        var sent = DateTime.UtcNow;
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await rank1.Client.PrepareAsync(new PrepareRequest { RunId = rank1.Join.RunId, Rank = rank1.Join.Rank, Model = layout }, rank1.Headers));
        Assert.Equal(StatusCode.Aborted, refused.StatusCode);
        const string reason = "rank 1 (worker-999) described an unusable model: batch norm bn1 needs a buffer bn1.running_var: F32 [12]";
        Assert.Equal(reason, refused.Status.Detail);
        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(reason, outcome.Error);
        Assert.True(DateTime.UtcNow - sent < TimeSpan.FromSeconds(8), "refused on arrival, not at the deadline");
    }

    [Fact]
    public async Task An_init_checkpoint_of_another_model_is_refused_naming_the_file_and_both_models()
    {
        using var dir = new TempDirectory();
        string init = System.IO.Path.Combine(dir.Path, "other.safetensors");
        using (var backend = new CpuBackend(1))
        {
            var net = ModelFactory.Create("mlp-paper", backend, SingleProcessCollective.Instance, 0, new NormalizationOptions());
            Checkpoint.Save(init, backend, net, null, 0, null);
        }
        var config = new TrainingConfig { Model = "tiny-user-net", BatchSize = 8, Steps = 2, Evaluate = false };
        await using var cluster = await LocalCluster.StartAsync(config, 2, new LocalClusterOptions { ModelBuilder = TinyNet, Init = init });
        var outcome = await cluster.Run.Outcome.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(outcome.Succeeded);
        Assert.Equal($"{init}: holds a mlp-paper/bn model, this run trains tiny-user-net/bn", outcome.Error);
        var errors = await cluster.WorkerErrorsAsync(TimeSpan.FromSeconds(20));
        Assert.All(errors, e => Assert.Contains("this run trains tiny-user-net/bn", Assert.IsType<ClusterException>(e).Message));
        Assert.Equal(0, cluster.Run.CommittedSteps);
    }

    [Fact]
    public async Task Running_averages_are_never_read_half_updated()
    {
        // Momentum 1 makes step t's statistics exact small integers: with m = 2, Σ(x − k) = 2 and
        // Σ(x − k)² = t + 2, the running mean becomes t and the unbiased variance t. A reader that
        // sees mean, variance and num_batches_tracked of different updates is caught at once.
        const int channels = 4096;
        var layout = new ModelLayout("m", "bn",
        [
            new TensorSpec("bn.running_mean", SafeDType.F32, [channels], false),
            new TensorSpec("bn.running_var", SafeDType.F32, [channels], false),
            new TensorSpec("bn.num_batches_tracked", SafeDType.I64, [], false),
        ], [new BatchNormSpec(0, "bn", channels, 1.0)]);
        var initial = new SafeTensorsFile();
        initial.AddF32("bn.running_mean", [channels], new float[channels]);
        initial.AddF32("bn.running_var", [channels], new float[channels]);
        initial.AddI64("bn.num_batches_tracked", [], [0L]);
        var averages = new Coordinator.RunningAverages(layout, initial);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var writer = Task.Run(() =>
        {
            var reduced = new double[2 * channels + 1];
            reduced[0] = 2;
            for (int t = 1; !stop.IsCancellationRequested; t++)
            {
                reduced.AsSpan(1, channels).Fill(2);
                reduced.AsSpan(1 + channels, channels).Fill(t + 2);
                Assert.Null(averages.Update(0, reduced));
            }
        });
        int checkedSnapshots = 0;
        while (!writer.IsCompleted)
        {
            var file = SafeTensorsFile.Read(new MemoryStream(averages.Image()), "snapshot");
            long t = file.GetI64("bn.num_batches_tracked", []).Single();
            var mean = file.GetF32("bn.running_mean", [channels]);
            var variance = file.GetF32("bn.running_var", [channels]);
            Assert.All(mean, v => Assert.Equal(t, v));
            Assert.All(variance, v => Assert.Equal(t, v));
            checkedSnapshots++;
        }
        await writer;
        Assert.True(checkedSnapshots > 10, $"only {checkedSnapshots} snapshots were taken");
    }
}
