using BnDist.Core.Layers;
using BnDist.Core.Tensors;

namespace BnDist.Core.Models;

/// <summary>
/// A trainable network: a tree of modules (<see cref="Module"/>) with PyTorch-style state
/// names, the shape of one input sample and the number of classes. Everything that must be
/// identical on every rank comes from one walk of the tree in forward order: the parameters
/// (the order gradients are flattened and reduced in), the buffers, and the batch-norm layers,
/// numbered 0, 1, … for their collectives whatever the nesting (docs/architecture.md §2).
/// </summary>
public sealed class Network
{
    /// <summary>A chain of layers (a <see cref="Sequential"/> root).</summary>
    public Network(string architecture, string normalization, int[] sampleShape, int classes, IEnumerable<Module> layers)
        : this(architecture, normalization, sampleShape, classes, new Sequential(layers))
    {
    }

    /// <exception cref="ArgumentException">Two tensors share a name, or the tree does not map a sample to [classes] logits.</exception>
    public Network(string architecture, string normalization, int[] sampleShape, int classes, Module root)
    {
        Architecture = architecture;
        Normalization = normalization;
        SampleShape = sampleShape;
        Classes = classes;
        Root = root;
        Layers = [.. root.Leaves()];
        Parameters = [.. root.Parameters];
        Buffers = [.. root.Buffers];
        BatchNorms = [.. Layers.OfType<BatchNorm>()];
        for (int i = 0; i < BatchNorms.Count; i++) BatchNorms[i].LayerIndex = i;
        foreach (var (dropout, i) in Layers.OfType<Dropout>().Select((d, i) => (d, i)))
            (dropout.Context, dropout.Index) = (Context, i);
        root.ComputeInputGradient = false;
        var names = Parameters.Select(p => p.Name).Concat(Buffers.Select(b => b.Name)).ToList();
        var duplicate = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two tensors are named {duplicate.Key}");
        int[] output = root.OutputShape([1, .. sampleShape]);
        if (!output.AsSpan().SequenceEqual([1, classes]))
            throw new ArgumentException(
                $"{architecture}: a [{string.Join(", ", sampleShape)}] sample gives an output of [{string.Join(", ", output[1..])}], " +
                $"not the [{classes}] logits of its classes");
    }

    /// <summary>The model's name: "convnet", "resnet20", a user's own.</summary>
    public string Architecture { get; }

    /// <summary>"bn", "gn" or "none".</summary>
    public string Normalization { get; }

    /// <summary>The shape of one input sample, e.g. [1, 28, 28].</summary>
    public int[] SampleShape { get; }

    public int Classes { get; }

    /// <summary>The batch in flight (step, sample indices), which dropout layers read.</summary>
    public BatchContext Context { get; } = new();

    /// <summary>The module tree.</summary>
    public Module Root { get; }

    /// <summary>The leaf layers, in forward order.</summary>
    public IReadOnlyList<Layer> Layers { get; }

    public IReadOnlyList<Parameter> Parameters { get; }

    public IReadOnlyList<HostBuffer> Buffers { get; }

    /// <summary>The batch-norm layers in forward order; the i-th has <see cref="BatchNorm.LayerIndex"/> i.</summary>
    public IReadOnlyList<BatchNorm> BatchNorms { get; }

    public long ParameterCount => Parameters.Sum(p => (long)p.Value.Length);

    /// <summary>Each leaf layer with the shape of its input for a batch of <paramref name="batch"/>, in forward order.</summary>
    public IReadOnlyList<(Layer Layer, int[] InputShape)> LayerInputs(int batch)
    {
        var result = new List<(Layer, int[])>();
        Root.Trace([batch, .. SampleShape], (layer, shape) => result.Add((layer, shape)));
        return result;
    }

    public Tensor Forward(Tensor x, bool training) => Root.Forward(x, training);

    /// <summary>Backpropagates ∂L/∂output, leaving every parameter's gradient in its Grad.</summary>
    public void Backward(Tensor dOutput) => Root.RunBackward(dOutput);

    /// <summary>
    /// Calls <paramref name="hook"/> with each leaf that has parameters as soon as its backward has
    /// produced their gradients (null: no hook). A data-parallel reducer overlaps its buckets with
    /// the rest of backward this way (docs/architecture.md §2).
    /// </summary>
    public void OnGradientsReady(Action<Layer>? hook)
    {
        foreach (var leaf in Layers)
            leaf.GradientsReady = hook is null || !leaf.Parameters.Any() ? null : m => hook((Layer)m);
    }

    /// <summary>Tells layers with cached derived values that the parameters changed.</summary>
    public void MarkParametersChanged()
    {
        foreach (var p in Parameters) p.MarkChanged();
        foreach (var bn in BatchNorms) bn.Running.MarkChanged();
    }
}
