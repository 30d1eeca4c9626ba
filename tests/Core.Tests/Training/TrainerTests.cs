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
}
