using System.Globalization;
using System.Text.Json;
using BnDist.Cli.Console;
using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary><c>bndist train</c>: single-process training with progress, metrics and checkpoints.</summary>
public static class TrainCommand
{
    public static int Run(ArgReader args, CancellationToken cancellation)
    {
        if (args.Help)
        {
            System.Console.WriteLine("usage: bndist train [options]\n\n" + TrainOptions.Help);
            return 0;
        }
        var o = TrainOptions.Read(args);
        args.Finish();

        string dataDir = o.DataDir ?? Dataset.DefaultDirectory();
        var train = Dataset.Load(dataDir, train: true);
        var test = Dataset.Load(dataDir, train: false);
        using var backend = Devices.Open("train", o.Device, o.Threads);
        var config = o.Config;
        long startStep = 0;
        if (o.Resume is not null)
        {
            var info = Checkpoint.ReadInfo(o.Resume);
            config = info.Config ?? config;
            startStep = info.Step;
        }
        var network = ModelFactory.Create(config.Model, backend, SingleProcessCollective.Instance, config.Seed, config.Normalization);
        var optimizer = new Sgd(backend, network.Parameters, (float)config.Momentum, (float)config.WeightDecay);
        if (o.Init is not null) Checkpoint.Load(o.Init, backend, network, optimizer: null);
        if (o.Resume is not null) Checkpoint.Load(o.Resume, backend, network, optimizer);
        if (o.SaveInit is not null) Checkpoint.Save(o.SaveInit, backend, network, optimizer, startStep, config);

        Trainer trainer;
        try
        {
            trainer = new Trainer(config, backend, network, optimizer, train, test, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance)
            {
                StartStep = startStep,
            };
            trainer.CheckBatchNormSizes();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"train: {e.Message}");
        }
        System.Console.WriteLine(
            $"bndist train: {config.Model}/{config.Norm}, {network.ParameterCount:N0} parameters, device {backend.Name}" +
            (backend is Core.Backends.Cpu.CpuBackend cpu ? $" ({cpu.Threads} threads)" : ""));
        System.Console.WriteLine(
            $"data {dataDir}: {train.Count} train, {test.Count} test; global batch {config.BatchSize}, 1 worker " +
            $"(shards [{config.BatchSize}]); {trainer.Sampler.BatchesPerEpoch} steps/epoch, {trainer.TotalSteps} steps, " +
            $"lr {config.LearningRate} {config.LrSchedule}" + (startStep > 0 ? $"; resuming at step {startStep}" : ""));

        using var metrics = o.MetricsOut is null ? null : new StreamWriter(o.MetricsOut, append: false);
        var bar = new ProgressBar(!o.Quiet);
        var throughput = new ExponentialAverage(0.1);
        trainer.StepCompleted += r =>
        {
            double sps = throughput.Add(r.SamplesPerSecond);
            bar.Update(r.Step + 1, r.TotalSteps,
                string.Create(CultureInfo.InvariantCulture, $"epoch {r.Epoch + 1} loss {r.Result.Loss:F4} lr {r.LearningRate:G4} {sps:F0} samples/s"));
            metrics?.WriteLine(JsonSerializer.Serialize(new
            {
                step = r.Step + 1, epoch = r.Epoch + 1, loss = r.Result.Loss, lr = r.LearningRate, samples_per_s = r.SamplesPerSecond,
            }));
        };
        trainer.EpochCompleted += e =>
        {
            bar.Line(string.Create(CultureInfo.InvariantCulture, $"epoch {e.Epoch + 1}: test loss {e.TestLoss:F4}, test accuracy {e.TestAccuracy:F4}"));
            metrics?.WriteLine(JsonSerializer.Serialize(new { step = e.Step, epoch = e.Epoch + 1, test_loss = e.TestLoss, test_accuracy = e.TestAccuracy }));
            metrics?.Flush();
        };

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = trainer.Run(cancellation);
        clock.Stop();
        if (o.Save is not null) Checkpoint.Save(o.Save, backend, network, optimizer, trainer.StepsRun, config);
        if (cancellation.IsCancellationRequested)
        {
            System.Console.Error.WriteLine($"bndist train: interrupted after step {trainer.StepsRun}");
            return Program.InterruptedExitCode;
        }
        string saved = o.Save is null ? "" : $"; saved {o.Save}";
        System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {trainer.TotalSteps - startStep} steps in {clock.Elapsed.TotalSeconds:F1} s; test accuracy {result.TestAccuracy:F4}, test loss {result.TestLoss:F4}{saved}"));
        return 0;
    }
}

/// <summary>A smoothed rate for display.</summary>
internal sealed class ExponentialAverage(double weight)
{
    private double _value = double.NaN;

    public double Add(double x) => _value = double.IsNaN(_value) ? x : (1 - weight) * _value + weight * x;
}
