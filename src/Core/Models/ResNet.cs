using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Init;
using BnDist.Core.Layers;

namespace BnDist.Core.Models;

/// <summary>
/// The CIFAR ResNets of He et al. 2016 §4.2 with torchvision's names and layouts: a 3×3 stem
/// convolution of 16 channels (<c>conv1</c>, <c>bn1</c>, ReLU), three stages <c>layer1..3</c> of n
/// basic blocks of 16, 32 and 64 channels (n = 3: resnet20, n = 9: resnet56; 6n + 2 layers), the
/// first block of stages 2 and 3 with stride 2 and a projection shortcut <c>downsample</c>
/// (a 1×1 stride-2 convolution and its batch norm: option B), global average pooling and the
/// classifier <c>fc</c>. Convolutions have no bias. A block is
/// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
/// Initialization as torchvision's ResNet: convolutions Kaiming-normal with fan_out (std
/// √(2 / (Cout·k²))), batch norm γ = 1, β = 0, the classifier PyTorch's default.
/// </summary>
public static class ResNet
{
    /// <summary>The blocks per stage of a CIFAR ResNet of <paramref name="depth"/> = 6n + 2 layers.</summary>
    public static int BlocksPerStage(int depth) =>
        depth >= 8 && (depth - 2) % 6 == 0 ? (depth - 2) / 6 : throw new ArgumentException($"a CIFAR ResNet has 6n + 2 layers, not {depth}");

    public static ModelSpec Spec(int depth, int classes)
    {
        int n = BlocksPerStage(depth);
        return new ModelSpec($"resnet{depth}", m =>
        {
            m.Conv2d(16, 3, padding: 1, bias: false, name: "conv1").Norm("bn1").Relu();
            int[] widths = [16, 32, 64];
            for (int stage = 0; stage < 3; stage++)
            {
                int width = widths[stage];
                m.Sequential($"layer{stage + 1}", layer =>
                {
                    for (int i = 0; i < n; i++)
                    {
                        int stride = stage > 0 && i == 0 ? 2 : 1;
                        layer.Residual(i.ToString(System.Globalization.CultureInfo.InvariantCulture),
                            body => body
                                .Conv2d(width, 3, stride, padding: 1, bias: false, name: "conv1").Norm("bn1").Relu()
                                .Conv2d(width, 3, padding: 1, bias: false, name: "conv2").Norm("bn2"),
                            shortcut: stride == 1 ? null : s => s.Conv2d(width, 1, stride, bias: false).Norm(),
                            then: t => t.Relu());
                    }
                });
            }
            m.GlobalAvgPool2d().Flatten().Linear(classes, name: "fc");
        });
    }

    public static Network Create(int depth, IBackend backend, ICollective collective, int[] sampleShape, int classes, ulong seed,
        NormalizationOptions norm)
    {
        var network = Spec(depth, classes).Build(backend, collective, sampleShape, seed, norm);
        foreach (var conv in network.Layers.OfType<Conv2d>())
        {
            int[] w = conv.Weight.Shape;
            Initializers.Normal(backend, conv.Weight, Math.Sqrt(2.0 / (w[0] * w[2] * w[3])), seed);
        }
        return network;
    }
}
