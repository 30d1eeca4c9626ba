using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tests.Data;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Training;

/// <summary>
/// Training on data of another shape (3×8×8, 5 classes, from safetensors) with augmentation: K
/// ranks train what one process trains, because each sample's crop and flip depend on (seed,
/// epoch, sample index) and not on the rank that holds it.
/// </summary>
public sealed class AugmentedTrainingTests(ITestOutputHelper output)
{
    private const int Channels = 3, Side = 8, Classes = 5;

    /// <summary>conv (3→6) → BN2d → ReLU → maxpool 2 → flatten → linear (96→5).</summary>
    private static Network ColorNet(TrainingConfig config, IBackend b, ICollective collective)
    {
        var conv = new Conv2d(b, "conv1", Channels, 6, 3, padding: 1, bias: false);
        var fc = new Linear(b, "fc1", 6 * (Side / 2) * (Side / 2), Classes);
        conv.ResetParameters(config.Seed);
        fc.ResetParameters(config.Seed + 1);
        return new Network("color-net", "bn", [Channels, Side, Side], Classes,
            [conv, new BatchNorm(b, "bn1", 6, collective, 0), new Relu(b), new MaxPool2d(b, 2), new Flatten(b), fc]);
    }

    private static Dataset ColorData()
    {
        using var dir = DataFiles.Directory(train: 44, test: 4, Channels, Side, Side, Classes);
        return DataSets.Load(dir.Path).Train;
    }

    [Fact]
    public void Three_ranks_with_crop_and_flip_train_what_one_process_trains_over_several_epochs()
    {
        var data = ColorData();
        Assert.Equal([Channels, Side, Side], data.SampleShape);
        // 44 samples, batches of 22: 2 steps per epoch, so 6 steps visit epochs 0, 1 and 2; shards 8, 7, 7.
        var config = new TrainingConfig
        {
            Model = "color-net", BatchSize = 22, Steps = 6, Seed = 9, LearningRate = 0.05, Evaluate = false, Augment = "crop:2,flip",
        };
        var single = ShardedRun.TrainSingle(config, data, ColorNet);
        var perturbed = ShardedRun.TrainSingle(config, Equivalence.RoundingPerturbed(data), ColorNet);
        var sharded = ShardedRun.Train(config, data, 3, ColorNet);
        Equivalence.AssertSameRun(single, perturbed, sharded, output);

        // And the augmentation is there: without it the run is another.
        var plain = ShardedRun.TrainSingle(config with { Augment = "" }, data, ColorNet);
        var (distance, at) = Equivalence.Distance(single, plain);
        output.WriteLine($"without augmentation: {distance:E2} ({at})");
        Assert.True(distance > 1e-2, $"augmentation changed the run by only {distance:E2}");
    }

    [Fact]
    public void A_model_that_does_not_take_the_data_is_refused_before_training()
    {
        using var backend = new CpuBackend(1);
        var config = new TrainingConfig { Model = "convnet", BatchSize = 4, Steps = 1 };
        var net = ModelFactory.Create("convnet", backend, SingleProcessCollective.Instance, 0, config.Normalization);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(config, backend, net, new Sgd(backend, net.Parameters, 0.9f, 0f),
            ColorData(), null, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance));
        Assert.Contains("has samples of 3×8×8 in 5 classes, but the model convnet takes 1×28×28 and has 10 outputs", e.Message);
    }
}
