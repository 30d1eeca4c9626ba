using System.CommandLine;
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
    public static Command Create(CancellationToken cancellation)
    {
        var model = Opt.String("--model", "network: " + string.Join(", ", ModelFactory.Architectures), "convnet", "M");
        var norm = Opt.String("--norm", "normalization layers: bn, gn or none", "bn", "bn|gn|none");
        var batch = Opt.Int("--batch-size", "samples per step", 128, min: 1, helpName: "B");
        var threads = Opt.Int("--threads", "CPU threads (0: all cores)", 0, min: 0);
        var warmup = Opt.Int("--warmup", "untimed steps first", 10, min: 0, helpName: "W");
        var iterations = Opt.Int("--iterations", "timed steps", 30, min: 1, helpName: "I");
        var device = Opt.String("--device", "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu", "auto", "D");
        var json = Opt.Flag("--json", "one JSON line instead of text");
        var profile = Opt.Flag("--profile", "also the time of every backend op over the timed steps (per geometry)");
        var step = new Command("step", "median time of one training step") { model, norm, batch, threads, warmup, iterations, device, json, profile };
        step.SetAction(r => RunStep(r.GetValue(model)!, r.GetValue(norm)!, r.GetValue(batch), r.GetValue(threads), r.GetValue(warmup),
            r.GetValue(iterations), r.GetValue(device)!, r.GetValue(json), r.GetValue(profile)));
        return new Command("bench", "benchmarks: bench step, bench collective") { step, CollectiveBenchCommand.Create(cancellation) };
    }

    private static int RunStep(string model, string norm, int batch, int threads, int warmup, int iterations, string device, bool json, bool profile)
    {
        TrainingConfig config;
        try
        {
            config = new TrainingConfig { Model = model, Norm = norm, BatchSize = batch }.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
        var data = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        if (batch > data.Count) throw new UsageException($"--batch-size {batch} exceeds the {data.Count} embedded samples");
        using var device0 = Devices.Open(device, threads);
        var profiler = profile ? new ProfilingBackend(device0) : null;
        IBackend backend = profiler ?? device0;
        var network = ModelFactory.Create(model, backend, SingleProcessCollective.Instance, 0, config.Normalization, data.SampleShape, data.Classes);
        var optimizer = new Sgd(backend, network.Parameters, 0.9f, 5e-4f);
        var step = new TrainingStep(backend, network, optimizer, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        int[] indices = [.. Enumerable.Range(0, batch)];

        var times = new double[iterations];
        long allocatedBefore = 0;
        for (int i = 0; i < warmup + iterations; i++)
        {
            if (i == warmup)
            {
                allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
                profiler?.Reset();
            }
            long t0 = Stopwatch.GetTimestamp();
            step.Run(data, indices, batch, 0.01f);
            if (i >= warmup) times[i - warmup] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        // Managed bytes allocated per step by every thread (the hot path should allocate ~nothing).
        double allocatedPerStep = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / (double)iterations;
        Array.Sort(times);
        double median = times[iterations / 2];
        double gflop = StepFlops(network, batch) / 1e9;
        int usedThreads = device0 is Core.Backends.Cpu.CpuBackend cpu ? cpu.Threads : 0;
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
        if (profiler is not null)
        {
            var rows = profiler.Report();
            double total = rows.Sum(r => r.Seconds);
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"backend ops per step (ms), {total * 1000 / iterations:F2} of {times.Average():F2} ms in ops (profiling adds ~1 µs per op):"));
            foreach (var (op, seconds, calls) in rows)
                System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {seconds * 1000 / iterations,9:F3}  {100 * seconds / total,5:F1} %  {calls / iterations,4}×  {op}"));
        }
        return 0;
    }

    /// <summary>2·(multiply-adds) of the convolutions and linear layers: forward, weight gradient and input gradient.</summary>
    public static double StepFlops(Network network, int batch)
    {
        double flops = 0;
        foreach (var (layer, shape) in network.LayerInputs(batch))
        {
            int[] output = layer.OutputShape(shape);
            double macs = layer switch
            {
                Conv2d c => (double)output.Skip(1).Aggregate(1L, (a, b) => a * b) * batch * c.Weight.Value.SizeFrom(1),
                Linear l => (double)batch * l.Weight.Value.Length,
                _ => 0,
            };
            flops += 2 * macs * (layer.ComputeInputGradient ? 3 : 2);
        }
        return flops;
    }
}
