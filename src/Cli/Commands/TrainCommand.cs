using System.CommandLine;
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
    /// <summary>The help of --data, for every command that reads data.</summary>
    internal const string DataHelp = "the four IDX files, or train.safetensors and test.safetensors (docs/data.md); " +
                                     "default: the embedded Fashion-MNIST subset";

    public static Command Create(CancellationToken cancellation)
    {
        var run = new RunOptions(cluster: false);
        var files = new RunFileOptions();
        var data = Opt.InputDirectory("--data", DataHelp);
        var threads = Opt.Int("--threads", "CPU threads (0: all cores)", 0, min: 0);
        var device = Opt.String("--device", "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu", "auto", "D");
        var command = new Command("train", "train in this process");
        run.AddTo(command);
        foreach (var o in new Option[] { data, threads, device }) command.Options.Add(o);
        files.AddTo(command);
        command.SetAction(r => Run(r, run, files, r.GetValue(data), r.GetValue(threads), r.GetValue(device)!, cancellation));
        return command;
    }

    private static int Run(ParseResult parse, RunOptions run, RunFileOptions files, string? dataOption, int threads, string device,
        CancellationToken cancellation)
    {
        string? resume = parse.GetValue(files.Resume), init = parse.GetValue(files.Init), save = parse.GetValue(files.Save);
        string? saveInit = parse.GetValue(files.SaveInit), metricsOut = parse.GetValue(files.MetricsOut);
        var config = run.Resolve(parse, new TrainingConfig(), resume, parse.GetValue(files.OverrideConfig),
            line => System.Console.WriteLine($"bndist train: {line}"), out long startStep);

        string dataDir = dataOption ?? Dataset.DefaultDirectory();  // for the header
        var data = Opt.LoadData(dataOption, config.Normalize);
        var (train, test) = (data.Train, data.Test);
        using var backend = Devices.Open(device, threads);
        var network = ModelFactory.Create(config.Model, backend, SingleProcessCollective.Instance, config.Seed, config.Normalization,
            train.SampleShape, train.Classes);
        var optimizer = new Sgd(backend, network.Parameters, (float)config.Momentum, (float)config.WeightDecay);
        if (init is not null) Checkpoint.Load(init, backend, network, optimizer: null);
        if (resume is not null) Checkpoint.Load(resume, backend, network, optimizer);

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
            throw new UsageException(e.Message);
        }
        if (trainer.TotalSteps <= startStep)
            throw new UsageException($"--resume: the checkpoint is at step {startStep} and its run ends at step {trainer.TotalSteps}: nothing to train " +
                                     "(give a larger --steps or --epochs)");
        if (saveInit is not null) Checkpoint.Save(saveInit, backend, network, optimizer, startStep, config);
        System.Console.WriteLine(
            $"bndist train: {config.Model}/{config.Norm}, {network.ParameterCount:N0} parameters, device {backend.Name}" +
            (backend is Core.Backends.Cpu.CpuBackend cpu ? $" ({cpu.Threads} threads)" : ""));
        int dropped = config.DropLast ? train.Count % config.BatchSize : 0;
        if (Opt.NormalizationLine(data, config.Normalize) is { } normalization) System.Console.WriteLine(normalization);
        System.Console.WriteLine(
            $"data {dataDir}: {train.Count} train, {test.Count} test ({string.Join("×", train.SampleShape)}, {train.Classes} classes)" +
            (config.Augment != "" ? $", augment {config.Augment}" : "") + $"; global batch {config.BatchSize}, 1 worker " +
            $"(shards [{config.BatchSize}]); {trainer.Sampler.BatchesPerEpoch} steps/epoch" +
            (dropped > 0 ? $" (the last {dropped} samples of each epoch's order dropped)" : "") + $", {trainer.TotalSteps} steps, " +
            $"lr {config.LearningRate} {config.LrSchedule}" + (startStep > 0 ? $"; resuming at step {startStep}" : ""));

        using var metrics = metricsOut is null ? null : new StreamWriter(metricsOut, append: false);
        var bar = new ProgressBar(!parse.GetValue(files.Quiet));
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
        if (save is not null) Checkpoint.Save(save, backend, network, optimizer, trainer.StepsRun, config);
        if (cancellation.IsCancellationRequested)
        {
            System.Console.Error.WriteLine($"bndist train: interrupted after step {trainer.StepsRun}");
            return Program.InterruptedExitCode;
        }
        string saved = save is null ? "" : $"; saved {save}";
        string evaluated = config.Evaluate
            ? string.Create(CultureInfo.InvariantCulture, $"test accuracy {result.TestAccuracy:F4}, test loss {result.TestLoss:F4}")
            : "not evaluated";
        System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {trainer.TotalSteps - startStep} steps in {clock.Elapsed.TotalSeconds:F1} s; {evaluated}{saved}"));
        return 0;
    }
}

/// <summary>A smoothed rate for display.</summary>
internal sealed class ExponentialAverage(double weight)
{
    private double _value = double.NaN;

    public double Add(double x) => _value = double.IsNaN(_value) ? x : (1 - weight) * _value + weight * x;
}
