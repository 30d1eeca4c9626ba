using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// A residual connection (He et al. 2016): y = body(x) + shortcut(x), the shortcut being the
/// identity when null or a projection (a strided 1×1 convolution and its batch norm) where the
/// shape changes. x fans out to both branches, so backward sums their input gradients:
/// ∂L/∂x = ∂body/∂x·g + ∂shortcut/∂x·g with g = ∂L/∂y reaching both unchanged. Forward visits
/// the body first, then the shortcut (torchvision's BasicBlock order); backward the reverse.
/// With <see cref="FusedRelu"/> the block is relu(body(x) + shortcut(x)) (the model builder fuses a
/// ReLU that follows the block): the sum and the ReLU are one pass forward, and backward first
/// masks g where the output is 0.
/// </summary>
public sealed class Residual : Module
{
    private readonly IBackend _backend;
    private readonly Module[] _children;
    private Tensor? _x, _y, _dx, _g;

    public Residual(IBackend backend, Module body, Module? shortcut = null)
    {
        (_backend, Body, Shortcut) = (backend, body, shortcut);
        _children = shortcut is null ? [body] : [body, shortcut];
        ComputeInputGradient = true;
    }

    public Module Body { get; }

    /// <summary>The projection, or null for the identity.</summary>
    public Module? Shortcut { get; }

    /// <summary>Whether a ReLU follows, computed in this block's sum (its output is then max(body(x) + shortcut(x), 0)).</summary>
    public bool FusedRelu { get; internal set; }

    /// <summary>
    /// Whether this block's input is the output of a ReLU whose backward this block applies to the input gradient it
    /// returns (in the same pass as the sum of its branches'): set with <see cref="GradientArrivesMasked"/> on the block
    /// before it, whose fused ReLU that is.
    /// </summary>
    public bool InputFromRelu { get; internal set; }

    /// <summary>Whether the gradient this block receives has been through its fused ReLU's backward already (the next
    /// block's <see cref="InputFromRelu"/>), so that backward skips that pass.</summary>
    public bool GradientArrivesMasked { get; internal set; }

    public override IReadOnlyList<Module> Children => _children;

    public override Tensor Forward(Tensor x, bool training)
    {
        var a = Body.Forward(x, training);
        var b = Shortcut?.Forward(x, training) ?? x;
        if (!a.HasShape(b.Shape))
            throw new ArgumentException($"residual block: the body gives {a} but the shortcut gives {b}; a shortcut that changes the shape needs a projection");
        var y = Reuse(_backend, ref _y, a.Shape);
        if (FusedRelu) _backend.AddRelu(a, b, y);
        else _backend.Add(a, b, y);
        _x = x;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        if (FusedRelu && !GradientArrivesMasked)
        {
            var y = _y ?? throw new InvalidOperationException("residual block: backward before forward");
            var g = Reuse(_backend, ref _g, y.Shape);
            _backend.ReluBackward(y, dy, g);
            dy = g;
        }
        var fromShortcut = Shortcut?.RunBackward(dy) ?? dy;
        var fromBody = Body.RunBackward(dy);
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(_backend, ref _dx, fromBody.Shape);
        if (InputFromRelu) _backend.AddReluBackward(fromBody, fromShortcut, _x!, dx);
        else _backend.Add(fromBody, fromShortcut, dx);
        return dx;
    }

    public override int[] Trace(int[] inputShape, Action<Layer, int[]>? visit)
    {
        int[] a = Body.Trace(inputShape, visit);
        int[] b = Shortcut?.Trace(inputShape, visit) ?? inputShape;
        if (!a.AsSpan().SequenceEqual(b))
            throw new ArgumentException(
                $"residual block: the body gives [{string.Join(", ", a)}] but the shortcut gives [{string.Join(", ", b)}]; " +
                "a shortcut that changes the shape needs a projection");
        return a;
    }
}
