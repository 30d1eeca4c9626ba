using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Synchronized batch normalization (Ioffe &amp; Szegedy 2015, Algorithms 1 and 2), for
/// [N, C] input (BatchNorm1d: m = N values per channel) and [N, C, H, W] input
/// (BatchNorm2d: a feature map is one neuron, m = N·H·W values per channel).
///
/// Training normalizes with the statistics of the GLOBAL batch, gathered through
/// <see cref="ICollective"/> in the stages of docs/architecture.md §1:
///   1. local sums     Σ(x − k), Σ(x − k)² per channel, float64, shifted by k = running_mean
///                     (identical on every rank), so |mean| ≫ std does not cancel;
///   2. exchange       all-reduce [count, Σ(x−k)…, Σ(x−k)²…]  (2·C + 1 doubles);
///   3. combine        μ = k + S₁/m,  σ² = S₂/m − (S₁/m)²  (biased, used to normalize);
///   4. elementwise    x̂ = (x − μ)/√(σ² + ε),  y = γ·x̂ + β.
/// With one rank the exchange is the identity and this is plain batch norm.
///
/// Stored: γ (<c>weight</c>), β (<c>bias</c>), <c>running_mean</c>, <c>running_var</c> (unbiased,
/// σ²·m/(m−1) with the global m), <c>num_batches_tracked</c>. Backward recomputes x̂ from the input of
/// the last training forward, which it keeps (like a convolution, it must not be written until then).
/// With <see cref="FusedRelu"/> the layer is batch norm then ReLU, y = max(γ·x̂ + β, 0), in the same
/// passes over memory (the model builder fuses a ReLU that follows a batch norm); the statistics, the
/// exchanged sums and the parameters are those of the batch norm alone.
/// Running averages: r ← (1 − α)·r + α·batch with α = momentum (0.1, PyTorch's convention)
/// or, in cumulative mode (momentum = null), α = 1/t for the t-th batch: the population
/// average of Algorithm 2. Evaluation uses y = a·x + b, a = γ/√(σ²_run + ε), b = β − a·μ_run,
/// computed once per change of γ, β or the running statistics.
/// </summary>
public sealed class BatchNorm : Layer
{
    public const double DefaultEpsilon = 1e-5;
    public const double DefaultMomentum = 0.1;

    private readonly int _channels;
    private readonly double _eps;
    private readonly ICollective _collective;

    // Per-step scratch, allocated once: the exchanged sums and per-channel coefficients.
    private readonly double[] _stats, _gradSums, _meanMinusShift64, _variance64;
    private readonly float[] _shift, _meanMinusShift, _invStd, _a, _b, _gammaHost, _betaHost, _mean, _variance;
    private Tensor? _x, _y, _dx;
    private ChannelLayout _layout;
    private double _globalCount;
    private (long Gamma, long Beta, long Stats) _foldedAt = (-1, -1, -1);

    public BatchNorm(IBackend backend, string name, int channels, ICollective collective, int layerIndex = 0,
        double eps = DefaultEpsilon, double? momentum = DefaultMomentum) : base(backend, name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        (_channels, _eps, _collective, LayerIndex) = (channels, eps, collective, layerIndex);
        Running = new RunningStatistics(channels, momentum);
        Gamma = NewParameter("weight", channels);
        Beta = NewParameter("bias", channels);
        Backend.Fill(Gamma.Value, 1f);
        _stats = new double[2 * channels + 1];
        _gradSums = new double[2 * channels];
        _meanMinusShift64 = new double[channels];
        _variance64 = new double[channels];
        _shift = new float[channels];
        _meanMinusShift = new float[channels];
        _invStd = new float[channels];
        _a = new float[channels];
        _b = new float[channels];
        _gammaHost = new float[channels];
        _betaHost = new float[channels];
        _mean = new float[channels];
        _variance = new float[channels];
    }

    public Parameter Gamma { get; }

    public Parameter Beta { get; }

    public int Channels => _channels;

    /// <summary>
    /// The index of this layer among the network's batch norms: its collectives' "layer".
    /// A <see cref="Models.Network"/> numbers its batch norms in forward order.
    /// </summary>
    public int LayerIndex { get; internal set; }

    /// <summary>μ_run, σ²_run and num_batches_tracked.</summary>
    public RunningStatistics Running { get; }

    /// <summary>The global mean of each channel in the last training forward.</summary>
    public ReadOnlySpan<float> BatchMean => _mean;

    /// <summary>The global biased variance of each channel in the last training forward.</summary>
    public ReadOnlySpan<float> BatchVariance => _variance;

    /// <summary>The global m of the last training forward: values per channel over all ranks.</summary>
    public double BatchCount => _globalCount;

    public ReadOnlySpan<float> RunningMean => Running.Mean;

    public ReadOnlySpan<float> RunningVariance => Running.Variance;

    /// <summary>Whether a ReLU follows, computed in this layer's passes (its output is then max(γ·x̂ + β, 0)).</summary>
    public bool FusedRelu { get; internal set; }

    public override IEnumerable<Parameter> Parameters => [Gamma, Beta];

