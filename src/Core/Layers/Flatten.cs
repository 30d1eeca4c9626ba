using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>[N, C, H, W] → [N, C·H·W] in NCHW order (PyTorch's flatten(1)); a view, no copy.</summary>
public sealed class Flatten(IBackend backend) : Layer(backend, "")
{
    private Tensor? _source, _view, _gradSource, _gradView;
    private int[]? _inputShape;

    public override int[] OutputShape(int[] s) => [s[0], s.Length == 1 ? 1 : s[1..].Aggregate(1, (a, b) => a * b)];

    public override Tensor Forward(Tensor x, bool training)
    {
        _inputShape = x.Shape;
        return View(x, OutputShape(x.Shape), ref _source, ref _view);
    }

    public override Tensor Backward(Tensor dy)
    {
        var shape = _inputShape ?? throw new InvalidOperationException("flatten: backward before forward");
        if (!ComputeInputGradient) return dy;
        return View(dy, shape, ref _gradSource, ref _gradView);
    }

    /// <summary>Reshaped views are cached per source tensor, so a steady loop allocates none.</summary>
    private static Tensor View(Tensor t, int[] shape, ref Tensor? source, ref Tensor? view)
    {
        if (!ReferenceEquals(t, source) || view is null || !view.HasShape(shape))
        {
            source = t;
            view = t.Reshape(shape);
        }
        return view;
    }
}
