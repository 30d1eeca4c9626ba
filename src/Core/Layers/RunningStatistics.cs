namespace BnDist.Core.Layers;

/// <summary>
/// The running mean and unbiased running variance of one batch-norm layer (docs/architecture.md §1), and
/// the arithmetic that turns an all-reduced statistics vector into the batch's μ and σ².
/// Workers (inside <see cref="BatchNorm"/>) and the coordinator (which owns the authoritative
/// copy) run this same code on the same reduced vector, so their copies stay bit-identical,
/// and the running mean is the shift k of the next step's sums on every rank.
/// </summary>
public sealed class RunningStatistics
{
    private readonly double? _momentum;

    public RunningStatistics(int channels, double? momentum)
    {
        if (momentum is { } mo && (mo <= 0 || mo > 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), mo, "batch-norm momentum must lie in (0, 1]");
        _momentum = momentum;
        Mean = new float[channels];
        Variance = new float[channels];
        Array.Fill(Variance, 1f);
    }

    public int Channels => Mean.Length;

    /// <summary>The averaging factor α, or null for the cumulative (population) average α = 1/t.</summary>
    public double? Momentum => _momentum;

    /// <summary>μ_run per channel; also the shift k of the next step's shifted sums.</summary>
    public float[] Mean { get; }

    /// <summary>σ²_run per channel, unbiased with the global count.</summary>
    public float[] Variance { get; }

    /// <summary>PyTorch's num_batches_tracked (a one-element array so it can be saved in place).</summary>
    public long[] BatchesTracked { get; } = [0];

    /// <summary>Increases whenever the statistics change (for cached inference coefficients).</summary>
    public long Version { get; private set; }

    /// <summary>
    /// Combines the all-reduced [m, Σ(x − k)…, Σ(x − k)²…], k = the current <see cref="Mean"/>:
    /// batch μ = k + S₁/m and biased σ² = S₂/m − (S₁/m)² (float64; the shift keeps the
    /// difference small, so nothing cancels). Writes d = μ − k and σ² per channel.
    /// </summary>
    public void Combine(ReadOnlySpan<double> reduced, Span<double> meanMinusShift, Span<double> variance)
    {
        CheckLength(reduced);
        int c = Channels;
        double m = reduced[0];
        if (m < 2)
            throw new InvalidOperationException($"training batch norm needs more than one value per channel over the global batch, got {m}");
        for (int i = 0; i < c; i++)
        {
            double d = reduced[1 + i] / m;
            meanMinusShift[i] = d;
            variance[i] = Math.Max(0.0, reduced[1 + c + i] / m - d * d);
        }
    }

    /// <summary>
    /// One running-average update from the reduced statistics of a step:
    /// r ← (1 − α)·r + α·batch, with σ² made unbiased by m/(m − 1), m the global count;
    /// α = momentum, or 1/t for the t-th batch in cumulative mode.
    /// </summary>
    public void Update(ReadOnlySpan<double> reduced)
    {
        CheckLength(reduced);
        int c = Channels;
        Span<double> d = c <= 512 ? stackalloc double[c] : new double[c];
        Span<double> v = c <= 512 ? stackalloc double[c] : new double[c];
        Combine(reduced, d, v);
        double m = reduced[0];
        long t = ++BatchesTracked[0];
        double alpha = _momentum ?? 1.0 / t;
        double unbias = m / (m - 1);
        for (int i = 0; i < c; i++)
        {
            double mean = Mean[i] + d[i];
            Mean[i] = (float)((1 - alpha) * Mean[i] + alpha * mean);
            Variance[i] = (float)((1 - alpha) * Variance[i] + alpha * v[i] * unbias);
        }
        Version++;
    }

    /// <summary>Call after the arrays were overwritten from outside (a checkpoint).</summary>
    public void MarkChanged() => Version++;

    private void CheckLength(ReadOnlySpan<double> reduced)
    {
        if (reduced.Length != 2 * Channels + 1)
            throw new ArgumentException($"batch-norm statistics of {Channels} channels hold {2 * Channels + 1} values, got {reduced.Length}");
    }
}