    public override IEnumerable<HostBuffer> Buffers =>
    [
        HostBuffer.OfFloats($"{Name}.running_mean", Running.Mean),
        HostBuffer.OfFloats($"{Name}.running_var", Running.Variance),
        HostBuffer.OfScalar($"{Name}.num_batches_tracked", Running.BatchesTracked),
    ];

    public override int[] OutputShape(int[] s)
    {
        Layout(s);
        return s;
    }

    public override Tensor Forward(Tensor x, bool training)
    {
        _layout = Layout(x.Shape);
        var y = Reuse(ref _y, x.Shape);
        if (!training)
        {
            FoldInference();
            Backend.ChannelAffine(_layout, x, _a, _b, FusedRelu, y);
            return y;
        }

        // 1. local sums, shifted by the running mean (the same on every rank)
        Running.Mean.CopyTo(_shift, 0);
        Backend.ChannelShiftedSums(_layout, x, _shift, _stats.AsSpan(1));
        _stats[0] = _layout.CountPerChannel;

        // 2. exchange
        _collective.AllReduceSum(_stats, CollectiveKind.BatchNormStats, LayerIndex);

        // 3. combine
        try
        {
            Running.Combine(_stats, _meanMinusShift64, _variance64);
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException($"{Name}: {e.Message}", e);
        }
        _globalCount = _stats[0];
        for (int c = 0; c < _channels; c++)
        {
            _meanMinusShift[c] = (float)_meanMinusShift64[c];
            _invStd[c] = (float)(1.0 / Math.Sqrt(_variance64[c] + _eps));
            _mean[c] = (float)(_shift[c] + _meanMinusShift64[c]);
            _variance[c] = (float)_variance64[c];
        }

        // 4. elementwise
        Backend.BatchNormNormalize(_layout, x, Transform, y);
        _x = x;

        Running.Update(_stats);
        return y;
    }

    /// <summary>
    /// Backward (Algorithm 1's chain rule over the global batch), given g = ∂L/∂y:
    ///   dβ = Σ g,  dγ = Σ g·x̂                       (sums over the global batch)
    ///   dx = γ/√(σ² + ε) · (g − dβ/m − x̂·dγ/m)
    /// The local dβ, dγ become this rank's parameter gradients (summed across ranks later
    /// with every other gradient); their all-reduced copies give dx. With the fused ReLU, g is ∂L/∂y
    /// where γ·x̂ + β &gt; 0 and 0 elsewhere (the ReLU's backward, applied inside these passes).
    /// </summary>
    public override Tensor Backward(Tensor dy)
    {
        var x = _x ?? throw new InvalidOperationException($"{Name}: backward before a training forward");
        Backend.BatchNormBackwardSums(_layout, dy, x, Transform, _gradSums);
        for (int c = 0; c < _channels; c++)
        {
            _betaHost[c] = (float)_gradSums[c];
            _gammaHost[c] = (float)_gradSums[_channels + c];
        }
        Backend.Upload(_betaHost, Beta.Grad);
        Backend.Upload(_gammaHost, Gamma.Grad);

        _collective.AllReduceSum(_gradSums, CollectiveKind.BatchNormGradSums, LayerIndex);

        if (!ComputeInputGradient) return dy;
        var dx = Reuse(ref _dx, dy.Shape);
        for (int c = 0; c < _channels; c++)
        {
            _a[c] = (float)(_gradSums[c] / _globalCount);
            _b[c] = (float)(_gradSums[_channels + c] / _globalCount);
        }
        Backend.BatchNormBackwardInput(_layout, dy, x, Transform, _a, _b, dx);
        _foldedAt = (-1, -1, -1); // _a, _b now hold backward coefficients
        return dx;
    }

    /// <summary>The map of the last training forward: x̂ = ((x − k) − d)·invStd, y = γ·x̂ + β (and the ReLU).</summary>
    private BatchNormTransform Transform => new(_shift, _meanMinusShift, _invStd, Gamma.Value, Beta.Value, FusedRelu);

    /// <summary>a = γ/√(σ²_run + ε), b = β − a·μ_run, recomputed only when an input changed.</summary>
    private void FoldInference()
    {
        var now = (Gamma.Version, Beta.Version, Running.Version);
        if (now == _foldedAt) return;
        Backend.Download(Gamma.Value, _gammaHost);
        Backend.Download(Beta.Value, _betaHost);
        for (int c = 0; c < _channels; c++)
        {
            double a = _gammaHost[c] / Math.Sqrt(Running.Variance[c] + _eps);
            _a[c] = (float)a;
            _b[c] = (float)(_betaHost[c] - a * Running.Mean[c]);
        }
        _foldedAt = now;
    }

    private ChannelLayout Layout(int[] s)
    {
        if (s.Length == 2 && s[1] == _channels) return new ChannelLayout(s[0], _channels, 1);
        if (s.Length == 4 && s[1] == _channels) return new ChannelLayout(s[0], _channels, s[2] * s[3]);
        throw new ArgumentException($"{Name} expects [N, {_channels}] or [N, {_channels}, H, W], got [{string.Join(", ", s)}]");
    }
}
