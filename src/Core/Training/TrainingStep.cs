using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Optim;
using BnDist.Core.Tensors;

namespace BnDist.Core.Training;

/// <summary>What one rank measured in one step; the loss is the GLOBAL mean.</summary>
public readonly record struct StepResult(double Loss, double Accuracy, int GlobalBatch, int LocalBatch,
    double ComputeSeconds, double StatsExchangeSeconds, double GradientExchangeSeconds);

/// <summary>
/// One data-parallel training step on this rank's shard of a global batch: gather the
/// shard, forward (batch norm synchronizes through the collective), loss scaled by 1/N of
/// the global batch, backward, gradients summed across ranks, SGD update. The same code
/// runs in one process (a world of one) and on every worker of a cluster. Buffers are
/// sized on first use and reused.
/// </summary>
public sealed class TrainingStep
{
    private readonly IBackend _backend;
    private readonly Network _network;
    private readonly Sgd _optimizer;
    private readonly ICollective _collective;
    private readonly IGradientReducer _gradients;
    private readonly SoftmaxCrossEntropy _loss;
    private readonly double[] _metrics = new double[3];
    private float[] _images = [];
    private int[] _labels = [];
    private Tensor? _input;

    public TrainingStep(IBackend backend, Network network, Sgd optimizer, ICollective collective, IGradientReducer gradients)
    {
        (_backend, _network, _optimizer, _collective, _gradients) = (backend, network, optimizer, collective, gradients);
        _loss = new SoftmaxCrossEntropy(backend);
    }

    /// <summary>Applied to every training batch after it is gathered (null: none); draws from the network's seed.</summary>
    public Augmentation? Augmentation { get; init; }

    /// <param name="dataset">The training set.</param>
    /// <param name="shard">This rank's sample indices (possibly none).</param>
    /// <param name="globalBatch">N, the number of samples over all ranks.</param>
    /// <param name="step">The global step (0-based), from which dropout draws its masks.</param>
    /// <param name="epoch">The epoch of the step, from which augmentation draws.</param>
    public StepResult Run(Dataset dataset, ReadOnlySpan<int> shard, int globalBatch, float learningRate, long step = 0, int epoch = 0)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        _network.Context.Set(step, shard);
        var x = Gather(dataset, shard, epoch);
        var timed = _collective as ITimedCollective;
        double statsBefore = timed?.ExchangeSeconds ?? 0;

        var logits = _network.Forward(x, training: true);
        var (lossSum, correct) = _loss.Forward(logits, _labels.AsSpan(0, shard.Length), globalBatch, computeGradient: true);
        _network.Backward(_loss.Gradient);

        long beforeReduce = System.Diagnostics.Stopwatch.GetTimestamp();
        _gradients.SumGradients(_network.Parameters);
        double gradientSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(beforeReduce).TotalSeconds;
        _optimizer.Step(learningRate);

        _metrics[0] = lossSum;
        _metrics[1] = correct;
        _metrics[2] = shard.Length;
        _collective.AllReduceSum(_metrics, CollectiveKind.Metrics, -1);
        double statsSeconds = (timed?.ExchangeSeconds ?? 0) - statsBefore;
        double total = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        double n = Math.Max(1, _metrics[2]);
        return new StepResult(_metrics[0] / n, _metrics[1] / n, (int)_metrics[2], shard.Length,
            total - statsSeconds - gradientSeconds, statsSeconds, gradientSeconds);
    }

    private Tensor Gather(Dataset dataset, ReadOnlySpan<int> shard, int epoch)
    {
        int sampleSize = _network.SampleShape.Aggregate(1, (a, b) => a * b);
        int need = shard.Length * sampleSize;
        if (_images.Length < need) _images = new float[need];
        if (_labels.Length < shard.Length) _labels = new int[shard.Length];
        dataset.Gather(shard, _images.AsSpan(0, need), _labels.AsSpan(0, shard.Length));
        Augmentation?.Apply(_images.AsSpan(0, need), shard, dataset.Channels, dataset.Rows, dataset.Cols, _network.Context.Seed, epoch);
        int[] shape = [shard.Length, .. _network.SampleShape];
        if (_input is null || !_input.HasShape(shape))
        {
            _input?.Dispose();
            _input = _backend.Allocate(shape);
        }
        _backend.Upload(_images.AsSpan(0, need), _input);
        return _input;
    }
}

/// <summary>A collective that accounts the wall time spent in its exchanges.</summary>
public interface ITimedCollective
{
    double ExchangeSeconds { get; }
}
