using BnDist.Core.Backends;
using BnDist.Core.Init;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Fully connected: y = x·Wᵀ + b, x [N, in], W [out, in] (PyTorch's layout), b [out].
/// Backward: dW = dyᵀ·x, db = Σₙ dy, dx = dy·W.
/// </summary>
public sealed class Linear : Layer
{
    private readonly int _in, _out;
    private Tensor? _x, _y, _dx;

    public Linear(IBackend backend, string name, int inFeatures, int outFeatures, bool bias = true) : base(backend, name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        (_in, _out) = (inFeatures, outFeatures);
        Weight = NewParameter("weight", outFeatures, inFeatures);
        Bias = bias ? NewParameter("bias", outFeatures) : null;
    }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public int InFeatures => _in;

    public override IEnumerable<Parameter> Parameters => Bias is null ? [Weight] : [Weight, Bias];

    public void ResetParameters(ulong seed)
    {
        Initializers.UniformFanIn(Backend, Weight, _in, seed);
        if (Bias is not null) Initializers.UniformFanIn(Backend, Bias, _in, seed);
    }

    public override int[] OutputShape(int[] s)
    {
        Check(s);
        return [s[0], _out];
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        Check(x.Shape);
        int n = x.Shape[0];
        var y = Reuse(ref _y, [n, _out]);
        if (n > 0) Backend.LinearForward(n, _in, _out, x, Weight.Value, Bias?.Value, y);
        _x = x;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var x = _x ?? throw new InvalidOperationException($"{Name}: backward before forward");
        int n = x.Shape[0];
        Tensor? dx = ComputeInputGradient ? Reuse(ref _dx, x.Shape) : null;
        if (n > 0)
        {
            Backend.LinearBackward(n, _in, _out, x, Weight.Value, dy, dx, Weight.Grad, Bias?.Grad);
        }
        else
        {
            Backend.Fill(Weight.Grad, 0f);
            if (Bias is not null) Backend.Fill(Bias.Grad, 0f);
        }
        return dx ?? dy;
    }

    private void Check(int[] s)
    {
        if (s.Length != 2 || s[1] != _in)
            throw new ArgumentException($"{Name} expects [N, {_in}], got [{string.Join(", ", s)}]");
    }
}
