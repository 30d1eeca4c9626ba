using System.Numerics;
using BnDist.Core.Backends;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Backends.Ilgpu;
using BnDist.Core.Backends.Ilgpu.Kernels;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tensors;
using BnDist.Core.Training;
using ILGPU;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Backends.Ilgpu;

/// <summary>
/// The GEMM as a GPU runs it — groups of 16×16 threads, 64×64 tiles, K slices of 16 — on the CPU
/// simulator configured with 256-thread groups (slow: every thread is an OS thread, so only two
/// small products). The other simulator tests run 4×4 groups with 16×16 tiles. And the launch
/// configurations a GPU gets, checked against CUDA's limits without one.
/// </summary>
[Collection(IlgpuCollection.Name)]
public sealed class GpuGroupShapeTests(ITestOutputHelper output)
{
    private const int Batch = 256;
    [Fact]
    public void ConvAndLinear_With256ThreadGroups_MatchCpu()
    {
        using var backend = IlgpuDevices.OpenCpuSimulator(groupSize: 256);
        using var cpu = new CpuBackend(1);
        var rng = new Random(11);

        // Cout = 70 and the 7×6 output span two 64-wide tiles each way, K = 27 two K slices.
        var g = new ConvGeometry(2, 3, 7, 6, 70, 3, 3, 1, 1);
        int hw = g.OutHeight * g.OutWidth;
        float[] x = BackendOpsTests.Random(rng, 2 * 3 * 7 * 6), w = BackendOpsTests.Random(rng, 70 * 27);
        float[] b = BackendOpsTests.Random(rng, 70), dy = BackendOpsTests.Random(rng, 2 * 70 * hw);
        var expected = BackendOpsTests.Conv(cpu, g, x, w, b, dy);
        var bound = BackendOpsTests.Conv(cpu, g, BackendOpsTests.Abs(x), BackendOpsTests.Abs(w), BackendOpsTests.Abs(b), BackendOpsTests.Abs(dy));
        var got = BackendOpsTests.Conv(backend, g, x, w, b, dy);
        BackendOpsTests.AssertProducts(expected.Y, got.Y, bound.Y, 28, "y");
        BackendOpsTests.AssertProducts(expected.Dx, got.Dx, bound.Dx, 70 * 9, "dx");
        BackendOpsTests.AssertProducts(expected.Dw, got.Dw, bound.Dw, 2 * hw, "dw");
        BackendOpsTests.AssertProducts(expected.Db, got.Db, bound.Db, 2 * hw, "db");

        float[] lx = BackendOpsTests.Random(rng, 3 * 70), lw = BackendOpsTests.Random(rng, 67 * 70);
        float[] lb = BackendOpsTests.Random(rng, 67), ldy = BackendOpsTests.Random(rng, 3 * 67);
        var le = BackendOpsTests.Linear(cpu, 3, 70, 67, lx, lw, lb, ldy);
        var lbound = BackendOpsTests.Linear(cpu, 3, 70, 67, BackendOpsTests.Abs(lx), BackendOpsTests.Abs(lw), BackendOpsTests.Abs(lb), BackendOpsTests.Abs(ldy));
        var lg = BackendOpsTests.Linear(backend, 3, 70, 67, lx, lw, lb, ldy);
        BackendOpsTests.AssertProducts(le.Y, lg.Y, lbound.Y, 71, "linear y");
        BackendOpsTests.AssertProducts(le.Dx, lg.Dx, lbound.Dx, 67, "linear dx");
        BackendOpsTests.AssertProducts(le.Dw, lg.Dw, lbound.Dw, 3, "linear dw");
    }

