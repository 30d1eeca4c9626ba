using BnDist.Core.Backends.Cpu;
using BnDist.Core.Layers;
using BnDist.Core.Optim;
using BnDist.Core.Tests.Support;

namespace BnDist.Core.Tests.Optim;

public sealed class SgdTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Three_steps_with_momentum_and_weight_decay_match_hand_computed_torch_optim_sgd()
    {
        var p = new Parameter("w", _backend.From([1f, -2f], 2), _backend.Allocate(2));
        var sgd = new Sgd(_backend, [p], momentum: 0.9f, weightDecay: 0.1f);
        float[][] grads = [[0.5f, 0.25f], [-1f, 0f], [0.2f, 0.4f]];
        // By hand, element 0 (lr 0.1):
        // step 1: g' = 0.5 + 0.1·1 = 0.6; v = 0.6; w = 1 − 0.06 = 0.94
        // step 2: g' = −1 + 0.094 = −0.906; v = 0.54 − 0.906 = −0.366; w = 0.94 + 0.0366 = 0.9766
        // step 3: g' = 0.2 + 0.09766 = 0.29766; v = −0.3294 + 0.29766 = −0.03174; w = 0.9766 + 0.003174 = 0.979774
        // element 1:
        // step 1: g' = 0.25 − 0.2 = 0.05; v = 0.05; w = −2.005
        // step 2: g' = 0 − 0.2005 = −0.2005; v = 0.045 − 0.2005 = −0.1555; w = −2.005 + 0.01555 = −1.98945
        // step 3: g' = 0.4 − 0.198945 = 0.201055; v = −0.13995 + 0.201055 = 0.061105; w = −1.98945 − 0.0061105 = −1.9955605
        foreach (var g in grads)
        {
            _backend.Upload(g, p.Grad);
            sgd.Step(0.1f);
        }
        float[] w = _backend.Read(p.Value);
        Assert.Equal(0.979774, w[0], 5);
        Assert.Equal(-1.9955605, w[1], 5);
        Assert.Equal(-0.03174, _backend.Read(sgd.Velocity[0])[0], 5);
    }

    [Fact]
    public void Without_momentum_it_is_plain_gradient_descent()
    {
        var p = new Parameter("w", _backend.From([3f], 1), _backend.From([2f], 1));
        new Sgd(_backend, [p], 0f, 0f).Step(0.5f);
        Assert.Equal(2f, _backend.Read(p.Value)[0]);
    }
}
