namespace BnDist.Core.Collectives;

/// <summary>
/// What a reduction is for. Every message of a distributed collective carries it, so that
/// two ranks calling collectives in a different order fail with a clear error instead of
/// silently adding unrelated numbers.
/// </summary>
public enum CollectiveKind
{
    /// <summary>BN forward: [count, Σ(x−k) per channel, Σ(x−k)² per channel].</summary>
    BatchNormStats = 1,

    /// <summary>BN backward: [Σg per channel, Σg·x̂ per channel].</summary>
    BatchNormGradSums = 2,

    /// <summary>
    /// Loss sum, correct count and sample count, for logging and evaluation. Layer −1 is the
    /// end of a training step (a cluster treats it as the step's commit), layer −2 an evaluation.
    /// </summary>
    Metrics = 3,

    /// <summary>Parameter gradients (float32), through <see cref="IGradientReducer"/>.</summary>
    Gradients = 4,
}

/// <summary>
/// The one seam through which layers reach the other workers: an all-reduce (sum) of a few
/// float64 values, identified by its kind and the index of the layer that asks. Layers call
/// it without knowing whether it is a no-op (one process), shared memory (in-process
/// workers) or gRPC. The call returns when the sums of all ranks are in <c>values</c>.
/// </summary>
public interface ICollective
{
    int Rank { get; }

    int WorldSize { get; }

    void AllReduceSum(Span<double> values, CollectiveKind kind, int layer);

    /// <summary>Called by the training loop before the collectives of each step (0-based).</summary>
    void BeginStep(long step)
    {
    }
}

/// <summary>A world of one: the sum over one rank is the rank's own values.</summary>
public sealed class SingleProcessCollective : ICollective
{
    public static SingleProcessCollective Instance { get; } = new();

    public int Rank => 0;

    public int WorldSize => 1;

    public void AllReduceSum(Span<double> values, CollectiveKind kind, int layer)
    {
    }
}

/// <summary>
/// The seam for summing parameter gradients across ranks after backward (docs/architecture.md §2: the
/// bandwidth-bound exchange, kept apart from the latency-bound BN statistics so that a
/// faster data plane can replace it without touching layers).
/// </summary>
public interface IGradientReducer
{
    /// <summary>Replaces every parameter's Grad by its sum over all ranks.</summary>
    void SumGradients(IReadOnlyList<Layers.Parameter> parameters);
}

/// <summary>One rank: the local gradients are already the sum.</summary>
public sealed class SingleProcessGradientReducer : IGradientReducer
{
    public static SingleProcessGradientReducer Instance { get; } = new();

    public void SumGradients(IReadOnlyList<Layers.Parameter> parameters)
    {
    }
}
