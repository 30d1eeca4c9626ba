using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;

namespace BnDist.Cli.Commands;

/// <summary>
/// <c>bndist bench step</c>: the median wall time of one training step (forward, backward,
/// optimizer) on a fixed batch of the embedded data, after warm-up, with the step's
/// multiply-add work in GFLOP/s.
/// </summary>
public static class BenchCommand
{
    public static int Run(string[] rest, CancellationToken cancellation)
    {
        if (rest.Length > 0 && rest[0] == "collective") return CollectiveBenchCommand.Run(new ArgReader("bench collective", rest[1..]), cancellation);
        if (rest.Length == 0 || rest[0] != "step")
            throw new UsageException("bench: expected 'bench step --model M --batch-size B [--threads N] [--warmup W] [--iterations I] [--json]' " +
                                     "or 'bench collective [--workers K] …'");
        var args = new ArgReader("bench step", rest[1..]);
        string model = args.String("model", "convnet");
        string norm = args.String("norm", "bn");
        int batch = args.Int("batch-size", 128, min: 1);
        int threads = args.Int("threads", 0, min: 0);
        int warmup = args.Int("warmup", 10, min: 0);
        int iterations = args.Int("iterations", 30, min: 1);
        string device = args.String("device", "auto");
        bool json = args.Flag("json");
        args.Finish();

        var data = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        if (batch > data.Count) throw new UsageException($"bench step: --batch-size {batch} exceeds the {data.Count} embedded samples");
        using var backend = Devices.Open("bench step", device, threads);
        var config = new TrainingConfig { Model = model, Norm = norm, BatchSize = batch }.Validate();
        var network = ModelFactory.Create(model, backend, SingleProcessCollective.Instance, 0, config.Normalization);
        var optimizer = new Sgd(backend, network.Parameters, 0.9f, 5e-4f);
        var step = new TrainingStep(backend, network, optimizer, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        int[] indices = [.. Enumerable.Range(0, batch)];

        var times = new double[iterations];
        long allocatedBefore = 0;
        for (int i = 0; i < warmup + iterations; i++)
        {
            if (i == warmup) allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            long t0 = Stopwatch.GetTimestamp();
            step.Run(data, indices, batch, 0.01f);
            if (i >= warmup) times[i - warmup] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        // Managed bytes allocated per step by every thread (the hot path should allocate ~nothing).
        double allocatedPerStep = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / (double)iterations;
        Array.Sort(times);
        double median = times[iterations / 2];
        double gflop = StepFlops(network, batch) / 1e9;
        int usedThreads = backend is Core.Backends.Cpu.CpuBackend cpu ? cpu.Threads : 0;
        if (json)
        {
            System.Console.WriteLine(JsonSerializer.Serialize(new
            {
                model, norm, batch_size = batch, threads = usedThreads, device = backend.Name, median_ms = median,
                min_ms = times[0], max_ms = times[^1], gflop_per_step = gflop, gflops = gflop / (median / 1000), iterations, warmup,
                allocated_bytes_per_step = allocatedPerStep,
            }));
        }
        else
        {
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{model}/{norm} batch {batch} on {backend.Name} ({usedThreads} threads): median {median:F2} ms/step " +
                $"(min {times[0]:F2}, max {times[^1]:F2}) over {iterations} steps; {gflop:F2} GFLOP/step = {gflop / (median / 1000):F1} GFLOP/s; " +
                $"{allocatedPerStep / 1024:F1} KiB allocated per step"));
        }
        return 0;
    }

    /// <summary>2·(multiply-adds) of the convolutions and linear layers: forward, weight gradient and input gradient.</summary>
    public static double StepFlops(Network network, int batch)
    {
        double flops = 0;
        int[] shape = [batch, .. network.SampleShape];
        foreach (var layer in network.Layers)
        {
            int[] output = layer.OutputShape(shape);
            double macs = layer switch
            {
                Conv2d c => (double)output.Skip(1).Aggregate(1L, (a, b) => a * b) * batch * c.Weight.Value.SizeFrom(1),
                Linear l => (double)batch * l.Weight.Value.Length,
                _ => 0,
            };
            flops += 2 * macs * (layer.ComputeInputGradient ? 3 : 2);
            shape = output;
        }
        return flops;
    }
}
