using BnDist.Core.Layers;
using BnDist.Core.Tensors;

namespace BnDist.Core.Models;

/// <summary>
/// A feed-forward chain of layers with PyTorch-style state names. Parameters come in a
/// fixed order (layer order, weight before bias): the order gradients are flattened and
/// reduced in, identical on every rank.
/// </summary>
public sealed class Network
{
    public Network(string architecture, string normalization, int[] sampleShape, int classes, IReadOnlyList<Layer> layers)
    {
        Architecture = architecture;
        Normalization = normalization;
        SampleShape = sampleShape;
        Classes = classes;
        Layers = layers;
        Parameters = [.. layers.SelectMany(l => l.Parameters)];
        Buffers = [.. layers.SelectMany(l => l.Buffers)];
        if (layers.Count > 0) layers[0].ComputeInputGradient = false;
        var names = Parameters.Select(p => p.Name).Concat(Buffers.Select(b => b.Name)).ToList();
        var duplicate = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two tensors are named {duplicate.Key}");
    }

    /// <summary>"convnet" or "mlp-paper".</summary>
    public string Architecture { get; }

    /// <summary>"bn", "gn" or "none".</summary>
    public string Normalization { get; }

    /// <summary>The shape of one input sample, e.g. [1, 28, 28].</summary>
    public int[] SampleShape { get; }

    public int Classes { get; }

    /// <summary>The batch in flight (step, sample indices), which dropout layers read.</summary>
    public BatchContext Context { get; } = new();

    public IReadOnlyList<Layer> Layers { get; }

    public IReadOnlyList<Parameter> Parameters { get; }

    public IReadOnlyList<HostBuffer> Buffers { get; }

    public IEnumerable<BatchNorm> BatchNorms => Layers.OfType<BatchNorm>();

    public long ParameterCount => Parameters.Sum(p => (long)p.Value.Length);

    public Tensor Forward(Tensor x, bool training)
    {
        foreach (var layer in Layers) x = layer.Forward(x, training);
        return x;
    }

    /// <summary>Backpropagates ∂L/∂output, leaving every parameter's gradient in its Grad.</summary>
    public void Backward(Tensor dOutput)
    {
        for (int i = Layers.Count - 1; i >= 0; i--) dOutput = Layers[i].Backward(dOutput);
    }

    /// <summary>Tells layers with cached derived values that the parameters changed.</summary>
    public void MarkParametersChanged()
    {
        foreach (var p in Parameters) p.MarkChanged();
        foreach (var bn in BatchNorms) bn.Running.MarkChanged();
    }
}
