using BnDist.Core.Backends.Cpu;
using BnDist.Core.Collectives;
using BnDist.Core.Models;
using BnDist.Core.Tests.Support;

namespace BnDist.Core.Tests.Models;

public sealed class ModelFactoryTests : IDisposable
{
    private readonly CpuBackend _backend = new(2);

    public void Dispose() => _backend.Dispose();

    [Fact]
    public void Convnet_has_pytorchs_state_dict_names_and_layouts()
    {
        var net = ModelFactory.Create("convnet", _backend, SingleProcessCollective.Instance, 0);
        var state = net.Parameters.Select(p => (p.Name, p.Shape)).Concat(net.Buffers.Select(b => (b.Name, b.Shape))).ToDictionary();
        Assert.Equal([32, 1, 3, 3], state["conv1.weight"]);
        Assert.Equal([32], state["bn1.weight"]);
        Assert.Equal([32], state["bn1.running_var"]);
        Assert.Equal([], state["bn1.num_batches_tracked"]);
        Assert.Equal([64, 32, 3, 3], state["conv2.weight"]);
        Assert.Equal([128, 3136], state["fc1.weight"]);
        Assert.Equal([128], state["bn3.running_mean"]);
        Assert.Equal([10, 128], state["fc2.weight"]);
        Assert.Equal([10], state["fc2.bias"]);
        Assert.False(state.ContainsKey("conv1.bias"));
        Assert.Equal(32 * 9 + 64 * 32 * 9 + 3136 * 128 + 128 * 10 + 10 + 2 * (32 + 64 + 128), net.ParameterCount);
    }

    [Fact]
    public void Paper_mlp_has_three_batch_norms_before_sigmoids_and_small_gaussian_weights()
    {
        var net = ModelFactory.Create("mlp-paper", _backend, SingleProcessCollective.Instance, 0);
        Assert.Equal(["fc1.weight", "bn1.weight", "bn1.bias", "fc2.weight", "bn2.weight", "bn2.bias",
            "fc3.weight", "bn3.weight", "bn3.bias", "fc4.weight", "fc4.bias"], net.Parameters.Select(p => p.Name));
        float[] w = _backend.Read(net.Parameters[0].Value);
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.0095, 0.0105); // 78,400 draws of N(0, 0.01²)
    }

    [Fact]
    public void Norm_swaps_the_normalization_and_none_gives_the_layers_biases()
    {
        var gn = ModelFactory.Create("convnet", _backend, SingleProcessCollective.Instance, 0, new NormalizationOptions("gn"));
        Assert.Contains(gn.Parameters, p => p.Name == "gn1.weight");
        Assert.Empty(gn.Buffers);
        var none = ModelFactory.Create("convnet", _backend, SingleProcessCollective.Instance, 0, new NormalizationOptions("none"));
        Assert.Contains(none.Parameters, p => p.Name == "conv1.bias");
        Assert.DoesNotContain(none.Parameters, p => p.Name.StartsWith("bn", StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_seed_builds_the_same_network_and_another_seed_a_different_one()
    {
        float[] W(ulong seed) => _backend.Read(ModelFactory.Create("convnet", _backend, SingleProcessCollective.Instance, seed).Parameters[0].Value);
        Assert.Equal(W(4), W(4));
        Assert.NotEqual(W(4), W(5));
    }

    [Fact]
    public void An_unknown_model_is_named_in_the_error()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelFactory.Create("resnet", _backend, SingleProcessCollective.Instance, 0));
        Assert.Contains("'resnet'", e.Message);
    }

    [Fact]
    public void Mlp_with_named_widths_has_a_batch_norm_after_each_hidden_layer()
    {
        var net = ModelFactory.Create("mlp:64,256", _backend, SingleProcessCollective.Instance, 0);
        Assert.Equal(["fc1.weight", "bn1.weight", "bn1.bias", "fc2.weight", "bn2.weight", "bn2.bias", "fc3.weight", "fc3.bias"],
            net.Parameters.Select(p => p.Name));
        Assert.Equal([64, 784], net.Parameters[0].Shape);
        Assert.Equal([10, 256], net.Parameters[6].Shape);
        Assert.Equal([64, 256], net.BatchNorms.Select(b => b.Channels));
        // PyTorch's default: kaiming-uniform with a = √5 gives U(±1/√fan_in).
        float[] w = _backend.Read(net.Parameters[0].Value);
        Assert.InRange(w.Max(Math.Abs), 0.9 / 28, 1.0 / 28);
    }

    [Theory]
    [InlineData("mlp:")]
    [InlineData("mlp:0")]
    [InlineData("mlp:64,,32")]
    [InlineData("mlp:-5")]
    [InlineData("mlp:1,2,3,4,5,6,7,8,9")]
    [InlineData("resnet")]
    public void Unknown_or_malformed_model_names_are_refused_with_the_expected_forms(string name)
    {
        var e = Assert.Throws<ArgumentException>(() => ModelFactory.Create(name, _backend, SingleProcessCollective.Instance, 0));
        Assert.Contains(name, e.Message);
        Assert.Contains("mlp:W1,W2", e.Message);
        Assert.False(ModelFactory.IsKnown(name));
    }
}
