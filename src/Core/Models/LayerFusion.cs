using BnDist.Core.Layers;

namespace BnDist.Core.Models;

/// <summary>
/// The fusions of the model builder: a ReLU that directly follows a batch norm in a sequence becomes
/// part of it (<see cref="BatchNorm.FusedRelu"/>), so that normalize and ReLU are one pass over memory
/// forward and the ReLU's mask is applied inside the batch norm's backward passes instead of in a pass of
/// its own; a ReLU that follows a residual block becomes part of its sum (<see cref="Residual.FusedRelu"/>,
/// one pass forward), and when another block follows (in the same sequence or as the first of the next one),
/// that ReLU's backward becomes part of the next block's sum of its branches' input gradients
/// (<see cref="Residual.InputFromRelu"/>, one pass backward). Nothing a user or a peer sees changes: the ReLU holds no tensors and its position in the
/// sequence still counts for the names of the children after it (names are given before fusing), the
/// batch norms keep their order (their collectives' numbering), and the sums they exchange are the same.
/// The results are the same bits: the fused stages compute the ReLU's input and its mask as the separate
/// layers did.
/// </summary>
/// <remarks>
/// A pass over each sequence the builder made rather than a layer the user writes: models stay written as
/// PyTorch writes them (<c>.BatchNorm("bn1").Relu()</c>), and a network assembled by hand from layers
/// is left as it is. <c>BNDIST_FUSE=0</c> turns the pass off (for benchmarking the difference).
/// </remarks>
public static class LayerFusion
{
    /// <summary>Whether builds fuse by default: true unless the environment sets BNDIST_FUSE=0.</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("BNDIST_FUSE") != "0";

    /// <summary>Fuses every batch norm + ReLU and residual block + ReLU pair of <paramref name="modules"/> (one sequence, in order), in place.</summary>
    public static void Apply(List<Module> modules)
    {
        for (int i = modules.Count - 1; i > 0; i--)
        {
            if (modules[i] is not Relu) continue;
            switch (modules[i - 1])
            {
                case BatchNorm { FusedRelu: false } bn:
                    bn.FusedRelu = true;
                    modules.RemoveAt(i);
                    break;
                case Residual { FusedRelu: false } block:
                    block.FusedRelu = true;
                    modules.RemoveAt(i);
                    break;
            }
        }
        for (int i = 1; i < modules.Count; i++)
        {
            if (Last(modules[i - 1]) is Residual { FusedRelu: true, GradientArrivesMasked: false } before
                && First(modules[i]) is Residual { InputFromRelu: false } after)
            {
                before.GradientArrivesMasked = true;
                after.InputFromRelu = true;
            }
        }
    }

    /// <summary>The module that receives a sequence's input (through nested sequences), or the module itself.</summary>
    private static Module? First(Module m) => m is Sequential s ? (s.Children.Count == 0 ? null : First(s.Children[0])) : m;

    /// <summary>The module whose output a sequence returns (through nested sequences), or the module itself.</summary>
    private static Module? Last(Module m) => m is Sequential s ? (s.Children.Count == 0 ? null : Last(s.Children[^1])) : m;
}
