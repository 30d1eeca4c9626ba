using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Layers;

namespace BnDist.Core.Models;

/// <summary>What a layer is built with: the device, the batch-norm collective, the seed of the initialization and the --norm choice.</summary>
public sealed record BuildContext(IBackend Backend, ICollective Collective, ulong Seed, NormalizationOptions Norm)
{
    /// <summary>Whether a ReLU that follows a batch norm is fused into it (<see cref="LayerFusion"/>).</summary>
    public bool Fuse { get; init; } = true;
}

/// <summary>What a user's own layer is built from (<see cref="Sequence.Layer"/>): its path in the tree and its input shape.</summary>
public sealed record LayerContext(BuildContext Build, string Path, int[] InputShape)
{
    public IBackend Backend => Build.Backend;
}

/// <summary>
/// The description of a chain of modules, written fluently and built later on a device
/// (<see cref="ModelSpec"/>): nothing is allocated until then, and every input size (a
/// convolution's input channels, a linear layer's input features) is inferred from the shape
/// that reaches it, so one description serves any image size and channel count.
/// </summary>
/// <remarks>
/// Names follow PyTorch: a child is named by <c>name</c> when given, else by its position in
/// its sequence (as in nn.Sequential, counting every child), and a tensor's name is the path
/// of its layer plus the tensor (<c>layer2.0.downsample.1.running_var</c>). Stateless children
/// (ReLU, pooling) take a position but hold no tensors.
/// </remarks>
public sealed class Sequence
{
    private readonly List<(string? Name, Node Node)> _items = [];

    internal Sequence()
    {
    }

    /// <summary>Conv2d(in inferred, <paramref name="outChannels"/>, square kernel), PyTorch's default initialization.</summary>
    public Sequence Conv2d(int outChannels, int kernel, int stride = 1, int padding = 0, bool bias = true, string? name = null) =>
        Add(name, new LeafNode((c, path, s) =>
        {
            RequireRank(s, 4, path, "Conv2d");
            var conv = new Conv2d(c.Backend, path, s[1], outChannels, kernel, stride, padding, bias);
            conv.ResetParameters(c.Seed);
            return conv;
        }));

    /// <summary>Linear(in inferred from a [N, F] input, <paramref name="outFeatures"/>), PyTorch's default initialization.</summary>
    public Sequence Linear(int outFeatures, bool bias = true, string? name = null) =>
        Add(name, new LeafNode((c, path, s) =>
        {
            RequireRank(s, 2, path, "Linear (flatten first)");
            var fc = new Linear(c.Backend, path, s[1], outFeatures, bias);
            fc.ResetParameters(c.Seed);
            return fc;
        }));

    /// <summary>Synchronized batch norm over the channels of [N, C] or [N, C, H, W]; momentum null takes the run's.</summary>
    public Sequence BatchNorm(string? name = null, double? momentum = null) =>
        Add(name, new LeafNode((c, path, s) => new BatchNorm(c.Backend, path, s[1], c.Collective,
            momentum: momentum ?? c.Norm.Momentum)));

    /// <summary>The run's normalization (--norm): batch norm, group norm, or nothing.</summary>
    public Sequence Norm(string? name = null) =>
        Add(name, new LeafNode((c, path, s) => c.Norm.Kind switch
        {
            "bn" => new BatchNorm(c.Backend, path, s[1], c.Collective, momentum: c.Norm.Momentum),
            "gn" => new GroupNorm(c.Backend, path, Math.Min(c.Norm.Groups, s[1]), s[1]),
            _ => null,
        }));

    public Sequence Relu() => Add(null, new LeafNode((c, _, _) => new Relu(c.Backend)));

    public Sequence Sigmoid() => Add(null, new LeafNode((c, _, _) => new Sigmoid(c.Backend)));

    /// <summary>[N, C, H, W] → [N, C·H·W].</summary>
    public Sequence Flatten() => Add(null, new LeafNode((c, _, _) => new Flatten(c.Backend)));

    /// <summary>Max pooling (PyTorch's MaxPool2d(kernel, stride = kernel, padding)); padded positions never win.</summary>
    public Sequence MaxPool2d(int kernel, int stride = 0, int padding = 0) =>
        Add(null, new LeafNode((c, _, _) => new MaxPool2d(c.Backend, kernel, stride, padding)));

