using BnDist.Core.Tensors;

namespace BnDist.Core.Backends;

/// <summary>
/// The per-channel map of a batch norm in a training step, which the forward applies and the backward
/// stages recompute from x (a batch norm keeps its input, not x̂):
///   x̂ = ((x − k_c) − d_c)·invStd_c,   y = γ_c·x̂ + β_c,   then y = max(y, 0) when <see cref="Relu"/>.
/// k is the shift of the statistics (the running mean, the same on every rank) and d the global mean
/// minus k (small, so it survives float32). With <see cref="Relu"/> the backward stages take
/// g = ∂L/∂y only where γ_c·x̂ + β_c &gt; 0 (PyTorch's subgradient 0 at 0), recomputed exactly as the
/// forward computed it: a fused ReLU gives the bits of a separate one.
/// </summary>
public readonly ref struct BatchNormTransform(ReadOnlySpan<float> shift, ReadOnlySpan<float> meanMinusShift, ReadOnlySpan<float> invStd,
    Tensor gamma, Tensor beta, bool relu)
{
    /// <summary>k_c, C values.</summary>
    public ReadOnlySpan<float> Shift { get; } = shift;

    /// <summary>d_c = μ_c − k_c, C values.</summary>
    public ReadOnlySpan<float> MeanMinusShift { get; } = meanMinusShift;

    /// <summary>1/√(σ²_c + ε), C values.</summary>
    public ReadOnlySpan<float> InvStd { get; } = invStd;

    /// <summary>γ, a [C] tensor.</summary>
    public Tensor Gamma { get; } = gamma;

    /// <summary>β, a [C] tensor.</summary>
    public Tensor Beta { get; } = beta;

    /// <summary>Whether a ReLU follows (fused into the batch norm's stages).</summary>
    public bool Relu { get; } = relu;

    /// <summary>Checks the coefficients hold C values each.</summary>
    internal void Check(int channels)
    {
        if (Shift.Length != channels || MeanMinusShift.Length != channels || InvStd.Length != channels)
            throw new ArgumentException($"the batch-norm coefficients must hold C = {channels} values each");
        OpChecks.Length(channels, Gamma, "gamma");
        OpChecks.Length(channels, Beta, "beta");
    }
}
