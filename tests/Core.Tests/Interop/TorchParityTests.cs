using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using BnDist.Core.Backends.Cpu;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;
using Xunit.Abstractions;

namespace BnDist.Core.Tests.Interop;

/// <summary>
/// End-to-end parity with PyTorch: convnet, resnet20 and bn-inception (seed 3) on the CPU
/// backend, in one process and on 3 ranks with uneven shards, train 3 SGD steps (lr 0.05,
/// momentum 0.9, weight decay 5e-4) on the first 3 global batches of 32 embedded training
/// samples in file order; interop/torch_parity.py loads the same initial checkpoint
/// into the PyTorch twin (bench/peers/torch_models.py) and runs the same steps in float32
/// (model.train(), F.cross_entropy, torch.optim.SGD). Compared: every tensor of the final
/// checkpoint (parameters, running_mean, running_var, num_batches_tracked, momentum buffers),
/// the step-1 gradients, the per-step losses, eval-mode logits of 16 test images after training,
/// and the pixel normalization table.
/// </summary>
/// <remarks>
/// <para>The deeper networks are worse conditioned: a ReLU kink or a max that flips under a
/// relative change of 1e-7 moves resnet20's step-1 gradients by ~1e-4 of their largest value and
/// bn-inception's by ~6e-3 in PyTorch's own float32 run against its float64 run, far beyond the
/// √K·u estimate below. Such quantities are judged by the float64 run (see <see cref="Compare"/>):
/// BnDist passes when it is no further from float64 than 4× PyTorch's float32 is, which is the
/// criterion "as close as PyTorch float32 is to PyTorch float64".</para>
/// </remarks>
/// <remarks>
/// <para>Tolerances. Both sides compute in float32 (unit roundoff u = 2⁻²⁴ ≈ 6e-8) but sum in
/// different orders (naive loops here; oneDNN/OpenBLAS blocks there; float64 BN statistics here,
/// float32 there), so agreement is to rounding, not bits. A length-K float32 sum in another order
/// differs by ~√K·u relative to Σ|terms| (K·u worst case); the longest reductions are the
/// conv-weight gradients over N·H·W = 32·784 = 25 088 products (√K·u ≈ 1e-5), and batch norm's
/// backward subtracts means of the incoming gradient, which cancels and amplifies relative error a
/// few-fold. Step-1 gradients are therefore held to 2e-5 of their tensor's largest magnitude
/// (2·√K·u). After 3 steps each update carries up to three steps' gradient errors (v₃ = g₃ +
/// 0.9·g₂ + 0.81·g₁, and step 1's error feeds step 2's forward), so the state and the eval logits
/// are held to 5e-5. Measured with the naive kernels: gradients ≤ 3e-6, state ≤ 3e-6, logits
/// 8e-7: a ~10× margin. A real difference fails by orders of magnitude: with weight decay
/// dropped on the PyTorch side, conv1.weight is off by 2e-3 of its change, the BN γ by 2–4e-2,
/// and the step-2 and step-3 losses by 1.4e-5 and 5.7e-5.</para>
/// <para>The state is measured against what training CHANGED (max |final − initial|), not against
/// the values: both sides start from the same bits, so the error lives in the update, and a
/// tolerance relative to the weights (0.3 for conv1) would hide a wrong weight decay
/// (lr·λ·w ≈ 1e-5·w per step). Momentum buffers, gradients and logits are measured against their
/// own largest magnitude. A float32 value cannot be closer than its rounding: γ ≈ 1 has an ulp of
/// 1.2e-7 while its 3-step change is ~5e-3, so each side's 3 roundings of w − lr·v allow a floor
/// of 4 ulps of max |x| (4·2⁻²³·max|x|) on top. num_batches_tracked must be equal. Losses:
/// |ΔL| ≤ 1e-5 absolute (L ≈ 2.3: ~4e-6 relative, ~40 ulps of the float32 loss PyTorch returns;
/// measured ≤ 6e-8).</para>
/// <para>Needs a python with torch (BNDIST_TORCH_PYTHON, else /usr/bin/python3, else python3 on
/// PATH). Without one the test returns early and says why in its output: xunit 2 has no
/// dynamic skip, so it counts as passed.</para>
/// </remarks>
public sealed class TorchParityTests(ITestOutputHelper output) : IDisposable
{
    private const int Seed = 3, BatchSize = 32, Steps = 3, EvalCount = 16;
    private const float LearningRate = 0.05f, Momentum = 0.9f, WeightDecay = 5e-4f;

