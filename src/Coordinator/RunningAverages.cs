using BnDist.Core.Checkpoints;
using BnDist.Core.Layers;
using BnDist.Core.Models;

namespace BnDist.Coordinator;

/// <summary>
/// The authoritative batch-norm running averages of a run, kept from the model's layout alone:
/// one <see cref="RunningStatistics"/> per batch-norm layer, updated from each step's reduced
/// statistics by the same code the workers run (so the copies agree bit for bit). One lock
/// covers every read and write, so a checkpoint or a <c>GetRunState</c> never sees a layer
/// half updated or two layers of different steps.
/// </summary>
public sealed class RunningAverages
{
    private readonly object _gate = new();
    private readonly BatchNormSpec[] _specs;
    private readonly RunningStatistics[] _layers;

    /// <summary>The layers of <paramref name="layout"/>, initialized from <paramref name="state"/> (an image that holds their buffers).</summary>
    public RunningAverages(ModelLayout layout, SafeTensorsFile state)
    {
        _specs = [.. layout.BatchNorms];
        _layers = [.. _specs.Select(s => new RunningStatistics(s.Channels, s.Momentum))];
        for (int i = 0; i < _specs.Length; i++)
        {
            string name = _specs[i].Name;
            state.GetF32($"{name}.running_mean", [_specs[i].Channels]).CopyTo(_layers[i].Mean, 0);
            state.GetF32($"{name}.running_var", [_specs[i].Channels]).CopyTo(_layers[i].Variance, 0);
            _layers[i].BatchesTracked[0] = state.GetI64($"{name}.num_batches_tracked", []).Single();
        }
    }

    /// <summary>No batch-norm layers (before the model is known, or a model without any).</summary>
    public static RunningAverages None { get; } = new(new ModelLayout("", "", [], []), new SafeTensorsFile());

    public int Count => _specs.Length;

    /// <summary>One step's update of layer <paramref name="layer"/>; the reason it cannot be applied, or null.</summary>
    public string? Update(int layer, ReadOnlySpan<double> reduced)
    {
        if (layer < 0 || layer >= _specs.Length)
            return $"batch-norm layer {layer} does not exist (the model has {_specs.Length})";
        if (reduced.Length != 2 * _specs[layer].Channels + 1)
            return $"batch-norm layer {layer} ({_specs[layer].Name}) has {_specs[layer].Channels} channels, so {2 * _specs[layer].Channels + 1} values, not {reduced.Length}";
        lock (_gate)
        {
            try
            {
                _layers[layer].Update(reduced);
            }
            catch (InvalidOperationException e)
            {
                return $"batch-norm layer {layer} ({_specs[layer].Name}): {e.Message}";
            }
        }
        return null;
    }

    /// <summary>Adds every buffer to <paramref name="file"/> under its state_dict name (a consistent snapshot).</summary>
    public void AddTo(SafeTensorsFile file)
    {
        lock (_gate)
        {
            for (int i = 0; i < _specs.Length; i++)
            {
                file.AddF32($"{_specs[i].Name}.running_mean", [_specs[i].Channels], _layers[i].Mean);
                file.AddF32($"{_specs[i].Name}.running_var", [_specs[i].Channels], _layers[i].Variance);
                file.AddI64($"{_specs[i].Name}.num_batches_tracked", [], _layers[i].BatchesTracked);
            }
        }
    }

    /// <summary>A copy of <paramref name="image"/> whose batch-norm buffers are these (one snapshot); the names whose values differed.</summary>
    public (SafeTensorsFile File, List<string> Replaced) Substitute(SafeTensorsFile image)
    {
        var own = new SafeTensorsFile();
        AddTo(own);
        var result = new SafeTensorsFile();
        foreach (var (key, value) in image.Metadata) result.SetMetadata(key, value);
        var differed = new List<string>();
        foreach (var t in image.Tensors)
        {
            if (own.TryGet(t.Name, out var mine))
            {
                if (!t.Data.AsSpan().SequenceEqual(mine.Data)) differed.Add(t.Name);
                result.Add(mine);
            }
            else
            {
                result.Add(t);
            }
        }
        return (result, differed);
    }

    /// <summary>The buffers as a safetensors image (GetRunState).</summary>
    public byte[] Image()
    {
        var file = new SafeTensorsFile();
        AddTo(file);
        using var stream = new MemoryStream();
        file.Write(stream);
        return stream.ToArray();
    }

    /// <summary>running_mean and running_var of every layer by name (a copy).</summary>
    public IReadOnlyDictionary<string, float[]> Snapshot()
    {
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        lock (_gate)
        {
            for (int i = 0; i < _specs.Length; i++)
            {
                result[$"{_specs[i].Name}.running_mean"] = [.. _layers[i].Mean];
                result[$"{_specs[i].Name}.running_var"] = [.. _layers[i].Variance];
            }
        }
        return result;
    }
}
