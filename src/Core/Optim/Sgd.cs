using BnDist.Core.Backends;
using BnDist.Core.Layers;
using BnDist.Core.Tensors;

namespace BnDist.Core.Optim;

/// <summary>
/// Stochastic gradient descent with momentum and weight decay, as torch.optim.SGD
/// (dampening 0, not Nesterov):
///   g' = g + λ·w;   v ← μ·v + g';   w ← w − lr·v
/// (v starts at 0, so the first step's v is g', as in PyTorch). Weight decay applies to
/// every parameter, batch-norm γ and β included, as PyTorch's default parameter group does.
/// </summary>
public sealed class Sgd
{
    private readonly IBackend _backend;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _velocity;

    public Sgd(IBackend backend, IReadOnlyList<Parameter> parameters, float momentum, float weightDecay)
    {
        if (momentum < 0 || momentum >= 1) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must lie in [0, 1)");
        if (weightDecay < 0) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be ≥ 0");
        (_backend, _parameters, Momentum, WeightDecay) = (backend, parameters, momentum, weightDecay);
        _velocity = [.. parameters.Select(p => backend.Allocate(p.Shape))];
    }

    public float Momentum { get; }

    public float WeightDecay { get; }

    /// <summary>The momentum buffers, in parameter order (saved as optimizer state).</summary>
    public IReadOnlyList<Tensor> Velocity => _velocity;

    public void Step(float learningRate)
    {
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            _backend.SgdUpdate(p.Value, p.Grad, _velocity[i], learningRate, Momentum, WeightDecay);
            p.MarkChanged();
        }
    }
}
