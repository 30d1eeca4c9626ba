using BnDist.Core.Backends;
using BnDist.Core.Collectives;
using BnDist.Core.Data;
using BnDist.Core.Layers;
using BnDist.Core.Models;
using BnDist.Core.Tensors;

namespace BnDist.Core.Training;

/// <summary>
/// Test-set loss and accuracy in evaluation mode: batch norm uses its running statistics, so
/// the forward pass needs no synchronization and any batch size gives the same answer. With
/// several ranks each evaluates its contiguous share of the set and the sums are all-reduced.
/// </summary>
public sealed class Evaluator(IBackend backend, Network network, int batchSize = 1000)
{
    private readonly double[] _totals = new double[3];

    private readonly SoftmaxCrossEntropy _loss = new(backend);
    /// <summary>The "layer" of the evaluation's metrics all-reduce (a training step's is −1).</summary>
    public const int EvaluationLayer = -2;

    private float[] _images = [];
    private int[] _labels = [];
    private int[] _indices = [];
    private Tensor? _input;

    public (double Loss, double Accuracy) Evaluate(Dataset data) => Evaluate(data, SingleProcessCollective.Instance);

    public (double Loss, double Accuracy) Evaluate(Dataset data, ICollective collective)
    {
        double lossSum = 0;
        long correct = 0;
        int sampleSize = network.SampleShape.Aggregate(1, (a, b) => a * b);
        var (offset, count) = DistributedSampler.ShardOf(data.Count, collective.WorldSize, collective.Rank);
        for (int start = offset; start < offset + count; start += batchSize)
        {
            int n = Math.Min(batchSize, offset + count - start);
            if (_indices.Length < n)
            {
                _indices = new int[n];
                _labels = new int[n];
                _images = new float[n * sampleSize];
            }
            for (int i = 0; i < n; i++) _indices[i] = start + i;
            data.Gather(_indices.AsSpan(0, n), _images.AsSpan(0, n * sampleSize), _labels.AsSpan(0, n));
            int[] shape = [n, .. network.SampleShape];
            if (_input is null || !_input.HasShape(shape))
            {
                _input?.Dispose();
                _input = backend.Allocate(shape);
            }
            backend.Upload(_images.AsSpan(0, n * sampleSize), _input);
            var logits = network.Forward(_input, training: false);
            var (loss, right) = _loss.Forward(logits, _labels.AsSpan(0, n), n, computeGradient: false);
            lossSum += loss;
            correct += right;
        }
        _totals[0] = lossSum;
        _totals[1] = correct;
        _totals[2] = count;
        collective.AllReduceSum(_totals, CollectiveKind.Metrics, EvaluationLayer);
        return _totals[2] == 0 ? (0, 0) : (_totals[0] / _totals[2], _totals[1] / _totals[2]);
    }
}
