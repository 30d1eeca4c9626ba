using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Init;
using BnDist.Core.Layers;

namespace BnDist.Core.Models;

/// <summary>How the normalization layers of a model are built.</summary>
/// <param name="Kind">"bn" (synchronized batch norm), "gn" (group norm) or "none".</param>
/// <param name="Momentum">The running-average factor α, or null for the cumulative average.</param>
public sealed record NormalizationOptions(string Kind = "bn", double? Momentum = BatchNorm.DefaultMomentum, int Groups = 8);

/// <summary>
/// The models of BnDist, with PyTorch's parameter names and layouts:
/// <list type="bullet">
/// <item><c>convnet</c>: conv1 (1→32, 3×3, pad 1) → bn1 → ReLU → maxpool 2 → conv2 (32→64) → bn2 →
/// ReLU → maxpool 2 → flatten → fc1 (3136→128) → bn3 → ReLU → fc2 (128→10).</item>
/// <item><c>mlp-paper</c>, the BN paper's MNIST network (§4.1): 784→100→100→100→10, BN before each
/// sigmoid, weights from N(0, 0.01²).</item>
/// <item><c>mlp:W1,W2,…</c>: flatten → fc1 (784→W1) → bn1 → ReLU → … → fcN (→10), with PyTorch's
/// default initialization; the widths name the hidden layers (one to eight, each 1 to 65536).</item>
/// </list>
/// A layer followed by a normalization has no bias (β plays its role); with <c>none</c> it has one.
/// </summary>
public static class ModelFactory
{
    public static readonly string[] Architectures = ["convnet", "mlp-paper", "mlp:W1,W2,…", "resnet20", "resnet56", BnInception.Name];

    /// <summary>The sample shape of the embedded data (Fashion-MNIST), the default of <see cref="Create"/>.</summary>
    public static readonly int[] FashionMnistShape = [1, 28, 28];

    /// <summary>Whether <paramref name="architecture"/> names a model this factory builds.</summary>
    public static bool IsKnown(string architecture) =>
        architecture is "convnet" or "mlp-paper" or BnInception.Name || TryResNetDepth(architecture, out _) ||
        (architecture.StartsWith("mlp:", StringComparison.Ordinal) && TryMlpWidths(architecture, out _));

    /// <summary>The depth of a <c>resnetD</c> name with D = 6n + 2 (8 ≤ D ≤ 1202); false otherwise.</summary>
    public static bool TryResNetDepth(string architecture, out int depth)
    {
        depth = 0;
        return architecture.StartsWith("resnet", StringComparison.Ordinal) &&
               int.TryParse(architecture.AsSpan(6), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out depth) &&
               depth is >= 8 and <= 1202 && (depth - 2) % 6 == 0 && architecture == $"resnet{depth}";
    }

