using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// A residual connection (He et al. 2016): y = body(x) + shortcut(x), the shortcut being the
/// identity when null or a projection (a strided 1×1 convolution and its batch norm) where the
/// shape changes. x fans out to both branches, so backward sums their input gradients:
/// ∂L/∂x = ∂body/∂x·g + ∂shortcut/∂x·g with g = ∂L/∂y reaching both unchanged. Forward visits
/// the body first, then the shortcut (torchvision's BasicBlock order); backward the reverse.
/// </summary>
public sealed class Residual : Module
{
    private readonly IBackend _backend;
    private readonly Module[] _children;
    private Tensor? _y, _dx;

    public Residual(IBackend backend, Module body, Module? shortcut = null)
    {
        (_backend, Body, Shortcut) = (backend, body, shortcut);
        _children = shortcut is null ? [body] : [body, shortcut];
        ComputeInputGradient = true;
    }

    public Module Body { get; }

    /// <summary>The projection, or null for the identity.</summary>
    public Module? Shortcut { get; }

    public override IReadOnlyList<Module> Children => _children;

    public override Tensor Forward(Tensor x, bool training)
    {
        var a = Body.Forward(x, training);
        var b = Shortcut?.Forward(x, training) ?? x;
        if (!a.HasShape(b.Shape))
            throw new ArgumentException($"residual block: the body gives {a} but the shortcut gives {b}; a shortcut that changes the shape needs a projection");
        var y = Reuse(_backend, ref _y, a.Shape);
        _backend.Add(a, b, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var fromShortcut = Shortcut?.RunBackward(dy) ?? dy;
        var fromBody = Body.RunBackward(dy);
        if (!ComputeInputGradient) return dy;
        var dx = Reuse(_backend, ref _dx, fromBody.Shape);
        _backend.Add(fromBody, fromShortcut, dx);
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
