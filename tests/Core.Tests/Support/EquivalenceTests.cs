using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Training;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Support;

/// <summary>The oracle of "the same run" itself: its perturbation changes only the order of sums, and it fails a real mistake.</summary>
public sealed class EquivalenceTests(ITestOutputHelper output)
{
    [Fact]
    public void Reordering_keeps_every_global_batch_of_the_trainer_and_reverses_its_samples()
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(30);
        var config = new TrainingConfig { Model = "convnet", BatchSize = 7, Steps = 4, Seed = 5 };
        var reordered = Equivalence.SumOrderPerturbed(data, config);
        var sampler = config.Sampler(data.Count, worldSize: 1, rank: 0);
        int size = data.Channels * data.Rows * data.Cols;
        for (int b = 0; b < 4; b++)
        {
            var batch = sampler.GlobalBatch(0, b).ToArray();
            for (int j = 0; j < batch.Length; j++)
            {
                int at = batch[j], from = batch[^(j + 1)];
                Assert.Equal(data.Labels[from], reordered.Labels[at]);
                Assert.True(data.Images.Slice(from * size, size).SequenceEqual(reordered.Images.Slice(at * size, size)), $"batch {b}, sample {j}");
            }
        }
        Assert.False(data.Images.SequenceEqual(reordered.Images)); // batches of 7 distinct images: something moved
    }

    [Fact]
    public void Reordering_refuses_a_run_past_its_first_epoch()
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(20);
        var e = Assert.Throws<ArgumentException>(() => Equivalence.SumOrderPerturbed(data, new TrainingConfig { BatchSize = 5, Steps = 5 }));
        Assert.Contains("more than one epoch", e.Message);
    }

    /// <summary>Ranks that sum their gradients but normalize with their own shard's statistics: the mistake SyncBN exists to avoid.</summary>
    [Fact]
    public void The_oracle_fails_ranks_whose_batch_norm_is_not_synchronized()
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(3 * 10);
        var config = new TrainingConfig { Model = "resnet20", BatchSize = 10, Steps = 3, Seed = 13, LearningRate = 0.05, Momentum = 0.9 };
        var single = ShardedRun.TrainSingle(config, data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(data, config));
        var local = ShardedRun.Train(config, data, 3,
            (c, backend, _) => ModelFactory.Create(c.Model, backend, SingleProcessCollective.Instance, c.Seed, c.Normalization));
        var (noise, _) = Equivalence.Distance(single, perturbed);
        var (distance, at) = Equivalence.Distance(single, local);
        output.WriteLine($"rounding noise {noise:E2}; unsynchronized BN {distance:E2} ({at})");
        Assert.Throws<Xunit.Sdk.TrueException>(() => Equivalence.AssertSameRun(single, perturbed, local));
    }
}
