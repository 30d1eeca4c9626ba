using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Training;

public sealed class TrainerTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Training_the_paper_mlp_on_real_data_lowers_the_loss_and_beats_chance_on_the_test_set()
    {
        var dir = Dataset.DefaultDirectory();
        var train = Dataset.Load(dir, train: true);
        var test = Dataset.Load(dir, train: false);
        var config = new TrainingConfig { Model = "mlp-paper", Steps = 60, BatchSize = 64, LearningRate = 0.1, LrSchedule = "constant" };
        var net = ModelFactory.Create(config.Model, _backend, SingleProcessCollective.Instance, 0, config.Normalization);
        var sgd = new Sgd(_backend, net.Parameters, 0.9f, 0f);
        var trainer = new Trainer(config, _backend, net, sgd, train, test, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        var losses = new List<double>();
        trainer.StepCompleted += r => losses.Add(r.Result.Loss);
        var result = trainer.Run();
        Assert.Equal(60, losses.Count);
        Assert.InRange(losses.Take(5).Average(), 2.0, 2.6); // ≈ ln 10 at the start
        Assert.True(losses.TakeLast(10).Average() < 1.2, $"loss after 60 steps {losses.TakeLast(10).Average()}");
        Assert.True(result.TestAccuracy > 0.6, $"test accuracy {result.TestAccuracy}");
    }

    [Fact]
    public void The_same_seed_gives_bit_identical_runs()
    {
        double[] Run()
        {
            var data = Checkpoints.CheckpointTests.SyntheticData(48);
            var config = new TrainingConfig { Model = "mlp-paper", Steps = 4, BatchSize = 16, Seed = 3 };
            var net = ModelFactory.Create(config.Model, _backend, SingleProcessCollective.Instance, 3, config.Normalization);
            var trainer = new Trainer(config, _backend, net, new Sgd(_backend, net.Parameters, 0.9f, 5e-4f), data, null,
                SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
            var losses = new List<double>();
            trainer.StepCompleted += r => losses.Add(r.Result.Loss);
            trainer.Run();
            return [.. losses];
        }
        Assert.Equal(Run(), Run());
    }
    private (Trainer Trainer, List<int> Batches) MlpTrainer(TrainingConfig config, int samples)
    {
        var data = Checkpoints.CheckpointTests.SyntheticData(samples);
        var net = ModelFactory.Create(config.Model, _backend, SingleProcessCollective.Instance, 0, config.Normalization);
        var trainer = new Trainer(config, _backend, net, new Sgd(_backend, net.Parameters, 0.9f, 0f), data, null,
            SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        var batches = new List<int>();
        trainer.StepCompleted += r => batches.Add(r.Result.GlobalBatch);
        return (trainer, batches);
    }

    [Fact]
    public void An_incomplete_last_batch_is_dropped_by_default_so_a_batch_norm_mlp_never_trains_on_one_sample()
    {
        // 19 = 2·9 + 1: kept, the last batch would hold one sample and BatchNorm1d would see m = 1.
        var (trainer, batches) = MlpTrainer(new TrainingConfig { Model = "mlp-paper", Epochs = 2, BatchSize = 9 }, samples: 19);
        Assert.Equal(2, trainer.Sampler.BatchesPerEpoch);
        trainer.Run();
        Assert.Equal([9, 9, 9, 9], batches);
    }

    [Fact]
    public void Keeping_a_last_batch_that_gives_batch_norm_one_value_per_channel_fails_before_the_first_step()
    {
        var (trainer, batches) = MlpTrainer(new TrainingConfig { Model = "mlp-paper", Epochs = 1, BatchSize = 9, DropLast = false }, samples: 19);
        var e = Assert.Throws<ArgumentException>(() => trainer.Run());
        Assert.Empty(batches);
        Assert.Contains("--keep-last-batch: the last batch of each epoch holds 1 of 9 samples (19 mod 9)", e.Message);
        Assert.Contains("would normalize 1 value per channel", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Keeping_the_last_batch_trains_on_it_when_batch_norm_gets_at_least_two_values_or_the_run_never_reaches_it()
    {
        var (keep, batches) = MlpTrainer(new TrainingConfig { Model = "mlp-paper", Epochs = 1, BatchSize = 9, DropLast = false }, samples: 20);
        keep.Run();
        Assert.Equal([9, 9, 2], batches);
        // 19 samples: the short batch of one is step 2, which a 2-step run does not take.
        var (shortRun, shortBatches) = MlpTrainer(new TrainingConfig { Model = "mlp-paper", Steps = 2, BatchSize = 9, DropLast = false }, samples: 19);
        shortRun.Run();
        Assert.Equal([9, 9], shortBatches);
    }

    [Fact]
    public void A_convolutional_batch_norm_trains_on_a_last_batch_of_one_sample_but_a_batch_norm_1d_after_it_does_not()
    {
        // BatchNorm2d sees H·W values per channel per sample; the convnet's BatchNorm1d (bn3) sees one.
        var config = new TrainingConfig { Model = "convnet", Epochs = 1, BatchSize = 9, DropLast = false };
        var net = ModelFactory.Create(config.Model, _backend, SingleProcessCollective.Instance, 0, config.Normalization);
        string? problem = Trainer.BatchNormProblem(config, net, trainCount: 19, worldSize: 1, startStep: 0);
        Assert.NotNull(problem);
        string bn1d = net.BatchNorms.Last().Name;
        Assert.Contains($"batch-norm layer {bn1d} would normalize 1 value per channel", problem);
        Assert.Null(Trainer.BatchNormProblem(config with { DropLast = true }, net, 19, 1, 0));
    }

    [Fact]
    public void Unsynchronized_batch_norm_is_refused_when_a_rank_shard_gives_it_one_value_per_channel()
    {
        var config = new TrainingConfig { Model = "mlp-paper", Steps = 4, BatchSize = 9, SyncBatchNorm = false };
        var net = ModelFactory.Create(config.Model, _backend, SingleProcessCollective.Instance, 0, config.Normalization);
        // 9 over 5 ranks: shards [2, 2, 2, 2, 1].
        Assert.Contains("the smallest shard: 1", Trainer.BatchNormProblem(config, net, 100, worldSize: 5, startStep: 0));
        Assert.Null(Trainer.BatchNormProblem(config, net, 100, worldSize: 4, startStep: 0));
        Assert.Null(Trainer.BatchNormProblem(config with { SyncBatchNorm = true }, net, 100, worldSize: 5, startStep: 0));
    }

    [Theory]
    [InlineData(10000, 9, true, 1111)]
    [InlineData(10000, 9, false, 1112)]
    [InlineData(10000, 100, true, 100)]
    [InlineData(10000, 100, false, 100)]
    [InlineData(5, 9, true, 0)]
    [InlineData(5, 9, false, 1)]
    public void Batches_per_epoch_round_down_when_dropping_the_last_batch_and_up_when_keeping_it(int count, int batch, bool dropLast, int expected)
    {
        var config = new TrainingConfig { BatchSize = batch, DropLast = dropLast };
        Assert.Equal(expected, config.BatchesPerEpoch(count));
        if (expected > 0) Assert.Equal(expected, new DistributedSampler(count, batch, 1, 0, true, 0, dropLast).BatchesPerEpoch);
    }
}
