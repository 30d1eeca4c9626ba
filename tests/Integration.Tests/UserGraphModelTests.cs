using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;
using BnDist.Testing;
using Xunit.Abstractions;

namespace BnDist.Integration.Tests;

/// <summary>
/// The README's example: a residual network written with <see cref="ModelSpec"/> by a user,
/// trained on an in-process cluster of three workers with uneven shards, equals one process on
/// the concatenated batch.
/// </summary>
public sealed class UserGraphModelTests(ITestOutputHelper output)
{
    private static readonly Dataset Data = Dataset.Load(Dataset.DefaultDirectory(), train: true);

    // README: "Defining your own network" — keep the two in step.
    private static readonly ModelSpec MyResNet = new("my-resnet", m => m
        .Conv2d(8, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
        .Residual("block1",
            body => body.Conv2d(8, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
                        .Conv2d(8, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
            then: t => t.Relu())
        .Residual("block2",
            body => body.Conv2d(16, 3, stride: 2, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
                        .Conv2d(16, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
            shortcut: s => s.Conv2d(16, 1, stride: 2, bias: false).BatchNorm(),
            then: t => t.Relu())
        .GlobalAvgPool2d().Flatten()
        .Linear(10, name: "fc"));

    [Fact]
    public async Task A_user_defined_residual_network_trains_on_three_workers_as_one_process()
    {
        var config = new TrainingConfig { Model = "my-resnet", BatchSize = 20, Steps = 3, Seed = 4, LearningRate = 0.05, Evaluate = false };
        var builder = MyResNet.Builder([1, 28, 28]);
        await using var cluster = await LocalCluster.StartAsync(config, 3, new LocalClusterOptions { ModelBuilder = builder });
        var result = await cluster.WaitAsync();
        Assert.True(result.Coordinator.Succeeded, result.Coordinator.Error);

        // Shards of 7, 7 and 6 samples against one process on all 20.
        var single = ShardedRun.TrainSingle(config, Data, builder);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(Data, config), builder);
        foreach (var worker in result.Workers)
            Equivalence.AssertSameRun(single, perturbed, new RunResult(new(worker.State), [.. worker.Losses]), output);
        Assert.Contains("block2.downsample.1.running_var", result.Workers[0].State.Keys);
        var running = cluster.Run.RunningStatistics();
        Assert.Equal(result.Workers[0].State["block2.downsample.1.running_mean"], running["block2.downsample.1.running_mean"]);
    }
}
