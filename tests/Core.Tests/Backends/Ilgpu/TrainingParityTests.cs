using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using BnDist.Core.Tests.Support;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// Whole training steps: a model (seed 3) trains 3 SGD steps (lr 0.05, momentum 0.9, weight
/// decay 5e-4) on the first 3 batches of 8 embedded training samples with the layers, loss and
/// optimizer unchanged, once on the CPU backend and once on the backend under test. Compared:
/// the per-step losses and every parameter, momentum buffer and running statistic.
/// </summary>
/// <remarks>
/// Tolerances. Both backends compute in float32 and differ only in summation orders (GEMM
/// tiles, float64 reductions in other trees), each op within the bounds of
/// <see cref="BackendOpsTests"/>, ~1e-6 relative. Batch norm divides by σ of as few as 8 values
/// per channel (bn3 after fc1), which amplifies such differences, and each step feeds the next,
/// as in TorchParityTests, whose measurements against PyTorch (another summation order
/// entirely) this follows: parameters and momentum buffers are held to 5e-5 of what training
/// changed (max |final − initial| per tensor; momentum buffers: of max |v|), plus 4 ulps of
/// max |x| for the float32 rounding of w − lr·v; running statistics likewise, relative to their
/// change; losses to 1e-5 absolute (L ≈ 2.3). A wrong op (a missing term, a wrong stride)
/// moves these by 1e-2 or more.
/// </remarks>
public abstract class TrainingParityTests(BackendFixture fixture, ITestOutputHelper output)
{
    private const int Seed = 3, BatchSize = 8, Steps = 3;
    private const float LearningRate = 0.05f, Momentum = 0.9f, WeightDecay = 5e-4f;
    private const double StateTolerance = 5e-5, UlpFloor = 4.0 / (1 << 23), LossTolerance = 1e-5;

    [SkippableTheory]
    [InlineData("convnet")]
    [InlineData("mlp-paper")]
    public void ThreeSgdSteps_MatchCpuBackend(string model)
    {
        Skip.If(fixture.Backend is null, fixture.Absent ?? "device absent");
        var train = Dataset.Load(Dataset.DefaultDirectory(), train: true);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var expected = Train(fixture.Reference, model, train);
        double cpuSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var got = Train(fixture.Backend!, model, train);
        output.WriteLine($"{model}: {Steps} steps on cpu {cpuSeconds:F2} s, on {fixture.Backend!.Name} {clock.Elapsed.TotalSeconds:F2} s");

        var failures = new List<string>();
        for (int s = 0; s < Steps; s++)
        {
            double d = Math.Abs(expected.Losses[s] - got.Losses[s]);
            output.WriteLine($"loss {s + 1}: cpu {expected.Losses[s]:F8} {fixture.Backend!.Name} {got.Losses[s]:F8} |diff| {d:E2}");
            if (!(d <= LossTolerance)) failures.Add($"loss of step {s + 1}: |diff| {d:E2} > {LossTolerance:E0}");
        }
        foreach (var (name, e) in expected.State)
        {
            float[] a = got.State[name], init = expected.Initial[name];
            double change = 0, scale = 0, worst = 0;
            for (int i = 0; i < e.Length; i++)
            {
                change = Math.Max(change, Math.Abs(e[i] - init[i]));
                scale = Math.Max(scale, Math.Abs(e[i]));
            }
            double reference = name.StartsWith("velocity.", StringComparison.Ordinal) ? scale : change;
            double tolerance = StateTolerance * reference + UlpFloor * scale;
            for (int i = 0; i < e.Length; i++) worst = Math.Max(worst, Math.Abs(e[i] - a[i]));
            output.WriteLine($"{name}: max |diff| {worst:E2} = {worst / Math.Max(reference, 1e-30):E2} of {(reference == scale ? "max |v|" : "its change")} (tol {tolerance:E2})");
            if (!(worst <= tolerance)) failures.Add($"{name}: max |diff| {worst:E2} > {tolerance:E2}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private sealed record Run(List<double> Losses, Dictionary<string, float[]> State, Dictionary<string, float[]> Initial);

    private static Run Train(IBackend backend, string model, Dataset train)
    {
        var network = ModelFactory.Create(model, backend, SingleProcessCollective.Instance, Seed);
        var sgd = new Sgd(backend, network.Parameters, Momentum, WeightDecay);
        var initial = Snapshot(backend, network, sgd);
        var step = new TrainingStep(backend, network, sgd, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        var sampler = new DistributedSampler(train.Count, BatchSize, worldSize: 1, rank: 0, shuffle: false, seed: 0);
        var losses = new List<double>();
        for (int s = 0; s < Steps; s++)
            losses.Add(step.Run(train, sampler.LocalBatch(epoch: 0, batchIndex: s), BatchSize, LearningRate).Loss);
        return new Run(losses, Snapshot(backend, network, sgd), initial);
    }

    private static Dictionary<string, float[]> Snapshot(IBackend backend, Network network, Sgd sgd)
    {
        var state = new Dictionary<string, float[]>();
        for (int i = 0; i < network.Parameters.Count; i++)
        {
            state[network.Parameters[i].Name] = backend.Read(network.Parameters[i].Value);
            state["velocity." + network.Parameters[i].Name] = backend.Read(sgd.Velocity[i]);
        }
        foreach (var b in network.Buffers)
            if (b.Floats is { } floats) state[b.Name] = (float[])floats.Clone();
        return state;
    }
}

[Collection(IlgpuCollection.Name)]
public sealed class IlgpuCpuTrainingParityTests(IlgpuCpuFixture fixture, ITestOutputHelper output) : TrainingParityTests(fixture, output);

[Collection(IlgpuCollection.Name)]
public sealed class IlgpuCudaTrainingParityTests(IlgpuCudaFixture fixture, ITestOutputHelper output) : TrainingParityTests(fixture, output);
