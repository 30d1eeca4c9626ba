using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// One differentiable stage of a network. Forward keeps what backward needs (the input, or
/// its own output); backward receives ∂L/∂output, writes the gradients of the layer's
/// parameters (overwriting, not accumulating) and returns ∂L/∂input. Output tensors are
/// allocated once per batch shape and reused, so a steady training loop allocates none.
/// </summary>
public abstract class Layer
{
    protected Layer(IBackend backend, string name)
    {
        Backend = backend;
        Name = name;
    }

    /// <summary>The prefix of this layer's state names ("conv1", "bn2"); empty for stateless layers.</summary>
    public string Name { get; }

    protected IBackend Backend { get; }

    /// <summary>False for the first layer of a network: its input gradient is never used.</summary>
    public bool ComputeInputGradient { get; set; } = true;

    public abstract Tensor Forward(Tensor x, bool training);

    public abstract Tensor Backward(Tensor dy);

    public virtual IEnumerable<Parameter> Parameters => [];

    /// <summary>State that is not trained by gradients (BN running statistics).</summary>
    public virtual IEnumerable<HostBuffer> Buffers => [];

    /// <summary>The output shape for an input shape.</summary>
    public abstract int[] OutputShape(int[] inputShape);

    /// <summary>Returns <paramref name="cache"/> if it has this shape, else a new tensor stored in it.</summary>
    protected Tensor Reuse(ref Tensor? cache, int[] shape)
    {
        if (cache is not null && cache.HasShape(shape)) return cache;
        cache?.Dispose();
        cache = Backend.Allocate(shape);
        return cache;
    }

    protected Parameter NewParameter(string suffix, params int[] shape) =>
        new($"{Name}.{suffix}", Backend.Allocate(shape), Backend.Allocate(shape));

    protected static void CheckRank(Tensor x, int rank, string layer)
    {
        if (x.Rank != rank)
            throw new ArgumentException($"{layer} expects a rank-{rank} input, got {x}");
    }
}
