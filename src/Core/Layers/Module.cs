using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// A node of a network, in the spirit of PyTorch's nn.Module: a leaf <see cref="Layer"/> or a
/// container of modules (<see cref="Sequential"/>, <see cref="Residual"/>, <see cref="Concat"/>).
/// Forward maps a tensor to a tensor and keeps what backward needs; backward receives ∂L/∂output,
/// leaves the gradients of every parameter below it (overwritten, never accumulated across
/// steps) and returns ∂L/∂input. Where a tensor fans out inside a container (a residual
/// block's input feeds the body and the shortcut), the container sums the branches' input
/// gradients. Output and gradient tensors belong to the module that made them and are
/// reused from step to step; a caller must not write into a tensor it received.
/// </summary>
/// <remarks>
/// The forward order is static: containers visit their children in a fixed order (a
/// sequence in order, a residual block's body before its shortcut, a concatenation's
/// branches in order), so parameters, buffers and batch-norm collectives come in one order
/// that is the same on every rank (docs/architecture.md §2). Backward visits in reverse.
/// </remarks>
public abstract class Module
{
    /// <summary>The direct children, in forward order (none for a leaf).</summary>
    public virtual IReadOnlyList<Module> Children => [];

    /// <summary>
    /// Whether backward must produce ∂L/∂input. False where nothing upstream has parameters
    /// (the network's input): the module may then return anything from <see cref="Backward"/>,
    /// and a module without parameters must return at once, touching nothing (what it receives
    /// is then no gradient of its output).
    /// A container passes the flag on to the children whose inputs need a gradient.
    /// </summary>
    public bool ComputeInputGradient
    {
        get => _computeInputGradient;
        set
        {
            _computeInputGradient = value;
            PassInputGradient(value);
        }
    }

    private bool _computeInputGradient = true;

    /// <summary>
    /// Tells the children which of them must produce their input gradient, given whether this
    /// module must: by default all of them or none, as the input fans out to each child.
    /// </summary>
    protected virtual void PassInputGradient(bool needed)
    {
        foreach (var child in Children) child.ComputeInputGradient = needed;
    }

    public abstract Tensor Forward(Tensor x, bool training);

    public abstract Tensor Backward(Tensor dy);

    /// <summary>
    /// <see cref="Backward"/>, then the gradient hook (<see cref="GradientsReady"/>) of a module whose
    /// parameter gradients are now final. Containers run their children through this, so a
    /// bucketed gradient reducer can start summing while backward goes on with earlier layers.
    /// </summary>
    public Tensor RunBackward(Tensor dy)
    {
        var dx = Backward(dy);
        GradientsReady?.Invoke(this);
        return dx;
    }

    /// <summary>Called after this module's backward (set on leaves with parameters by <see cref="Models.Network.OnGradientsReady"/>).</summary>
    internal Action<Module>? GradientsReady { get; set; }

    /// <summary>The output shape for an input shape (throws naming the layer when it does not fit).</summary>
    public virtual int[] OutputShape(int[] inputShape) => Trace(inputShape, null);

    /// <summary>
    /// Walks the leaves in forward order with the input shape each one receives, and returns
    /// the output shape: the shape inference of the graph.
    /// </summary>
    public abstract int[] Trace(int[] inputShape, Action<Layer, int[]>? visit);

    /// <summary>Trained tensors of this module and its children, in forward order.</summary>
    public virtual IEnumerable<Parameter> Parameters => Children.SelectMany(c => c.Parameters);

    /// <summary>Host state of this module and its children (batch-norm running statistics), in forward order.</summary>
    public virtual IEnumerable<HostBuffer> Buffers => Children.SelectMany(c => c.Buffers);

    /// <summary>The leaf layers, in forward order.</summary>
    public IEnumerable<Layer> Leaves() => this is Layer layer ? [layer] : Children.SelectMany(c => c.Leaves());

    /// <summary>Returns <paramref name="cache"/> if it has this shape, else a new tensor stored in it.</summary>
    protected static Tensor Reuse(Backends.IBackend backend, ref Tensor? cache, int[] shape)
    {
        if (cache is not null && cache.HasShape(shape)) return cache;
        cache?.Dispose();
        cache = backend.Allocate(shape);
        return cache;
    }

    /// <summary>True when this module or one below it has a trained tensor.</summary>
    public bool HasParameters => Parameters.Any();
}
