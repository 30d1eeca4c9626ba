using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Parallel branches over the same input, their outputs concatenated along channels (an
/// Inception module; torch.cat(dim=1)). Each branch's output must agree with the others in
/// every dimension but the channels: [N, Cᵢ, H, W] or [N, Cᵢ]. x fans out to every branch, so
/// backward splits ∂L/∂y by channels, runs each branch's backward on its slice (last branch
/// first) and sums the branches' input gradients.
/// </summary>
public sealed class Concat : Module
{
    private readonly IBackend _backend;
    private readonly Module[] _branches;
    private readonly Tensor?[] _outputs, _branchGrads;
    private Tensor? _y, _dx;
    private int[]? _inputShape;

    public Concat(IBackend backend, IEnumerable<Module> branches)
    {
        _backend = backend;
        _branches = [.. branches];
        if (_branches.Length == 0) throw new ArgumentException("a concatenation needs at least one branch");
        _outputs = new Tensor?[_branches.Length];
        _branchGrads = new Tensor?[_branches.Length];
        ComputeInputGradient = true;
    }

    public override IReadOnlyList<Module> Children => _branches;

    public override Tensor Forward(Tensor x, bool training)
    {
        // Each branch's output belongs to a different module, so all stay valid until copied.
        int channels = 0;
        for (int i = 0; i < _branches.Length; i++)
        {
            _outputs[i] = _branches[i].Forward(x, training);
            CheckCompatible(_outputs[0]!.Shape, _outputs[i]!.Shape, i);
            channels += _outputs[i]!.Shape[1];
        }
        var first = _outputs[0]!.Shape;
        var y = Reuse(_backend, ref _y, WithChannels(first, channels));
        int offset = 0;
        for (int i = 0; i < _branches.Length; i++)
        {
            var o = _outputs[i]!;
            Reuse(_backend, ref _branchGrads[i], o.Shape);
            _backend.CopyChannels(Slice(o.Shape, o.Shape[1], 0, channels, offset, o.Shape[1]), o, y);
            offset += o.Shape[1];
            _outputs[i] = null;
        }
        _inputShape = x.Shape;
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        int channels = dy.Shape[1], offset = channels;
        Tensor? dx = null;
        for (int i = _branches.Length - 1; i >= 0; i--)
        {
            var branch = _branchGrads[i] ?? throw new InvalidOperationException("concatenation: backward before forward");
            int c = branch.Shape[1];
            offset -= c;
            _backend.CopyChannels(Slice(branch.Shape, channels, offset, c, 0, c), dy, branch);
            var g = _branches[i].RunBackward(branch);
            if (!ComputeInputGradient) continue;
            if (dx is null)
            {
                dx = Reuse(_backend, ref _dx, _inputShape!);
                _backend.Copy(g, dx);
            }
            else
            {
                _backend.Add(dx, g, dx);
            }
        }
        return dx ?? dy;
    }

    public override int[] Trace(int[] inputShape, Action<Layer, int[]>? visit)
    {
        int[]? first = null;
        int channels = 0;
        for (int i = 0; i < _branches.Length; i++)
        {
            int[] o = _branches[i].Trace(inputShape, visit);
            first ??= o;
            CheckCompatible(first, o, i);
            channels += o[1];
        }
        return WithChannels(first!, channels);
    }

    /// <summary>Channels [srcOffset, srcOffset + count) of a [N, srcChannels, …] tensor to [dstOffset, …) of a [N, dstChannels, …] one.</summary>
    private static ChannelSlice Slice(int[] shape, int srcChannels, int srcOffset, int dstChannels, int dstOffset, int count) =>
        new(shape[0], shape.Length == 4 ? shape[2] * shape[3] : 1, srcChannels, srcOffset, dstChannels, dstOffset, count);

    private static int[] WithChannels(int[] shape, int channels)
    {
        var s = (int[])shape.Clone();
        s[1] = channels;
        return s;
    }

    private static void CheckCompatible(int[] first, int[] other, int branch)
    {
        bool ok = other.Length == first.Length && other.Length is 2 or 4 && other[0] == first[0] && other.AsSpan(2).SequenceEqual(first.AsSpan(2));
        if (!ok)
            throw new ArgumentException(
                $"concatenation: branch {branch + 1} gives [{string.Join(", ", other)}], which cannot be joined along channels with " +
                $"branch 1's [{string.Join(", ", first)}] (all but the channel dimension must agree)");
    }
}
