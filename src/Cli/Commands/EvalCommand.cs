using System.Globalization;
using BnDist.Core.Backends;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary><c>bndist eval --checkpoint FILE [--data DIR]</c>: test loss and accuracy of a checkpoint.</summary>
public static class EvalCommand
{
    public static int Run(ArgReader args)
    {
        if (args.Help)
        {
            System.Console.WriteLine("usage: bndist eval --checkpoint FILE [--data DIR] [--threads N] [--device D]");
            return 0;
        }
        string path = args.String("checkpoint") ?? throw new UsageException("eval: --checkpoint FILE is required");
        string dataDir = args.String("data") ?? Dataset.DefaultDirectory();
        int threads = args.Int("threads", 0, min: 0);
        string device = args.String("device", "auto");
        args.Finish();

        var info = Checkpoint.ReadInfo(path);
        using var backend = Devices.Open("eval", device, threads);
        var network = ModelFactory.Create(info.Model, backend, SingleProcessCollective.Instance, 0, new NormalizationOptions(info.Norm));
        Checkpoint.Load(path, backend, network, optimizer: null);
        var test = Dataset.Load(dataDir, train: false);
        var (loss, accuracy) = new Evaluator(backend, network).Evaluate(test);
        System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{path}: {info.Model}/{info.Norm} at step {info.Step}; {test.Count} test images: accuracy {accuracy:F4}, loss {loss:F4}"));
        return 0;
    }
}
