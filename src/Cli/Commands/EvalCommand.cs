using System.CommandLine;
using System.Globalization;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary><c>bndist eval --checkpoint FILE [--data DIR]</c>: test loss and accuracy of a checkpoint.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = Opt.InputFile("--checkpoint", "the checkpoint to evaluate");
        checkpoint.Required = true;
        var data = Opt.InputDirectory("--data", TrainCommand.DataHelp);
        var threads = Opt.Int("--threads", "CPU threads (0: all cores)", 0, min: 0);
        var device = Opt.String("--device", "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu", "auto", "D");
        var command = new Command("eval", "test accuracy of a checkpoint") { checkpoint, data, threads, device };
        command.SetAction(r => Run(r.GetValue(checkpoint)!, r.GetValue(data), r.GetValue(threads), r.GetValue(device)!));
        return command;
    }

    private static int Run(string path, string? data, int threads, string device)
    {
        var info = Checkpoint.ReadInfo(path);
        using var backend = Devices.Open(device, threads);
        // The checkpoint's run's normalization; computed from the training split when it was computed then.
        var test = Opt.LoadData(data, info.Config?.Normalize ?? "").Test;
        var network = ModelFactory.Create(info.Model, backend, SingleProcessCollective.Instance, 0, new NormalizationOptions(info.Norm),
            test.SampleShape, test.Classes);
        Checkpoint.Load(path, backend, network, optimizer: null);
        if (test.MismatchWith(info.Model, network.SampleShape, network.Classes) is { } mismatch) throw new UsageException(mismatch);
        var (loss, accuracy) = new Evaluator(backend, network).Evaluate(test);
        System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{path}: {info.Model}/{info.Norm} at step {info.Step}; {test.Count} test images: accuracy {accuracy:F4}, loss {loss:F4}"));
        return 0;
    }
}
