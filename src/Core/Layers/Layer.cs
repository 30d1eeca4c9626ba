using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// A leaf of a network: one differentiable operation. Forward keeps what backward needs (the
/// input, or its own output); backward receives ∂L/∂output, writes the gradients of the
/// layer's parameters (overwriting, not accumulating) and returns ∂L/∂input. Output tensors
/// are allocated once per batch shape and reused, so a steady training loop allocates none.
/// </summary>
public abstract class Layer : Module
{
    protected Layer(IBackend backend, string name)
    {
        Backend = backend;
        Name = name;
    }

    /// <summary>The prefix of this layer's state names, its path in the module tree ("conv1", "layer2.0.downsample.1"); empty for stateless layers.</summary>
    public string Name { get; }

    protected IBackend Backend { get; }

    public override IEnumerable<Parameter> Parameters => [];

    /// <summary>State that is not trained by gradients (BN running statistics).</summary>
    public override IEnumerable<HostBuffer> Buffers => [];

    /// <summary>The output shape for an input shape.</summary>
    public abstract override int[] OutputShape(int[] inputShape);

    public sealed override int[] Trace(int[] inputShape, Action<Layer, int[]>? visit)
    {
        visit?.Invoke(this, inputShape);
        return OutputShape(inputShape);
    }

    /// <summary>Returns <paramref name="cache"/> if it has this shape, else a new tensor stored in it.</summary>
    protected Tensor Reuse(ref Tensor? cache, int[] shape) => Reuse(Backend, ref cache, shape);

    protected Parameter NewParameter(string suffix, params int[] shape) =>
        new($"{Name}.{suffix}", Backend.Allocate(shape), Backend.Allocate(shape));

    protected static void CheckRank(Tensor x, int rank, string layer)
    {
        if (x.Rank != rank)
            throw new ArgumentException($"{layer} expects a rank-{rank} input, got {x}");
    }
}
