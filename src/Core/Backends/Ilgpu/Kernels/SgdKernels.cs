using ILGPU;

namespace BnDist.Core.Backends.Ilgpu.Kernels;

/// <summary>The optimizer update, a grid-stride loop over the weights.</summary>
internal static class SgdKernels
{
    /// <summary>
    /// torch.optim.SGD: d = g + λ·w; with momentum μ ≠ 0, v = μ·v + d and d = v; w = w − lr·d.
    /// Float32 in the CPU's order of operations.
    /// </summary>
    public static void Update(int n, ArrayView<float> w, ArrayView<float> grad, ArrayView<float> velocity,
        float lr, float momentum, float weightDecay)
    {
        for (int i = Grid.IdxX * Group.DimX + Group.IdxX; i < n; i += Grid.DimX * Group.DimX)
        {
            float d = grad[i] + weightDecay * w[i];
            if (momentum != 0f)
            {
                d = momentum * velocity[i] + d;
                velocity[i] = d;
            }
            w[i] -= lr * d;
        }
    }
}
