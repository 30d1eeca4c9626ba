using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Inverted dropout (Srivastava et al. 2014, PyTorch's nn.Dropout): in training each value is
/// kept with probability 1 − p and scaled by 1/(1 − p), else zeroed; in evaluation y = x.
/// The mask of a sample is drawn from (seed, step, this layer's index among the network's
/// dropouts, the sample's index in the data set) by <see cref="DropoutMask"/>, so a sample gets
/// the same mask whichever rank holds it: K workers drop exactly what one process drops on the
/// concatenated batch. Backward: dx = dy·mask.
/// </summary>
public sealed class Dropout : Layer
{
    private readonly float _p;
    private ulong[] _keys = [];
    private Tensor? _mask, _y, _dx;
    private bool _masked;

    public Dropout(IBackend backend, float p) : base(backend, "")
    {
        if (!(p >= 0f && p < 1f)) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout: p must be in [0, 1)");
        _p = p;
    }

    public float P => _p;

    /// <summary>The batch in flight; a network sets it to its own.</summary>
    public BatchContext? Context { get; set; }

    /// <summary>This layer's index among the network's dropout layers, in forward order; set by the network.</summary>
    public int Index { get; set; }

    public override int[] OutputShape(int[] s) => s;

    public override Tensor Forward(Tensor x, bool training)
    {
        _masked = training && _p > 0;
        if (!_masked) return x;
        var context = Context ?? throw new InvalidOperationException("dropout: no batch context (build the layer into a Network, or set Context)");
        int n = x.Shape[0];
        if (context.Count != n)
            throw new InvalidOperationException($"dropout: the batch context holds {context.Count} samples, the input {n}");
        if (_keys.Length < n) _keys = new ulong[n];
        var samples = context.SampleIndices;
        for (int i = 0; i < n; i++) _keys[i] = DropoutMask.SampleKey(context.Seed, context.Step, Index, samples[i]);
        var mask = Reuse(ref _mask, x.Shape);
        var y = Reuse(ref _y, x.Shape);
        Backend.DropoutForward(n, n == 0 ? 0 : x.Length / n, _keys.AsSpan(0, n), _p, x, mask, y);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        if (!_masked || !ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, dy.Shape);
        Backend.Multiply(dy, _mask!, dx);
        return dx;
    }
}
