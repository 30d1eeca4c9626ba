using BnDist.Core.Backends;
using BnDist.Core.Init;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// 2-d convolution over NCHW input: weight [Cout, Cin, KH, KW] (PyTorch's layout), optional
/// bias [Cout]. Square kernel, equal stride and zero padding on both axes.
/// Backward: dW = Σₙ dyₙ · im2col(xₙ)ᵀ, db = Σ dy, dx = col2im(Wᵀ · dyₙ).
/// </summary>
public sealed class Conv2d : Layer
{
    private readonly int _in, _out, _kernel, _stride, _padding;
    private Tensor? _x, _y, _dx;

    public Conv2d(IBackend backend, string name, int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, bool bias = true)
        : base(backend, name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(inChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outChannels, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(kernel, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(padding);
        (_in, _out, _kernel, _stride, _padding) = (inChannels, outChannels, kernel, stride, padding);
        Weight = NewParameter("weight", outChannels, inChannels, kernel, kernel);
        Bias = bias ? NewParameter("bias", outChannels) : null;
    }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public override IEnumerable<Parameter> Parameters => Bias is null ? [Weight] : [Weight, Bias];

    public void ResetParameters(ulong seed)
    {
        int fanIn = _in * _kernel * _kernel;
        Initializers.UniformFanIn(Backend, Weight, fanIn, seed);
        if (Bias is not null) Initializers.UniformFanIn(Backend, Bias, fanIn, seed);
    }

    public override int[] OutputShape(int[] s)
    {
        var g = Geometry(s);
        return [s[0], _out, g.OutHeight, g.OutWidth];
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        CheckRank(x, 4, Name);
        var g = Geometry(x.Shape);
        var y = Reuse(ref _y, [g.N, _out, g.OutHeight, g.OutWidth]);
        if (g.N > 0) Backend.Conv2dForward(g, x, Weight.Value, Bias?.Value, y);
        _x = x;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var x = _x ?? throw new InvalidOperationException($"{Name}: backward before forward");
        var g = Geometry(x.Shape);
        Tensor? dx = ComputeInputGradient ? Reuse(ref _dx, x.Shape) : null;
        if (g.N > 0)
        {
            Backend.Conv2dBackward(g, x, Weight.Value, dy, dx, Weight.Grad, Bias?.Grad);
        }
        else
        {
            // An empty shard contributes nothing to the (globally summed) gradients.
            Backend.Fill(Weight.Grad, 0f);
            if (Bias is not null) Backend.Fill(Bias.Grad, 0f);
        }
        return dx ?? dy;
    }

    private ConvGeometry Geometry(int[] s)
    {
        if (s.Length != 4 || s[1] != _in)
            throw new ArgumentException($"{Name} expects [N, {_in}, H, W], got [{string.Join(", ", s)}]");
        var g = new ConvGeometry(s[0], _in, s[2], s[3], _out, _kernel, _kernel, _stride, _padding);
        if (g.OutHeight < 1 || g.OutWidth < 1)
            throw new ArgumentException($"{Name}: a {s[2]}×{s[3]} input is smaller than the {_kernel}×{_kernel} kernel");
        return g;
    }
}
