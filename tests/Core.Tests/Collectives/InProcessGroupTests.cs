using Xunit.Abstractions;
using BnDist.Core.Collectives;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Collectives;

/// <summary>
/// The promise in-process: K ranks with synchronized BN compute what one process computes on
/// the concatenated batch. The gRPC cluster is held to the same oracle in the integration tests.
/// </summary>
public sealed class InProcessGroupTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1, 22)]
    [InlineData(2, 22)]
    [InlineData(3, 22)]
    [InlineData(4, 22)]
    [InlineData(4, 4)]   // one sample per rank
    [InlineData(3, 6)]   // two samples per rank
    [InlineData(4, 3)]   // global batch smaller than K: rank 3 has an empty shard
    public void K_ranks_equal_one_process_on_the_concatenated_batch(int k, int batch)
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(5 * batch);
        var config = new TrainingConfig { Model = "convnet", BatchSize = batch, Steps = 5, Seed = 11, LearningRate = 0.05, LrSchedule = "cosine" };
        var single = ShardedRun.TrainSingle(config, data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(data, config));
        var sharded = ShardedRun.Train(config, data, k);
        Equivalence.AssertSameRun(single, perturbed, sharded, output);
    }

    /// <summary>
    /// The same promise on graphs: residual sums and Inception concatenations, uneven and empty
    /// shards. bn-inception is held to one step: its weights after two steps move by up to 7e-2
    /// (relative) when one input pixel in 2, 5 or 7 changes by one ulp, because a value that
    /// rounds to the other side of a ReLU or max-pooling kink routes a gradient elsewhere; a K-rank
    /// run's rounding flips such kinks like any perturbation (it lands on exactly the difference
    /// the "every 7th pixel" perturbation gives). No rounding-level oracle holds past the first
    /// step there, while in the first step every statistic, gradient and running average of the
    /// graph is compared. resnet20's K-rank run stays at rounding level (3e-6) for three steps at a
    /// global batch of 10, and so does the oracle's reordered batch (2e-6): its tolerance is the
    /// floor, 1e-4 (it was 0.17 while the oracle perturbed pixels, which flipped kinks the K-rank
    /// run did not). At a global batch of 3 the K-rank run itself flips in the third step, so it is
    /// held to two. In its third step conv1.weight[12] lands on one of two
    /// values, 8.40e-4 or 8.56e-4, whichever side of a kink the roundings fall on: one-ulp
    /// perturbations of every 2nd, 5th, 7th, 11th, 31st, 97th or 101st pixel move it from one to
    /// the other on the AVX-512 path (every 3rd, 13th and 211th do not), and the scalar path's
    /// single process starts on the other side.
    /// </summary>
    [Theory]
    [InlineData("resnet20", 3, 10, 3)]      // shards 4, 3, 3
    [InlineData("resnet20", 4, 3, 2)]       // rank 3 has an empty shard
    [InlineData("bn-inception", 3, 7, 1)]   // shards 3, 2, 2
    [InlineData("bn-inception", 4, 3, 1)]   // rank 3 has an empty shard
    public void K_ranks_equal_one_process_on_residual_and_inception_networks(string model, int k, int batch, int steps)
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(3 * batch);
        var config = new TrainingConfig { Model = model, BatchSize = batch, Steps = steps, Seed = 13, LearningRate = 0.05, Momentum = 0.9 };
        var single = ShardedRun.TrainSingle(config, data);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.SumOrderPerturbed(data, config));
        var sharded = ShardedRun.Train(config, data, k);
        Equivalence.AssertSameRun(single, perturbed, sharded, output);
    }

    [Fact]
    public void Ranks_calling_different_operations_fail_on_every_rank_with_the_mismatch_named()
    {
        var group = new InProcessGroup(2, TimeSpan.FromSeconds(5));
        var errors = new string?[2];
        var t = new Thread(() => errors[1] = Catch(() => group.Members[1].AllReduceSum(new double[3], CollectiveKind.BatchNormStats, 1)));
        t.Start();
        errors[0] = Catch(() => group.Members[0].AllReduceSum(new double[3], CollectiveKind.BatchNormStats, 0));
        t.Join();
        Assert.All(errors, e => Assert.Contains("rank 1 sent BatchNormStats layer 1", e));
    }

    [Fact]
    public void A_rank_that_never_arrives_is_named_when_the_deadline_passes()
    {
        var group = new InProcessGroup(3, TimeSpan.FromMilliseconds(200));
        string? error = Catch(() => group.Members[0].AllReduceSum(new double[1], CollectiveKind.Metrics, -1));
        Assert.Contains("rank(s) 1, 2 did not contribute", error);
    }

    private static string? Catch(Action a)
    {
        try { a(); return null; }
        catch (InvalidOperationException e) { return e.Message; }
    }
}
