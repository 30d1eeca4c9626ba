using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Modules applied one after another (PyTorch's nn.Sequential). Backward runs them in
/// reverse. A child needs its input gradient when the sequence's input needs one or when an
/// earlier child has parameters; otherwise its backward skips ∂L/∂input.
/// </summary>
public sealed class Sequential : Module
{
    private readonly Module[] _modules;

    public Sequential(IEnumerable<Module> modules)
    {
        _modules = [.. modules];
        ComputeInputGradient = true;
    }

    public override IReadOnlyList<Module> Children => _modules;

    protected override void PassInputGradient(bool needed)
    {
        foreach (var m in _modules)
        {
            m.ComputeInputGradient = needed;
            needed |= m.HasParameters;
        }
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        foreach (var m in _modules) x = m.Forward(x, training);
        return x;
    }

    public override Tensor Backward(Tensor dy)
    {
        for (int i = _modules.Length - 1; i >= 0; i--) dy = _modules[i].RunBackward(dy);
        return dy;
    }

    public override int[] Trace(int[] inputShape, Action<Layer, int[]>? visit)
    {
        foreach (var m in _modules) inputShape = m.Trace(inputShape, visit);
        return inputShape;
    }
}