    /// <summary>The hidden widths of an <c>mlp:W1,W2,…</c> name; false when malformed.</summary>
    public static bool TryMlpWidths(string architecture, out int[] widths)
    {
        widths = [];
        if (!architecture.StartsWith("mlp:", StringComparison.Ordinal)) return false;
        var parts = architecture[4..].Split(',');
        if (parts.Length is < 1 or > 8) return false;
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out result[i]) ||
                result[i] is < 1 or > 65536)
                return false;
        }
        widths = result;
        return true;
    }
    public static readonly string[] Normalizations = ["bn", "gn", "none"];

    /// <summary>
    /// Builds <paramref name="architecture"/>. The image models take their input channels and
    /// size from <paramref name="sampleShape"/> and their output width from <paramref name="classes"/>
    /// (Fashion-MNIST's [1, 28, 28] and 10 by default); convnet and the MLPs are defined on 28×28.
    /// </summary>
    public static Network Create(string architecture, IBackend backend, ICollective collective, ulong seed, NormalizationOptions? norm = null,
        int[]? sampleShape = null, int classes = 10)
    {
        sampleShape ??= FashionMnistShape;
        norm ??= new NormalizationOptions();
        if (!Normalizations.Contains(norm.Kind))
            throw new ArgumentException($"unknown normalization '{norm.Kind}' (expected {string.Join(", ", Normalizations)})");
        return architecture switch
        {
            "convnet" => ConvNet(backend, collective, seed, norm),
            "mlp-paper" => PaperMlp(backend, collective, seed, norm),
            BnInception.Name => BnInception.Create(backend, collective, sampleShape, classes, seed, norm),
            _ when TryResNetDepth(architecture, out int depth) => ResNet.Create(depth, backend, collective, sampleShape, classes, seed, norm),
            _ when TryMlpWidths(architecture, out int[] widths) => Mlp(architecture, widths, backend, collective, seed, norm),
            _ => throw new ArgumentException($"unknown model '{architecture}' (expected {string.Join(", ", Architectures)})"),
        };
    }

    private static Network ConvNet(IBackend b, ICollective collective, ulong seed, NormalizationOptions norm)
    {
        bool biased = norm.Kind == "none";
        var builder = new Builder(b, collective, norm);
        var conv1 = new Conv2d(b, "conv1", 1, 32, 3, padding: 1, bias: biased);
        var conv2 = new Conv2d(b, "conv2", 32, 64, 3, padding: 1, bias: biased);
        var fc1 = new Linear(b, "fc1", 64 * 7 * 7, 128, bias: biased);
        var fc2 = new Linear(b, "fc2", 128, 10);
        foreach (var conv in new[] { conv1, conv2 }) conv.ResetParameters(seed);
        fc1.ResetParameters(seed);
        fc2.ResetParameters(seed);
        builder.Add(conv1).Norm(1, 32).Add(new Relu(b)).Add(new MaxPool2d(b, 2))
            .Add(conv2).Norm(2, 64).Add(new Relu(b)).Add(new MaxPool2d(b, 2))
            .Add(new Flatten(b))
            .Add(fc1).Norm(3, 128).Add(new Relu(b))
            .Add(fc2);
        return new Network("convnet", norm.Kind, [1, 28, 28], 10, builder.Layers);
    }

    private static Network PaperMlp(IBackend b, ICollective collective, ulong seed, NormalizationOptions norm)
    {
        bool biased = norm.Kind == "none";
        var builder = new Builder(b, collective, norm);
        builder.Add(new Flatten(b));
        int[] widths = [784, 100, 100, 100];
        for (int i = 0; i < 3; i++)
        {
            var fc = new Linear(b, $"fc{i + 1}", widths[i], widths[i + 1], bias: biased);
            InitPaper(b, fc, seed);
            builder.Add(fc).Norm(i + 1, widths[i + 1]).Add(new Sigmoid(b));
        }
        var last = new Linear(b, "fc4", 100, 10);
        InitPaper(b, last, seed);
        builder.Add(last);
        return new Network("mlp-paper", norm.Kind, [1, 28, 28], 10, builder.Layers);
    }

    private static Network Mlp(string name, int[] hidden, IBackend b, ICollective collective, ulong seed, NormalizationOptions norm)
    {
        bool biased = norm.Kind == "none";
        var builder = new Builder(b, collective, norm);
        builder.Add(new Flatten(b));
        int[] widths = [784, .. hidden];
        for (int i = 0; i < hidden.Length; i++)
        {
            var fc = new Linear(b, $"fc{i + 1}", widths[i], widths[i + 1], bias: biased);
            fc.ResetParameters(seed);
            builder.Add(fc).Norm(i + 1, widths[i + 1]).Add(new Relu(b));
        }
        var last = new Linear(b, $"fc{hidden.Length + 1}", hidden[^1], 10);
        last.ResetParameters(seed);
        builder.Add(last);
        return new Network(name, norm.Kind, [1, 28, 28], 10, builder.Layers);
    }

    private static void InitPaper(IBackend b, Linear fc, ulong seed)
    {
        Initializers.Normal(b, fc.Weight, 0.01, seed);
        if (fc.Bias is not null) Initializers.Constant(b, fc.Bias, 0f);
    }

    /// <summary>Appends layers; numbers batch-norm layers for their collectives in order.</summary>
    private sealed class Builder(IBackend backend, ICollective collective, NormalizationOptions norm)
    {
        private int _batchNorms;

        public List<Layer> Layers { get; } = [];

        public Builder Add(Layer layer)
        {
            Layers.Add(layer);
            return this;
        }

        public Builder Norm(int index, int channels) => norm.Kind switch
        {
            "bn" => Add(new BatchNorm(backend, $"bn{index}", channels, collective, _batchNorms++, momentum: norm.Momentum)),
            "gn" => Add(new GroupNorm(backend, $"gn{index}", Math.Min(norm.Groups, channels), channels)),
            _ => this,
        };
    }
}
