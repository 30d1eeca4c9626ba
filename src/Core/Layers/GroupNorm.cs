using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Group normalization (Wu &amp; He 2018): each sample's channels are split into G groups of
/// C/G; x̂ is normalized with the mean and biased variance of its (sample, group), then
/// y = γ_c·x̂ + β_c. Statistics never cross samples, so nothing is synchronized and training
/// and evaluation compute the same thing. Input [N, C] or [N, C, H, W].
/// Backward per group, with ĝ = γ_c·g and means over the group's values:
///   dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  dγ_c = Σ g·x̂,  dβ_c = Σ g.
/// </summary>
public sealed class GroupNorm : Layer
{
    private readonly int _channels, _groups;
    private readonly float _eps;
    private Tensor? _xhat, _invStd, _y, _dx;
    private ChannelLayout _layout;

    public GroupNorm(IBackend backend, string name, int groups, int channels, double eps = 1e-5) : base(backend, name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(groups, 1);
        if (channels % groups != 0)
            throw new ArgumentException($"{name}: {channels} channels cannot be split into {groups} groups");
        (_channels, _groups, _eps) = (channels, groups, (float)eps);
        Gamma = NewParameter("weight", channels);
        Beta = NewParameter("bias", channels);
        Backend.Fill(Gamma.Value, 1f);
    }

    public Parameter Gamma { get; }

    public Parameter Beta { get; }

    public override IEnumerable<Parameter> Parameters => [Gamma, Beta];

    public override int[] OutputShape(int[] s)
    {
        Layout(s);
        return s;
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        _layout = Layout(x.Shape);
        var y = Reuse(ref _y, x.Shape);
        var xhat = Reuse(ref _xhat, x.Shape);
        var invStd = Reuse(ref _invStd, [_layout.N * _groups]);
        Backend.GroupNormForward(_layout, _groups, _eps, x, Gamma.Value, Beta.Value, xhat, invStd, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        var xhat = _xhat ?? throw new InvalidOperationException($"{Name}: backward before forward");
        var dx = Reuse(ref _dx, dy.Shape);
        Backend.GroupNormBackward(_layout, _groups, dy, xhat, Gamma.Value, _invStd!, dx, Gamma.Grad, Beta.Grad);
        return dx;
    }

    private ChannelLayout Layout(int[] s)
    {
        if (s.Length == 2 && s[1] == _channels) return new ChannelLayout(s[0], _channels, 1);
        if (s.Length == 4 && s[1] == _channels) return new ChannelLayout(s[0], _channels, s[2] * s[3]);
        throw new ArgumentException($"{Name} expects [N, {_channels}] or [N, {_channels}, H, W], got [{string.Join(", ", s)}]");
    }
}
