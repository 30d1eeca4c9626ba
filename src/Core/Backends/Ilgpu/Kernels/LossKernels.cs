using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>
/// Softmax cross-entropy, one sample per thread of a grid-stride loop (K is the class count: 10 here, so a row is
/// one thread's work). The kernel leaves per sample, in rows of three doubles,
/// [Σ_j e^(z_j − max), z_label − max, argmax]; the host takes the logarithms and sums the
/// losses in sample order (the only values that cross back: 3·N doubles), so the loss sum is
/// formed exactly as on the CPU. dlogits = scale·(softmax − onehot) is written on the device.
/// </summary>
internal static class LossKernels
{
    public static void SoftmaxCrossEntropy(int n, int classes, float scale, int withGradient, ArrayView<float> logits,
        ArrayView<int> labels, ArrayView<double> perSample, ArrayView<float> dlogits)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            int row = i * classes, label = labels[i];
            int best = 0;
            float max = logits[row];
            for (int j = 1; j < classes; j++)
            {
                float v = logits[row + j];
                if (v > max) { max = v; best = j; }
            }
            double total = 0;
            for (int j = 0; j < classes; j++) total += KernelMath.Exp(logits[row + j] - max);
            perSample[3 * i] = total;
            perSample[3 * i + 1] = logits[row + label] - max;
            perSample[3 * i + 2] = best;
            if (withGradient == 0) continue;
            for (int j = 0; j < classes; j++)
            {
                double p = KernelMath.Exp(logits[row + j] - max) / total;
                dlogits[row + j] = (float)(scale * (p - (j == label ? 1.0 : 0.0)));
            }
        }
    }
}
