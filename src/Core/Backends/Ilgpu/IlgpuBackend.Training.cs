using BnDist.Core.Tensors;
using ILGPU;
using ILGPU.Runtime;

namespace BnDist.Core.Backends.Ilgpu;

/// <summary>The loss and the optimizer update (Kernels/LossKernels.cs, SgdKernels.cs).</summary>
public sealed partial class IlgpuBackend
{
    public (double LossSum, int Correct) SoftmaxCrossEntropy(int n, int classes, Tensor logits, ReadOnlySpan<int> labels,
        float scale, Tensor? dlogits)
    {
        if (labels.Length != n) throw new ArgumentException($"{labels.Length} labels for a batch of {n}");
        for (int i = 0; i < n; i++)
            if ((uint)labels[i] >= (uint)classes)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i], $"label of sample {i} is outside [0, {classes})");
        if (n == 0) return (0, 0);
        var deviceLabels = Grow(ref _labels, n);
        deviceLabels.CopyFromCPU(labels);
        var perSample = Grow(ref _sums, 3L * n);
        _softmaxCrossEntropy(Strided(n), n, classes, scale, dlogits is null ? 0 : 1, V(logits), deviceLabels, perSample, VOrEmpty(dlogits));

        // ℓ_i = log Σ_j e^(z_j − max) − (z_label − max), summed in sample order as on the CPU.
        if (_sumsHost.Length < 3 * n) _sumsHost = new double[3 * n];
        var host = _sumsHost.AsSpan(0, 3 * n);
        perSample.CopyToCPU(host);
        double loss = 0;
        int correct = 0;
        for (int i = 0; i < n; i++)
        {
            loss += Math.Log(host[3 * i]) - host[3 * i + 1];
            if ((int)host[3 * i + 2] == labels[i]) correct++;
        }
        return (loss, correct);
    }

    public void SgdUpdate(Tensor w, Tensor grad, Tensor velocity, float lr, float momentum, float weightDecay)
    {
        if (grad.Length != w.Length || velocity.Length != w.Length) throw new ArgumentException("weight, gradient and velocity differ in length");
        if (w.Length > 0) _sgd(Strided(w.Length), w.Length, V(w), V(grad), V(velocity), lr, momentum, weightDecay);
    }
}