    /// <summary>
    /// Every launch of a training step and of an evaluation at batch 256, of every built-in model
    /// with every normalization, as a GPU gets it: the simulator with 256-thread groups gives the
    /// backend the group shapes of any CUDA device (it caps reductions at 256 threads and the GEMM
    /// at 16×16; only the number of grid-stride groups follows the multiprocessor count), and the
    /// launchers are swapped for recorders (<see cref="IlgpuKernels.RecordInsteadOfLaunching"/>),
    /// so the backend's host code runs at full size and no kernel runs. Checked per launch:
    /// CUDA's limits — a block of at most 1024 threads (x, y ≤ 1024, z ≤ 64), a whole number of
    /// 32-thread warps, a grid of x ≤ 2³¹ − 1, y, z ≤ 65535 — and no dynamic shared memory (the
    /// kernels' shared arrays are static, PtxCompilationTests sizes them); what the kernels'
    /// shared arrays assume — a reduction group (NormKernels) a power of two of at most
    /// <see cref="NormKernels.MaxGroup"/> threads (TreeSum), a GEMM group of Side² threads whose K
    /// slice of 4·Side·SliceK floats fits <see cref="GemmKernels.SharedFloats"/>, SliceK a multiple
    /// of <see cref="GemmKernels.TileK"/>, and a grid covering C. And every kernel is launched
    /// (but those of <see cref="NotYetInAModel"/>, for now).
    /// </summary>
    [Fact]
    public void EveryLaunchOfEveryModel_AtBatch256_FitsCudaLimits_AndTheKernelsSharedArrays()
    {
        using var backend = IlgpuDevices.OpenCpuSimulator(groupSize: 256);
        var launches = IlgpuKernels.RecordInsteadOfLaunching(backend);
        var data = new Dataset(new float[Batch * 28 * 28], new byte[Batch], 28, 28);
        int[] indices = [.. Enumerable.Range(0, Batch)];
        var models = ModelFactory.Architectures.Select(a => a.StartsWith("mlp:", StringComparison.Ordinal) ? "mlp:300,100" : a).ToList();
        // Dropout is in no built-in model: a user's network that has one stands in for it.
        var withDropout = new ModelSpec("dropout-net", m => m.Conv2d(8, 3, padding: 1, bias: false).Norm().Relu().Dropout(0.2f)
            .GlobalAvgPool2d().Flatten().Linear(10));
        // Launches hold their arguments, and so the simulator's buffers (gigabytes per model at
        // batch 256): each model's are checked, summarized and dropped before the next is built.
        var failures = new List<string>();
        var launched = new Dictionary<string, (int Count, long GridX, long GridY, long GridZ, HashSet<int> Groups)>();
        foreach (string model in models.Append(withDropout.Architecture))
        foreach (string norm in ModelFactory.Normalizations)
        {
            Assert.True(ModelFactory.IsKnown(model) || model == withDropout.Architecture, model);
            RunOneStep(model, norm);
            output.WriteLine($"{model}/{norm}: {launches.Count} launches");
            failures.AddRange(CheckLaunches(launches));
            foreach (var l in launches)
            {
                var (count, gx, gy, gz, groups) = launched.GetValueOrDefault(l.Name, (0, 0, 0, 0, []));
                var grid = l.Config.GridDim;
                groups.Add(l.Config.GroupDim.Size);
                launched[l.Name] = (count + 1, Math.Max(gx, grid.X), Math.Max(gy, grid.Y), Math.Max(gz, grid.Z), groups);
            }
            launches.Clear();
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        void RunOneStep(string model, string norm)
        {
            var normalization = new NormalizationOptions(norm, Groups: 4); // 4 divides every width
            var network = model == withDropout.Architecture
                ? withDropout.Build(backend, SingleProcessCollective.Instance, [1, 28, 28], 0, normalization)
                : ModelFactory.Create(model, backend, SingleProcessCollective.Instance, 0, normalization);
            var sgd = new Sgd(backend, network.Parameters, 0.9f, 5e-4f);
            new TrainingStep(backend, network, sgd, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance)
                .Run(data, indices, Batch, 0.01f);
            new Evaluator(backend, network, Batch).Evaluate(data);
        }

        var never = IlgpuKernels.Declared().Select(IlgpuKernels.Name).Where(k => !launched.ContainsKey(k)).ToList();
        if (never.Count > 0) failures.Add($"never launched, so not checked: {string.Join(", ", never)}");
        foreach (var (name, l) in launched.OrderBy(p => p.Key, StringComparer.Ordinal))
            output.WriteLine($"{name}: {l.Count} launches, largest grid {l.GridX} × {l.GridY} × {l.GridZ}, groups {string.Join(", ", l.Groups)}");
        Assert.NotEmpty(launched);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Distinct().Take(40)));
    }

    /// <summary>
    /// The graph ops at the shapes bn-inception (28×28 input) and resnet20 give them at batch 256,
    /// forward and backward, on the recording backend as above: each launch is held to the same
    /// limits, and covers the elements it should (its first argument, the count of the grid-stride
    /// loop). The channel counts are round figures near bn-inception's (docs/models.md); they change
    /// only the counts. The models themselves run in the test above.
    /// </summary>
    [Fact]
    public void GraphOpsAtTheShapesOfBnInceptionAndResnet20_FitCudaLimits()
    {
        using var backend = IlgpuDevices.OpenCpuSimulator(groupSize: 256);
        var launches = IlgpuKernels.RecordInsteadOfLaunching(backend);
        var expected = new List<(string Kernel, int Count)>();
        var tensors = new List<Tensor>();
        Tensor T(params int[] shape)
        {
            var t = backend.Allocate(shape);
            tensors.Add(t);
            return t;
        }
        try
        {
            // bn-inception: 3×3 stride 1 pad 1 average pooling at every resolution, channel
            // concatenation and its split, 3×3 stride 2 pad 1 max pooling 28 → 14 → 7.
            foreach (var (c, side) in new[] { (96, 28), (256, 14), (352, 7) })
            {
                int count = Batch * c * side * side;
                var avg = new PoolGeometry(Batch, c, side, side, 3, 1, 1);
                var (x, y) = (T(Batch, c, side, side), T(Batch, c, side, side));
                backend.AvgPool2dForward(avg, x, y);
                backend.AvgPool2dBackward(avg, y, x);
                var concat = T(Batch, 2 * c, side, side);
                backend.CopyChannels(new ChannelSlice(Batch, side * side, c, 0, 2 * c, c, c), x, concat);
                backend.CopyChannels(new ChannelSlice(Batch, side * side, 2 * c, c, c, 0, c), concat, x);
                expected.AddRange([("PoolKernels.AvgForward", count), ("PoolKernels.AvgBackward", count),
                    ("GraphKernels.CopyChannels", count), ("GraphKernels.CopyChannels", count)]);
            }
            foreach (var (c, side) in new[] { (160, 28), (320, 14) })
            {
                var max = new PoolGeometry(Batch, c, side, side, 3, 2, 1);
                var (x, y) = (T(Batch, c, side, side), T(Batch, c, max.OutHeight, max.OutWidth));
                backend.MaxPool2dForward(max, x, y);
                backend.MaxPool2dBackward(max, x, y, y, x);
                expected.AddRange([("PoolKernels.MaxForward", Batch * c * (side / 2) * (side / 2)), ("PoolKernels.MaxBackward", Batch * c * side * side)]);
            }
            // Global average pooling of the last 7×7 map, then dropout before the classifier: its
            // mask, and dx = dy·mask in place.
            foreach (int c in new[] { 352, 64 }) // bn-inception, resnet20
            {
                var layout = new ChannelLayout(Batch, c, 49);
                var (x, y) = (T(Batch, c, 7, 7), T(Batch, c));
                backend.GlobalAvgPoolForward(layout, x, y);
                backend.GlobalAvgPoolBackward(layout, y, x);
                var (mask, z) = (T(Batch, c), T(Batch, c));
                backend.DropoutForward(Batch, c, new ulong[Batch], 0.5f, y, mask, z);
                backend.Multiply(z, mask, z);
                expected.AddRange([("GraphKernels.GlobalAvgForward", Batch * c), ("GraphKernels.GlobalAvgBackward", Batch * c * 49),
                    ("GraphKernels.Dropout", Batch * c), ("GraphKernels.Multiply", Batch * c)]);
            }
            // resnet20: the residual sum of its first stage, in place.
            var (a, r) = (T(Batch, 16, 28, 28), T(Batch, 16, 28, 28));
            backend.Add(a, r, a);
            expected.Add(("GraphKernels.Add", Batch * 16 * 28 * 28));
        }
        finally
        {
            foreach (var t in tensors) t.Dispose();
        }

        foreach (var l in launches)
            output.WriteLine($"{l.Name}({l.Arguments[0]}): grid {l.Config.GridDim.X} × group {l.Config.GroupDim.X}");
        Assert.Equal(expected, launches.Select(l => (l.Name, (int)l.Arguments[0]!)));
        var failures = CheckLaunches(launches);
        Assert.True(failures.Count == 0, string.Join("\n", failures.Distinct().Take(40)));
    }

    /// <summary>
    /// Each launch held to CUDA's limits — a block of at most 1024 threads (x, y ≤ 1024, z ≤ 64),
    /// a whole number of 32-thread warps, a grid of x ≤ 2³¹ − 1, y, z ≤ 65535, no dynamic shared
    /// memory — and to what the kernels' shared arrays assume (see the test above).
    /// </summary>
    private static List<string> CheckLaunches(IEnumerable<IlgpuKernels.Launch> launches)
    {
        var failures = new List<string>();
        foreach (var launch in launches)
        {
            var (grid, group) = (launch.Config.GridDim, launch.Config.GroupDim);
            string at = $"{launch.Name} grid ({grid.X}, {grid.Y}, {grid.Z}) × group ({group.X}, {group.Y}, {group.Z})";
            if (group.X < 1 || group.Y < 1 || group.Z < 1 || group.X > 1024 || group.Y > 1024 || group.Z > 64 || group.Size > 1024)
                failures.Add($"{at}: a CUDA block has at most 1024 threads (x, y ≤ 1024, z ≤ 64)");
            if (group.Size % 32 != 0)
                failures.Add($"{at}: not a whole number of 32-thread warps");
            if (grid.X < 1 || grid.Y < 1 || grid.Z < 1 || grid.Y > 65535 || grid.Z > 65535)
                failures.Add($"{at}: a CUDA grid has x ≤ 2³¹ − 1 and y, z ≤ 65535 blocks, each at least 1");
            if (launch.Config.UsesDynamicSharedMemory)
                failures.Add($"{at}: dynamic shared memory, which the kernels do not declare");
            if (launch.Kernel.DeclaringType == typeof(NormKernels) && (group.Size > NormKernels.MaxGroup || !BitOperations.IsPow2(group.Size)))
                failures.Add($"{at}: a reduction group must be a power of two of at most {NormKernels.MaxGroup} threads, the size of its shared arrays");
            if (launch.Arguments.FirstOrDefault() is GemmShape s)
            {
                int tile = 4 * s.Side;
                if (s.Side * s.Side != group.Size || s.SliceK < 1 || s.SliceK % GemmKernels.TileK != 0 || s.SliceK * tile > GemmKernels.SharedFloats)
                    failures.Add($"{at}: GEMM Side {s.Side}, SliceK {s.SliceK}: needs Side² threads, SliceK a multiple of {GemmKernels.TileK}, 4·Side·SliceK ≤ {GemmKernels.SharedFloats}");
                if ((long)grid.X * tile < s.N || (long)grid.Y * tile < s.M)
                    failures.Add($"{at}: the grid does not cover C ({s.M} × {s.N}) with {tile}-wide tiles");
            }
        }
        return failures;
    }
}