    /// <summary>Average pooling (PyTorch's AvgPool2d with count_include_pad = True).</summary>
    public Sequence AvgPool2d(int kernel, int stride = 0, int padding = 0) =>
        Add(null, new LeafNode((c, _, _) => new AvgPool2d(c.Backend, kernel, stride, padding)));

    /// <summary>[N, C, H, W] → [N, C, 1, 1], the mean of each channel (AdaptiveAvgPool2d(1)).</summary>
    public Sequence GlobalAvgPool2d() => Add(null, new LeafNode((c, _, _) => new GlobalAvgPool2d(c.Backend)));

    /// <summary>Inverted dropout with probability <paramref name="p"/>; masks drawn from (seed, step, sample index).</summary>
    public Sequence Dropout(float p) => Add(null, new LeafNode((c, _, _) => new Dropout(c.Backend, p)));

    public Sequence Identity() => Add(null, new LeafNode((c, _, _) => new Identity(c.Backend)));

    /// <summary>A named sub-sequence (its children's names are under <paramref name="name"/>).</summary>
    public Sequence Sequential(string? name, Action<Sequence> define) => Add(name, new SequenceNode(Define(define)));

    /// <summary>
    /// A residual block y = then(body(x) + shortcut(x)). The body and <paramref name="then"/> are named
    /// directly under the block (torchvision's BasicBlock: <c>conv1</c>, <c>bn1</c>, …), the shortcut
    /// under <paramref name="shortcutName"/>; no shortcut is the identity.
    /// </summary>
    public Sequence Residual(string? name, Action<Sequence> body, Action<Sequence>? shortcut = null, Action<Sequence>? then = null,
        string shortcutName = "downsample") =>
        Add(name, new ResidualNode(Define(body), shortcut is null ? null : Define(shortcut), then is null ? null : Define(then), shortcutName));

    /// <summary>Parallel branches over the same input concatenated along channels, named <c>branch1</c>, <c>branch2</c>, … (an Inception module).</summary>
    public Sequence Concat(string? name, params Action<Sequence>[] branches) =>
        Add(name, new ConcatNode([.. branches.Select(Define)]));

    /// <summary>A layer of the user's own, built from its path and input shape; null builds nothing.</summary>
    public Sequence Layer(string? name, Func<LayerContext, Layer?> create) =>
        Add(name, new LeafNode((c, path, s) => create(new LayerContext(c, path, s))));

    private Sequence Add(string? name, Node node)
    {
        if (name is not null && (name.Length == 0 || name.Contains('.')))
            throw new ArgumentException($"'{name}' is not a module name (non-empty, no dots)");
        _items.Add((name, node));
        return this;
    }

    private static Sequence Define(Action<Sequence> define)
    {
        var s = new Sequence();
        define(s);
        return s;
    }

