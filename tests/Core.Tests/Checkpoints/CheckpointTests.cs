using BnDist.Core.Backends.Cpu;
using BnDist.Core.Checkpoints;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tests.Support;
using BnDist.Core.Training;

namespace BnDist.Core.Tests.Checkpoints;

public sealed class CheckpointTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);
    private readonly string _dir = Directory.CreateTempSubdirectory("bndist-ckpt-").FullName;

    public void Dispose()
    {
        _backend.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private (Network Net, Sgd Opt) Build(ulong seed)
    {
        var net = ModelFactory.Create("convnet", _backend, SingleProcessCollective.Instance, seed);
        return (net, new Sgd(_backend, net.Parameters, 0.9f, 5e-4f));
    }

    [Fact]
    public void A_saved_and_loaded_run_continues_bit_identically()
    {
        var data = SyntheticData(64);
        var config = new TrainingConfig { BatchSize = 16 };
        var (a, optA) = Build(1);
        var stepA = new TrainingStep(_backend, a, optA, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        stepA.Run(data, [.. Enumerable.Range(0, 16)], 16, 0.05f);
        string path = Path.Combine(_dir, "a.safetensors");
        Checkpoint.Save(path, _backend, a, optA, 1, config);

        var (b, optB) = Build(99);
        var info = Checkpoint.Load(path, _backend, b, optB);
        Assert.Equal(1, info.Step);
        Assert.Equal(16, info.Config!.BatchSize);
        var stepB = new TrainingStep(_backend, b, optB, SingleProcessCollective.Instance, SingleProcessGradientReducer.Instance);
        int[] next = [.. Enumerable.Range(16, 16)];
        var ra = stepA.Run(data, next, 16, 0.05f);
        var rb = stepB.Run(data, next, 16, 0.05f);
        Assert.Equal(ra.Loss, rb.Loss);
        for (int i = 0; i < a.Parameters.Count; i++)
            Assert.Equal(_backend.Read(a.Parameters[i].Value), _backend.Read(b.Parameters[i].Value));
        for (int i = 0; i < a.Buffers.Count; i++)
            Assert.Equal(a.Buffers[i].Floats ?? [], b.Buffers[i].Floats ?? []);
    }

    [Fact]
    public void Loading_into_another_architecture_names_the_mismatch()
    {
        var (a, _) = Build(1);
        string path = Path.Combine(_dir, "a.safetensors");
        Checkpoint.Save(path, _backend, a, null, 0, null);
        var mlp = ModelFactory.Create("mlp-paper", _backend, SingleProcessCollective.Instance, 0);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path, _backend, mlp, null));
        Assert.Contains("convnet", e.Message);
    }

    [Fact]
    public void A_tensor_of_the_wrong_shape_is_named()
    {
        var (a, _) = Build(1);
        var file = new SafeTensorsFile();
        file.SetMetadata("format", Checkpoint.Format);
        file.SetMetadata("model", "convnet");
        file.SetMetadata("norm", "bn");
        file.SetMetadata("step", "0");
        foreach (var p in a.Parameters)
            file.AddF32(p.Name, p.Name == "bn2.weight" ? [32] : [.. p.Shape.Select(d => (long)d)], new float[p.Name == "bn2.weight" ? 32 : p.Value.Length]);
        string path = Path.Combine(_dir, "bad.safetensors");
        file.WriteAtomic(path);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path, _backend, a, null));
        Assert.Contains("bn2.weight", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_checkpoint_is_refused_with_its_name()
    {
        string path = Path.Combine(_dir, "junk.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path));
        Assert.Contains(path, e.Message);
    }

    internal static Dataset SyntheticData(int count)
    {
        var rng = new Random(8);
        var pixels = new byte[count * 28 * 28];
        rng.NextBytes(pixels);
        var labels = new byte[count];
        for (int i = 0; i < count; i++) labels[i] = (byte)(i % 10);
        return Dataset.FromPixels(pixels, labels, 28, 28);
    }
}
