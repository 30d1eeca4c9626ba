using System.Globalization;
using System.Text.Json;
using BnDist.Core.Backends;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Training;

namespace BnDist.Core.Checkpoints;

/// <summary>What a checkpoint says about itself, from its safetensors metadata.</summary>
public sealed record CheckpointInfo(string Model, string Norm, long Step, TrainingConfig? Config);

/// <summary>
/// A training checkpoint as one safetensors file that PyTorch users read directly:
/// every parameter and buffer under its state_dict name (F32, num_batches_tracked I64),
/// the SGD momentum buffers as <c>optimizer.momentum_buffer.&lt;name&gt;</c>, and in the
/// metadata the format, model, normalization, step and the run's config as JSON.
/// Written atomically (temporary file, fsync, rename); loading checks every name, dtype and
/// shape and names the first that differs.
/// </summary>
public static class Checkpoint
{
    public const string Format = "bndist-checkpoint/1";
    private const string MomentumPrefix = "optimizer.momentum_buffer.";

    public static void Save(string path, IBackend backend, Network network, Sgd? optimizer, long step, TrainingConfig? config) =>
        Build(backend, network, optimizer, step, config).WriteAtomic(path);

    /// <summary>The checkpoint as an in-memory safetensors image (what a coordinator sends a joining worker).</summary>
    public static byte[] ToBytes(IBackend backend, Network network, Sgd? optimizer, long step, TrainingConfig? config)
    {
        using var stream = new MemoryStream();
        Build(backend, network, optimizer, step, config).Write(stream);
        return stream.ToArray();
    }

    public static SafeTensorsFile Build(IBackend backend, Network network, Sgd? optimizer, long step, TrainingConfig? config)
    {
        var file = new SafeTensorsFile();
        file.SetMetadata("format", Format);
        file.SetMetadata("model", network.Architecture);
        file.SetMetadata("norm", network.Normalization);
        file.SetMetadata("step", step.ToString(CultureInfo.InvariantCulture));
        if (config is not null) file.SetMetadata("config", JsonSerializer.Serialize(config));
        foreach (var p in network.Parameters) file.AddF32(p.Name, ToLong(p.Shape), Download(backend, p.Value));
        foreach (var b in network.Buffers)
        {
            if (b.Floats is not null) file.AddF32(b.Name, ToLong(b.Shape), b.Floats);
            else file.AddI64(b.Name, ToLong(b.Shape), b.Longs!);
        }
        if (optimizer is not null)
            for (int i = 0; i < network.Parameters.Count; i++)
                file.AddF32(MomentumPrefix + network.Parameters[i].Name, ToLong(network.Parameters[i].Shape), Download(backend, optimizer.Velocity[i]));
        return file;
    }

    public static CheckpointInfo ReadInfo(string path) => Info(SafeTensorsFile.Read(path), path);

    /// <summary>
    /// Loads parameters and buffers into <paramref name="network"/> and, when
    /// <paramref name="optimizer"/> is given, the momentum buffers (which must then be present).
    /// </summary>
    public static CheckpointInfo Load(string path, IBackend backend, Network network, Sgd? optimizer) =>
        Apply(SafeTensorsFile.Read(path), path, backend, network, optimizer);

    /// <summary>Loads an in-memory image; <paramref name="source"/> names it in errors.</summary>
    public static CheckpointInfo Load(byte[] image, string source, IBackend backend, Network network, Sgd? optimizer)
    {
        using var stream = new MemoryStream(image, writable: false);
        return Apply(SafeTensorsFile.Read(stream, source), source, backend, network, optimizer);
    }

    public static CheckpointInfo Apply(SafeTensorsFile file, string path, IBackend backend, Network network, Sgd? optimizer)
    {
        var info = Info(file, path);
        if (info.Model != network.Architecture || info.Norm != network.Normalization)
            throw new InvalidDataException($"{path}: holds a {info.Model}/{info.Norm} model, this run builds {network.Architecture}/{network.Normalization}");
        foreach (var p in network.Parameters) backend.Upload(Get(file, path, p.Name, p.Shape), p.Value);
        foreach (var b in network.Buffers)
        {
            if (b.Floats is not null) Get(file, path, b.Name, b.Shape).CopyTo(b.Floats, 0);
            else Wrap(path, () => file.GetI64(b.Name, ToLong(b.Shape))).CopyTo(b.Longs!, 0);
        }
        if (optimizer is not null)
            for (int i = 0; i < network.Parameters.Count; i++)
                backend.Upload(Get(file, path, MomentumPrefix + network.Parameters[i].Name, network.Parameters[i].Shape), optimizer.Velocity[i]);
        network.MarkParametersChanged();
        return info;
    }

    /// <summary>The name under which a parameter's SGD momentum buffer is stored.</summary>
    public static string MomentumName(string parameter) => MomentumPrefix + parameter;

    /// <summary>
    /// Checks a checkpoint against a model's layout without building the model (the coordinator's
    /// case): the same architecture and normalization, every parameter and buffer with its dtype
    /// and shape, and with <paramref name="withMomentum"/> every momentum buffer. The first
    /// difference is an <see cref="InvalidDataException"/> naming <paramref name="source"/>.
    /// </summary>
    public static CheckpointInfo CheckLayout(SafeTensorsFile file, string source, ModelLayout layout, bool withMomentum)
    {
        var info = Info(file, source);
        if (info.Model != layout.Architecture || info.Norm != layout.Normalization)
            throw new InvalidDataException($"{source}: holds a {info.Model}/{info.Norm} model, this run trains {layout.Architecture}/{layout.Normalization}");
        foreach (var t in layout.Tensors) Wrap(source, () => file.Get(t.Name, t.DType, t.Shape));
        if (withMomentum)
            foreach (var p in layout.Parameters) Wrap(source, () => file.Get(MomentumName(p.Name), SafeDType.F32, p.Shape));
        return info;
    }

    /// <summary>The metadata of an image already read.</summary>
    public static CheckpointInfo Info(SafeTensorsFile file, string path)
    {
        string Meta(string key) => file.Metadata.TryGetValue(key, out string? v)
            ? v : throw new InvalidDataException($"{path}: not a BnDist checkpoint (metadata has no '{key}')");
        if (Meta("format") != Format) throw new InvalidDataException($"{path}: unsupported checkpoint format '{Meta("format")}' (expected {Format})");
        if (!long.TryParse(Meta("step"), NumberStyles.Integer, CultureInfo.InvariantCulture, out long step) || step < 0)
            throw new InvalidDataException($"{path}: metadata step '{Meta("step")}' is not a step number");
        TrainingConfig? config = null;
        if (file.Metadata.TryGetValue("config", out string? json))
        {
            try { config = JsonSerializer.Deserialize<TrainingConfig>(json); }
            catch (JsonException e) { throw new InvalidDataException($"{path}: metadata config is not valid JSON: {e.Message}"); }
        }
        return new CheckpointInfo(Meta("model"), Meta("norm"), step, config);
    }

    private static float[] Get(SafeTensorsFile file, string path, string name, int[] shape) =>
        Wrap(path, () => file.GetF32(name, ToLong(shape)));

    private static T Wrap<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is KeyNotFoundException or InvalidDataException or ArgumentException)
        {
            throw new InvalidDataException(e.Message.StartsWith(path, StringComparison.Ordinal) ? e.Message : $"{path}: {e.Message}", e);
        }
    }

    private static float[] Download(IBackend backend, Tensors.Tensor t)
    {
        var values = new float[t.Length];
        backend.Download(t, values);
        return values;
    }

    private static long[] ToLong(int[] shape) => [.. shape.Select(d => (long)d)];
}