    /// <summary>The modules of this sequence, built in forward order under <paramref name="prefix"/>; advances <paramref name="shape"/>.</summary>
    internal List<Module> BuildChildren(BuildContext c, string prefix, ref int[] shape)
    {
        var modules = new List<Module>();
        for (int i = 0; i < _items.Count; i++)
        {
            var (name, node) = _items[i];
            string path = Join(prefix, name ?? i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var module = node.Build(c, path, shape);
            if (module is null) continue;
            shape = module.OutputShape(shape);
            modules.Add(module);
        }
        if (c.Fuse) LayerFusion.Apply(modules);
        return modules;
    }

    internal static string Join(string prefix, string name) => prefix.Length == 0 ? name : $"{prefix}.{name}";

    private static void RequireRank(int[] s, int rank, string path, string what)
    {
        if (s.Length != rank)
            throw new ArgumentException($"{path}: {what} needs a rank-{rank} input, gets [{string.Join(", ", s)}]");
    }

    private abstract class Node
    {
        public abstract Module? Build(BuildContext c, string path, int[] inputShape);
    }

    private sealed class LeafNode(Func<BuildContext, string, int[], Layer?> create) : Node
    {
        public override Module? Build(BuildContext c, string path, int[] inputShape) => create(c, path, inputShape);
    }

    private sealed class SequenceNode(Sequence body) : Node
    {
        public override Module Build(BuildContext c, string path, int[] inputShape) =>
            new Layers.Sequential(body.BuildChildren(c, path, ref inputShape));
    }

    private sealed class ResidualNode(Sequence body, Sequence? shortcut, Sequence? then, string shortcutName) : Node
    {
        public override Module Build(BuildContext c, string path, int[] inputShape)
        {
            int[] shape = inputShape;
            var bodyModules = body.BuildChildren(c, path, ref shape);
            Module? projection = null;
            if (shortcut is not null)
            {
                int[] s = inputShape;
                projection = new Layers.Sequential(shortcut.BuildChildren(c, Join(path, shortcutName), ref s));
            }
            var block = new Layers.Residual(c.Backend, new Layers.Sequential(bodyModules), projection);
            if (then is null) return block;
            shape = block.OutputShape(inputShape);
            List<Module> chain = [block, .. then.BuildChildren(c, path, ref shape)];
            if (c.Fuse) LayerFusion.Apply(chain);
            return chain.Count == 1 ? block : new Layers.Sequential(chain);
        }
    }

    private sealed class ConcatNode(Sequence[] branches) : Node
    {
        public override Module Build(BuildContext c, string path, int[] inputShape) =>
            new Layers.Concat(c.Backend, branches.Select((b, i) =>
            {
                int[] s = inputShape;
                return (Module)new Layers.Sequential(b.BuildChildren(c, Join(path, $"branch{i + 1}"), ref s));
            }));
    }
}

/// <summary>
/// A model described in C#, built on any backend: the public way to define a network, used by
/// the built-in ones too (<see cref="ResNet"/>, <see cref="BnInception"/>).
/// <code>
/// var model = new ModelSpec("tiny-resnet", m => m
///     .Conv2d(16, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
///     .Residual("block1",
///         body => body.Conv2d(16, 3, padding: 1, bias: false, name: "conv1").BatchNorm("bn1").Relu()
///                     .Conv2d(16, 3, padding: 1, bias: false, name: "conv2").BatchNorm("bn2"),
///         then: t => t.Relu())
///     .GlobalAvgPool2d().Flatten().Linear(10, name: "fc"));
/// Network net = model.Build(backend, collective, sampleShape: [1, 28, 28], seed: 1);
/// </code>
/// </summary>
public sealed class ModelSpec
{
    private readonly Sequence _root;

    public ModelSpec(string architecture, Action<Sequence> define)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(architecture);
        Architecture = architecture;
        _root = new Sequence();
        define(_root);
    }

    /// <summary>The model's name, checked against every rank's in a cluster and stored in checkpoints.</summary>
    public string Architecture { get; }

    /// <summary>
    /// Builds the network for samples of <paramref name="sampleShape"/> ([C, H, W] or [F]); the
    /// number of classes is the width of its output.
    /// </summary>
    /// <exception cref="ArgumentException">A layer does not fit the shape that reaches it (the message names it), or two tensors share a name.</exception>
    public Network Build(IBackend backend, ICollective collective, int[] sampleShape, ulong seed = 0, NormalizationOptions? norm = null) =>
        Build(backend, collective, sampleShape, seed, norm, LayerFusion.Enabled);

    /// <summary><see cref="Build(IBackend, ICollective, int[], ulong, NormalizationOptions?)"/>, fusing layers or not (<see cref="LayerFusion"/>).</summary>
    internal Network Build(IBackend backend, ICollective collective, int[] sampleShape, ulong seed, NormalizationOptions? norm, bool fuse)
    {
        norm ??= new NormalizationOptions();
        int[] shape = [1, .. sampleShape];
        var modules = _root.BuildChildren(new BuildContext(backend, collective, seed, norm) { Fuse = fuse }, "", ref shape);
        if (shape.Length != 2)
            throw new ArgumentException($"{Architecture}: the output is [{string.Join(", ", shape[1..])}] per sample, not a vector of logits (end with Flatten and Linear)");
        return new Network(Architecture, norm.Kind, sampleShape, shape[1], new Layers.Sequential(modules));
    }

    /// <summary>A model builder for <c>LocalClusterOptions.ModelBuilder</c> and workers: the run's seed and --norm.</summary>
    public Func<Training.TrainingConfig, IBackend, ICollective, Network> Builder(int[] sampleShape) =>
        (config, backend, collective) => Build(backend, collective, sampleShape, config.Seed, config.Normalization);
}
