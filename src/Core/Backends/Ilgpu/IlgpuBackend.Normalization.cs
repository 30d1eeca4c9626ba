using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>
/// Batch norm in the stages of docs/architecture.md §1 and group norm (kernels: Kernels/NormKernels.cs).
/// Per step and BN layer the host sends 3·C floats forward (shift, mean − shift, 1/σ) and
/// 3·C backward (1/σ, mean g, mean g·x̂), and receives 2·C doubles each way (the local sums,
/// which the layer all-reduces); each receive waits for the queued work.
/// </summary>
public sealed partial class IlgpuBackend
{
    public void ChannelShiftedSums(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, Span<double> sums)
    {
        OpChecks.Layout(layout, x);
        int c = layout.Channels;
        if (shift.Length != c || sums.Length != 2 * c) throw new ArgumentException("shift must hold C values and sums 2·C");
        var k = UploadCoefficients(shift);
        var result = Grow(ref _sums, 2 * c);
        _shiftedSums(ReduceConfig(c), layout, V(x), k, result);
        ReadSums(result, sums);
    }

    public void BatchNormNormalize(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> shift, ReadOnlySpan<float> meanMinusShift,
        ReadOnlySpan<float> invStd, Tensor gamma, Tensor beta, Tensor xhat, Tensor y)
    {
        OpChecks.Layout(layout, x);
        if (layout.Length == 0) return;
        var coeffs = UploadCoefficients(shift, meanMinusShift, invStd);
        _normalize(Strided((int)layout.Length), (int)layout.Length, layout, V(x), coeffs, V(gamma), V(beta), V(xhat), V(y));
    }

    public void BatchNormBackwardSums(in ChannelLayout layout, Tensor dy, Tensor xhat, Span<double> sums)
    {
        OpChecks.Layout(layout, dy);
        int c = layout.Channels;
        if (sums.Length != 2 * c) throw new ArgumentException("sums must hold 2·C values");
        var result = Grow(ref _sums, 2 * c);
        _dotSums(ReduceConfig(c), layout, V(dy), V(xhat), result);
        ReadSums(result, sums);
    }

    public void BatchNormBackwardInput(in ChannelLayout layout, Tensor dy, Tensor xhat, Tensor gamma, ReadOnlySpan<float> invStd,
        ReadOnlySpan<float> meanDy, ReadOnlySpan<float> meanDyXhat, Tensor dx)
    {
        OpChecks.Layout(layout, dy);
        if (layout.Length == 0) return;
        var coeffs = UploadCoefficients(invStd, meanDy, meanDyXhat);
        _bnBackwardInput(Strided((int)layout.Length), (int)layout.Length, layout, V(dy), V(xhat), V(gamma), coeffs, V(dx));
    }

    public void ChannelAffine(in ChannelLayout layout, Tensor x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, Tensor y)
    {
        OpChecks.Layout(layout, x);
        if (layout.Length == 0) return;
        var coeffs = UploadCoefficients(scale, shift);
        _channelAffine(Strided((int)layout.Length), (int)layout.Length, layout, V(x), coeffs, V(y));
    }

    public void GroupNormForward(in ChannelLayout layout, int groups, float eps, Tensor x, Tensor gamma, Tensor beta,
        Tensor xhat, Tensor invStd, Tensor y)
    {
        OpChecks.Layout(layout, x);
        int items = layout.N * groups;
        if (items == 0 || layout.Length == 0) return;
        _groupNormForward(ReduceConfig(items), layout, groups, eps, V(x), V(gamma), V(beta), V(xhat), V(invStd), V(y));
    }

    public void GroupNormBackward(in ChannelLayout layout, int groups, Tensor dy, Tensor xhat, Tensor gamma, Tensor invStd,
        Tensor dx, Tensor dgamma, Tensor dbeta)
    {
        OpChecks.Layout(layout, dy);
        // dβ = Σ g, dγ = Σ g·x̂ per channel over the batch (zeros for N = 0).
        _sumsToFloat(ReduceConfig(layout.Channels), layout, V(dy), V(xhat), V(dbeta), V(dgamma), 1);
        int items = layout.N * groups;
        if (items == 0 || layout.Length == 0) return;
        _groupNormBackward(ReduceConfig(items), layout, groups, V(dy), V(xhat), V(gamma), V(invStd), V(dx));
    }

    /// <summary>Waits for the queued work and copies 2·C sums to the host.</summary>
    private void ReadSums(ArrayView<double> device, Span<double> host)
    {
        if (host.Length == 0) return;
        device.CopyToCPU(host);
    }
}
