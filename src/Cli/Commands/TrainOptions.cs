using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary>The options of a training run, shared by train (and later launch and coordinator).</summary>
public sealed record TrainOptions(
    TrainingConfig Config, string? DataDir, int Threads, string Device,
    string? Init, string? Save, string? SaveInit, string? Resume, string? MetricsOut, bool Quiet)
{
    public const string Help = """
          --model convnet|mlp-paper    network (default convnet)
          --norm bn|gn|none            normalization layers (default bn)
          --data DIR                   directory of the four IDX files (default: the embedded Fashion-MNIST subset)
          --epochs N                   epochs to train (default 4)
          --steps N                    stop after N steps in all (overrides --epochs)
          --batch-size B               GLOBAL batch size (default 128)
          --lr X                       base learning rate (default 0.05)
          --lr-schedule S              constant|step|exp|cosine (default cosine)
          --lr-step N                  decay interval of step/exp in steps (default one epoch)
          --lr-gamma X                 decay factor of step/exp (default 0.1)
          --momentum X                 SGD momentum (default 0.9)
          --weight-decay X             L2 weight decay (default 5e-4)
          --seed N                     seed of initialization and shuffling (default 0)
          --no-shuffle                 visit samples in file order
          --keep-last-batch            train on an epoch's incomplete last batch too (default: drop it)
          --bn-momentum X              running-average factor (default 0.1)
          --bn-mode ema|cumulative     running averages: exponential, or the population average
          --threads N                  CPU threads (default: all cores)
          --device D                   auto|cpu|cuda[:N]|opencl[:N]|ilgpu-cpu (default auto)
          --init FILE                  start from the parameters and buffers of this checkpoint
          --save FILE                  write the final checkpoint here
          --save-init FILE             write the initial checkpoint here before training
          --resume FILE                continue a run from this checkpoint (optimizer state and step too)
          --metrics-out FILE           JSON lines: step, epoch, loss, lr, test accuracy, samples/s
          --no-eval                    skip the test-set evaluations
          --quiet                      no progress bar
        """;

    public static TrainOptions Read(ArgReader a)
    {
        var config = new TrainingConfig
        {
            Model = a.String("model", "convnet"),
            Norm = a.String("norm", "bn"),
            Epochs = a.Int("epochs", 4, min: 1),
            Steps = a.Long("steps", 0, min: 0),
            BatchSize = a.Int("batch-size", 128, min: 1),
            LearningRate = a.Double("lr", 0.05),
            LrSchedule = a.String("lr-schedule", "cosine"),
            LrStepSize = a.Long("lr-step", 0, min: 0),
            LrGamma = a.Double("lr-gamma", 0.1),
            Momentum = a.Double("momentum", 0.9),
            WeightDecay = a.Double("weight-decay", 5e-4),
            Seed = (ulong)a.Long("seed", 0, min: 0),
            Shuffle = !a.Flag("no-shuffle"),
            DropLast = !a.Flag("keep-last-batch"),
            BnMomentum = a.Double("bn-momentum", 0.1),
            BnMode = a.String("bn-mode", "ema"),
            Evaluate = !a.Flag("no-eval"),
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"train: {e.Message}");
        }
        var options = new TrainOptions(config, a.String("data"), a.Int("threads", 0, min: 0), a.String("device", "auto"),
            a.String("init"), a.String("save"), a.String("save-init"), a.String("resume"), a.String("metrics-out"), a.Flag("quiet"));
        if (options.Init is not null && options.Resume is not null)
            throw new UsageException("train: --init and --resume exclude each other (--resume restores the parameters too)");
        return options;
    }
}
