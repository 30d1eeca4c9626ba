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
        var spec = new ModelSpec("convnet", m => m
            .Conv2d(32, 3, padding: 1, bias: biased, name: "conv1").Norm(NormName(norm, 1)).Relu().MaxPool2d(2)
            .Conv2d(64, 3, padding: 1, bias: biased, name: "conv2").Norm(NormName(norm, 2)).Relu().MaxPool2d(2)
            .Flatten()
            .Linear(128, bias: biased, name: "fc1").Norm(NormName(norm, 3)).Relu()
            .Linear(10, name: "fc2"));
        return spec.Build(b, collective, FashionMnistShape, seed, norm);
    }

    private static Network PaperMlp(IBackend b, ICollective collective, ulong seed, NormalizationOptions norm)
    {
        bool biased = norm.Kind == "none";
        var network = new ModelSpec("mlp-paper", m =>
        {
            m.Flatten();
            for (int i = 1; i <= 3; i++) m.Linear(100, bias: biased, name: $"fc{i}").Norm(NormName(norm, i)).Sigmoid();
            m.Linear(10, name: "fc4");
        }).Build(b, collective, FashionMnistShape, seed, norm);
        foreach (var fc in network.Layers.OfType<Linear>()) InitPaper(b, fc, seed);
        return network;
    }

    private static Network Mlp(string name, int[] hidden, IBackend b, ICollective collective, ulong seed, NormalizationOptions norm)
    {
        bool biased = norm.Kind == "none";
        return new ModelSpec(name, m =>
        {
            m.Flatten();
            for (int i = 0; i < hidden.Length; i++) m.Linear(hidden[i], bias: biased, name: $"fc{i + 1}").Norm(NormName(norm, i + 1)).Relu();
            m.Linear(10, name: $"fc{hidden.Length + 1}");
        }).Build(b, collective, FashionMnistShape, seed, norm);
    }

    /// <summary>The chains' normalization layers are named after their kind: <c>bn1</c>, or <c>gn1</c> with group norm.</summary>
    private static string NormName(NormalizationOptions norm, int index) => $"{(norm.Kind == "gn" ? "gn" : "bn")}{index}";

    private static void InitPaper(IBackend b, Linear fc, ulong seed)
    {
        Initializers.Normal(b, fc.Weight, 0.01, seed);
        if (fc.Bias is not null) Initializers.Constant(b, fc.Bias, 0f);
    }
}