    /// <summary>Step-1 gradients: one forward and backward, relative to max |g|.</summary>
    private const double GradientTolerance = 2e-5;

    /// <summary>State after 3 steps, relative to max |change| (momentum buffers: to max |v|).</summary>
    private const double StateTolerance = 5e-5;

    /// <summary>Eval-mode logits after 3 steps, relative to max |logit|.</summary>
    private const double LogitTolerance = 5e-5;

    /// <summary>Float32 rounding floor, in units of max |x|: 4 ulps of 1 (2⁻²³ is float32's machine epsilon).</summary>
    private const double UlpFloor = 4.0 / (1 << 23);

    /// <summary>Per-step mean loss, absolute.</summary>
    private const double LossTolerance = 1e-5;

    /// <summary>torch_parity.py's exit status when torch cannot be imported.</summary>
    private const int ExitTorchUnavailable = 77;

    private const string OpenBlasOpenMp = "/usr/lib/x86_64-linux-gnu/openblas-openmp";

    private readonly string _dir = Directory.CreateTempSubdirectory("bndist-torch-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// The same steps in BnDist, in one process or on K in-process ranks with uneven shards
    /// (32 = 11 + 11 + 10 samples for K = 3; the ranks exchange statistics and gradients through
    /// <see cref="InProcessGroup"/>, which the integration tests hold to the gRPC cluster), against
    /// PyTorch on the whole batch.
    /// </summary>
    [SkippableTheory]
    [InlineData("convnet", 1)]
    [InlineData("convnet", 3)]
    [InlineData("resnet20", 1)]
    [InlineData("resnet20", 3)]
    [InlineData("bn-inception", 1)]
    [InlineData("bn-inception", 3)]
    public void ThreeSgdSteps_MatchPyTorch(string model, int workers)
    {
        string? script = FindScript();
        Skip.If(script is null, "torch_parity.py not found: PyTorch parity not checked");
        string? python = FindPython();
        Skip.If(python is null, "no python3 found: PyTorch parity not checked");

        string dataDir = Dataset.DefaultDirectory();
        var train = Dataset.Load(dataDir, train: true);
        var test = Dataset.Load(dataDir, train: false);
        string initPath = Path.Combine(_dir, "init.safetensors"), finalPath = Path.Combine(_dir, "final.safetensors");
        string torchPath = Path.Combine(_dir, "torch.safetensors");
        using (var initBackend = new CpuBackend(1))
            Checkpoint.Save(initPath, initBackend, ModelFactory.Create(model, initBackend, SingleProcessCollective.Instance, Seed), optimizer: null, step: 0, config: null);

        // PyTorch runs while we train, once it has shown it can import torch.
        using var torch = StartPython(python!, script!, model, initPath, dataDir, torchPath);
        if (!torch.WaitReady(TimeSpan.FromSeconds(120)))
        {
            var (exit, _, why) = torch.Finish(TimeSpan.FromSeconds(10));
            Assert.True(exit == ExitTorchUnavailable, $"torch_parity.py failed before it was ready ({exit}):\n{why}");
            Skip.If(true, $"PyTorch parity not checked: {why.Trim()}");
        }

        var clock = Stopwatch.StartNew();
        var group = new InProcessGroup(workers, TimeSpan.FromSeconds(120));
        var ranks = new RankRun[workers];
        var threads = Enumerable.Range(0, workers).Select(rank => new Thread(() =>
        {
            try
            {
                ranks[rank] = TrainRank(model, train, test, group, rank, rank == 0 ? finalPath : null);
            }
            catch (Exception e)
            {
                ranks[rank] = new RankRun(null!, null!, null!, null!, e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var r in ranks) if (r.Error is not null) throw new InvalidOperationException("a rank failed", r.Error);
        var (losses, gradients, logits, network) = (ranks[0].Losses, ranks[0].Gradients, ranks[0].Logits, ranks[0].Network);
        output.WriteLine($"BnDist {model} on {workers} rank(s) (shards {string.Join(" + ", ranks.Select(r => r.ShardSize))}): {Steps} steps in {clock.Elapsed.TotalSeconds:F1} s");

        var (code, stdout, stderr) = torch.Finish(TimeSpan.FromSeconds(180));
        Assert.True(code == 0, $"torch_parity.py failed ({code}):\n{stdout}\n{stderr}");
        output.WriteLine(stdout.Trim());

        var mine = SafeTensorsFile.Read(finalPath);
        var init = SafeTensorsFile.Read(initPath);
        var theirs = SafeTensorsFile.Read(torchPath);
        output.WriteLine($"torch {theirs.Metadata.GetValueOrDefault("torch_version")}, {theirs.Metadata.GetValueOrDefault("threads")} thread(s)");
        var failures = new List<string>();
        var tensors = new TensorVerdicts();
        var report = new StringBuilder();

        // 0. inputs: the same normalized pixels on both sides (bit-exact)
        float[] table = theirs.GetF32("parity.normalize_table", [256]);
        for (int p = 0; p < 256; p++)
            if (BitConverter.SingleToInt32Bits(table[p]) != BitConverter.SingleToInt32Bits(Dataset.Normalize((byte)p)))
                failures.Add($"normalize({p}): torch {table[p]:R}, BnDist {Dataset.Normalize((byte)p):R}");

        // 1. losses
        double[] torchLosses = theirs.GetF64("parity.losses", [Steps]), exactLosses = theirs.GetF64("fp64.parity.losses", [Steps]);
        for (int s = 0; s < Steps; s++)
        {
            double d = Math.Abs(losses[s] - torchLosses[s]);
            double ours64 = Math.Abs(losses[s] - exactLosses[s]), theirs64 = Math.Abs(torchLosses[s] - exactLosses[s]);
            report.AppendLine(Inv($"loss step {s + 1}: BnDist {losses[s]:F8} torch {torchLosses[s]:F8} |diff| {d:E2} (tol {LossTolerance:E0}); against float64: BnDist {ours64:E2}, PyTorch float32 {theirs64:E2}"));
            // As for tensors (Compare): beyond the tolerance, no further from float64 than 4× PyTorch's float32 run.
            if (!(d <= LossTolerance) && !(ours64 <= Math.Max(LossTolerance, 4 * theirs64)))
                failures.Add(Inv($"loss of step {s + 1}: |diff| {d:E3} > {LossTolerance:E0}"));
        }

        // 2. step-1 gradients
        foreach (var p in network.Parameters)
        {
            float[] g = theirs.GetF32("parity.grad1." + p.Name, Shape(p.Shape));
            Compare(report, tensors, "grad1", "grad1 " + p.Name, gradients[p.Name], g, reference: null, GradientTolerance,
                theirs.GetF64("fp64.parity.grad1." + p.Name, Shape(p.Shape)));
        }

        // 3. every tensor of the final checkpoint
        Assert.Equal(network.Parameters.Count * 2 + network.Buffers.Count, mine.Tensors.Count);
        foreach (var t in mine.Tensors)
        {
            Assert.True(theirs.Contains(t.Name), $"torch output lacks {t.Name}");
            if (t.DType == SafeDType.I64)
            {
                long[] a = mine.GetI64(t.Name, t.Shape), b = theirs.GetI64(t.Name, t.Shape);
                report.AppendLine($"{t.Name}: BnDist {a[0]} torch {b[0]}");
                if (!a.SequenceEqual(b)) failures.Add($"{t.Name}: BnDist {a[0]}, torch {b[0]}");
                continue;
            }
            float[] ours = mine.GetF32(t.Name, t.Shape), expected = theirs.GetF32(t.Name, t.Shape);
            // momentum buffers start at 0 (not in the initial checkpoint): measured against |v|
            float[]? start = init.Contains(t.Name) ? init.GetF32(t.Name, t.Shape) : null;
            Compare(report, tensors, "state", t.Name, ours, expected, start, StateTolerance, theirs.GetF64("fp64." + t.Name, t.Shape));
        }

        // 4. eval-mode logits after training
        Compare(report, tensors, "logits", "eval logits", logits, theirs.GetF32("parity.eval_logits", [EvalCount, 10]), null, LogitTolerance,
            theirs.GetF64("fp64.parity.eval_logits", [EvalCount, 10]));

        failures.AddRange(tensors.Verdict(report));
        output.WriteLine(report.ToString());
        Assert.True(failures.Count == 0, "BnDist and PyTorch disagree beyond float32 rounding:\n" + string.Join("\n", failures));
    }

    /// <summary>
    /// max |ours − theirs| against tolerance·scale + 4 ulps of max |theirs|, with scale =
    /// max |theirs − reference| when a reference (the initial value) is given, else max |theirs|.
    /// Where that fails, the float64 run of the same steps decides: some quantities are badly
    /// conditioned (conv1's weight gradient is a 25,088-term sum whose terms cancel, because BN's
    /// backward output sums to zero per channel, and its error carries into later steps), so two
    /// correct float32 implementations can differ by far more than the √K·u estimate. BnDist
    /// then passes if it is no further from the float64 answer than 4× PyTorch's own float32
    /// distance from it: rounding, not a wrong formula, explains the difference.
    /// </summary>
    private static void Compare(StringBuilder report, TensorVerdicts verdicts, string kind, string name, float[] ours, float[] theirs, float[]? reference,
        double tolerance, double[] exact)
    {
        Assert.Equal(theirs.Length, ours.Length);
        double err = 0, scale = 0, magnitude = 0;
        int worst = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double d = Math.Abs((double)ours[i] - theirs[i]);
            if (d > err || double.IsNaN(d)) (err, worst) = (d, i);
            magnitude = Math.Max(magnitude, Math.Abs(theirs[i]));
            scale = Math.Max(scale, Math.Abs(reference is null ? theirs[i] : (double)theirs[i] - reference[i]));
        }
        double relative = err / scale, bound = tolerance * scale + UlpFloor * magnitude;
        string against = reference is null ? "max|x|" : "max|Δ|";
        report.AppendLine(Inv($"{name,-38} max|diff| {err:E2} = {relative:E2} of {against} {scale:E2}; bound {bound:E2} ({tolerance:E0}·{against} + 4 ulp of {magnitude:E2})"));
        double ourError = 0, theirError = 0, ourSquares = 0, theirSquares = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double a = ours[i] - exact[i], b = theirs[i] - exact[i];
            ourError = Math.Max(ourError, Math.Abs(a));
            theirError = Math.Max(theirError, Math.Abs(b));
            (ourSquares, theirSquares) = (ourSquares + a * a, theirSquares + b * b);
        }
        verdicts.Add(kind, ourSquares, theirSquares);
        if (err <= bound) return;
        double ourNorm = Math.Sqrt(ourSquares), theirNorm = Math.Sqrt(theirSquares);
        report.AppendLine(Inv($"{"",-38} against float64: BnDist {ourError:E2}, PyTorch float32 {theirError:E2} (max); {ourNorm:E2}, {theirNorm:E2} (L2)"));
        // The largest error is one element's: where a kink flipped on one side and not the other it
        // can be BnDist's alone. The L2 distance weighs the whole tensor.
        if (!(ourError <= Math.Max(bound, 4 * theirError)) && !(ourNorm <= 4 * theirNorm))
            verdicts.Fail(kind, Inv($"{name}: max|diff| {err:E3} at [{worst}] (BnDist {ours[worst]:R}, torch {theirs[worst]:R}) is {relative:E2} of the scale {scale:E3}; bound {bound:E3} = {tolerance:E0}·scale + 4 ulp"));
    }

    /// <summary>
    /// The verdict over all tensors of a kind (step-1 gradients, final state, logits). A tensor
    /// fails when it is beyond float32 rounding of PyTorch's AND further from float64 than 4×
    /// PyTorch's float32 run (<see cref="Compare"/>). In a network of many ReLU and max-pooling
    /// kinks a rounding can route one element's gradient elsewhere: in bn-inception's step 1,
    /// inception4b.branch2.2.bn.bias[28] is −6.906e-4 in BnDist and −7.258e-4 in PyTorch and its
    /// float64 run, and BnDist itself gives −7.258e-4 when every third input pixel moves by one
    /// ulp. So up to 1 % of a kind's tensors may fail alone, provided the kind as a whole (the L2
    /// distance from float64 over all its tensors) is no further from float64 than 4× PyTorch's
    /// float32 run. A wrong formula moves every tensor it touches and fails both.
    /// </summary>
    private sealed class TensorVerdicts
    {
        private readonly Dictionary<string, (int Tensors, double Ours, double Theirs, List<string> Failed)> _kinds = [];

        public void Add(string kind, double ourSquares, double theirSquares)
        {
            var k = _kinds.GetValueOrDefault(kind, (0, 0, 0, []));
            _kinds[kind] = (k.Tensors + 1, k.Ours + ourSquares, k.Theirs + theirSquares, k.Failed);
        }

        public void Fail(string kind, string failure) => _kinds[kind].Failed.Add(failure);

        public IEnumerable<string> Verdict(StringBuilder report)
        {
            foreach (var (kind, k) in _kinds)
            {
                double ours = Math.Sqrt(k.Ours), theirs = Math.Sqrt(k.Theirs);
                int allowed = k.Tensors / 100;
                report.AppendLine(Inv($"{kind}: {k.Tensors} tensors, {k.Failed.Count} alone beyond the bounds (allowed {allowed}); L2 from float64 over all: BnDist {ours:E2}, PyTorch float32 {theirs:E2}"));
                if (k.Failed.Count == 0) continue;
                if (k.Failed.Count > allowed || !(ours <= 4 * theirs))
                    foreach (string f in k.Failed) yield return f;
                else
                    foreach (string f in k.Failed) report.AppendLine("  tolerated (an isolated kink): " + f);
            }
        }
    }

    private static float[] EvalLogits(CpuBackend backend, Network network, Dataset test)
    {
        var images = new float[EvalCount * test.SampleSize];
        var labels = new int[EvalCount];
        test.Gather([.. Enumerable.Range(0, EvalCount)], images, labels);
        var x = backend.Allocate([EvalCount, .. test.SampleShape]);
        backend.Upload(images, x);
        return Download(backend, network.Forward(x, training: false));
    }

    private static float[] Download(CpuBackend backend, Tensors.Tensor t)
    {
        var values = new float[t.Length];
        backend.Download(t, values);
        return values;
    }

    private static long[] Shape(int[] shape) => [.. shape.Select(d => (long)d)];

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>What rank <paramref name="rank"/> of a K-rank run computed: its losses are global means, its gradients global sums.</summary>
    private sealed record RankRun(double[] Losses, Dictionary<string, float[]> Gradients, float[] Logits, Network Network, Exception? Error = null)
    {
        public int ShardSize { get; init; }
    }

    private static RankRun TrainRank(string model, Dataset train, Dataset test, InProcessGroup group, int rank, string? finalPath)
    {
        using var backend = new CpuBackend(1);
        var member = group.Members[rank].WithBackend(backend);
        var network = ModelFactory.Create(model, backend, member, Seed);
        var sgd = new Sgd(backend, network.Parameters, Momentum, WeightDecay);
        var step = new TrainingStep(backend, network, sgd, member, member);
        var sampler = new DistributedSampler(train.Count, BatchSize, worldSize: group.Members.Count, rank, shuffle: false, seed: 0);
        var losses = new double[Steps];
        var gradients = new Dictionary<string, float[]>();
        int shard = 0;
        for (int s = 0; s < Steps; s++)
        {
            ((ICollective)member).BeginStep(s);
            var batch = sampler.LocalBatch(epoch: 0, batchIndex: s);
            shard = batch.Length;
            losses[s] = step.Run(train, batch, BatchSize, LearningRate, s).Loss;
            if (s == 0)
                foreach (var p in network.Parameters) gradients[p.Name] = Download(backend, p.Grad);
        }
        if (finalPath is not null) Checkpoint.Save(finalPath, backend, network, sgd, Steps, config: null);
        return new RankRun(losses, gradients, EvalLogits(backend, network, test), network) { ShardSize = shard };
    }

    private static PythonRun StartPython(string python, string script, string model, string init, string data, string output)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[]
        {
            script, "--init", init, "--data", data, "--out", output, "--model", model,
            "--batch-size", BatchSize.ToString(CultureInfo.InvariantCulture), "--steps", Steps.ToString(CultureInfo.InvariantCulture),
            "--lr", LearningRate.ToString("R", CultureInfo.InvariantCulture), "--momentum", Momentum.ToString("R", CultureInfo.InvariantCulture),
            "--weight-decay", WeightDecay.ToString("R", CultureInfo.InvariantCulture),
            "--eval-count", EvalCount.ToString(CultureInfo.InvariantCulture), "--threads", "1",
        })
            psi.ArgumentList.Add(a);
        // Debian's default BLAS is the slow reference one; one thread keeps the run reproducible.
        if (Directory.Exists(OpenBlasOpenMp))
        {
            string? old = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            psi.Environment["LD_LIBRARY_PATH"] = string.IsNullOrEmpty(old) ? OpenBlasOpenMp : OpenBlasOpenMp + ":" + old;
        }
        psi.Environment["OMP_NUM_THREADS"] = "1";
        psi.Environment["PYTHONIOENCODING"] = "utf-8";
        psi.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        return new PythonRun(Process.Start(psi)!);
    }

    /// <summary>A child process whose output is drained while it runs.</summary>
    private sealed class PythonRun(Process process) : IDisposable
    {
        private readonly Task<string> _stderr = process.StandardError.ReadToEndAsync();
        private readonly Task<string?> _firstLine = process.StandardOutput.ReadLineAsync();
        private Task<string>? _stdout;

        /// <summary>True once the script printed "ready"; false if it ended first (or timed out).</summary>
        public bool WaitReady(TimeSpan timeout) =>
            _firstLine.Wait(timeout) && _firstLine.Result?.Trim() == "ready";

        public (int Code, string Stdout, string Stderr) Finish(TimeSpan timeout)
        {
            _stdout ??= _firstLine.ContinueWith(first => first.Result is null ? Task.FromResult("")
                : process.StandardOutput.ReadToEndAsync()).Unwrap();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"torch_parity.py did not finish in {timeout.TotalSeconds} s");
            }
            process.WaitForExit();
            return (process.ExitCode, _stdout.Result, _stderr.Result);
        }

        public void Dispose()
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            process.Dispose();
        }
    }

    private static string? FindPython()
    {
        string? chosen = Environment.GetEnvironmentVariable("BNDIST_TORCH_PYTHON");
        if (!string.IsNullOrEmpty(chosen)) return File.Exists(chosen) ? chosen : null;
        // Debian's python3-torch lives in the system interpreter; a python3 earlier on PATH
        // (pyenv, a venv) usually lacks it.
        if (File.Exists("/usr/bin/python3")) return "/usr/bin/python3";
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            foreach (string exe in new[] { "python3", "python3.exe" })
                if (File.Exists(Path.Combine(dir, exe))) return Path.Combine(dir, exe);
        return null;
    }

    private static string? FindScript([CallerFilePath] string thisFile = "")
    {
        const string name = "torch_parity.py";
        string beside = Path.Combine(Path.GetDirectoryName(thisFile) ?? "", name);
        if (File.Exists(beside)) return beside;
        // Source paths can be mapped away (deterministic CI builds): look upward from the test binaries.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Core.Tests", "Interop", name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }
}
