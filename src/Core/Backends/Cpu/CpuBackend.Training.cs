using BnDist.Core.Tensors;

namespace BnDist.Core.Backends.Cpu;

/// <summary>The loss and the optimizer update.</summary>
public sealed partial class CpuBackend
{
    public (double LossSum, int Correct) SoftmaxCrossEntropy(int n, int classes, Tensor logits, ReadOnlySpan<int> labels,
        float scale, Tensor? dlogits)
    {
        if (labels.Length != n) throw new ArgumentException($"{labels.Length} labels for a batch of {n}");
        float[] z = D(logits);
        float[]? dz = dlogits is null ? null : D(dlogits);
        double loss = 0;
        int correct = 0;
        for (int i = 0; i < n; i++)
        {
            int label = labels[i];
            if ((uint)label >= (uint)classes)
                throw new ArgumentOutOfRangeException(nameof(labels), label, $"label of sample {i} is outside [0, {classes})");
            var row = z.AsSpan(i * classes, classes);
            int best = 0;
            float max = row[0];
            for (int j = 1; j < classes; j++)
                if (row[j] > max) { max = row[j]; best = j; }
            if (best == label) correct++;
            double total = 0;
            for (int j = 0; j < classes; j++) total += Math.Exp(row[j] - max);
            double logTotal = Math.Log(total);
            loss += logTotal - (row[label] - max);
            if (dz is null) continue;
            for (int j = 0; j < classes; j++)
            {
                double p = Math.Exp(row[j] - max - logTotal);
                dz[i * classes + j] = (float)(scale * (p - (j == label ? 1.0 : 0.0)));
            }
        }
        return (loss, correct);
    }

    public void SgdUpdate(Tensor w, Tensor grad, Tensor velocity, float lr, float momentum, float weightDecay)
    {
        float[] p = D(w), g = D(grad), v = D(velocity);
        if (g.Length != p.Length || v.Length != p.Length) throw new ArgumentException("weight, gradient and velocity differ in length");
        ForChunks(p.Length, (p, g, v, lr, momentum, weightDecay),
            static (in (float[] W, float[] Grad, float[] V, float Lr, float Momentum, float WeightDecay) a, int start, int end) =>
            {
                float[] p = a.W, g = a.Grad, v = a.V;
                for (int i = start; i < end; i++)
                {
                    float d = g[i] + a.WeightDecay * p[i];
                    if (a.Momentum != 0f)
                    {
                        d = a.Momentum * v[i] + d;
                        v[i] = d;
                    }
                    p[i] -= a.Lr * d;
                }
            });
    }
}
