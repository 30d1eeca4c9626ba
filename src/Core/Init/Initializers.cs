using BnDist.Core.Backends;
using BnDist.Core.Layers;

namespace BnDist.Core.Init;

/// <summary>
/// PyTorch's default initializations, so accuracy curves are comparable: Conv2d and Linear
/// weights kaiming_uniform(a = √5), whose bound works out to 1/√fan_in, and biases uniform in
/// ±1/√fan_in; batch norm γ = 1, β = 0. The random streams are ours (<see cref="Rng"/>), one
/// per parameter name, so the same seed gives the same network whatever the layer order.
/// </summary>
public static class Initializers
{
    public static void UniformFanIn(IBackend backend, Parameter p, int fanIn, ulong seed)
    {
        double bound = 1.0 / Math.Sqrt(fanIn);
        var rng = Rng.For(seed, p.Name);
        var values = new float[p.Value.Length];
        for (int i = 0; i < values.Length; i++) values[i] = (float)((2.0 * rng.NextDouble() - 1.0) * bound);
        backend.Upload(values, p.Value);
    }

    public static void Normal(IBackend backend, Parameter p, double std, ulong seed)
    {
        var rng = Rng.For(seed, p.Name);
        var values = new float[p.Value.Length];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextGaussian() * std);
        backend.Upload(values, p.Value);
    }

    public static void Constant(IBackend backend, Parameter p, float value) => backend.Fill(p.Value, value);
}
