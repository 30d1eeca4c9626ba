using BnDist.Core.Backends;
using BnDist.Core.Tensors;

namespace BnDist.Core.Layers;

/// <summary>
/// Softmax cross-entropy against integer labels, the mean over the GLOBAL batch:
/// L = (1/N) Σᵢ ℓᵢ, ℓᵢ = log Σⱼ e^zᵢⱼ − zᵢ,yᵢ, with N = Σ_r n_r over all ranks. Each rank
/// scales its gradient by 1/N (not 1/n_r): ∂L/∂zᵢ = (softmax(zᵢ) − onehot(yᵢ))/N, so that
/// summing gradients across ranks gives exactly the gradient of the global mean, uneven
/// shards included (docs/architecture.md §1).
/// </summary>
public sealed class SoftmaxCrossEntropy(IBackend backend)
{
    private Tensor? _grad;

    /// <summary>∂L/∂logits of the last <see cref="Forward"/> with a gradient.</summary>
    public Tensor Gradient => _grad ?? throw new InvalidOperationException("loss: no gradient computed yet");

    /// <summary>Returns this rank's Σ ℓᵢ (float64) and its count of correct predictions.</summary>
    public (double LossSum, int Correct) Forward(Tensor logits, ReadOnlySpan<int> labels, int globalBatch, bool computeGradient)
    {
        if (logits.Rank != 2) throw new ArgumentException($"loss expects logits [N, classes], got {logits}");
        int n = logits.Shape[0], classes = logits.Shape[1];
        if (computeGradient && globalBatch < n)
            throw new ArgumentOutOfRangeException(nameof(globalBatch), globalBatch, $"the global batch is smaller than this shard ({n})");
        Tensor? grad = null;
        if (computeGradient)
        {
            if (_grad is null || !_grad.HasShape(logits.Shape))
            {
                _grad?.Dispose();
                _grad = backend.Allocate(logits.Shape);
            }
            grad = _grad;
        }
        if (n == 0) return (0, 0);
        return backend.SoftmaxCrossEntropy(n, classes, logits, labels, computeGradient ? 1f / globalBatch : 0f, grad);
    }
}
